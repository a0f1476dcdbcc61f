"""Datasets, label vocabularies, collation with missing modalities, skipped-file accounting."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).parent))
import media  # noqa: E402

from zorro.data import (  # noqa: E402
    IMAGENET_MEAN,
    IMAGENET_STD,
    ClipDataset,
    LabelVocab,
    ManifestEntry,
    Skipped,
    SkipTracker,
    collate_clips,
    read_clip,
    read_manifest,
    scan_folder,
    split_by_modality,
)

KW = dict(duration=0.5, num_frames=2, image_size=16, sample_rate=8000)


@pytest.fixture(scope="session")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("dsmedia")
    out = {
        "a": media.make_media(d / "a.mp4", duration=1.5),
        "b": media.make_media(d / "b.webm", video_codec="libvpx-vp9", audio_codec="libopus", sample_rate=48000, duration=1.5),
        "noaudio": media.make_media(d / "noaudio.mp4", audio_codec=None, duration=1.5),
        "novideo": media.make_media(d / "novideo.mka", container_format="matroska", video_codec=None, duration=1.5),
    }
    out["garbage"] = d / "garbage.mp4"
    out["garbage"].write_bytes(b"\x00not a video" * 100)
    out["missing"] = d / "missing.mp4"
    return out


def test_label_vocab_roundtrip(tmp_path):
    v = LabelVocab.from_labels(["dog", ["cat", "dog"], "bird"])
    assert v.names == ["bird", "cat", "dog"] and v.index("dog") == 2 and len(v) == 3
    assert LabelVocab.from_json(v.to_json()) == v
    v.save(tmp_path / "labels.json")
    assert LabelVocab.load(tmp_path / "labels.json") == v
    with pytest.raises(ValueError, match="unknown label 'cow'"):
        v.index("cow")
    with pytest.raises(ValueError, match="unique"):
        LabelVocab(["a", "a"])
    with pytest.raises(ValueError, match="labels"):
        LabelVocab.from_json(json.dumps(["a"]))


def test_manifests_csv_and_jsonl(tmp_path, files):
    csv_path = tmp_path / "m.csv"
    csv_path.write_text(f"path,labels,start,end\n{files['a']},dog;cat,0.2,1.2\nb.webm,bird,,\n")
    entries = read_manifest(csv_path)
    assert entries[0] == ManifestEntry(str(files["a"]), ("dog", "cat"), 0.2, 1.2)
    assert entries[1].path == str(tmp_path / "b.webm") and entries[1].start is None
    jl = tmp_path / "m.jsonl"
    jl.write_text(json.dumps({"path": str(files["a"]), "labels": ["x", "y"]}) + "\n\n" + json.dumps({"path": "rel.mp4", "label": "z", "start": 1}) + "\n")
    e = read_manifest(jl)
    assert e[0].labels == ("x", "y") and e[1].labels == ("z",) and e[1].start == 1.0
    bad = tmp_path / "bad.csv"
    bad.write_text("file,label\nx.mp4,a\n")
    with pytest.raises(ValueError, match="path"):
        read_manifest(bad)
    bad.write_text("path,label,start,end\nx.mp4,a,2,1\n")
    with pytest.raises(ValueError, match="end"):
        read_manifest(bad)


def test_folder_dataset(tmp_path, files):
    for cls, key in (("cats", "a"), ("dogs", "b")):
        (tmp_path / cls).mkdir()
        (tmp_path / cls / Path(files[key]).name).write_bytes(Path(files[key]).read_bytes())
    (tmp_path / "dogs" / "notes.txt").write_text("ignored")
    assert [e.labels for e in scan_folder(tmp_path)] == [("cats",), ("dogs",)]
    ds = ClipDataset.from_folder(tmp_path, train=False, **KW)
    assert ds.vocab.names == ["cats", "dogs"] and len(ds) == 2
    item = ds[1]
    assert item["label"] == 1 and item["audio"].shape == (4000,) and item["video"].shape == (3, 2, 16, 16)


def test_item_is_normalised_and_matches_read_clip(files):
    ds = ClipDataset([ManifestEntry(str(files["a"]), ("x",))], train=False, **KW)
    item = ds[0]
    clip = read_clip(files["a"], start=item["start"], **KW)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1, 1)
    torch.testing.assert_close(item["video"], (clip.video - mean) / std)
    torch.testing.assert_close(item["audio"], clip.audio)
    assert item["start"] == pytest.approx((1.5 - 0.5) / 2)  # centre clip in eval
    assert item["index"] == 0 and item["path"] == str(files["a"])


def test_eval_clips_evenly_spaced_and_segment_bounds(files):
    ds = ClipDataset([ManifestEntry(str(files["a"]), ("x",), 0.2, 1.4)], train=False, clips_per_video=3, **KW)
    assert len(ds) == 3
    starts = [ds[i]["start"] for i in range(3)]
    np.testing.assert_allclose(starts, [0.2, 0.55, 0.9], atol=1e-9)


def test_train_random_starts_are_seeded(files):
    entries = [ManifestEntry(str(files["a"]), ("x",))]
    a = ClipDataset(entries, train=True, seed=3, **KW)
    b = ClipDataset(entries, train=True, seed=3, **KW)
    torch.testing.assert_close(a[0]["video"], b[0]["video"])
    assert a[0]["start"] == b[0]["start"]
    starts = set()
    for epoch in range(6):
        a.set_epoch(epoch)
        starts.add(a[0]["start"])
        assert 0.0 <= a[0]["start"] <= 1.0 + 1e-9
    assert len(starts) > 1


def test_multi_label_targets(files):
    entries = [ManifestEntry(str(files["a"]), ("dog", "cat")), ManifestEntry(str(files["b"]), ("bird",))]
    ds = ClipDataset(entries, multi_label=True, train=False, **KW)
    batch = collate_clips([ds[0], ds[1]])
    assert batch["label"].dtype == torch.float32
    torch.testing.assert_close(batch["label"], torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]]))
    with pytest.raises(ValueError, match="multi_label"):
        ClipDataset(entries, multi_label=False, **KW)


def test_collate_and_split_with_missing_modalities(files):
    entries = [ManifestEntry(str(files[k]), (k,)) for k in ("a", "noaudio", "novideo", "b")]
    ds = ClipDataset(entries, train=False, **KW)
    batch = collate_clips([ds[i] for i in range(4)])
    assert batch["audio"].shape == (4, 4000) and batch["video"].shape == (4, 3, 2, 16, 16)
    assert batch["has_audio"].tolist() == [True, False, True, True]
    assert batch["has_video"].tolist() == [True, True, False, True]
    assert float(batch["audio"][1].abs().max()) == 0.0 and float(batch["video"][2].abs().max()) == 0.0
    assert batch["label"].dtype == torch.long and batch["index"].tolist() == [0, 1, 2, 3]
    assert batch["num_skipped"] == 0
    subs = list(split_by_modality(batch))
    assert [s["batch_index"].tolist() for s in subs] == [[0, 3], [2], [1]]
    both, audio_only, video_only = subs
    assert both["audio"].shape == (2, 4000) and both["video"].shape == (2, 3, 2, 16, 16)
    assert audio_only["video"] is None and audio_only["audio"].shape == (1, 4000)
    assert video_only["audio"] is None and video_only["video"].shape == (1, 3, 2, 16, 16)
    torch.testing.assert_close(video_only["video"][0], batch["video"][1])
    assert audio_only["path"] == [str(files["novideo"])] and audio_only["label"].tolist() == [batch["label"][2].item()]


def test_unreadable_files_are_skipped_counted_and_logged_once(files, caplog):
    entries = [ManifestEntry(str(files[k]), ("x",)) for k in ("a", "garbage", "missing", "b")]
    ds = ClipDataset(entries, train=True, **KW)
    item = ds[1]
    assert isinstance(item, Skipped) and item.path == str(files["garbage"])
    batch = collate_clips([ds[i] for i in range(4)] + [None])
    assert batch["num_skipped"] == 3 and batch["index"].tolist() == [0, 3]
    empty = collate_clips([ds[1]])
    assert empty["num_skipped"] == 1 and empty["index"].numel() == 0 and empty["audio"] is None
    tracker = SkipTracker()
    with caplog.at_level(logging.WARNING, logger="zorro.data"):
        tracker.update(batch)
        tracker.update(collate_clips([ds[1], ds[2]]))
        assert tracker.end_epoch(0) == 5  # 2 files + a None in the first batch, 2 in the second
    per_file = [r for r in caplog.records if "unreadable media file" in r.getMessage()]
    assert len(per_file) == 2  # garbage and missing, each once
    assert any("skipped 5" in r.getMessage() for r in caplog.records)
    assert tracker.end_epoch(1) == 0 and tracker.total_skipped == 5


def test_dataloader_workers_deterministic_and_count_skips(files):
    entries = [ManifestEntry(str(files[k]), ("x",)) for k in ("a", "garbage", "b", "noaudio", "missing", "a")]

    def run(workers):
        ds = ClipDataset(entries, train=True, seed=11, **KW)
        ds.set_epoch(2)
        loader = DataLoader(ds, batch_size=3, num_workers=workers, collate_fn=collate_clips)
        tracker = SkipTracker()
        videos, idx = [], []
        for batch in loader:
            tracker.update(batch)
            videos.append(batch["video"])
            idx.append(batch["index"])
        return tracker.end_epoch(), torch.cat(videos), torch.cat(idx)

    n0, v0, i0 = run(0)
    n2, v2, i2 = run(2)
    assert n0 == n2 == 2
    assert i0.tolist() == i2.tolist() == [0, 2, 3, 5]
    torch.testing.assert_close(v0, v2)


def test_dataset_argument_errors(files):
    e = [ManifestEntry(str(files["a"]), ("x",))]
    with pytest.raises(ValueError, match="empty"):
        ClipDataset([], **KW)
    with pytest.raises(ValueError, match="clips_per_video"):
        ClipDataset(e, clips_per_video=0, **KW)
    with pytest.raises(ValueError, match="unknown label"):
        ClipDataset(e, vocab=LabelVocab(["y"]), **KW)
    with pytest.raises(IndexError):
        ClipDataset(e, **KW)[5]
