"""``--dry-run`` on every ``zorro prepare`` command: parse, match, write the accounting, print a
summary, exit 0 even when no media file is found; the fixes found on the real files."""

from __future__ import annotations

import json
import textwrap

import pytest

from zorro.cli import main
from zorro.data.shards.format import iter_list, read_dataset_json

AUDIOSET_LABELS = textwrap.dedent('''\
    index,mid,display_name
    0,/m/09x0r,"Speech"
    1,/m/05zppz,"Male speech, man speaking"
    ''')
AUDIOSET_SEGMENTS = textwrap.dedent('''\
    # Segments csv created Sun Mar  5 10:54:31 2017
    # num_ytids=3, num_segs=3, num_unique_labels=2, num_positive_labels=4
    # YTID, start_seconds, end_seconds, positive_labels
    --PJHxphWEs, 239.800, 249.800, "/m/09x0r,/m/05zppz"
    --ZhevVpy1s, 50.000, 60.000, "/m/05zppz"
    --aE2O5G5WE, 0.000, 6.340, "/m/09x0r"
    ''')
VGGSOUND = 'vid00000001,10,"bird chirping, tweeting",train\nvid00000002,0,dog barking,test\n'
KINETICS = "label,youtube_id,time_start,time_end,split\nplaying bagpipes,kin00000001,10,20,val\ntapping pen,kin00000003,3,13,val\n"
ESC50 = "filename,fold,target,category,esc10,src_file,take\n1-1-A-0.wav,1,0,dog,True,1,A\n2-2-A-1.wav,2,1,rain,False,2,A\n"
US8K = ("slice_file_name,fsID,start,end,salience,fold,classID,class\n"
        "100032-3-0-0.wav,100032,0.0,0.317551,1,5,3,dog_bark\n"
        "100263-2-0-117.wav,100263,58.5,62.5,1,5,2,children_playing\n"
        "101415-3-0-2.wav,101415,1.0,5.0,1,1,3,dog_bark\n"
        "102106-1-0-0.wav,102106,0.0,4.0,2,7,1,car_horn\n"
        "103074-0-0-0.wav,103074,3.0,7.0,1,10,0,air_conditioner\n")


def _files(tmp_path):
    (tmp_path / "labels.csv").write_text(AUDIOSET_LABELS)
    (tmp_path / "eval_segments.csv").write_text(AUDIOSET_SEGMENTS)
    (tmp_path / "vggsound.csv").write_text(VGGSOUND)
    (tmp_path / "kinetics.csv").write_text(KINETICS)
    (tmp_path / "esc50.csv").write_text(ESC50)
    (tmp_path / "UrbanSound8K.csv").write_text(US8K)
    (tmp_path / "classes.txt").write_text("playing bagpipes\ntapping pen\n")
    (tmp_path / "empty").mkdir()


COMMANDS = {
    "audioset": (["--segments", "{t}/eval_segments.csv", "--labels", "{t}/labels.csv"], 3, "--PJHxphWEs_000239"),
    "vggsound": (["--csv", "{t}/vggsound.csv", "--split", "train"], 1, "vid00000001_000010"),
    "kinetics-sounds": (["--csv", "{t}/kinetics.csv", "--split", "val", "--classes", "{t}/classes.txt"], 2,
                        "kin00000001_000010_000020"),
    "esc50": (["--meta", "{t}/esc50.csv"], 2, "1-1-A-0.wav"),
    "urbansound8k": (["--meta", "{t}/UrbanSound8K.csv"], 5, "fold5/100032-3-0-0.wav"),
}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_dry_run_on_an_empty_media_folder(name, tmp_path, capsys, caplog):
    _files(tmp_path)
    args, rows, first = COMMANDS[name]
    out = tmp_path / "out"
    caplog.set_level("INFO")
    assert main(["prepare", name, *[a.format(t=tmp_path) for a in args], "--media-root", str(tmp_path / "empty"),
                 "--out", str(out), "--dry-run"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["dry_run"] and summary["found"] == 0 and summary["missing"] == summary["annotated"] == rows
    assert summary["first_missing"][0] == first and summary["name_templates"]
    assert "nothing decoded" in caplog.text and "first names looked for without a file" in caplog.text
    info = read_dataset_json(out, allow_dry_run=True)
    assert info["dry_run"] and info["format_version"] == 2 and info["shards"] == [] and info["num_samples"] == 0
    assert info["counts"]["missing"] == rows and info["counts"]["found"] == 0 and info["extra"]["dataset"] == name
    assert len(list(iter_list(out, "missing"))) == rows
    assert not list(out.glob("shard-*")) and not list(out.glob(".*.spool"))
    with pytest.raises(ValueError, match="accounting of `zorro prepare --dry-run`"):
        read_dataset_json(out)
    from zorro.data import ShardDataset

    with pytest.raises(ValueError, match="dry-run"):
        ShardDataset(out)
    # without --dry-run an empty media folder is still an error, and writes nothing
    assert main(["prepare", name, *[a.format(t=tmp_path) for a in args], "--media-root", str(tmp_path / "empty"),
                 "--out", str(tmp_path / "real")]) == 1
    assert "--dry-run shows what is looked for" in caplog.text and not (tmp_path / "real").exists()


def test_dry_run_then_the_real_run_in_the_same_folder(tmp_path, capsys):
    from media import make_media

    _files(tmp_path)
    media = tmp_path / "media"
    media.mkdir()
    make_media(media / "--PJHxphWEs_000239.mp4", duration=0.5, width=32, height=24)  # 239.8 truncates to 239
    args = ["prepare", "audioset", "--segments", str(tmp_path / "eval_segments.csv"), "--labels", str(tmp_path / "labels.csv"),
            "--media-root", str(media), "--out", str(tmp_path / "out"), "--duration", "0.5", "--num-frames", "2",
            "--image-size", "16", "--store-size", "16", "--num-workers", "1"]
    assert main([*args, "--dry-run"]) == 0
    dry = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (dry["found"], dry["missing"]) == (1, 2)
    assert main(args) == 0
    info = read_dataset_json(tmp_path / "out")
    assert not info["dry_run"] and info["num_samples"] == 1 and info["counts"]["missing"] == 2
    assert info["counts"]["sources"] == info["counts"]["written"] + info["counts"]["unreadable"] + info["counts"]["missing"]
    assert info["counts"]["rows"] == 3 and info["counts"]["annotated"] == 3
    assert main([*args, "--dry-run"]) == 1  # a dry run never overwrites a prepared folder
    assert read_dataset_json(tmp_path / "out")["num_samples"] == 1 and not list((tmp_path / "out").glob(".*.spool"))


def test_manifest_dry_run_lists_files_that_do_not_exist(tmp_path, capsys):
    from media import make_media

    make_media(tmp_path / "a.mp4", duration=0.5, width=32, height=24)
    (tmp_path / "m.csv").write_text("path,label\na.mp4,cat\nb.mp4,dog\n")
    assert main(["prepare", "--manifest", str(tmp_path / "m.csv"), "--out", str(tmp_path / "o"), "--dry-run"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["rows"], summary["found"], summary["missing"]) == (2, 1, 1)
    assert [m["path"] for m in iter_list(tmp_path / "o", "missing")] == [str(tmp_path / "b.mp4")]


def test_split_that_no_row_has_lists_the_values_present(tmp_path, caplog):
    _files(tmp_path)
    assert main(["prepare", "kinetics-sounds", "--csv", str(tmp_path / "kinetics.csv"), "--split", "validate", "--classes",
                 str(tmp_path / "classes.txt"), "--media-root", str(tmp_path / "empty"), "--out", str(tmp_path / "o"), "--dry-run"]) == 1
    assert "no row has split 'validate'; the split values present are ['val']" in caplog.text
    from zorro.data.registry.vggsound import read_vggsound

    (tmp_path / "train_only.csv").write_text("a,1,x,train\n")
    with pytest.raises(ValueError, match=r"no row has split 'test'; the split values present are \['train'\]"):
        read_vggsound(tmp_path / "train_only.csv", split="test")


@pytest.mark.parametrize("name, duration", [("audioset", "10.0"), ("vggsound", "10.0"), ("kinetics-sounds", "10.0"),
                                            ("esc50", "5.0"), ("urbansound8k", "4.0")])
def test_each_dataset_help_shows_its_own_default_duration(name, duration, capsys):
    with pytest.raises(SystemExit):
        main(["prepare", name, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"stored window length in seconds (default {duration};" in text
    assert "--num-workers NUM_WORKERS, --workers NUM_WORKERS" in text and "--decoder {pyav,torchcodec,auto}, --backend" in text
    assert "--dry-run" in text and "--part K" in text


def test_fractional_starts_truncate_like_the_download_scripts():
    from zorro.data.annotations import NameTemplate, Segment
    from zorro.data.annotations.media import COMMON_FIELDS, template_fields

    seg = Segment(id="x", labels=("a",), ytid="abc", start=239.8, end=249.8)
    assert NameTemplate("{ytid}_{start:06d}", COMMON_FIELDS).format(seg) == "abc_000239"
    assert NameTemplate("{ytid}_{start:06d}_{end:06d}", COMMON_FIELDS).format(seg) == "abc_000239_000249"
    assert NameTemplate("{ytid}_{start}", COMMON_FIELDS).format(seg) == "abc_239.8"
    assert NameTemplate("{ytid}_{start:.1f}", COMMON_FIELDS).format(seg) == "abc_239.8"
    assert format(template_fields(seg)["start"], "06d") == "000239"
