"""Preparing across machines: --part K --num-parts N, the part records and the merge."""

from __future__ import annotations

import json

import pytest

from media import make_media
from zorro.data.accounting import merge_parts
from zorro.data.prepare import PrepareSettings, PrepareSource, part_range, prepare_shards
from zorro.data.shards import format as fmt
from zorro.data.sources import SourceTable

SETTINGS = dict(duration=0.5, num_frames=2, image_size=16, store_size=16, samples_per_shard=2, shard_bytes=None)
LABELS = ["cat", "dog", "owl"]


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    d = tmp_path_factory.mktemp("parts_media")
    out = []
    for k in range(7):
        if k == 4:  # one file that does not decode
            p = d / "broken.mp4"
            p.write_bytes(b"\x00" * 500)
        else:
            p = make_media(d / f"clip{k}.mp4", duration=0.6 + 0.1 * k, width=32, height=24, tone_hz=300 + 50 * k)
        labels = (LABELS[k % 3], LABELS[(k + 1) % 3]) if k % 2 else (LABELS[k % 3],)
        out.append(PrepareSource(str(p), labels, meta={"fold": 1 + k % 3, "id": f"c{k}"}))
    return out


MISSING = [{"id": f"gone{k}", "labels": ["owl"]} for k in range(5)]
DROPPED = [{"source": "a.csv", "line": 3 + k, "reason": "malformed row", "detail": "x"} for k in range(4)]


def _prepare(sources, out, **kw):
    return prepare_shards(sources, out, labels=LABELS, multi_label=True, missing=MISSING, dropped_rows=DROPPED, workers=1,
                          index_fields=("fold",), extra_info={"dataset": "test"}, **SETTINGS, **kw)


def _samples(folder):
    """(path, window, labels, fold) of every sample, read through ShardDataset's indexes and the members."""
    info = fmt.read_dataset_json(folder)
    out = []
    for sh in info["shards"]:
        idx = fmt.read_index(folder / sh["index"])
        for k, smp in enumerate(idx["samples"]):
            meta = json.loads(fmt.read_members(folder / sh["name"], smp, ["json"])["json"])
            assert idx["label_ids"][k] == meta["label_ids"] and idx["sample_meta"]["fold"][k] == meta["meta"]["fold"]
            out.append((meta["path"], meta["window"], tuple(meta["labels"]), meta["meta"]["fold"]))
    return out


def test_three_parts_then_merge_equal_one_run(sources, tmp_path):
    one = _prepare(sources, tmp_path / "one")
    parts = tmp_path / "parts"
    results = [_prepare(sources, parts, part=k, num_parts=3) for k in (2, 0, 1)]  # any order
    assert "part_counts" in results[0] and "part_counts" in results[1]  # not complete yet
    merged = results[2]  # the last part to finish wrote dataset.json
    assert merged == json.loads((parts / "dataset.json").read_text())
    assert merged["counts"] == one["counts"] and merged["labels"] == one["labels"] and merged["fingerprint"] == one["fingerprint"]
    assert merged["parts"]["num_parts"] == 3 and merged["num_samples"] == one["num_samples"] == 6
    assert sorted(_samples(parts)) == sorted(_samples(tmp_path / "one"))
    for kind in ("missing", "dropped_rows", "unreadable", "skipped_windows"):
        assert list(fmt.iter_list(parts, kind)) == list(fmt.iter_list(tmp_path / "one", kind)), kind
    names = [s["name"] for s in merged["shards"]]
    assert len(set(names)) == len(names) and all(n.startswith("shard-p000") for n in names)
    keys = [smp["key"] for sh in merged["shards"] for smp in fmt.read_index(parts / sh["index"])["samples"]]
    assert len(set(keys)) == len(keys) and keys[0] == fmt.sample_key(0, 0)
    # readable by ShardDataset (label ids from the indexes) and by the webdataset package
    from zorro.data import ShardDataset

    ds = ShardDataset(parts, train=False, duration=0.5, num_frames=2, image_size=16)
    assert len(ds) == 6 and ds[5]["audio"] is not None
    assert sorted(map(tuple, ds.label_ids())) == sorted(map(tuple, ShardDataset(tmp_path / "one", image_size=16).label_ids()))
    wds = pytest.importorskip("webdataset")
    got = list(wds.WebDataset([str(parts / n) for n in names], shardshuffle=False))
    assert sorted(s["__key__"] for s in got) == sorted(keys)
    # the same merge again writes the same file
    before = (parts / "dataset.json").read_bytes()
    merge_parts(parts)
    assert (parts / "dataset.json").read_bytes() == before


def test_parts_running_side_by_side(sources, tmp_path, monkeypatch):
    import threading

    from zorro.data.prepare import TEST_PAUSE_ENV

    monkeypatch.setenv(TEST_PAUSE_ENV, "0.05")  # both parts are still writing while the other starts
    out, errors, results = tmp_path / "o", [], {}

    def run(k):
        try:
            results[k] = _prepare(sources, out, part=k, num_parts=2)
        except Exception as exc:  # reported below
            errors.append(exc)

    import time

    threads = [threading.Thread(target=run, args=(k,)) for k in (0, 1)]
    threads[0].start()
    deadline = time.monotonic() + 60
    while not (out / fmt.index_name(0, 0)).exists() and time.monotonic() < deadline:  # part 0 has written a shard ...
        time.sleep(0.01)
    assert not (out / "parts").exists()  # ... and is not finished
    threads[1].start()
    for t in threads:
        t.join()
    assert errors == []
    merged = json.loads((out / "dataset.json").read_text())
    assert merged["num_samples"] == 6 and any("counts" in r for r in results.values())
    assert sorted(_samples(out)) == sorted(_samples(out))


def test_a_missing_part_makes_merge_fail_naming_it(sources, tmp_path):
    out = tmp_path / "o"
    for k in (0, 2):
        _prepare(sources, out, part=k, num_parts=3)
    assert not (out / "dataset.json").exists()
    with pytest.raises(ValueError, match=r"part\(s\) \[1\] of 3 have not finished .*parts/part-0001.json"):
        merge_parts(out)
    from zorro.cli import main

    assert main(["prepare", "merge", str(out)]) == 1


def test_a_part_restarts_after_a_crash_without_redecoding(sources, tmp_path, monkeypatch):
    import zorro.data.prepare as prep

    out = tmp_path / "o"
    lo, hi = part_range(SourceTable.from_sources(sources, LABELS, True), 1, 2, PrepareSettings(**SETTINGS))
    real = prep._decode_source
    calls = []

    def crash_late(i, src, s, vocab):
        calls.append(i)
        if i == hi - 1:
            raise KeyError("crash")
        return real(i, src, s, vocab)

    monkeypatch.setattr(prep, "_decode_source", crash_late)
    with pytest.raises(RuntimeError, match="crash"):
        _prepare(sources, out, part=1, num_parts=2)
    finished = sorted(out.glob("shard-p0001-*.index.json"))
    assert finished and not list(out.glob("*.tmp"))
    calls.clear()
    monkeypatch.setattr(prep, "_decode_source", lambda i, src, s, vocab: (calls.append(i), real(i, src, s, vocab))[1])
    rec = _prepare(sources, out, part=1, num_parts=2)
    done = max(fmt.read_index_head(p)["source_end"] for p in finished)
    assert calls == list(range(done, hi)) and rec["part_counts"]["sources"] == hi - lo
    calls.clear()
    assert _prepare(sources, out, part=1, num_parts=2)["part_counts"] == rec["part_counts"] and calls == []
    # the other part, then the folder is complete
    info = _prepare(sources, out, part=0, num_parts=2)
    assert info["counts"]["sources"] == len(sources) + len(MISSING)


def test_parts_are_refused_when_mixed_or_inconsistent(sources, tmp_path):
    _prepare(sources[:3], tmp_path / "single")
    with pytest.raises(ValueError, match="without --part"):
        _prepare(sources[:3], tmp_path / "single", part=0, num_parts=2)
    _prepare(sources[:3], tmp_path / "p", part=0, num_parts=2)
    with pytest.raises(ValueError, match="being prepared in parts"):
        _prepare(sources[:3], tmp_path / "p")
    with pytest.raises(ValueError, match="in 2 parts; this run is for 3"):
        _prepare(sources[:3], tmp_path / "p", part=0, num_parts=3)
    with pytest.raises(ValueError, match="other settings or sources"):
        _prepare(sources[:4], tmp_path / "p", part=0, num_parts=2)
    with pytest.raises(ValueError, match=r"part must be in \[0, num_parts\)"):
        _prepare(sources, tmp_path / "x", part=3, num_parts=3)
    with pytest.raises(ValueError, match="both part and num_parts"):
        _prepare(sources, tmp_path / "x", part=1)


def test_part_ranges_are_disjoint_cover_and_balance_the_work():
    durations = [1.0] * 30 + [10.0] * 10 + [1.0] * 60  # one stretch of long windows
    srcs = [PrepareSource(f"f{k}.mp4", ("cat",), start=0.0, end=d) for k, d in enumerate(durations)]
    table = SourceTable.from_sources(srcs, LABELS, False)
    settings = PrepareSettings(window="manifest")
    for n in (1, 2, 3, 7, 150):
        ranges = [part_range(table, k, n, settings) for k in range(n)]
        assert ranges[0][0] == 0 and ranges[-1][1] == len(srcs)
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))  # contiguous, disjoint, in order
        assert ranges == [part_range(table, k, n, settings) for k in range(n)]  # deterministic
    work = [sum(durations[a:b]) for a, b in (part_range(table, k, 4, settings) for k in range(4))]
    assert all(abs(w - sum(durations) / 4) <= max(durations) for w in work)  # within one source's work of the mean
    even = [sum(durations[25 * k : 25 * k + 25]) for k in range(4)]
    assert max(even) - min(even) > 80 > max(work) - min(work)  # an equal-count split would not be
    counts = [b - a for a, b in (part_range(table, k, 4, PrepareSettings()) for k in range(4))]
    assert counts == [25, 25, 25, 25]  # centre windows: every source costs alike


def test_cli_parts_and_merge(sources, tmp_path, capsys):
    from zorro.cli import main

    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\n" + "".join(f"{s.path},{s.labels[0]}\n" for s in sources) + "gone.mp4,cat\n")
    small = ["--duration", "0.5", "--num-frames", "2", "--image-size", "16", "--store-size", "16", "--shard-samples", "2", "--workers", "1"]
    for k in (1, 0):
        assert main(["prepare", "--manifest", str(manifest), "--out", str(tmp_path / "o"), "--part", str(k), "--num-parts", "2", *small]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert printed[0]["part"] == 1 and "part_written" in printed[0] and printed[1]["written"] == 6 and printed[1]["missing"] == 1
    assert main(["prepare", "merge", str(tmp_path / "o")]) == 0
    assert json.loads(capsys.readouterr().out)["num_parts"] == 2
    assert [m["path"] for m in fmt.iter_list(tmp_path / "o", "missing")] == [str(tmp_path / "gone.mp4")]
    assert main(["prepare", "--manifest", str(manifest), "--out", str(tmp_path / "x"), "--part", "2", "--num-parts", "2", *small]) == 1
    assert main(["prepare", "--manifest", str(manifest), "--out", str(tmp_path / "x"), "--part", "0", *small]) == 1
