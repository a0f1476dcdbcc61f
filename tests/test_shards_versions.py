"""Folders written before format 2 still read; format-2 folders start from their indexes.

``tests/fixtures/shards_v1/out`` was written by a zorro of format 1 (see its
``make_fixture.py``): lists inside ``dataset.json``, no label ids in the indexes.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from shards_toy import make_shards
from zorro.data import ShardDataset, collate_clips
from zorro.data.balanced import BalancedSampler, balanced_weights, dataset_label_ids, shard_label_ids
from zorro.data.sample_meta import LabelIds, index_label_ids, index_meta_field
from zorro.data.shards import format as fmt

V1 = Path(__file__).resolve().parent / "fixtures" / "shards_v1" / "out"


@pytest.fixture()
def v1(tmp_path) -> Path:
    shutil.copytree(V1, tmp_path / "v1")
    return tmp_path / "v1"


def test_a_version_1_folder_still_reads(v1, caplog):
    info = fmt.read_dataset_json(v1)
    assert info["format_version"] == 1 and "unreadable" in info
    assert [m["id"] for m in fmt.iter_list(v1, "missing")] == ["ccc_30.000"]
    assert [u["source"] for u in fmt.iter_list(v1, "unreadable")] == [1]
    assert [d["line"] for d in fmt.iter_list(v1, "dropped_rows")] == [9]
    assert list(fmt.iter_list(v1, "skipped_windows")) == []
    ds = ShardDataset(v1, train=False, duration=0.5, num_frames=2, image_size=16)
    assert len(ds) == 2 and ds[0]["video"].shape == (3, 2, 16, 16) and ds[1]["video"] is None
    assert torch.equal(ds[0]["label"], torch.tensor([1.0, 1.0])) and torch.equal(ds[1]["label"], torch.tensor([0.0, 1.0]))
    assert index_label_ids(v1) is None and index_meta_field(v1, "fold") is None
    caplog.set_level(logging.INFO)
    assert ds.label_ids() == [[0, 1], [1]] and "slower" in caplog.text  # from the samples themselves, said so
    assert shard_label_ids(v1) == ([[0, 1], [1]], 2)
    from zorro.recipes.cross_validation import fold_values

    assert fold_values(str(v1), "fold") == [1, 2]


def test_preparing_into_a_version_1_folder_is_refused_with_the_reason(v1, tmp_path):
    from media import make_media

    from zorro.data.prepare import PrepareSource, prepare_shards

    src = PrepareSource(str(make_media(tmp_path / "a.mp4", duration=0.5, width=32, height=24)), ("cat",))
    with pytest.raises(ValueError, match="older zorro .shard format 1.*stays readable"):
        prepare_shards([src], v1, labels=["cat", "dog"], workers=1, duration=0.5, num_frames=2, image_size=16)


def test_newer_versions_and_foreign_files_are_refused(tmp_path):
    make_shards(tmp_path / "s", n=4)
    info = json.loads((tmp_path / "s" / "dataset.json").read_text())
    (tmp_path / "s" / "dataset.json").write_text(json.dumps({**info, "format_version": 3}))
    with pytest.raises(ValueError, match="format_version 3; this zorro reads up to 2: upgrade zorro"):
        ShardDataset(tmp_path / "s")
    (tmp_path / "s" / "dataset.json").write_text(json.dumps({**info, "format": "other"}))
    with pytest.raises(ValueError, match="not a zorro shard description"):
        fmt.read_dataset_json(tmp_path / "s")


def test_start_up_reads_the_indexes_not_the_samples(tmp_path, monkeypatch):
    folder = make_shards(tmp_path / "s", n=30, per_shard=7, num_classes=4)
    ds = ShardDataset(folder, train=True, duration=1.0, num_frames=2, image_size=8, video_dtype="uint8")
    reads = []
    real_pread = __import__("os").pread
    monkeypatch.setattr("os.pread", lambda fd, n, off: reads.append(n) or real_pread(fd, n, off))
    import zorro.data.sample_meta as sm

    monkeypatch.setattr(sm, "sample_metadata", lambda *a, **k: pytest.fail("start-up read the samples"))
    ids, num_classes = dataset_label_ids(ds)
    assert isinstance(ids, LabelIds) and num_classes == 4 and ids == [[k % 4] for k in range(30)]
    sampler = BalancedSampler(balanced_weights(ids, num_classes), num_samples=len(ds), seed=0)
    assert reads == []  # nothing read from the tars before the first batch
    batch = next(iter(DataLoader(ds, batch_size=6, sampler=sampler, num_workers=0, collate_fn=collate_clips)))
    assert batch["label"].shape == (6,) and len(reads) == 6  # the batch itself: one read per sample
    # a vocabulary with another order maps the ids
    from zorro.data import LabelVocab

    other = ShardDataset(folder, vocab=LabelVocab(["class3", "class2", "class1", "class0", "extra"]))
    assert other.label_ids()[:4] == [[3], [2], [1], [0]]


def test_label_ids_csr_and_vectorised_weights_agree_with_the_lists():
    rng = np.random.default_rng(0)
    lists = [sorted(set(rng.integers(0, 9, size=int(rng.integers(0, 4))).tolist())) for _ in range(300)]
    lists[5] = [2, 2]  # a class listed twice counts once
    ids = LabelIds.from_lists(lists)
    assert ids == lists and len(ids) == 300 and ids[5] == [2, 2]
    counts = np.zeros(9)
    for row in lists:
        for c in set(row):
            counts[c] += 1
    want = np.array([sum(1.0 / (counts[c] + 0.01) for c in set(row)) for row in lists])
    np.testing.assert_allclose(balanced_weights(ids, 9), want)
    np.testing.assert_allclose(balanced_weights(lists, 9), want)
    take = ids.take([7, 5, 7])
    assert take == [lists[7], lists[5], lists[7]]
    with pytest.raises(ValueError, match="not an int in"):
        balanced_weights(LabelIds.from_lists([[0], [9]]), 9)


def test_read_json_or_none_takes_only_a_whole_json_object(tmp_path):
    from zorro.data.shards.format import read_json_or_none

    cases = {"ok.json": '{"a": 1}', "list.json": "[1, 2]", "half.json": '{"a": ', "bytes.json": b"\xff\xfe"}
    for name, text in cases.items():
        (tmp_path / name).write_bytes(text if isinstance(text, bytes) else text.encode())
    assert read_json_or_none(tmp_path / "ok.json") == {"a": 1}
    for name in ("list.json", "half.json", "bytes.json", "absent.json"):
        assert read_json_or_none(tmp_path / name) is None, name
    assert read_json_or_none(tmp_path) is None  # a folder
