"""Annotation files + generated media -> prepared shards whose dataset.json accounts for every clip."""

from __future__ import annotations

import textwrap

import pytest

from zorro.data.annotations import MediaIndex, NameTemplate, match_media, read_audioset_labels, read_audioset_segments, read_esc50
from zorro.data.annotations.media import COMMON_FIELDS
from zorro.data.annotations.sources import prepare_inputs
from zorro.data.sample_meta import sample_metadata, select_samples
from zorro.data.shards.format import iter_list

LABELS = textwrap.dedent('''\
    index,mid,display_name
    0,/m/09x0r,"Speech"
    1,/m/05zppz,"Male speech, man speaking"
    2,/t/dd00088,"Gush"
    ''')
SEGMENTS = textwrap.dedent('''\
    # Segments csv created Sun Mar  5 10:54:31 2017
    # num_ytids=4, num_segs=4, num_unique_labels=3, num_positive_labels=5
    # YTID, start_seconds, end_seconds, positive_labels
    --PJHxphWEs, 30.000, 40.000, "/m/09x0r,/t/dd00088"
    --ZhevVpy1s, 50.000, 60.000, "/m/05zppz"
    --aE2O5G5WE, 0.000, 6.340, "/m/05zppz,/m/09x0r"
    -0BIyqJj9ZU, 30.000, 40.000, "/t/dd00088"
    bad_row_here, 30.000
    ''')
SMALL = dict(duration=1.0, num_frames=2, image_size=32, store_size=32, sample_rate=16000, samples_per_shard=2, shard_bytes=None)


def test_audioset_corpus_to_shards_lists_missing_and_dropped(tmp_path):
    from media import make_media

    from zorro.data.prepare import prepare_shards

    (tmp_path / "l.csv").write_text(LABELS)
    (tmp_path / "eval_segments.csv").write_text(SEGMENTS)
    parsed = read_audioset_segments(tmp_path / "eval_segments.csv", read_audioset_labels(tmp_path / "l.csv"), on_error="skip")
    media = tmp_path / "media"
    media.mkdir()
    make_media(media / "--PJHxphWEs_000030.mp4", duration=1.0)
    make_media(media / "--ZhevVpy1s_000050.mp4", duration=1.0)
    (media / "sub").mkdir()
    make_media(media / "sub" / "Y--aE2O5G5WE.mp4", duration=0.6)
    templates = [NameTemplate("{ytid}_{start:06d}", COMMON_FIELDS), NameTemplate("Y{ytid}", COMMON_FIELDS)]
    match = match_media(parsed.records, MediaIndex(media), templates)
    inputs = prepare_inputs("audioset", parsed, match, templates=templates, annotation_files=["eval_segments.csv"])
    info = prepare_shards(inputs.sources, tmp_path / "out", workers=1, **inputs.kwargs(), **SMALL)

    assert info["multi_label"] and info["labels"] == ["Speech", "Male speech, man speaking", "Gush"]
    counts = info["counts"]
    assert (counts["sources"], counts["written"], counts["unreadable"], counts["missing"]) == (4, 3, 0, 1)
    missing = list(iter_list(tmp_path / "out", "missing"))
    assert [m["ytid"] for m in missing] == ["-0BIyqJj9ZU"]
    assert missing[0]["looked_for"] == ["{ytid}_{start:06d}", "Y{ytid}"]
    extra = info["extra"]
    assert extra["dataset"] == "audioset" and extra["annotated"] == 4
    assert extra["dropped_counts"] == {"malformed row": 1} and "dropped_rows" not in extra
    assert [d["line"] for d in iter_list(tmp_path / "out", "dropped_rows")] == [8] and counts["rows"] == 5
    samples, _ = sample_metadata(tmp_path / "out")
    assert [s["meta"]["ytid"] for s in samples] == ["--PJHxphWEs", "--ZhevVpy1s", "--aE2O5G5WE"]
    assert samples[0]["meta"]["start"] == 30.0 and samples[0]["meta"]["mids"] == ["/m/09x0r", "/t/dd00088"]
    assert samples[0]["label_ids"] == [0, 2] and samples[2]["meta"]["end"] == pytest.approx(6.34)
    # trimmed clips: the decoder reads each file from its own start, not from 30 s
    assert samples[0]["start"] < 1.0 and samples[0]["has_audio"] and samples[0]["has_video"]


def test_esc50_corpus_keeps_folds(tmp_path):
    from media import make_media

    from zorro.data.prepare import prepare_shards

    meta = "filename,fold,target,category,esc10,src_file,take\n"
    rows = [(f"{f}-1000{f}-A-{t}.wav", f, t, ["dog", "rain"][t]) for f in range(1, 6) for t in range(2)]
    meta += "".join(f"{n},{f},{t},{c},False,1000{f},A\n" for n, f, t, c in rows)
    (tmp_path / "esc50.csv").write_text(meta)
    audio = tmp_path / "audio"
    audio.mkdir()
    for n, *_ in rows[:-1]:  # the last clip is missing
        make_media(audio / n, container_format="wav", video_codec=None, audio_codec="pcm_s16le", layout="mono",
                   sample_rate=44100, duration=0.5)
    parsed = read_esc50(tmp_path / "esc50.csv")
    templates = [NameTemplate("{filename}", (*COMMON_FIELDS, "target"))]
    match = match_media(parsed.records, MediaIndex(audio), templates)
    inputs = prepare_inputs("esc50", parsed, match, templates=templates)
    info = prepare_shards(inputs.sources, tmp_path / "out", workers=1, **inputs.kwargs(), **{**SMALL, "video": False})
    assert (info["counts"]["written"], info["counts"]["missing"]) == (9, 1) and [m["id"] for m in iter_list(tmp_path / "out", "missing")] == ["5-10005-A-1.wav"]
    samples, _ = sample_metadata(tmp_path / "out")
    assert select_samples(samples, "fold", {5}) == [8]
    assert select_samples(samples, "fold", lambda f: f != 1) == list(range(2, 9))
    with pytest.raises(ValueError, match="no annotation field 'split'"):
        select_samples(samples, "split", {"train"})


def test_full_videos_use_the_annotated_window(tmp_path):
    (tmp_path / "l.csv").write_text(LABELS)
    (tmp_path / "s.csv").write_text(SEGMENTS)
    parsed = read_audioset_segments(tmp_path / "s.csv", read_audioset_labels(tmp_path / "l.csv"), on_error="skip")
    media = tmp_path / "media"
    media.mkdir()
    (media / "--PJHxphWEs.mp4").write_bytes(b"")
    match = match_media(parsed.records, MediaIndex(media), [NameTemplate("{ytid}", COMMON_FIELDS)])
    full = prepare_inputs("audioset", parsed, match, clips="full").sources
    assert [(s.start, s.end) for s in full] == [(30.0, 40.0)]
    trimmed = prepare_inputs("audioset", parsed, match).sources
    assert [(s.start, s.end) for s in trimmed] == [(None, None)] and trimmed[0].meta["start"] == 30.0
    with pytest.raises(ValueError, match="clips must be one of"):
        prepare_inputs("audioset", parsed, match, clips="cut")
    esc = tmp_path / "esc50.csv"
    esc.write_text("filename,fold,target,category,esc10,src_file,take\na.wav,1,0,dog,True,1,A\n")
    (media / "a.wav").write_bytes(b"")
    parsed = read_esc50(esc)
    match = match_media(parsed.records, MediaIndex(media), [NameTemplate("{filename}", COMMON_FIELDS)])
    with pytest.raises(ValueError, match="has no annotated window"):
        prepare_inputs("esc50", parsed, match, clips="full")
