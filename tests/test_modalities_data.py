"""Extra modalities on the data side: manifest columns -> zorro prepare members -> datasets -> collate -> model."""

from __future__ import annotations

import csv
import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from media import make_media
from zorro.data import ClipDataset, ManifestEntry, ShardDataset, collate_clips, modality_inputs, read_manifest, split_by_modality
from zorro.data.modalities import check_extra, decode_sequence, encode_sequence, extra_from_table, member_suffix
from zorro.data.prepare import PrepareSettings, PrepareSource, prepare_shards
from zorro.data.shards import format as fmt
from zorro.data.sources import SourceTable
from zorro.tokenizer import ByteTokenizer

EXTRA = {"text": "text", "imu": "sequence"}
GEOMETRY = dict(duration=1.0, num_frames=2, image_size=32)
SETTINGS = dict(duration=1.0, num_frames=2, image_size=32, store_size=32, samples_per_shard=2, shard_bytes=None)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Three clips with a text and an ``imu`` column: the second has no caption, the third no sequence."""
    d = tmp_path_factory.mktemp("extra_modalities")
    for name in ("a", "b", "c"):
        make_media(d / f"{name}.mp4", duration=1.0, width=32, height=32)
    np.save(d / "a.npy", np.arange(12, dtype=np.float64).reshape(4, 3))
    np.save(d / "b.npy", np.ones((7, 3), dtype=np.float32))
    with open(d / "train.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "text", "imu"])
        w.writerow(["a.mp4", "cat", "someone says seven", "a.npy"])
        w.writerow(["b.mp4", "dog", "", "b.npy"])
        w.writerow(["c.mp4", "cat", "Grüße, 7!", ""])
    return d


def test_manifest_entries_carry_the_declared_columns(folder):
    entries = read_manifest(folder / "train.csv", modalities=EXTRA)
    assert entries[0].extra == {"text": "someone says seven", "imu": str(folder / "a.npy")}  # sequence paths resolved
    assert entries[1].extra == {"imu": str(folder / "b.npy")}  # an empty cell: absent
    assert entries[2].extra == {"text": "Grüße, 7!"}
    assert all(e.extra == {} for e in read_manifest(folder / "train.csv"))  # undeclared columns are ignored
    # every existing constructor call keeps working, and entries stay hashable
    old = ManifestEntry("x.mp4", ("cat",), 0.0, 1.0)
    assert old.extra == {} and hash(old) == hash(ManifestEntry("x.mp4", ("cat",), 0.0, 1.0))


def test_a_missing_column_is_warned_about(folder, caplog):
    with caplog.at_level(logging.INFO, logger="zorro.data.datasets"):
        entries = read_manifest(folder / "train.csv", modalities={"caption": "text"})
    assert all("caption" not in e.extra for e in entries)
    assert any(r.levelno == logging.WARNING and "no 'caption' column" in r.getMessage() for r in caplog.records)


def test_declarations_are_checked():
    assert check_extra({"text": {"kind": "text", "vocab_size": 259}}) == {"text": "text"}
    assert extra_from_table({"audio": {"kind": "audio"}, "video": {"kind": "video"}, "imu": {"kind": "sequence", "input_dim": 3}}) == {"imu": "sequence"}
    for bad in ({"depth": "depth"}, {"audio": "text"}, {"Text": "text"}, {"label": "text"}):
        with pytest.raises(ValueError):
            check_extra(bad)
    with pytest.raises(TypeError):
        check_extra(["text"])
    assert member_suffix("imu", "sequence") == "imu.npy" and member_suffix("text", "text") == "text.txt"
    arr = np.random.default_rng(0).normal(size=(5, 2))
    np.testing.assert_array_equal(decode_sequence(encode_sequence(arr)), arr.astype(np.float32))
    with pytest.raises(ValueError):
        encode_sequence(np.zeros(4))  # not (T, D)


def _check_items(items, folder):
    tok = ByteTokenizer()
    assert torch.equal(items[0]["text"], tok.encode("someone says seven")) and items[0]["has_text"]
    assert items[1]["text"] is None and items[1]["has_text"] is False
    assert tok.decode(items[2]["text"]) == "Grüße, 7!"
    assert items[0]["imu"].dtype == torch.float32 and torch.equal(items[0]["imu"], torch.arange(12, dtype=torch.float32).reshape(4, 3))
    assert items[1]["imu"].shape == (7, 3) and items[1]["has_imu"]
    assert items[2]["imu"] is None and items[2]["has_imu"] is False


def test_clip_dataset_returns_them(folder):
    ds = ClipDataset.from_manifest(folder / "train.csv", train=False, extra_modalities=EXTRA, **GEOMETRY)
    _check_items([ds[i] for i in range(3)], folder)
    plain = ClipDataset.from_manifest(folder / "train.csv", train=False, **GEOMETRY)
    assert "text" not in plain[0] and "has_text" not in plain[0]  # nothing asked, nothing returned


def test_prepare_stores_members_and_shard_dataset_returns_them(folder, tmp_path):
    entries = read_manifest(folder / "train.csv", modalities=EXTRA)
    out = tmp_path / "shards"
    desc = prepare_shards(entries, out, labels=["cat", "dog"], workers=1, modalities=EXTRA, **SETTINGS)
    assert desc["settings"]["modalities"] == EXTRA and desc["counts"]["written"] == 3
    members = [set(smp["members"]) for sh in desc["shards"] for smp in fmt.read_index(out / sh["index"])["samples"]]
    assert "text.txt" in members[0] and "imu.npy" in members[0]
    assert "text.txt" not in members[1] and "imu.npy" in members[1]
    assert "text.txt" in members[2] and "imu.npy" not in members[2]
    shard = out / desc["shards"][1]["name"]
    smp = fmt.read_index(out / desc["shards"][1]["index"])["samples"][0]
    assert fmt.read_members(shard, smp, ["text.txt"])["text.txt"].decode("utf-8") == "Grüße, 7!"
    ds = ShardDataset(out, train=False, extra_modalities=EXTRA, duration=1.0, num_frames=2, image_size=32)
    _check_items([ds[i] for i in range(3)], folder)
    assert ds.num_skipped == 0
    # the extra members do not disturb a reader that does not ask for them
    plain = ShardDataset(out, train=False, duration=1.0, num_frames=2, image_size=32)
    assert "text" not in plain[0] and plain[0]["video"] is not None


def test_prepare_without_modalities_keeps_its_settings_and_fingerprint(folder, tmp_path):
    """Declaring no extra modality writes the same settings and fingerprint as before (no
    ``modalities`` key), so folders prepared before keep resuming."""
    entries = read_manifest(folder / "train.csv")
    desc = prepare_shards(entries, tmp_path / "plain", labels=["cat", "dog"], workers=1, **SETTINGS)
    assert "modalities" not in desc["settings"]
    table = SourceTable.from_sources([PrepareSource.from_entry(e) for e in entries], ["cat", "dog"], False)
    assert table.canonical(0).endswith(",{}]")  # [path, labels, start, end, meta]: no extra field
    with_text = SourceTable.from_sources(read_manifest(folder / "train.csv", modalities=EXTRA), ["cat", "dog"], False)
    assert with_text.canonical(0) != table.canonical(0) and with_text[0].extra["text"] == "someone says seven"


def test_an_unreadable_sequence_file_makes_the_source_unreadable(folder, tmp_path):
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"not an array")
    sources = [PrepareSource(str(folder / "a.mp4"), ("cat",), extra={"imu": str(bad)}),
               PrepareSource(str(folder / "b.mp4"), ("dog",), extra={"imu": str(tmp_path / "absent.npy")}),
               PrepareSource(str(folder / "c.mp4"), ("cat",), extra={"imu": str(folder / "b.npy")})]
    desc = prepare_shards(sources, tmp_path / "out", labels=["cat", "dog"], workers=1, modalities={"imu": "sequence"}, **SETTINGS)
    assert desc["counts"]["unreadable"] == 2 and desc["counts"]["written"] == 1
    reasons = [u["reason"] for u in fmt.iter_list(tmp_path / "out", "unreadable")]
    assert "bad.npy" in reasons[0] and "absent.npy" in reasons[1] and "does not exist" in reasons[1]
    # the clip dataset skips (and counts) such an item instead of returning it without the sequence
    ds = ClipDataset([ManifestEntry(str(folder / "a.mp4"), ("cat",), extra={"imu": str(bad)})], train=False,
                     extra_modalities={"imu": "sequence"}, **GEOMETRY)
    item = ds[0]
    assert not isinstance(item, dict) and "bad.npy" in item.reason and ds.num_skipped == 1


def test_collate_and_model_encode(folder, tmp_path):
    """A batch from the shards: padded text and sequence with masks, has_text False for the clip
    without a caption; each presence group goes through model.encode."""
    from zorro.model import Zorro

    entries = read_manifest(folder / "train.csv", modalities=EXTRA)
    out = tmp_path / "shards"
    prepare_shards(entries, out, labels=["cat", "dog"], workers=1, modalities=EXTRA, **SETTINGS)
    ds = ShardDataset(out, train=False, extra_modalities=EXTRA, duration=1.0, num_frames=2, image_size=32)
    batch = collate_clips([ds[i] for i in range(3)])
    assert batch["has_text"].tolist() == [True, False, True] and batch["has_imu"].tolist() == [True, True, False]
    assert batch["text"].dtype == torch.long and batch["text_mask"].sum(1).tolist() == [20, 0, len("Grüße, 7!".encode()) + 2]
    assert batch["imu"].shape == (3, 7, 3) and batch["imu_mask"].sum(1).tolist() == [4, 7, 0]
    torch.manual_seed(0)
    model = Zorro(dim=32, depth=1, heads=2, dim_head=16, num_fusion_tokens=2, modalities={
        "audio": {"kind": "audio", "fbank_num_mel_bins": 32, "audio_patch_size": [16, 16]},
        "video": {"kind": "video", "video_patch_size": 16, "video_temporal_patch_size": 2},
        "text": {"kind": "text"}, "imu": {"kind": "sequence", "input_dim": 3}}).eval()
    names = list(model.modality_names)
    seen = []
    with torch.no_grad():
        for group in split_by_modality(batch, names):
            inputs = modality_inputs(group, names)
            out_ = model.encode(**inputs)
            present = [m for m in names if m in inputs]
            seen.append((group["batch_index"].tolist(), present))
            assert set(present) <= set(out_.embeddings)
    assert sorted(seen) == [([0], ["audio", "video", "text", "imu"]), ([1], ["audio", "video", "imu"]), ([2], ["audio", "video", "text"])]


def test_zorro_prepare_cli_stores_the_columns(folder, tmp_path):
    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "zorro", "prepare", "--manifest", str(folder / "train.csv"), "--out", str(out),
           "--modality", "text=text", "--modality", "imu=sequence", "--duration", "1", "--num-frames", "2", "--image-size", "32",
           "--num-workers", "1"]
    res = subprocess.run(cmd, capture_output=True, text=True, env={**__import__("os").environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")})
    assert res.returncode == 0, res.stderr
    info = json.loads((out / "dataset.json").read_text())
    assert info["settings"]["modalities"] == EXTRA
    ds = ShardDataset(out, train=False, extra_modalities=EXTRA, duration=1.0, num_frames=2, image_size=32)
    _check_items([ds[i] for i in range(3)], folder)


def test_a_training_config_reads_the_models_text_and_sequence_columns(folder, tmp_path):
    from zorro.train import TrainConfig
    from zorro.train.build import build_dataset, data_modalities
    from zorro.train.data_report import DataReport

    table = {"audio": {"kind": "audio"}, "video": {"kind": "video"}, "text": {"kind": "text"}, "imu": {"kind": "sequence", "input_dim": 3}}
    cfg = TrainConfig.from_dict({"task": "pretrain", "model": {"arch": {"dim": 32, "depth": 1, "modalities": table}},
                                 "data": {"train_manifest": str(folder / "train.csv"), "duration": 1.0, "num_frames": 2, "image_size": 32,
                                          "text_max_length": 8},
                                 "run": {"out_dir": str(tmp_path / "run")}})
    assert data_modalities(cfg) == EXTRA
    ds = build_dataset(cfg, cfg.data.train_manifest, train=False, vocab=None)
    items = [ds[i] for i in range(3)]
    assert items[0]["text"].tolist() == ByteTokenizer(8).encode("someone says seven").tolist() and len(items[0]["text"]) == 8
    assert items[1]["has_text"] is False and items[2]["has_imu"] is False
    report = DataReport("training", duration=1.0, sample_rate=16000)
    report.update(collate_clips(items))
    assert report.summary()["with_text"] == 2 and report.summary()["with_imu"] == 2 and "2 with text, 2 with imu" in report.message()
    plain = TrainConfig.from_dict({"task": "pretrain", "model": {"arch": {"dim": 32, "depth": 1}}, "run": {"out_dir": str(tmp_path / "p")}})
    assert data_modalities(plain) == {}
    with pytest.raises(ValueError, match="text_max_length"):
        TrainConfig.from_dict({"task": "pretrain", "data": {"text_max_length": 2}, "run": {"out_dir": str(tmp_path / "q")}})


def test_a_custom_kind_cannot_come_from_a_manifest():
    with pytest.raises(ValueError, match="depth"):
        extra_from_table({"video": {"kind": "video"}, "depth": {"kind": "depth"}})
