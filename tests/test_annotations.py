"""Annotation parsers on small files written in each dataset's published format."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from zorro.data.annotations import (
    MediaIndex,
    NameTemplate,
    kinetics_sounds_classes,
    match_media,
    read_audioset_labels,
    read_audioset_segments,
    read_class_list,
    read_esc50,
    read_kinetics_csv,
    read_vggsound,
    scan_kinetics_tree,
)
from zorro.data.annotations.media import COMMON_FIELDS

LABELS_CSV = textwrap.dedent('''\
    index,mid,display_name
    0,/m/09x0r,"Speech"
    1,/m/05zppz,"Male speech, man speaking"
    2,/m/02zsn,"Female speech, woman speaking"
    3,/t/dd00088,"Gush"
    ''')

SEGMENTS_CSV = textwrap.dedent('''\
    # Segments csv created Sun Mar  5 10:54:31 2017
    # num_ytids=4, num_segs=4, num_unique_labels=4, num_positive_labels=6
    # YTID, start_seconds, end_seconds, positive_labels
    --PJHxphWEs, 30.000, 40.000, "/m/09x0r,/t/dd00088"
    --ZhevVpy1s, 50.000, 60.000, "/m/05zppz"
    --aE2O5G5WE, 0.000, 6.340, "/m/02zsn,/m/09x0r,/m/05zppz"
    -0BIyqJj9ZU, 30.000, 40.000, "/m/02zsn"
    ''')


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------------------ AudioSet


def test_audioset_labels_quoted_names_with_commas(tmp_path):
    classes = read_audioset_labels(write(tmp_path / "class_labels_indices.csv", LABELS_CSV))
    assert [c.index for c in classes] == [0, 1, 2, 3]
    assert classes[1].mid == "/m/05zppz"
    assert classes[1].name == "Male speech, man speaking"


def test_audioset_labels_ids_follow_the_index_column_not_the_row_order(tmp_path):
    shuffled = "index,mid,display_name\n1,/m/b,\"B, b\"\n0,/m/a,A\n"
    classes = read_audioset_labels(write(tmp_path / "l.csv", shuffled))
    assert [(c.index, c.mid, c.name) for c in classes] == [(0, "/m/a", "A"), (1, "/m/b", "B, b")]


@pytest.mark.parametrize(
    "text, match",
    [
        ("idx,mid,name\n0,/m/a,A\n", "header"),
        ("index,mid,display_name\n0,/m/a,A\n2,/m/b,B\n", r"0\.\.1"),
        ("index,mid,display_name\n0,/m/a,A\nx,/m/b,B\n", r"l.csv:3: class index"),
        ("index,mid,display_name\n0,/m/a,A\n1,/m/a,B\n", "MID /m/a appears twice"),
        ("index,mid,display_name\n0,/m/a,A,extra\n", r"l.csv:2: expected 3 fields"),
    ],
)
def test_audioset_labels_bad_files(tmp_path, text, match):
    with pytest.raises(ValueError, match=match):
        read_audioset_labels(write(tmp_path / "l.csv", text))


def test_audioset_segments_format(tmp_path):
    classes = read_audioset_labels(write(tmp_path / "class_labels_indices.csv", LABELS_CSV))
    res = read_audioset_segments(write(tmp_path / "eval_segments.csv", SEGMENTS_CSV), classes)
    assert res.multi_label and len(res.records) == 4 and not res.dropped
    assert res.labels == ["Speech", "Male speech, man speaking", "Female speech, woman speaking", "Gush"]
    first = res.records[0]
    assert (first.ytid, first.start, first.end) == ("--PJHxphWEs", 30.0, 40.0)
    assert first.labels == ("Speech", "Gush") and first.extra["mids"] == ["/m/09x0r", "/t/dd00088"]
    assert first.split == "eval_segments" and first.line == 4 and first.id == "--PJHxphWEs_30.000"
    short = res.records[2]
    assert short.duration == pytest.approx(6.34)  # short segments are kept as published
    assert short.labels == ("Female speech, woman speaking", "Speech", "Male speech, man speaking")


def test_audioset_several_files_and_duplicates(tmp_path):
    classes = read_audioset_labels(write(tmp_path / "l.csv", LABELS_CSV))
    a = write(tmp_path / "balanced_train_segments.csv", SEGMENTS_CSV)
    b = write(tmp_path / "unbalanced_train_segments.csv", SEGMENTS_CSV.replace("-0BIyqJj9ZU", "-0BIyqJj9ZV"))
    with pytest.raises(ValueError, match=r"unbalanced_train_segments.csv:4: duplicate segment"):
        read_audioset_segments([a, b], classes)
    res = read_audioset_segments([a, b], classes, on_error="skip")
    assert len(res.records) == 5
    assert res.summary()["dropped"] == {"duplicate segment": 3}
    assert {d.line for d in res.dropped} == {4, 5, 6}


def test_audioset_unknown_mid_is_a_label_file_mismatch(tmp_path):
    classes = read_audioset_labels(write(tmp_path / "l.csv", LABELS_CSV))
    text = SEGMENTS_CSV.replace('"/m/05zppz"', '"/m/0unknown"')
    path = write(tmp_path / "eval_segments.csv", text)
    with pytest.raises(ValueError, match=r"eval_segments.csv:5: unknown MID.*label file does not match"):
        read_audioset_segments(path, classes)
    res = read_audioset_segments(path, classes, on_error="skip")
    assert len(res.records) == 3 and res.dropped[0].reason == "unknown MID" and res.dropped[0].line == 5


@pytest.mark.parametrize(
    "row, what",
    [
        ("abc, 30.000, 40.000", "expected 4 fields"),
        ("abc, thirty, 40.000, \"/m/09x0r\"", "must be numbers"),
        ("abc, 40.000, 30.000, \"/m/09x0r\"", "start < end"),
        ("abc, 30.000, 40.000, \"\"", "no label"),
    ],
)
def test_audioset_malformed_rows_name_the_line(tmp_path, row, what):
    classes = read_audioset_labels(write(tmp_path / "l.csv", LABELS_CSV))
    path = write(tmp_path / "s.csv", SEGMENTS_CSV + row + "\n")
    with pytest.raises(ValueError, match=rf"s.csv:8: malformed row: .*{what}"):
        read_audioset_segments(path, classes)
    res = read_audioset_segments(path, classes, on_error="skip")
    assert len(res.records) == 4 and [(d.line, d.reason) for d in res.dropped] == [(8, "malformed row")]


def test_audioset_segments_without_header_lines_are_refused(tmp_path):
    classes = read_audioset_labels(write(tmp_path / "l.csv", LABELS_CSV))
    body = "\n".join(SEGMENTS_CSV.splitlines()[3:]) + "\n"
    with pytest.raises(ValueError, match="not an AudioSet segment list"):
        read_audioset_segments(write(tmp_path / "s.csv", body), classes)
    with pytest.raises(ValueError, match="on_error"):
        read_audioset_segments(write(tmp_path / "t.csv", SEGMENTS_CSV), classes, on_error="ignore")


# ------------------------------------------------------------------------------ VGGSound

VGGSOUND_CSV = textwrap.dedent('''\
    ---g-f_I2yQ,1,people marching,test
    --0PQM4-hqg,30,waterfall burbling,train
    --56QUhyDQM,185,playing tennis,train
    --5OkAjCI7g,40,"bird chirping, tweeting",train
    --8puiAGLhs,30,"bird chirping, tweeting",test
    ''')


def test_vggsound_no_header_quoted_labels_sorted_ids(tmp_path):
    path = write(tmp_path / "vggsound.csv", VGGSOUND_CSV)
    res = read_vggsound(path)
    assert res.labels == ["bird chirping, tweeting", "people marching", "playing tennis", "waterfall burbling"]
    assert len(res.records) == 5 and res.records[0].line == 1
    rec = res.records[3]
    assert rec.labels == ("bird chirping, tweeting",) and (rec.start, rec.end) == (40.0, 50.0) and rec.id == "--5OkAjCI7g_40"
    train = read_vggsound(path, split="train")
    assert [r.ytid for r in train.records] == ["--0PQM4-hqg", "--56QUhyDQM", "--5OkAjCI7g"]
    assert train.labels == res.labels  # ids over the whole file, so train and test agree
    assert train.filtered == {"split is not train": 2}


def test_vggsound_bad_rows(tmp_path):
    path = write(tmp_path / "vggsound.csv", VGGSOUND_CSV + "abc,1.5,x,train\nabd,2,y,val\n---g-f_I2yQ,1,people marching,test\n")
    with pytest.raises(ValueError, match=r"vggsound.csv:6: malformed row: start_seconds must be an integer"):
        read_vggsound(path)
    res = read_vggsound(path, on_error="skip")
    assert [(d.line, d.reason) for d in res.dropped] == [(6, "malformed row"), (7, "malformed row"), (8, "duplicate clip")]
    with pytest.raises(ValueError, match="split must be one of"):
        read_vggsound(path, split="val")


# ------------------------------------------------------------------------------ Kinetics

KINETICS_CSV = textwrap.dedent('''\
    label,youtube_id,time_start,time_end,split,is_cc
    playing bagpipes,-0lSIUTmrUg,10,20,train,0
    abseiling,-3B32lodo2M,59,69,train,0
    tapping pen,-1JEAqZtmrY,0,10,train,0
    playing bagpipes,-58aRzTnU2w,3,13,validate,0
    ''')


def test_kinetics_sounds_list_is_shipped_and_well_formed():
    classes = kinetics_sounds_classes()
    assert len(classes) == 31 and classes == sorted(classes) and len(set(classes)) == 31
    assert "playing bagpipes" in classes and "abseiling" not in classes


def test_kinetics_csv_subset_and_split(tmp_path):
    path = write(tmp_path / "train.csv", KINETICS_CSV)
    res = read_kinetics_csv(path, classes=["playing bagpipes", "tapping pen"], split="train")
    assert [r.id for r in res.records] == ["-0lSIUTmrUg_000010_000020", "-1JEAqZtmrY_000000_000010"]
    assert res.labels == ["playing bagpipes", "tapping pen"]
    assert res.filtered == {"class not in the subset": 1, "split is not train": 1}
    assert res.records[0].extra == {"is_cc": "0"}
    with pytest.raises(ValueError, match=r"1 of the 2 classes never occur.*'playing sitar'"):
        read_kinetics_csv(path, classes=["playing bagpipes", "playing sitar"])
    with pytest.raises(ValueError, match="Kinetics header"):
        read_kinetics_csv(write(tmp_path / "x.csv", "youtube_id,label\n"))
    bad = write(tmp_path / "bad.csv", KINETICS_CSV + "tapping pen,zz,20,10,train,0\n")
    with pytest.raises(ValueError, match=r"bad.csv:6: malformed row"):
        read_kinetics_csv(bad)


def test_kinetics_tree_torchvision_layout(tmp_path):
    root = tmp_path / "train"
    for rel in ("playing_bagpipes/-0lSIUTmrUg_000010_000020.mp4", "tapping pen/-1JEAqZtmrY_000000_000010.mp4",
                "abseiling/-3B32lodo2M_000059_000069.mp4", "tapping pen/notes.txt", "tapping pen/odd.mp4"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    res = scan_kinetics_tree(root, classes=["playing bagpipes", "tapping pen"])
    ids = sorted(r.id for r in res.records)
    assert ids == ["-0lSIUTmrUg_000010_000020", "-1JEAqZtmrY_000000_000010", "tapping pen/odd.mp4"]
    assert res.filtered == {"name without times": 1}
    with pytest.raises(ValueError, match="no folder for 1 of the 2 classes"):
        scan_kinetics_tree(root, classes=["playing bagpipes", "playing sitar"])


def test_class_list_file(tmp_path):
    assert read_class_list(write(tmp_path / "c.txt", "# comment\nb\n\na\n")) == ["b", "a"]
    with pytest.raises(ValueError, match="twice"):
        read_class_list(write(tmp_path / "d.txt", "a\na\n"))


# ------------------------------------------------------------------------------ ESC-50

ESC50_CSV = textwrap.dedent('''\
    filename,fold,target,category,esc10,src_file,take
    1-100032-A-0.wav,1,0,dog,True,100032,A
    1-100038-A-14.wav,1,1,chirping_birds,False,100038,A
    2-100648-A-43.wav,2,2,car_horn,False,100648,A
    3-101296-A-0.wav,3,0,dog,True,101296,A
    4-102844-A-1.wav,4,1,chirping_birds,False,102844,A
    5-103415-A-2.wav,5,2,car_horn,False,103415,A
    ''')


def test_esc50_folds_and_targets(tmp_path):
    path = write(tmp_path / "meta" / "esc50.csv", ESC50_CSV)
    res = read_esc50(path)
    assert res.labels == ["dog", "chirping_birds", "car_horn"]  # ids follow the target column
    assert [r.fold for r in res.records] == [1, 1, 2, 3, 4, 5]
    assert res.records[0].start is None and res.records[0].extra["take"] == "A"
    five = read_esc50(path, folds=(5,))
    assert [r.id for r in five.records] == ["5-103415-A-2.wav"] and five.filtered == {"fold not selected": 5}
    ten = read_esc50(path, esc10=True)
    assert ten.labels == ["dog"] and len(ten.records) == 2


@pytest.mark.parametrize(
    "row, match",
    [
        ("x.wav,6,0,dog,True,1,A", r"esc50.csv:8: malformed row"),
        ("x.wav,1,zero,dog,True,1,A", r"esc50.csv:8: malformed row: fold and target must be integers"),
        ("x.wav,1,0,cat,True,1,A", r"esc50.csv:8: target 0 / category 'cat' contradicts"),
        ("1-100032-A-0.wav,1,0,dog,True,100032,A", r"esc50.csv:8: duplicate file"),
    ],
)
def test_esc50_bad_rows(tmp_path, row, match):
    with pytest.raises(ValueError, match=match):
        read_esc50(write(tmp_path / "esc50.csv", ESC50_CSV + row + "\n"))


def test_esc50_missing_target_and_header(tmp_path):
    text = "\n".join(line for line in ESC50_CSV.splitlines() if ",1,chirping" not in line and ",4,1," not in line) + "\n"
    with pytest.raises(ValueError, match=r"missing targets \[1\]"):
        read_esc50(write(tmp_path / "a.csv", text))
    with pytest.raises(ValueError, match="ESC-50 header"):
        read_esc50(write(tmp_path / "b.csv", "file,fold\n"))


# ------------------------------------------------------------------------------ media lookup


def test_name_template_fields_and_errors(tmp_path):
    classes = read_audioset_labels(write(tmp_path / "l.csv", LABELS_CSV))
    seg = read_audioset_segments(write(tmp_path / "s.csv", SEGMENTS_CSV), classes).records[0]
    assert NameTemplate("{ytid}_{start:06d}.mp4", COMMON_FIELDS).format(seg) == "--PJHxphWEs_000030.mp4"
    assert NameTemplate("Y{ytid}.wav", COMMON_FIELDS).format(seg) == "Y--PJHxphWEs.wav"
    assert NameTemplate("Y{ytid}_{start:.3f}_{end:.3f}", COMMON_FIELDS).format(seg) == "Y--PJHxphWEs_30.000_40.000"
    assert NameTemplate("{ytid}_{start}_{end}", COMMON_FIELDS).format(seg) == "--PJHxphWEs_30_40"
    with pytest.raises(ValueError, match=r"unknown field \{yt_id\}; available fields: \[.*'ytid'"):
        NameTemplate("{yt_id}.mp4", COMMON_FIELDS)
    for bad, what in (("{}.mp4", "must be named"), ("{0}.mp4", "must be named"), ("{ytid.upper}", "plain name"),
                      ("{ytid", "not a valid format string"), ("clip.mp4", "uses no field"), ("/abs/{ytid}", "relative")):
        with pytest.raises(ValueError, match=what):
            NameTemplate(bad, COMMON_FIELDS)
    with pytest.raises(ValueError, match=r"has no value for \['fold'\]"):
        NameTemplate("{fold}/{ytid}", COMMON_FIELDS).format(seg)
    with pytest.raises(ValueError, match="cannot format clip"):
        NameTemplate("{ytid:06d}", COMMON_FIELDS).format(seg)


def test_media_index_lookup_rules(tmp_path):
    root = tmp_path / "media"
    for rel in ("a.mp4", "b.mkv", "b.wav", "sub/c.mp4", "x/d.mp4", "y/d.mp4", "e.txt", "Yf.wav"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"")
    index = MediaIndex(root)
    assert len(index) == 7  # e.txt is not media
    assert index.find("a.mp4") == root / "a.mp4"  # exact
    assert index.find("a.webm") == root / "a.mp4"  # other media extension
    assert index.find("b") == root / "b.mkv"  # no extension: preference order of MEDIA_EXTENSIONS
    assert index.find("c.mp4") == root / "sub" / "c.mp4"  # basename anywhere
    assert index.find("sub/c") == root / "sub" / "c.mp4"
    assert index.find("other/c.mp4") is None  # a folder in the name is taken literally
    assert index.find("d.mp4") == root / "x" / "d.mp4" and index.ambiguous == 1
    assert index.find("e.txt") is None and index.find("f.wav") is None and index.find("Yf.wav") == root / "Yf.wav"
    with pytest.raises(FileNotFoundError):
        MediaIndex(tmp_path / "nope")


def test_match_media_with_generated_files_and_a_missing_one(tmp_path):
    """Media made by tests/media.py, named by two templates; one annotated clip has no file."""
    from media import make_media

    classes = read_audioset_labels(write(tmp_path / "l.csv", LABELS_CSV))
    res = read_audioset_segments(write(tmp_path / "eval_segments.csv", SEGMENTS_CSV), classes)
    root = tmp_path / "media"
    root.mkdir()
    make_media(root / "--PJHxphWEs_000030.mp4", duration=0.4)
    make_media(root / "--ZhevVpy1s_000050.mp4", duration=0.4)
    make_media(root / "Y--aE2O5G5WE.mkv", video_codec=None, audio_codec="pcm_s16le", duration=0.4, container_format="matroska")
    templates = [NameTemplate("{ytid}_{start:06d}.mp4", COMMON_FIELDS), NameTemplate("Y{ytid}.wav", COMMON_FIELDS)]
    m = match_media(res.records, MediaIndex(root), templates)
    assert [s.ytid for s, _ in m.found] == ["--PJHxphWEs", "--ZhevVpy1s", "--aE2O5G5WE"]
    assert m.found[2][1].name == "Y--aE2O5G5WE.mkv"  # Y{ytid}.wav found as .mkv by the extension search
    assert [s.ytid for s in m.missing] == ["-0BIyqJj9ZU"]
