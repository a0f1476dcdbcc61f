"""The annotation path at scale: a 100k-row AudioSet segment list (built as
``benchmarks/bench_annotations.py`` builds its 2M-row one) streamed through
``zorro prepare audioset --dry-run``, memory that does not grow with the rows, and
duplicates found by the streaming pass."""

from __future__ import annotations

import json
import sys
import tracemalloc
from pathlib import Path

import pytest

from zorro.cli import main
from zorro.data.annotations import MediaIndex, NameTemplate
from zorro.data.annotations.collect import collect
from zorro.data.registry.audioset import AudioSetSegments, read_audioset_labels
from zorro.data.shards.format import iter_list, read_dataset_json

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_annotations as bench  # noqa: E402

FIELDS = ("id", "ytid", "start", "end", "split")


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    d = tmp_path_factory.mktemp("audioset_100k")
    mids = bench.write_labels(d / "class_labels_indices.csv")
    bench.write_seed(d / "seed.csv", mids, rows=500)
    keys = bench.scale_up(d / "seed.csv", d / "unbalanced_train_segments.csv", 100_000)
    found = bench.make_media(d / "media", keys[:20_000], 0.25)  # a quarter of the first 20k rows downloaded
    return d, keys, found


def test_100k_rows_through_the_dry_run(big, capsys):
    d, keys, found = big
    out = d / "out"
    assert main(["prepare", "audioset", "--dry-run", "--segments", str(d / "unbalanced_train_segments.csv"),
                 "--labels", str(d / "class_labels_indices.csv"), "--media-root", str(d / "media"), "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["rows"] == summary["annotated"] == 100_000 and summary["rows_left_out"] == 0
    assert (summary["found"], summary["missing"]) == (found, 100_000 - found)
    info = read_dataset_json(out, allow_dry_run=True)
    assert info["counts"]["found"] == found and info["counts"]["sources"] == 100_000
    assert (out / "dataset.json").stat().st_size < 64 * 1024  # counts, not lists
    missing = iter_list(out, "missing")
    first = next(missing)
    assert set(first) == {"id", "ytid", "start", "end", "split", "mids", "labels", "annotation", "looked_for"}
    assert first["split"] == "unbalanced_train_segments" and first["annotation"].endswith("unbalanced_train_segments.csv:4")
    assert 1 + sum(1 for _ in missing) == 100_000 - found


def _peak(d: Path, rows: int) -> int:
    """Peak Python allocation (bytes) of streaming the first ``rows`` rows through collect()."""
    src = d / f"first_{rows}.csv"
    lines = (d / "unbalanced_train_segments.csv").read_text().splitlines(keepends=True)
    src.write_text("".join(lines[: 3 + rows]))
    classes = read_audioset_labels(d / "class_labels_indices.csv")
    index = MediaIndex(d / "media")
    templates = [NameTemplate(t, FIELDS) for t in ("{ytid}_{start:06d}", "Y{ytid}")]
    spool = d / f"spool_{rows}"
    spool.mkdir(exist_ok=True)
    tracemalloc.start()
    try:
        got = collect(AudioSetSegments(src, classes), index, templates, spool_dir=spool, keep_sources=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    got.remove_spools()
    assert got.counts["annotated"] == rows
    return peak


@pytest.mark.slow
def test_memory_does_not_grow_with_the_rows(big):
    d, _, _ = big
    small, large = _peak(d, 5_000), _peak(d, 25_000)
    # 5x the rows: only the 8-byte key hash of each row is kept (0.16 MB more)
    assert large < small + 500_000, (small, large)


def test_duplicates_are_found_by_the_streaming_pass(tmp_path):
    labels = tmp_path / "labels.csv"
    mids = bench.write_labels(labels, num_classes=3)
    rows = [f'y{k:010d}, 30.000, 40.000, "{mids[k % 3]}"' for k in range(6)]
    rows += [rows[1], rows[4].replace("40.000", "39.000"), 'y0000000005, 30.000, 35.000, "' + mids[0] + '"']  # three later repeats
    seg = tmp_path / "eval_segments.csv"
    seg.write_text(bench.HEADER.format(n=9, p=9) + "\n".join(rows) + "\n")
    media = tmp_path / "media"
    media.mkdir()
    for k in (1, 2, 4):
        (media / f"y{k:010d}_000030.mp4").write_bytes(b"")
    classes = read_audioset_labels(labels)
    templates = [NameTemplate("{ytid}_{start:06d}", FIELDS)]
    got = collect(AudioSetSegments(seg, classes, on_error="skip"), MediaIndex(media), templates, spool_dir=tmp_path)
    assert got.counts == {"rows": 9, "annotated": 6, "found": 3, "missing": 3, "dropped_rows": 3, "filtered_rows": 0}
    assert [got.sources.meta_text(i) for i in range(3)] == [got.sources.meta_text(i) for i in range(3)]
    assert [json.loads(got.sources.meta_text(i))["ytid"] for i in range(len(got.sources))] == ["y0000000001", "y0000000002", "y0000000004"]
    assert [json.loads(line)["ytid"] for line in got.missing_spool.read_text().splitlines()] == ["y0000000000", "y0000000003", "y0000000005"]
    dropped = [json.loads(line) for line in got.dropped_spool.read_text().splitlines()]
    assert [(x["line"], x["reason"]) for x in dropped] == [(10, "duplicate segment"), (11, "duplicate segment"), (12, "duplicate segment")]
    assert dropped[0]["detail"] == "y0000000001_30.000 already listed at eval_segments.csv:5"
    got.remove_spools()
    with pytest.raises(ValueError, match=r"eval_segments.csv:10: duplicate segment: y0000000001_30.000 already listed"):
        collect(AudioSetSegments(seg, classes), MediaIndex(media), templates, spool_dir=tmp_path)
    assert not list(tmp_path.glob(".*.spool"))  # nothing left behind by the failed pass


def test_a_source_table_and_a_list_give_the_same_fingerprint(tmp_path):
    from media import make_media

    from zorro.data.prepare import PrepareSource, prepare_shards
    from zorro.data.sources import SourceTable

    a = make_media(tmp_path / "a.mp4", duration=0.5, width=32, height=24)
    srcs = [PrepareSource(str(a), ("x", "y"), meta={"ytid": "a", "start": 1.5}), PrepareSource(str(a), ("y",), 0.0, 0.5)]
    table = SourceTable.from_sources(srcs, ["x", "y"], True)
    assert list(table) == srcs and table.label_ids(0) == [0, 1] and table.segment(1) == (0.0, 0.5)
    kw = dict(labels=["x", "y"], multi_label=True, workers=1, duration=0.5, num_frames=2, image_size=16, samples_per_shard=1, shard_bytes=None)
    one = prepare_shards(srcs, tmp_path / "list", **kw)
    two = prepare_shards(table, tmp_path / "table", **kw)
    assert one["fingerprint"] == two["fingerprint"] and one["shards"] == two["shards"]
    with pytest.raises(ValueError, match="not in labels"):
        SourceTable.from_sources([PrepareSource("f", ("z",))], ["x"], False)
    with pytest.raises(ValueError, match="labels / multi_label differ"):
        prepare_shards(table, tmp_path / "x", **{**kw, "labels": ["y", "x"]})


def test_segment_keys_are_the_formatted_start(tmp_path):
    labels = tmp_path / "labels.csv"
    mids = bench.write_labels(labels, num_classes=2)
    starts = ["30.000", "0.000", ".500", "007.000", "239.800", "30.5", "1e1"]
    rows = [f'y{k:010d}, {s}, 400.000, "{mids[0]}"' for k, s in enumerate(starts)]
    seg = tmp_path / "s.csv"
    seg.write_text(bench.HEADER.format(n=7, p=7) + "\n".join(rows) + "\n")
    got = [r.id for r in AudioSetSegments(seg, read_audioset_labels(labels))]
    assert got == [f"y{k:010d}_{float(s):.3f}" for k, s in enumerate(starts)]
