"""End to end through the command line, on tiny corpora in the published formats:

* AudioSet: ``zorro prepare audioset`` (train and eval) -> ``zorro pretrain`` -> ``zorro train``
  (balanced sampling, mixup) -> ``zorro evaluate --protocol audioset`` (mAP, mAUC, d-prime);
* ESC-50: ``zorro prepare esc50`` -> ``zorro cv`` (five folds, mean and std).
"""

from __future__ import annotations

import json
import textwrap

import pytest
import yaml

from media import make_media
from toy import TINY_MODEL
from zorro.cli import main
from zorro.data.shards.format import iter_list

pytestmark = pytest.mark.filterwarnings("ignore:audio features of shape")  # short test clips cropped to whole patches

SMALL = ["--duration", "1.0", "--num-frames", "2", "--image-size", "32", "--store-size", "36", "--workers", "1",
         "--shard-samples", "4"]

LABELS = textwrap.dedent('''\
    index,mid,display_name
    0,/m/09x0r,"Speech"
    1,/m/05zppz,"Male speech, man speaking"
    2,/t/dd00088,"Gush"
    ''')
HEADER = textwrap.dedent('''\
    # Segments csv created Sun Mar  5 10:54:31 2017
    # num_ytids=8, num_segs=8, num_unique_labels=3, num_positive_labels=11
    # YTID, start_seconds, end_seconds, positive_labels
    ''')


def _config(path, **data):
    cfg = {
        "model": {"arch": {**TINY_MODEL, "video_temporal_patch_size": 2}, "precision": "fp32"},
        "data": {"duration": 1.0, "num_frames": 2, "image_size": 32, "batch_size": 4, "num_workers": 0, **data},
        "optim": {"epochs": 1, "lr": 3e-3, "warmup_steps": 1},
        "run": {"progress": False, "log_every": 1, "tensorboard": False},
    }
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


@pytest.mark.slow
def test_audioset_prepare_pretrain_finetune_evaluate(tmp_path, capsys):
    media = tmp_path / "downloads"
    media.mkdir()
    mids = ["/m/09x0r", "/m/05zppz", "/t/dd00088"]
    rows = []
    for i in range(10):
        ytid = f"yt{i:02d}-_abcde"
        labels = ",".join(mids[j] for j in range(3) if (i >> j) & 1 or j == i % 3)
        end = "36.500" if i == 3 else "40.000"  # a short segment
        rows.append(f'{ytid}, 30.000, {end}, "{labels}"')
        if i != 9:  # one annotated video was never downloaded
            make_media(media / f"{ytid}_000030.mp4", duration=2.0, tone_hz=300 + 200 * (i % 3))
    (tmp_path / "class_labels_indices.csv").write_text(LABELS)
    (tmp_path / "balanced_train_segments.csv").write_text(HEADER + "\n".join(rows[:7]) + "\n")
    (tmp_path / "eval_segments.csv").write_text(HEADER + "\n".join(rows[7:]) + "\n")
    common = ["--labels", str(tmp_path / "class_labels_indices.csv"), "--media-root", str(media), *SMALL]
    assert main(["prepare", "audioset", "--segments", str(tmp_path / "balanced_train_segments.csv"),
                 "--out", str(tmp_path / "train"), *common]) == 0
    assert main(["prepare", "audioset", "--segments", str(tmp_path / "eval_segments.csv"),
                 "--out", str(tmp_path / "eval"), *common, "--window", "even:2"]) == 0  # two windows a file
    info = json.loads((tmp_path / "eval" / "dataset.json").read_text())
    assert info["num_samples"] == 4 and [m["ytid"] for m in iter_list(tmp_path / "eval", "missing")] == ["yt09-_abcde"]
    assert info["extra"]["dataset"] == "audioset" and info["labels"][1] == "Male speech, man speaking"

    pre = _config(tmp_path / "pre.yaml", train_shards=str(tmp_path / "train"), eval_shards=str(tmp_path / "eval"), multi_label=True)
    assert main(["pretrain", "-c", pre, "--out", str(tmp_path / "runs" / "pre")]) == 0
    ft = _config(tmp_path / "ft.yaml", train_shards=str(tmp_path / "train"), eval_shards=str(tmp_path / "eval"), multi_label=True,
                 balanced_sampling=True, samples_per_epoch=8, eval_protocol="audioset")
    assert main(["train", "-c", ft, "--out", str(tmp_path / "runs" / "ft"), "--init-from", str(tmp_path / "runs" / "pre"),
                 "--set", "objective.mixup_alpha=0.5", "--set", "objective.label_smoothing=0.0"]) == 0
    end_of_run = json.loads((tmp_path / "runs" / "ft" / "eval_metrics.json").read_text())["protocol"]
    assert end_of_run["protocol"] == "audioset" and (end_of_run["num_files"], end_of_run["num_windows"]) == (2, 4)

    capsys.readouterr()
    out_file = tmp_path / "metrics.json"
    assert main(["evaluate", str(tmp_path / "runs" / "ft"), "--shards", str(tmp_path / "eval"), "--protocol", "audioset",
                 "--num-workers", "0", "--output", str(out_file)]) == 0
    metrics = json.loads(out_file.read_text())["protocol"]
    assert set(metrics) >= {"mAP", "mAUC", "d_prime", "num_classes_excluded"}
    assert 0.0 <= metrics["mAP"] <= 1.0 and metrics["num_classes"] == 3
    assert metrics["num_classes_ap"] + metrics["num_classes_excluded"] == 3
    assert metrics["mAP"] == pytest.approx(end_of_run["mAP"])  # the same model on the same clips
    assert main(["evaluate", str(tmp_path / "runs" / "ft"), "--shards", str(tmp_path / "eval"), "--protocol", "audioset",
                 "--per-window", "--num-workers", "0", "--output", str(out_file)]) == 0
    assert json.loads(out_file.read_text())["protocol"]["num_files"] == 4


@pytest.mark.slow
def test_esc50_prepare_and_five_fold_cv(tmp_path, capsys):
    audio = tmp_path / "ESC-50-master" / "audio"
    audio.mkdir(parents=True)
    meta = ["filename,fold,target,category,esc10,src_file,take"]
    for fold in range(1, 6):
        for target, name in enumerate(("dog", "rain")):
            fname = f"{fold}-{100 + target}-A-{target}.wav"
            meta.append(f"{fname},{fold},{target},{name},{target == 0},{100 + target},A")
            make_media(audio / fname, container_format="wav", video_codec=None, audio_codec="pcm_s16le", layout="mono",
                       sample_rate=44100, duration=1.0, tone_hz=400 + 800 * target)
    (tmp_path / "esc50.csv").write_text("\n".join(meta) + "\n")
    assert main(["prepare", "esc50", "--meta", str(tmp_path / "esc50.csv"), "--media-root", str(audio),
                 "--out", str(tmp_path / "shards"), *SMALL]) == 0
    info = json.loads((tmp_path / "shards" / "dataset.json").read_text())
    assert info["num_samples"] == 10 and info["labels"] == ["dog", "rain"] and info["settings"]["video"] is False

    cfg = _config(tmp_path / "esc.yaml", train_shards=str(tmp_path / "shards"), eval_protocol="esc50", batch_size=4)
    capsys.readouterr()
    assert main(["cv", "-c", cfg, "--out", str(tmp_path / "cv")]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["protocol"] == "esc50" and len(printed["top1"]["folds"]) == 5
    result = json.loads((tmp_path / "cv" / "cv_metrics.json").read_text())
    assert result["samples"] == {str(k): {"train": 8, "eval": 2} for k in range(1, 6)}  # each fold held out once
    accs = [result["per_fold"][str(k)]["top1"] for k in range(1, 6)]
    assert result["summary"]["folds"] == accs and printed["top1"]["folds"] == [round(a, 4) for a in accs]
    assert result["summary"]["mean"] == pytest.approx(sum(accs) / 5)
    assert result["summary"]["std"] == pytest.approx((sum((a - sum(accs) / 5) ** 2 for a in accs) / 4) ** 0.5)
    # run again: finished folds are read back, not trained again
    weights = tmp_path / "cv" / "fold3" / "model" / "model.safetensors"
    mtime = weights.stat().st_mtime_ns
    assert main(["cv", "-c", cfg, "--out", str(tmp_path / "cv")]) == 0
    assert weights.stat().st_mtime_ns == mtime
    assert json.loads((tmp_path / "cv" / "cv_metrics.json").read_text())["summary"] == result["summary"]


VGGSOUND = textwrap.dedent('''\
    vid00000001,10,"bird chirping, tweeting",train
    vid00000002,0,dog barking,train
    vid00000003,30,"bird chirping, tweeting",test
    vid00000004,5,dog barking,train
    ''')

KINETICS = textwrap.dedent('''\
    label,youtube_id,time_start,time_end,split,is_cc
    playing bagpipes,kin00000001,10,20,train,0
    abseiling,kin00000002,0,10,train,0
    tapping pen,kin00000003,3,13,train,0
    ''')


def _audio(path, seconds=0.5):
    path.parent.mkdir(parents=True, exist_ok=True)
    make_media(path, video_codec=None, audio_codec="pcm_s16le", container_format="matroska", layout="mono", duration=seconds)


def test_vggsound_and_kinetics_sounds_prepare_commands(tmp_path, capsys):
    (tmp_path / "vggsound.csv").write_text(VGGSOUND)
    for name in ("vid00000001_000010.mkv", "vid00000002_000000.mkv"):  # vid00000004 missing
        _audio(tmp_path / "vgg" / name)
    small = [*SMALL, "--no-video"]
    assert main(["prepare", "vggsound", "--csv", str(tmp_path / "vggsound.csv"), "--split", "train",
                 "--media-root", str(tmp_path / "vgg"), "--out", str(tmp_path / "vgg_train"), *small]) == 0
    info = json.loads((tmp_path / "vgg_train" / "dataset.json").read_text())
    assert info["labels"] == ["bird chirping, tweeting", "dog barking"]  # sorted over both splits
    assert info["counts"]["written"] == 2 and [m["ytid"] for m in iter_list(tmp_path / "vgg_train", "missing")] == ["vid00000004"]
    assert info["extra"]["filtered_counts"] == {"split is not train": 1}

    # Kinetics-Sounds from the CSV (torchvision-style tree; abseiling is not a Kinetics-Sounds class)
    (tmp_path / "train.csv").write_text(KINETICS)
    _audio(tmp_path / "k400" / "train" / "playing bagpipes" / "kin00000001_000010_000020.mkv")
    _audio(tmp_path / "k400" / "train" / "abseiling" / "kin00000002_000000_000010.mkv")
    classes = tmp_path / "classes.txt"
    classes.write_text("playing bagpipes\ntapping pen\n")
    assert main(["prepare", "kinetics-sounds", "--csv", str(tmp_path / "train.csv"), "--classes", str(classes),
                 "--media-root", str(tmp_path / "k400" / "train"), "--out", str(tmp_path / "ks"), *small]) == 0
    info = json.loads((tmp_path / "ks" / "dataset.json").read_text())
    assert info["labels"] == ["playing bagpipes", "tapping pen"] and info["counts"]["written"] == 1
    assert [m["id"] for m in iter_list(tmp_path / "ks", "missing")] == ["kin00000003_000003_000013"]
    assert info["extra"]["filtered_counts"] == {"class not in the subset": 1}
    # ... and from the tree alone
    assert main(["prepare", "kinetics-sounds", "--classes", str(classes), "--media-root", str(tmp_path / "k400" / "train"),
                 "--out", str(tmp_path / "ks_tree"), *small]) == 1  # no folder for 'tapping pen': list and tree disagree
    classes.write_text("playing bagpipes\n")
    assert main(["prepare", "kinetics-sounds", "--classes", str(classes), "--media-root", str(tmp_path / "k400" / "train"),
                 "--out", str(tmp_path / "ks_tree"), *small]) == 0
    samples = json.loads((tmp_path / "ks_tree" / "dataset.json").read_text())
    assert samples["counts"]["written"] == 1

    # normalisation statistics from the prepared audio, as training reads it
    capsys.readouterr()
    assert main(["audio-stats", "--shards", str(tmp_path / "vgg_train"), "--duration", "1.0", "--num-workers", "0"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["files"] == 2 and stats["audio_std"] > 0


def test_bad_input_stops_with_a_clear_message(tmp_path, caplog):
    (tmp_path / "vggsound.csv").write_text(VGGSOUND)
    (tmp_path / "vgg").mkdir()
    args = ["prepare", "vggsound", "--csv", str(tmp_path / "vggsound.csv"), "--split", "train", "--media-root", str(tmp_path / "vgg"),
            "--out", str(tmp_path / "out"), *SMALL]
    assert main([*args, "--name-template", "{yt_id}.mp4"]) == 1
    assert "unknown field {yt_id}; available fields" in caplog.text
    assert main(args) == 1  # no media at all
    assert "none of the 3 annotated clips has a media file" in caplog.text
    (tmp_path / "l.csv").write_text(LABELS)
    (tmp_path / "s.csv").write_text(HEADER + 'abc, 0.000, 10.000, "/m/not_in_the_list"\n')
    assert main(["prepare", "audioset", "--segments", str(tmp_path / "s.csv"), "--labels", str(tmp_path / "l.csv"),
                 "--media-root", str(tmp_path / "vgg"), "--out", str(tmp_path / "out"), *SMALL]) == 1
    assert "s.csv:4: unknown MID" in caplog.text and "label file does not match" in caplog.text
    assert not (tmp_path / "out").exists()  # nothing written before the input is known good
