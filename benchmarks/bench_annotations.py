"""The data path at AudioSet-2M scale: annotation parsing and matching, and shard start-up.

1. **Dry run over the full unbalanced list.** A small AudioSet-format seed (a 527-class
   ``class_labels_indices.csv`` whose names include quoted commas, and a segment list of
   ``--seed-rows`` rows with the three ``#`` header lines, 1-6 labels a row drawn from a
   long-tailed class distribution, some fractional starts such as 239.8 and some short
   windows) is written first; the 2,041,789-row file (``--rows``, the size of
   ``unbalanced_train_segments.csv``) is built from it by repeating its rows with a new
   YouTube id each. A media folder holds an empty file named ``{ytid}_{start:06d}.mp4`` for
   a ``--found`` share of the rows (AudioSet downloads typically find ~80 %). Then
   ``python -m zorro prepare audioset --dry-run`` runs as a child process; the figures are
   its wall time, CPU time and peak RSS (``wait4``), and the bytes it wrote: ``dataset.json``
   (with and without the label vocabulary), ``missing.jsonl``, ``dropped_rows.jsonl``.
   Goals: <= 30 s, <= 1.5 GB peak RSS, ``dataset.json`` <= 1 MB apart from the labels.
   Also measured: the same pass as a real (not dry) prepare runs it before its first decode,
   keeping every found clip (a ``SourceTable``) and computing the folder's fingerprint.
2. **Start-up of a shard folder of ``--samples`` samples** (200,000 and 2,000,000 by
   default). One real shard of 400 AudioSet-like samples is written with zorro's
   ``ShardWriter`` (a JSON member, 0.1 s of 16 kHz WAV and eight 16x16 JPEG frames each, label
   ids in the index as ``zorro prepare`` stores them); the folder lists it N/400 times as
   hard links (each with its own index file, as a prepared folder has), so the indexes are
   real-sized while the disk holds one tar. A child process then opens the folder with
   ``ShardDataset``, takes the label ids (:meth:`ShardDataset.label_ids`), computes the
   balanced weights, builds a ``BalancedSampler`` over the folder and draws its first batch
   of 32 through a ``DataLoader`` (no workers). Reported: wall time and peak RSS of the
   child; the same at the smallest size with indexes that carry no label ids (a folder from
   before format 2: every sample's JSON is read instead), and the ratio. Goal: <= 10 s and
   <= 2 GB at 2M; time growing no faster than linearly.

With ``--baseline-src DIR`` (the ``src`` folder of an older zorro, e.g. from ``git archive``),
the same parse, media lookup and accounting run through that version's API as a child
process too (``read_audioset_segments``, ``MediaIndex``, ``match_media``,
``prepare_inputs`` and the JSON of the missing list that its ``dataset.json`` held), for a
side-by-side ratio on the same files and machine.

Usage: ``python benchmarks/bench_annotations.py [--rows 2041789] [--found 0.8]
[--samples 200000 2000000] [--workdir DIR] [--json FILE] [--skip-dry-run] [--skip-startup]
[--baseline-src DIR]``.
Runs in a few minutes (creating the media folder's files dominates the first run; they are
kept in ``--workdir`` between runs).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
UNBALANCED_ROWS = 2_041_789
NUM_CLASSES = 527
HEADER = (
    "# Segments csv created Sun Mar  5 10:54:31 2017\n"
    "# num_ytids={n}, num_segs={n}, num_unique_labels=527, num_positive_labels={p}\n"
    "# YTID, start_seconds, end_seconds, positive_labels\n"
)
SHARD_SAMPLES = 400


# ---------------------------------------------------------------------------- the files


def _mids(num_classes: int = NUM_CLASSES) -> list[str]:
    """MIDs shaped like AudioSet's (``/m/0...`` and a few ``/t/dd00...``)."""
    out = []
    for i in range(num_classes):
        if i >= num_classes - 7:
            out.append(f"/t/dd{i:05d}")
        else:
            out.append("/m/0" + np.base_repr(7919 * (i + 11), 36).lower())
    return out


def write_labels(path: Path, num_classes: int = NUM_CLASSES) -> list[str]:
    """A ``class_labels_indices.csv`` of ``num_classes`` classes in the published format;
    every seventh name holds a comma (quoted). Returns the MIDs in class-id order."""
    mids = _mids(num_classes)
    lines = ["index,mid,display_name"]
    for i, mid in enumerate(mids):
        lines.append(f'{i},{mid},"Sound {i}, with a comma"' if i % 7 == 0 else f"{i},{mid},Sound {i}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return mids


def _ytids(n: int, rng: np.random.Generator) -> list[str]:
    raw = rng.integers(0, 256, size=(n, 8), dtype=np.uint8).tobytes()
    return [base64.urlsafe_b64encode(raw[8 * k : 8 * k + 8]).decode()[:11] for k in range(n)]


def write_seed(path: Path, mids: list[str], rows: int = 2000, seed: int = 0) -> None:
    """A small segment list in the published format: 1-6 labels a row (mostly one or two)
    from a long-tailed class distribution, starts mostly whole (some fractional, e.g. 239.8),
    10 s windows with some shorter ones at the end of a video."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, len(mids) + 1) ** 1.1
    popularity /= popularity.sum()
    ids = _ytids(rows, rng)
    out = []
    positives = 0
    for k in range(rows):
        n = int(rng.choice([1, 2, 3, 4, 5, 6], p=[0.45, 0.3, 0.13, 0.07, 0.03, 0.02]))
        labels = rng.choice(len(mids), size=n, replace=False, p=popularity)
        positives += n
        start = float(rng.choice([0, 10, 20, 30, 30, 30, 40, 60, 90, 120]))
        if rng.random() < 0.03:
            start += round(float(rng.uniform(0.1, 0.9)), 1)  # 239.8-style fractional starts
        end = start + (10.0 if rng.random() > 0.05 else round(float(rng.uniform(1.0, 9.9)), 3))
        out.append(f'{ids[k]}, {start:.3f}, {end:.3f}, "{",".join(mids[c] for c in labels)}"')
    path.write_text(HEADER.format(n=rows, p=positives) + "\n".join(out) + "\n", encoding="utf-8")


def scale_up(seed: Path, out: Path, rows: int, seed_value: int = 1) -> list[tuple[str, float]]:
    """Write ``rows`` segment rows to ``out``: the seed's rows in turn, each with a new
    YouTube id. Returns every row's ``(ytid, start)``."""
    lines = seed.read_text(encoding="utf-8").splitlines()
    data = [ln for ln in lines if ln and not ln.startswith("#")]
    rng = np.random.default_rng(seed_value)
    ids = _ytids(rows, rng)
    keys = []
    with open(out, "w", encoding="utf-8") as fh:
        fh.write(HEADER.format(n=rows, p=rows * 2))
        for k in range(rows):
            rest = data[k % len(data)].split(", ", 1)[1]
            fh.write(f"{ids[k]}, {rest}\n")
            keys.append((ids[k], float(rest.split(",", 1)[0])))
    return keys


def make_media(folder: Path, keys: list[tuple[str, float]], share: float, seed: int = 2) -> int:
    """Empty files ``{ytid}_{start:06d}.mp4`` (start truncated to whole seconds, as the
    download scripts name them) for a ``share`` of the rows; returns how many."""
    folder.mkdir(parents=True, exist_ok=True)
    keep = np.random.default_rng(seed).random(len(keys)) < share
    n = 0
    for (ytid, start), k in zip(keys, keep):
        if k:
            fd = os.open(folder / f"{ytid}_{int(start):06d}.mp4", os.O_CREAT | os.O_WRONLY, 0o644)
            os.close(fd)
            n += 1
    return n


# ---------------------------------------------------------------------------- child processes


def timed_child(cmd: list[str], env: dict[str, str] | None = None) -> dict[str, float]:
    """Run ``cmd``: wall s, the child's own CPU s and peak RSS (MiB, from ``wait4``), its output."""
    t0 = time.perf_counter()
    out_f, err_f = tempfile.TemporaryFile(), tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, stdout=out_f, stderr=err_f, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    out_f.seek(0)
    err_f.seek(0)
    out, err = out_f.read().decode(), err_f.read().decode()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:8])} ... failed ({proc.returncode}):\n{err[-3000:]}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mib": usage.ru_maxrss / 1024.0,
            "stdout": out, "stderr": err}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


# ---------------------------------------------------------------------------- 1. dry run


_BASELINE_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from zorro.data.annotations import MediaIndex, NameTemplate, match_media, read_audioset_labels, read_audioset_segments
from zorro.data.annotations.sources import prepare_inputs
segments, labels, media = sys.argv[1:4]
classes = read_audioset_labels(labels)
parsed = read_audioset_segments(segments, classes)
index = MediaIndex(media)
templates = [NameTemplate(t, ("id", "ytid", "start", "end", "split")) for t in ("{ytid}_{start:06d}", "Y{ytid}", "{ytid}")]
match = match_media(parsed.records, index, templates)
inputs = prepare_inputs("audioset", parsed, match, templates=templates, annotation_files=[segments, labels], media_root=media)
listed = json.dumps(json.loads(json.dumps(list(inputs.missing))), indent=1)  # what its dataset.json held
print(json.dumps({"seconds": time.perf_counter() - t0, "found": len(inputs.sources), "missing": len(inputs.missing),
                  "missing_list_bytes": len(listed)}))
"""


_BEFORE_DECODING_CHILD = r"""
import json, sys, tempfile, time
t0 = time.perf_counter()
from zorro.data.annotations import MediaIndex, NameTemplate
from zorro.data.annotations.collect import collect
from zorro.data.prepare import PrepareSettings, _fingerprint, settings_record
from zorro.data.registry import get
segments, labels, media = sys.argv[1:4]
spec = get("audioset")
reader = spec.open_reader(type("A", (), {"segments": [segments], "labels": labels})(), "raise")
templates = [NameTemplate(t, spec.fields) for t in spec.templates]
got = collect(reader, MediaIndex(media), templates, spool_dir=tempfile.mkdtemp(), keep_sources=True)
fp = _fingerprint(got.sources, settings_record(PrepareSettings(duration=10.0)), spec.index_fields)
got.remove_spools()
print(json.dumps({"seconds": time.perf_counter() - t0, "found": len(got.sources), "table_bytes": got.sources.nbytes()}))
"""


def bench_before_decoding(work: Path, rows: int, found: float) -> dict:
    """What a real ``zorro prepare audioset`` does before its first decode: the same pass
    keeping every found clip in a SourceTable, and the folder's fingerprint over them."""
    big, labels, media = work / f"unbalanced_{rows}.csv", work / "class_labels_indices.csv", work / f"media_{rows}_{found:g}"
    res = timed_child([sys.executable, "-c", _BEFORE_DECODING_CHILD, str(big), str(labels), str(media)], _env())
    got = json.loads(res["stdout"].strip().splitlines()[-1])
    return {"wall_s": round(res["wall_s"], 2), "cpu_s": round(res["cpu_s"], 2), "peak_rss_mib": round(res["peak_rss_mib"], 1),
            "found": got["found"], "source_table_mib": round(got["table_bytes"] / 2**20, 1)}


def bench_baseline(work: Path, rows: int, found: float, src: Path) -> dict:
    """The parse + lookup + accounting of an older zorro on the files of :func:`bench_dry_run`."""
    big, labels, media = work / f"unbalanced_{rows}.csv", work / "class_labels_indices.csv", work / f"media_{rows}_{found:g}"
    env = dict(os.environ)
    env["PYTHONPATH"] = str(src)
    res = timed_child([sys.executable, "-c", _BASELINE_CHILD, str(big), str(labels), str(media)], env)
    got = json.loads(res["stdout"].strip().splitlines()[-1])
    return {"src": str(src), "wall_s": round(res["wall_s"], 2), "cpu_s": round(res["cpu_s"], 2),
            "peak_rss_mib": round(res["peak_rss_mib"], 1), "found": got["found"], "missing": got["missing"],
            "missing_list_bytes": got["missing_list_bytes"]}


def bench_dry_run(work: Path, rows: int, found: float) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    labels, seed, big = work / "class_labels_indices.csv", work / "seed_segments.csv", work / f"unbalanced_{rows}.csv"
    media = work / f"media_{rows}_{found:g}"
    stamp = media / ".complete"
    if not (big.is_file() and stamp.is_file()):
        mids = write_labels(labels)
        write_seed(seed, mids)
        t0 = time.perf_counter()
        keys = scale_up(seed, big, rows)
        print(f"  built {big.name} ({big.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t0:.0f} s", flush=True)
        if media.exists():
            shutil.rmtree(media)
        t0 = time.perf_counter()
        n = make_media(media, keys, found)
        stamp.write_text(str(n))
        print(f"  made {n} media files in {time.perf_counter() - t0:.0f} s", flush=True)
    out = work / "dry_run_out"
    if out.exists():
        shutil.rmtree(out)
    cmd = [sys.executable, "-m", "zorro", "prepare", "audioset", "--dry-run", "--segments", str(big), "--labels", str(labels),
           "--media-root", str(media), "--out", str(out)]
    res = timed_child(cmd, _env())
    summary = json.loads(res["stdout"].strip().splitlines()[-1])
    info = json.loads((out / "dataset.json").read_text())
    size = (out / "dataset.json").stat().st_size
    label_bytes = len(json.dumps(info["labels"], indent=1)) + 1
    return {
        "rows": rows, "found_share": found, "media_files": int(stamp.read_text()),
        "wall_s": round(res["wall_s"], 2), "cpu_s": round(res["cpu_s"], 2), "peak_rss_mib": round(res["peak_rss_mib"], 1),
        "found": summary["found"], "missing": summary["missing"], "rows_read": summary["rows"],
        "dataset_json_bytes": size, "dataset_json_bytes_without_labels": size - label_bytes,
        "missing_jsonl_bytes": (out / "missing.jsonl").stat().st_size,
        "dropped_rows_jsonl_bytes": (out / "dropped_rows.jsonl").stat().st_size,
        "goals": {"wall_s": 30.0, "peak_rss_mib": 1536.0, "dataset_json_bytes_without_labels": 2**20},
    }


# ---------------------------------------------------------------------------- 2. start-up

_STARTUP_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import torch
from torch.utils.data import DataLoader
from zorro.data import ShardDataset, collate_clips
from zorro.data.balanced import BalancedSampler, balanced_weights, dataset_label_ids
t_import = time.perf_counter() - t0
t0 = time.perf_counter()
ds = ShardDataset(sys.argv[1], train=True, duration=0.1, num_frames=8, image_size=16, sample_rate=16000, video_dtype="uint8")
ids, num_classes = dataset_label_ids(ds)
w = balanced_weights(ids, num_classes)
sampler = BalancedSampler(w, num_samples=len(ds), seed=0)
batch = next(iter(DataLoader(ds, batch_size=32, sampler=sampler, num_workers=0, collate_fn=collate_clips)))
t = time.perf_counter() - t0
print(json.dumps({"startup_s": t, "import_s": t_import, "samples": len(ds), "batch": int(batch["label"].shape[0])}))
"""


def _template_shard(folder: Path, with_label_ids: bool) -> tuple[str, str]:
    """One shard of SHARD_SAMPLES AudioSet-like samples; returns (tar name, index text)."""
    from zorro.data.shards.format import encode_jpeg
    from zorro.data.shards.writer import ShardWriter, sample_members

    rng = np.random.default_rng(3)
    popularity = 1.0 / np.arange(1, NUM_CLASSES + 1) ** 1.1
    popularity /= popularity.sum()
    frame = encode_jpeg(np.full((16, 16, 3), 128, np.uint8), 90)
    audio = (0.1 * np.sin(np.arange(1600) / 5.0)).astype(np.float32)
    writer = ShardWriter(folder, 0)
    for k in range(SHARD_SAMPLES):
        ids = sorted(int(c) for c in rng.choice(NUM_CLASSES, size=int(rng.integers(1, 4)), replace=False, p=popularity))
        info = {"path": f"media/clip{k}.mp4", "start": 0.0, "end": 0.1, "labels": [f"c{c}" for c in ids], "label_ids": ids,
                "has_audio": True, "has_video": True, "padded": False, "sample_rate": 16000, "fps": 80.0, "num_frames": 8,
                "width": 16, "height": 16, "source": k, "window": 0, "meta": {"ytid": f"y{k:010d}"}}
        members = sample_members(info, audio, [frame] * 8, sample_rate=16000, audio_format="wav")
        writer.add(f"s{k:09d}", members, label_ids=ids if with_label_ids else None)
    writer.commit()
    return writer.name, (folder / writer.index_file).read_text()


def make_startup_folder(folder: Path, samples: int, with_label_ids: bool = True) -> Path:
    """A prepared folder of ``samples`` samples (see the module docstring)."""
    from zorro.data.shards.format import DATASET_JSON, FORMAT_NAME, FORMAT_VERSION, index_name, shard_name

    if (folder / DATASET_JSON).is_file():
        return folder
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    tar, index_text = _template_shard(folder, with_label_ids)
    n_shards = -(-samples // SHARD_SAMPLES)
    if samples % SHARD_SAMPLES:
        raise ValueError(f"--samples must be a multiple of {SHARD_SAMPLES}")
    size = (folder / tar).stat().st_size
    shards = []
    head = json.dumps(tar)
    for s in range(n_shards):
        name, idx = shard_name(s), index_name(s)
        if s:
            os.link(folder / tar, folder / name)
            (folder / idx).write_text(index_text.replace(head, json.dumps(name), 1))
        shards.append({"name": name, "index": idx, "num_samples": SHARD_SAMPLES, "bytes": size})
    desc = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION if with_label_ids else 1, "num_samples": samples,
            "labels": [f"c{c}" for c in range(NUM_CLASSES)], "multi_label": True, "shards": shards,
            "counts": {"sources": samples, "written": samples, "unreadable": 0, "missing": 0, "samples": samples, "skipped_windows": 0},
            "settings": {"sample_rate": 16000}, "versions": {}, "extra": {}}
    if not with_label_ids:
        desc.update({"unreadable": [], "missing": [], "skipped_windows": []})
    (folder / DATASET_JSON).write_text(json.dumps(desc))
    return folder


def bench_startup(work: Path, sizes: list[int]) -> list[dict]:
    out = []
    for n in sizes:
        folder = make_startup_folder(work / f"startup_{n}", n)
        res = timed_child([sys.executable, "-c", _STARTUP_CHILD, str(folder)], _env())
        got = json.loads(res["stdout"].strip().splitlines()[-1])
        out.append({"samples": n, "path": "shard indexes (format 2)", "startup_s": round(got["startup_s"], 2),
                    "child_wall_s": round(res["wall_s"], 2), "peak_rss_mib": round(res["peak_rss_mib"], 1),
                    "index_bytes": sum(p.stat().st_size for p in folder.glob("*.index.json"))})
        print(f"  {n} samples: start-up {got['startup_s']:.2f} s, peak RSS {res['peak_rss_mib']:.0f} MiB", flush=True)
    n = min(sizes)
    folder = make_startup_folder(work / f"startup_{n}_v1", n, with_label_ids=False)
    res = timed_child([sys.executable, "-c", _STARTUP_CHILD, str(folder)], _env())
    got = json.loads(res["stdout"].strip().splitlines()[-1])
    out.append({"samples": n, "path": "every sample's JSON (format-1 folder)", "startup_s": round(got["startup_s"], 2),
                "child_wall_s": round(res["wall_s"], 2), "peak_rss_mib": round(res["peak_rss_mib"], 1)})
    print(f"  {n} samples, format 1: start-up {got['startup_s']:.2f} s, peak RSS {res['peak_rss_mib']:.0f} MiB", flush=True)
    return out


# ---------------------------------------------------------------------------- report


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=UNBALANCED_ROWS, help="rows of the big segment list")
    ap.add_argument("--found", type=float, default=0.8, help="share of the rows with a media file")
    ap.add_argument("--samples", type=int, nargs="+", default=[200_000, 2_000_000], help="start-up folder sizes")
    ap.add_argument("--workdir", type=Path, default=None, help="keep the generated files here (default: a temporary folder)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--skip-dry-run", action="store_true")
    ap.add_argument("--skip-startup", action="store_true")
    ap.add_argument("--baseline-src", type=Path, default=None, help="src folder of an older zorro to run side by side")
    args = ap.parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="zorro_bench_annotations_"))
    results: dict = {"machine": _machine(), "date": time.strftime("%Y-%m-%d")}
    try:
        if not args.skip_dry_run:
            print(f"== dry run: {args.rows} rows, {args.found:.0%} of the clips downloaded", flush=True)
            d = bench_dry_run(work / "dry_run", args.rows, args.found)
            results["dry_run"] = d
            g = d["goals"]
            print(f"  zorro prepare audioset --dry-run: {d['wall_s']:.1f} s wall (goal <= {g['wall_s']:.0f}), {d['cpu_s']:.1f} s CPU, "
                  f"peak RSS {d['peak_rss_mib']:.0f} MiB (goal <= {g['peak_rss_mib']:.0f}); found {d['found']}, missing {d['missing']}")
            print(f"  dataset.json {d['dataset_json_bytes']} bytes, {d['dataset_json_bytes_without_labels']} without the labels "
                  f"(goal <= {g['dataset_json_bytes_without_labels']}); missing.jsonl {d['missing_jsonl_bytes'] / 1e6:.1f} MB")
            pre = bench_before_decoding(work / "dry_run", args.rows, args.found)
            results["before_decoding"] = pre
            print(f"  a real prepare up to its first decode (found clips kept, fingerprint): {pre['wall_s']:.1f} s wall, "
                  f"{pre['cpu_s']:.1f} s CPU, peak RSS {pre['peak_rss_mib']:.0f} MiB ({pre['found']} clips, table "
                  f"~{pre['source_table_mib']:.0f} MiB)")
            if args.baseline_src:
                b = bench_baseline(work / "dry_run", args.rows, args.found, args.baseline_src)
                results["baseline"] = b
                print(f"  baseline ({b['src']}): {b['wall_s']:.1f} s wall, {b['cpu_s']:.1f} s CPU, peak RSS {b['peak_rss_mib']:.0f} MiB, "
                      f"its dataset.json's missing list {b['missing_list_bytes'] / 1e6:.0f} MB; "
                      f"ratios baseline / this: wall {b['wall_s'] / d['wall_s']:.1f}x, CPU {b['cpu_s'] / d['cpu_s']:.1f}x, "
                      f"peak RSS {b['peak_rss_mib'] / d['peak_rss_mib']:.1f}x")
        if not args.skip_startup:
            print(f"== shard start-up: {args.samples} samples", flush=True)
            s = bench_startup(work / "startup", args.samples)
            results["startup"] = s
            new = [r for r in s if r["path"].startswith("shard")]
            if len(new) > 1:
                a, b = new[0], new[-1]
                print(f"  time ratio {b['samples']} / {a['samples']} samples: {b['startup_s'] / a['startup_s']:.1f} "
                      f"(samples ratio {b['samples'] / a['samples']:.0f}); goal at 2M: <= 10 s and <= 2048 MiB")
            old = [r for r in s if not r["path"].startswith("shard")]
            if old:
                ref = next(r for r in new if r["samples"] == old[0]["samples"])
                print(f"  at {old[0]['samples']} samples, format 1 / format 2 start-up time: {old[0]['startup_s'] / ref['startup_s']:.1f}x")
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
