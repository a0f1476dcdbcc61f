"""A user's own data in the first hour: audio-only and video-only runs, short clips, sample
rates, manifests and labels, and the small things around them (each with the bug it guards).

The data are generated here: short 8 kHz WAV "utterances" (tests/speech_toy.py) and silent
mp4 clips (tests/media.py); nothing is downloaded.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import warnings

import numpy as np
import pytest
import torch
import yaml

from media import make_media
from speech_toy import CLASSES, make_speech_dataset
from toy import TINY_MODEL, ToyAV, tiny_config, toy_vocab
from zorro.cli import main

AUDIO_MODEL = {**TINY_MODEL, "audio_patch_size": [16, 8]}


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    """``root/{train,test}/{low,mid,high}/*.wav``: 6 + 6 clips a class, 0.3-1.0 s, 8 kHz."""
    root = tmp_path_factory.mktemp("speech")
    files = make_speech_dataset(root, per_class=6)
    return root, files


def _config(path, **sections):
    cfg = {"model": {"arch": dict(AUDIO_MODEL), "precision": "fp32"},
           "data": {"duration": 1.0, "batch_size": 6, "num_workers": 0},
           "optim": {"epochs": 1, "lr": 3e-3, "warmup_steps": 1},
           "run": {"progress": False, "log_every": 1, "tensorboard": False}}
    for name, values in sections.items():
        cfg[name] = {**cfg.get(name, {}), **values}
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


# ----------------------------------------------------------------------------- audio-only runs


def test_an_audio_only_run_trains_no_video_head_and_evaluates_every_output_it_has(speech, tmp_path, caplog, capsys):
    root, _ = speech
    caplog.set_level(logging.INFO)
    cfg = _config(tmp_path / "a.yaml", data={"duration": 2.0})  # 0.3-1 s clips in a 2 s window: mostly padding
    out = tmp_path / "run"
    assert main(["train", "-c", cfg, "--train-manifest", str(root / "train"), "--eval-manifest", str(root / "test"), "--out", str(out)]) == 0
    untrained = [r.getMessage() for r in caplog.records if "got no training data" in r.getMessage()]
    assert len(untrained) == 1 and untrained[0].startswith("the video head got no training data")
    from safetensors.torch import load_file

    heads = {k.split(".")[1] for k in load_file(str(out / "heads.safetensors"))}
    assert heads == {"audio", "fusion", "global"}  # before: a video head was saved untrained
    from zorro.tasks import ZorroClassifier

    model = ZorroClassifier.from_run(out)
    assert model.heads.names == ("audio", "fusion", "global")
    # Padding is counted and said once per split; data_report.json keeps the numbers.
    report = json.loads((out / "data_report.json").read_text())
    real = sum(min(2.0, secs) for _, _, secs in speech[1]["train"]) / len(speech[1]["train"])
    assert report["training"]["audio_padding_share"] == pytest.approx(1 - real / 2.0, abs=0.01)
    assert report["training"]["with_video"] == 0 and report["evaluation"]["clips"] == 18
    padding = [r for r in caplog.records if "zero padding" in r.getMessage()]
    assert len(padding) == 2 and all(r.levelno == logging.WARNING for r in padding)  # ~70 % padding: a warning
    assert "data.duration sets the window" in padding[0].getMessage()
    # Evaluation of audio-only data: the audio_only entry, with its confusion matrix and per-class accuracy.
    capsys.readouterr()
    assert main(["evaluate", str(out), "--manifest", str(root / "test"), "--num-workers", "0"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert set(shown) == {"audio_only"}
    doc = json.loads((out / "eval" / "test" / "confusion" / "audio_only.json").read_text())
    assert doc["labels"] == sorted(CLASSES) and sum(doc["support"]) == 18 and len(doc["per_class_top1"]) == 3
    assert (out / "eval" / "test" / "confusion" / "audio_only.png").exists()
    assert (out / "confusion" / "audio_only.json").exists()  # the trainer's final evaluation writes them too


def test_a_video_only_run_trains_no_audio_head(tmp_path, caplog):
    rows = ["path,label"]
    for k in range(8):
        name = f"v{k}.mp4"
        make_media(tmp_path / name, audio_codec=None, duration=1.0, width=32, height=32, fps=8)
        rows.append(f"{name},{'ab'[k % 2]}")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    cfg = _config(tmp_path / "v.yaml", data={"duration": 1.0, "num_frames": 2, "image_size": 32, "batch_size": 4})
    caplog.set_level(logging.INFO)
    out = tmp_path / "run"
    assert main(["train", "-c", cfg, "--train-manifest", str(tmp_path / "m.csv"), "--eval-manifest", str(tmp_path / "m.csv"),
                 "--out", str(out)]) == 0
    assert any(r.getMessage().startswith("the audio head got no training data") for r in caplog.records)
    assert set(json.loads((out / "eval_metrics.json").read_text())) == {"video_only"}
    assert (out / "confusion" / "video_only.json").exists() and (out / "confusion" / "video_only.png").exists()


# ----------------------------------------------------------------------------- sample rates


def test_a_data_rate_other_than_the_models_is_refused_naming_both(speech, tmp_path):
    root, _ = speech
    from zorro.train import Trainer

    cfg = tiny_config(tmp_path / "a", data={"train_manifest": str(root / "train"), "sample_rate": 8000, "duration": 1.0})
    with pytest.raises(ValueError, match=r"data.sample_rate is 8000 Hz but the model's audio front-end is built for 16000 Hz"):
        Trainer(cfg)


def test_a_dataset_decoding_at_another_rate_is_refused(speech, tmp_path):
    root, _ = speech
    from zorro.data import ClipDataset
    from zorro.train import Trainer

    dataset = ClipDataset.from_manifest(root / "train", duration=1.0, sample_rate=8000, video=False)
    with pytest.raises(ValueError, match="8000 Hz but the model's audio front-end is built for 16000 Hz"):
        Trainer(tiny_config(tmp_path / "a"), dataset)


def test_left_unset_the_data_rate_is_the_models_and_is_recorded(speech, tmp_path, caplog):
    root, _ = speech
    from zorro.train import Trainer

    caplog.set_level(logging.INFO)
    cfg = tiny_config(tmp_path / "a", data={"train_manifest": str(root / "train"), "duration": 1.0},
                      model={"arch": {**AUDIO_MODEL, "sample_rate": 8000}})
    trainer = Trainer(cfg)
    assert trainer.cfg.data.sample_rate == 8000 and trainer.train_set.sample_rate == 8000  # decoded at the model's rate
    assert "audio is decoded at 8000 Hz, the model's rate" in caplog.text
    trainer._write_run_files()
    assert json.loads((tmp_path / "a" / "config.json").read_text())["data"]["sample_rate"] == 8000


def test_evaluate_and_embed_refuse_a_run_whose_recorded_rate_is_not_the_models(speech, tmp_path, caplog):
    root, _ = speech
    out = tmp_path / "run"
    assert main(["train", "-c", _config(tmp_path / "a.yaml"), "--train-manifest", str(root / "train"), "--out", str(out)]) == 0
    cfg = json.loads((out / "config.json").read_text())
    cfg["data"]["sample_rate"] = 8000  # a run folder written by a version that never compared the two
    (out / "config.json").write_text(json.dumps(cfg))
    for argv in (["evaluate", str(out), "--manifest", str(root / "test")],
                 ["embed", str(out), "--manifest", str(root / "test"), "--output", str(tmp_path / "e.safetensors")]):
        caplog.clear()
        assert main(argv) == 1
        assert "data.sample_rate is 8000 Hz but the model's audio front-end is built for 16000 Hz" in caplog.text


# ----------------------------------------------------------------------------- what the run folder records


def test_datasets_passed_to_the_trainer_are_recorded_with_their_settings(speech, tmp_path, caplog):
    root, _ = speech
    from zorro.data import ClipDataset
    from zorro.train import Trainer

    dataset = ClipDataset.from_manifest(root / "train", duration=1.0, image_size=64, num_frames=2, train=False)
    cfg = tiny_config(tmp_path / "a")  # data section left at its defaults: 2 s, 224 px, 8 frames
    trainer = Trainer(cfg, dataset)
    d = trainer.cfg.data
    assert (d.duration, d.image_size, d.num_frames, d.sample_rate, d.train_crop) == (1.0, 64, 2, 16000, "centre")
    assert "data.duration=1.0 (config: 2.0)" in caplog.text and "data.image_size=64 (config: 224)" in caplog.text
    assert cfg.data.duration == 2.0  # the caller's config is left as given
    # A dataset that does not say (tensors in memory) leaves the config as written, silently.
    caplog.clear()
    assert Trainer(tiny_config(tmp_path / "b"), ToyAV(), None, toy_vocab()).cfg.data.duration == 2.0
    assert "training set decodes" not in caplog.text


def test_init_from_and_data_paths_are_recorded_absolute(speech, tmp_path, monkeypatch):
    root, _ = speech
    from zorro import Zorro
    from zorro.train import Trainer

    Zorro(**AUDIO_MODEL).save_pretrained(str(tmp_path / "backbone"))
    monkeypatch.chdir(tmp_path)
    cfg = tiny_config("run", model={"init_from": "backbone"},
                      data={"train_manifest": os.path.relpath(root / "train", tmp_path), "duration": 1.0})
    trainer = Trainer(cfg)
    trainer._write_run_files()
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["model"]["init_from"] == str(tmp_path / "backbone")  # before: "backbone", broken once the folder moves
    assert saved["data"]["train_manifest"] == str(root / "train")
    assert saved["model"]["arch"]["dim"] == AUDIO_MODEL["dim"] and saved["model"]["arch"]["fbank_num_mel_bins"] == 32


def test_the_command_line_data_replaces_the_configs_other_kind(speech, tmp_path, caplog):
    root, _ = speech
    caplog.set_level(logging.INFO)
    cfg = _config(tmp_path / "a.yaml", data={"train_shards": str(tmp_path / "no-such-shards"), "eval_shards": str(tmp_path / "nope")})
    out = tmp_path / "run"
    # before: "give data.train_manifest or data.train_shards, not both"
    assert main(["train", "-c", cfg, "--train-manifest", str(root / "train"), "--eval-manifest", str(root / "test"), "--out", str(out)]) == 0
    assert "--train-manifest replaces data.train_shards" in caplog.text and "--eval-manifest replaces data.eval_shards" in caplog.text
    saved = json.loads((out / "config.json").read_text())["data"]
    assert saved["train_shards"] is None and saved["train_manifest"] == str(root / "train")


def test_eval_every_results_reach_the_console(tmp_path, caplog):
    from zorro.train import train

    caplog.set_level(logging.INFO, logger="zorro.train")
    train(tiny_config(tmp_path, optim={"epochs": 2}, run={"eval_every": 1}), ToyAV(), ToyAV(n=16), toy_vocab())
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("evaluation after epoch 1")]
    assert len(lines) == 1 and '"average": {"top1"' in lines[0]
    assert any(r.getMessage().startswith("final evaluation (step") for r in caplog.records)


# ----------------------------------------------------------------------------- short clips


def test_a_file_shorter_than_the_window_starts_at_its_beginning(speech):
    _, files = speech
    from zorro.data import ClipDataset, ManifestEntry

    path, label, secs = min(files["train"], key=lambda f: f[2])
    item = ClipDataset([ManifestEntry(str(path), (label,))], duration=2.0, train=False, video=False)[0]
    assert item["start"] == 0.0 and item["padded"]  # the centred window would start before the file: it starts at 0
    assert item["audio_valid_samples"] == pytest.approx(secs * 16000, abs=40)
    assert float(item["audio"][item["audio_valid_samples"]:].abs().max()) < 2e-3  # the rest is padding (a resampler's tail at most)


def test_prepared_shards_carry_the_real_audio_length(speech, tmp_path):
    _, files = speech
    from zorro.data import ManifestEntry, ShardDataset
    from zorro.data.prepare import prepare_shards

    entries = [ManifestEntry(str(p), (lab,)) for p, lab, _ in files["train"][:4]]
    prepare_shards(entries, tmp_path / "s", labels=list(CLASSES), duration=2.0, video=False, workers=1)
    ds = ShardDataset(tmp_path / "s", train=False, video=False)
    for i, (_, _, secs) in enumerate(files["train"][:4]):
        item = ds[i]
        assert item["start"] == 0.0 and item["audio_valid_samples"] == pytest.approx(secs * 16000, abs=40)


def test_the_patch_crop_warning_is_said_once_names_its_fix_and_is_silent_for_a_fraction_of_a_patch():
    from zorro import Zorro
    from zorro.audio_crop import audio_crop_message

    frontend = Zorro(**{**AUDIO_MODEL, "fbank_num_mel_bins": 64}).audio_frontend
    assert audio_crop_message(64, 98, (16, 8), frontend) is None  # 1 s: 2 of 8 frames
    assert audio_crop_message(128, 198, (16, 16), frontend) is None  # the default model at 2 s: 6 of 16 frames
    assert audio_crop_message(128, 998, (16, 16), frontend) is None  # 10 s
    text = audio_crop_message(64, 198, (16, 8), frontend)  # 2 s with 8-frame patches: 6 of 8 frames
    assert "the last 6 of 198 frames (about 60 ms of each clip)" in text and "2.015 s (32240 samples)" in text and "data.duration" in text
    assert frontend.num_frames(32240) == 200 and frontend.num_frames(30960) == 192  # the lengths named fit whole patches
    text = audio_crop_message(70, 96, (16, 8), frontend)
    assert "top 6 of 70 frequency bands" in text and "fbank_num_mel_bins 64 or 80" in text
    # Once per process for a shape, whatever the number of models or calls.
    a, b = Zorro(**{**AUDIO_MODEL, "fbank_num_mel_bins": 32}).eval(), Zorro(**{**AUDIO_MODEL, "fbank_num_mel_bins": 32}).eval()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with torch.no_grad():
            for m in (a, b, a):
                m.encode(audio=torch.randn(1, 32000))  # 198 frames with 8-frame patches
                m.encode(audio=torch.randn(1, 16000))  # 98 frames: silent
    assert [str(w.message).split(":")[0] for w in caught if "audio features" in str(w.message)] == ["audio features of shape (32, 198) (freq, frames) were cropped to (32, 192) to fit whole (16, 8) patches"]


# ----------------------------------------------------------------------------- audio-stats


def test_audio_stats_measure_real_audio_not_padding(speech, capsys):
    root, files = speech
    from zorro.audio import AudioFrontend, compute_audio_stats
    from zorro.data import read_clip

    waves = []
    for path, _, _ in files["train"]:
        clip = read_clip(str(path), start=0.0, duration=10.0, num_frames=1, image_size=32, video=False)
        waves.append(clip.audio[: clip.audio_valid_samples])  # each clip alone, no window
    mean, std = compute_audio_stats(waves, AudioFrontend("fbank", num_mel_bins=128))
    for window in ("10", "1.0"):
        assert main(["audio-stats", "--manifest", str(root / "train"), "--duration", window, "--num-workers", "0"]) == 0
        got = json.loads(capsys.readouterr().out)
        assert got["audio_mean"] == pytest.approx(mean, rel=1e-5) and got["audio_std"] == pytest.approx(std, rel=1e-5)
        assert got["clips"] == 18 and got["padded_clips"] == 18 and got["clips_too_short"] == 0
    longest = max(secs for _, _, secs in files["train"])
    assert got["clip_seconds"]["max"] == pytest.approx(longest, abs=0.005)
    # Before: every frame of the 10 s window counted, the padding's silence included.
    from zorro.data import ClipDataset

    padded = [ClipDataset.from_manifest(root / "train", train=False, video=False, duration=10.0)[i]["audio"] for i in range(18)]
    naive_mean, naive_std = compute_audio_stats(padded, AudioFrontend("fbank", num_mel_bins=128))
    assert naive_mean < mean - 5 and naive_std < std / 1.5


def test_audio_stats_of_a_models_front_end(speech, tmp_path, capsys):
    root, _ = speech
    from zorro import Zorro

    Zorro(**AUDIO_MODEL).save_pretrained(str(tmp_path / "m"))
    assert main(["audio-stats", "--manifest", str(root / "train"), "--model", str(tmp_path / "m"), "--num-workers", "0"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["sample_rate"] == 16000 and got["audio_frontend"] == "fbank" and got["values"] % 32 == 0  # 32 mel bins


@pytest.mark.parametrize("kwargs", [dict(kind="fbank"), dict(kind="spectrogram", n_fft=128, win_length=24),
                                    dict(kind="spectrogram", n_fft=64, win_length=64, center=False, pad=3)])
def test_real_frames_are_the_frames_of_the_unpadded_clip(kwargs):
    from zorro.audio import AudioFrontend
    from zorro.audio_stats import real_frames

    frontend = AudioFrontend(**kwargs)
    g = torch.Generator().manual_seed(0)
    for valid in (700, 1601, 2500):
        real = torch.randn(1, valid, generator=g)
        padded = torch.cat([real, torch.zeros(1, 4000 - valid)], dim=1)
        n = real_frames(frontend, 4000, valid)
        assert n >= 1
        full, alone = frontend.features(padded), frontend.features(real)
        torch.testing.assert_close(full[..., :n], alone[..., :n], rtol=1e-4, atol=1e-4)
        assert n <= alone.shape[-1]
        if kwargs["kind"] == "fbank":  # Kaldi frames never read past the clip: exactly the clip's own frames
            assert n == alone.shape[-1]


# ----------------------------------------------------------------------------- manifests and labels


def test_an_unknown_label_lists_the_vocabulary(speech, tmp_path):
    root, files = speech
    from zorro.data import ClipDataset, LabelVocab, ManifestEntry

    words = LabelVocab([f"word{i:02d}" for i in range(25)])
    entries = [ManifestEntry(str(p), (str(k % 10),)) for k, (p, _, _) in enumerate(files["train"])]
    with pytest.raises(ValueError) as err:
        ClipDataset(entries, vocab=words)
    text = str(err.value)
    assert "the manifest has 10 unknown labels, not in the given vocabulary: ['0', '1', '2'" in text
    assert "25 labels: ['word00', 'word01'" in text and "'word19'] and 5 more" in text and "word20" not in text
    with pytest.raises(ValueError, match=r"unknown label '7'; the vocabulary has 25 labels: \['word00'"):
        words.index("7")


def test_a_csv_manifest_without_its_header_says_so(tmp_path):
    from zorro.data import read_manifest

    (tmp_path / "m.csv").write_text("clips/a.wav,dog\nclips/b.wav,cat\n")
    with pytest.raises(ValueError, match=r"header row naming its columns.*'path,label'.*looks like data: add the header line"):
        read_manifest(tmp_path / "m.csv")


def test_the_manifest_formats_of_the_docs_read_alike(tmp_path):
    from zorro.data import read_manifest

    (tmp_path / "a.csv").write_text("path,label,start,end,speaker\nclips/a.wav,dog,0.5,2.0,s1\nclips/b.wav,7,,,s2\n")
    (tmp_path / "b.jsonl").write_text('{"path": "clips/a.wav", "label": "dog", "start": 0.5, "end": 2.0, "speaker": "s1"}\n'
                                      '{"path": "clips/b.wav", "label": 7}\n')
    a, b = read_manifest(tmp_path / "a.csv"), read_manifest(tmp_path / "b.jsonl")
    assert a == b and a[1].labels == ("7",) and (a[0].start, a[0].end) == (0.5, 2.0)
    (tmp_path / "c.csv").write_text("path,labels\nx.wav,dog;bark\n")
    (tmp_path / "d.jsonl").write_text('{"path": "x.wav", "labels": ["dog", "bark"]}\n')
    assert read_manifest(tmp_path / "c.csv")[0].labels == read_manifest(tmp_path / "d.jsonl")[0].labels == ("dog", "bark")


# ----------------------------------------------------------------------------- embed


def test_embed_creates_its_folder_names_its_index_and_keeps_labels(speech, tmp_path):
    root, files = speech
    from safetensors.torch import load_file

    from zorro import Zorro

    Zorro(**AUDIO_MODEL).save_pretrained(str(tmp_path / "m"))
    rows = ["path"] + [str(p) for p, _, _ in files["test"][:3]]  # labels are optional for embedding
    (tmp_path / "unlabelled.csv").write_text("\n".join(rows) + "\n")
    old = os.umask(0o022)
    try:
        for manifest, name in ((root / "test", "x"), (tmp_path / "unlabelled.csv", "y")):
            out = tmp_path / "emb" / f"{name}.safetensors"  # before: SafetensorError, No such file or directory
            assert main(["embed", str(tmp_path / "m"), "--manifest", str(manifest), "--output", str(out), "--duration", "1",
                         "--num-workers", "0"]) == 0
            assert stat.S_IMODE(out.stat().st_mode) == 0o644  # before: 0600
    finally:
        os.umask(old)
    index = json.loads((tmp_path / "emb" / "x.index.json").read_text())
    assert [row["labels"] for row in index] == [[label] for _, label in sorted((str(p), lab) for p, lab, _ in files["test"])]
    assert json.loads((tmp_path / "emb" / "y.index.json").read_text())[0]["labels"] == []
    assert set(load_file(str(tmp_path / "emb" / "x.safetensors"))) == {"audio", "video", "fusion", "global"}
    assert bool(torch.isnan(load_file(str(tmp_path / "emb" / "x.safetensors"))["video"]).all())  # no video: NaN rows


def test_data_report_counts_padding_exactly():
    from zorro.data import collate_clips
    from zorro.train.data_report import DataReport

    items = [{"audio": torch.zeros(100), "video": None, "label": 0, "index": i, "audio_valid_samples": v} for i, v in enumerate((100, 40, 10))]
    items.append({"audio": None, "video": torch.zeros(3, 1, 2, 2), "label": 0, "index": 3})
    report = DataReport("x", duration=1.0, sample_rate=100)
    report.update(collate_clips(items))
    s = report.summary()
    assert (s["clips"], s["with_audio"], s["with_video"], s["padded_clips"]) == (4, 3, 1, 2)
    assert s["audio_padding_share"] == pytest.approx(150 / 300) and (s["shortest_audio_s"], s["longest_audio_s"]) == (0.1, 1.0)
    assert "2 of the clips with audio are shorter than the 1 s window" in report.message()
    assert np.isclose(s["mean_audio_s"], 0.5)


def test_shards_prepared_before_the_count_was_stored_estimate_it_from_the_padding(tmp_path):
    from zorro.data import ShardDataset
    from zorro.data.shards import SampleData, write_samples

    wave = np.zeros(8000, dtype=np.float32)
    wave[:3000] = 0.25  # 3000 samples of signal, then the window's zero padding
    write_samples(tmp_path / "s", [SampleData(labels=("a",), audio=wave, end=1.0, padded=True),
                                   SampleData(labels=("a",), audio=np.full(8000, 0.25, dtype=np.float32), end=1.0)],
                  labels=["a"], samples_per_shard=2, sample_rate=8000)
    ds = ShardDataset(tmp_path / "s", train=False, video=False)
    assert [ds[0]["audio_valid_samples"], ds[1]["audio_valid_samples"]] == [3000, 8000]
    shorter = ShardDataset(tmp_path / "s", train=False, video=False, duration=0.5)  # the centred half: samples 2000-6000
    assert shorter[0]["audio_valid_samples"] == 1000
