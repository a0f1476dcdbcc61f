"""ShardDataset: the items of ClipDataset from prepared shards; crops, offsets, damage."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from shards_toy import frame_level, make_shards, sample_audio
from zorro.data import IMAGENET_MEAN, IMAGENET_STD, LabelVocab, ShardDataset, SkipTracker, Skipped, collate_clips, normalize_video
from zorro.data.shards.reader import normalize_uint8_video


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    return make_shards(tmp_path_factory.mktemp("shards") / "out", n=10, per_shard=4)


def test_items_have_the_clipdataset_layout(shards):
    ds = ShardDataset(shards, train=True, duration=1.0, num_frames=4, image_size=16, sample_rate=8000)
    assert len(ds) == 10 and ds.shard_sizes == [4, 4, 2] and ds.num_classes == 3
    item = ds[5]
    assert set(item) == {"audio", "video", "label", "index", "path", "start", "padded", "audio_valid_samples"}
    assert item["audio"].shape == (8000,) and item["audio"].dtype == torch.float32
    assert item["video"].shape == (3, 4, 16, 16) and item["video"].dtype == torch.float32
    assert item["label"] == 2 and item["index"] == 5 and item["path"] == "media/clip005.mp4"
    assert 0.0 <= item["start"] <= 1.0 and item["padded"] is False
    assert abs(float(item["video"].mean())) < 3  # normalised, not 0..255


def test_eval_takes_the_centred_clip_and_frames(shards):
    ds = ShardDataset(shards, train=False, duration=1.0, num_frames=4, image_size=24, video_dtype="uint8")
    item = ds[3]
    assert item["start"] == pytest.approx(0.5)
    # stored: 8 frames over 2 s; the centred 1 s clip's frame times 0.625..1.375 s -> stored frames 2..5
    levels = item["video"][1, :, 12, 20].tolist()  # green channel, right of the red strip
    assert levels == pytest.approx([frame_level(f) for f in (2, 3, 4, 5)], abs=3)
    want = sample_audio(3, 16000)[4000:12000]
    np.testing.assert_allclose(item["audio"].numpy(), want, atol=1 / 32767)
    assert torch.equal(ds[3]["video"], item["video"])  # evaluation is deterministic


def test_train_randomness_depends_on_seed_epoch_index_only(shards):
    kw = dict(train=True, duration=1.0, num_frames=4, image_size=16, video_dtype="uint8")
    a, b = ShardDataset(shards, **kw), ShardDataset(shards, **kw)
    assert torch.equal(a[2]["video"], b[2]["video"]) and a[2]["start"] == b[2]["start"]
    starts = set()
    for epoch in range(6):
        a.set_epoch(epoch)
        starts.add(round(a[2]["start"], 6))
    assert len(starts) == 6  # a new temporal offset every epoch
    # the audio crop follows the clip start
    item = a[2]
    first = int(round(item["start"] * 8000))
    np.testing.assert_allclose(item["audio"].numpy(), sample_audio(2, 16000)[first : first + 8000], atol=1 / 32767)


def test_flip_mirrors_the_red_strip(shards):
    kw = dict(duration=2.0, image_size=24, video_dtype="uint8", scale=(1.0, 1.0), ratio=(1.0, 1.0))
    plain = ShardDataset(shards, train=True, hflip_prob=0.0, **kw)[0]["video"]
    flipped = ShardDataset(shards, train=True, hflip_prob=1.0, **kw)[0]["video"]
    assert torch.equal(flipped, plain.flip(-1))
    assert plain[0, 0, 10, 0] > 240 and plain[0, 0, 10, -1] < 100  # strip on the left before flipping


def test_float_output_is_the_normalised_uint8_output(shards):
    kw = dict(train=True, duration=1.0, num_frames=4, image_size=16)
    f = ShardDataset(shards, **kw)[7]["video"]
    u = ShardDataset(shards, video_dtype="uint8", **kw)[7]["video"]
    torch.testing.assert_close(f, normalize_video(u.float() / 255.0), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(normalize_uint8_video(u), f, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(normalize_uint8_video(u.unsqueeze(0))[0], f, atol=1e-5, rtol=1e-5)


def test_pillow_and_simplejpeg_decode_alike(shards):
    kw = dict(train=False, image_size=24, video_dtype="uint8")
    a = ShardDataset(shards, jpeg_decoder="pillow", **kw)[1]["video"].int()
    b = ShardDataset(shards, jpeg_decoder="auto", **kw)[1]["video"].int()
    assert (a - b).abs().max() <= 4


def test_shorter_stored_window_is_padded(shards):
    item = ShardDataset(shards, train=False, duration=3.0, image_size=16)[0]
    assert item["audio"].shape == (24000,) and item["padded"] is True
    assert float(item["audio"][16000:].abs().max()) == 0.0


def test_vocabulary_and_settings_are_checked(shards, tmp_path):
    vocab = LabelVocab(["other", "class0", "class1", "class2"])
    assert ShardDataset(shards, vocab=vocab, train=False, image_size=16)[4]["label"] == 2  # class1 in this vocab
    with pytest.raises(ValueError, match="not in the given vocabulary"):
        ShardDataset(shards, vocab=LabelVocab(["class0"]))
    with pytest.raises(ValueError, match="8000 Hz.*16000 Hz"):
        ShardDataset(shards, sample_rate=16000)
    with pytest.raises(ValueError, match="not a prepared shard folder"):
        ShardDataset(tmp_path)
    with pytest.raises(ValueError, match="video_dtype"):
        ShardDataset(shards, video_dtype="float16")
    with pytest.raises(IndexError):
        ShardDataset(shards)[10]


def test_multi_label_items_are_multi_hot(tmp_path):
    from zorro.data.shards import SampleData, write_samples

    frames = np.zeros((2, 8, 8, 3), dtype=np.uint8)
    wave = np.full(32000, 0.25, dtype=np.float32)
    write_samples(tmp_path, [SampleData(labels=("a", "c"), frames=frames, audio=wave), SampleData(labels=("b",), frames=frames)],
                  labels=["a", "b", "c"], multi_label=True)  # samples with different members: the index's general form
    ds = ShardDataset(tmp_path, train=False, image_size=8)
    assert ds[0]["label"].tolist() == [1.0, 0.0, 1.0] and ds[1]["label"].tolist() == [0.0, 1.0, 0.0]
    assert float(ds[0]["audio"].mean()) == pytest.approx(0.25, abs=1e-4)
    assert ds[1]["audio"] is None  # no audio member: no audio, never a zero waveform


def test_open_files_are_bounded(shards):
    from zorro.data.shards.reader import _OpenShard

    ds = ShardDataset(shards, train=False, image_size=16, video_dtype="uint8", max_open_files=1)
    reference = ShardDataset(shards, train=False, image_size=16, video_dtype="uint8")
    for i in (0, 5, 9, 1, 6):  # shards 0, 1, 2, 0, 1: each read reopens a closed file
        assert torch.equal(ds[i]["video"], reference[i]["video"])
        assert sum(isinstance(sh, _OpenShard) and sh.fd >= 0 for sh in ds._open.values()) == 1
    assert ds._open[0].spans.shape == (4, 10, 2)  # the compact index: (samples, members, (offset, size))


def _member(folder: Path, shard: int, sample: int, suffix: str) -> tuple[Path, int, int]:
    index = json.loads((folder / f"shard-{shard:06d}.index.json").read_text())
    off, size = index["samples"][sample]["members"][suffix]
    return folder / f"shard-{shard:06d}.tar", off, size


def _overwrite(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(data)


def test_damaged_shards_are_skipped_counted_and_logged_once(tmp_path, caplog):
    folder = make_shards(tmp_path / "out", n=16, per_shard=4)
    # shard 0: a corrupt JPEG in sample 1, a corrupt audio member in sample 2
    tar, off, size = _member(folder, 0, 1, "003.jpg")
    _overwrite(tar, off + size // 3, b"\xff\xd9" * 16 + bytes(range(200, 232)))
    tar, off, size = _member(folder, 0, 2, "wav")
    _overwrite(tar, off, b"JUNK")
    # shard 1: missing; shard 2: truncated inside its third sample; shard 3 intact
    (folder / "shard-000001.tar").unlink()
    tar, off, _ = _member(folder, 2, 2, "json")
    with open(tar, "r+b") as fh:
        fh.truncate(off + 10)
    ds = ShardDataset(folder, train=True, duration=1.0, num_frames=8, image_size=16)
    results = [ds[i] for i in range(len(ds))]
    skipped = [r.index for r in results if isinstance(r, Skipped)]
    assert skipped == [1, 2, 4, 5, 6, 7, 10, 11]
    assert ds.num_skipped == 8 and ds.num_read == 16
    reasons = {r.index: r.reason for r in results if isinstance(r, Skipped)}
    assert "JPEG" in reasons[1] and "audio" in reasons[2] and "missing" in reasons[4] and "truncated" in reasons[10]
    for r in results:
        if isinstance(r, dict):  # what is returned is whole: never a zero tensor in place of a member
            assert float(r["audio"].abs().min()) > 0 and r["video"].std() > 0

    loader = DataLoader(ds, batch_size=5, num_workers=2, collate_fn=collate_clips)
    tracker = SkipTracker()
    with caplog.at_level(logging.WARNING, logger="zorro.data.collate"):
        for _ in range(2):  # two epochs: each damaged place is logged once
            kept = sum(len(b["label"]) for b in loader if tracker.update(b) >= 0)
            assert kept == 8
            assert tracker.end_epoch() == 8
    per_place = [r.message for r in caplog.records if "skipping unreadable" in r.message]
    assert len(per_place) == 1 + 1 + 1 + 2  # jpeg sample, audio sample, the missing shard once, 2 truncated samples
    assert sum("shard-000001.tar" in m for m in per_place) == 1


def test_missing_index_file_is_skipped_too(tmp_path):
    folder = make_shards(tmp_path / "out", n=8, per_shard=4)
    (folder / "shard-000000.index.json").unlink()
    ds = ShardDataset(folder, train=False, image_size=16)
    assert [isinstance(ds[i], Skipped) for i in range(8)] == [True] * 4 + [False] * 4
    assert "index" in ds[0].reason


def test_label_ids_outside_the_vocabulary_are_damage(tmp_path):
    folder = make_shards(tmp_path / "out", n=2, per_shard=2)
    index = json.loads((folder / "shard-000000.index.json").read_text())
    off, size = index["samples"][1]["members"]["json"]
    tar = folder / "shard-000000.tar"
    data = tar.read_bytes()[off : off + size]
    bad = data.replace(b'"label_ids": [1]', b'"label_ids":[-1]')  # same length: the index holds the size
    assert bad != data and len(bad) == len(data)
    _overwrite(tar, off, bad)
    ds = ShardDataset(folder, train=False, image_size=16)
    assert isinstance(ds[0], dict) and isinstance(ds[1], Skipped) and "label_ids" in ds[1].reason  # not the last label
