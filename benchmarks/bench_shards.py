"""Reading prepared shards: clips/s per core against decoding the media on the fly, and the
training throughput of the demo model fed from shards against in-memory tensors.

Reading (one clip = 8 frames at 224x224 + 10 s of 16 kHz mono audio, training mode: random
clip offset, random-resized crop, flip, normalisation to the model's float input):

* the media: 10 s h264+AAC mp4 files at 1280x720 and 398x224 (``bench_decode.make_file``);
* the shards: the 8 frames of each file (at the clip's frame times), stored as JPEG (quality
  90, 4:2:0) with the short side at ``--store`` pixels (256) and at the source's own 720
  pixels, plus the 10 s of audio as 16-bit WAV, written with ``zorro.data.shards.write_samples``
  (``--clips`` samples per set, so reads go through many members of a few shards);
* pipelines, all single-threaded: ``ShardDataset.__getitem__`` as shipped (simplejpeg decode
  of the frames the clip uses, crop + resize in uint8 with ``torch.nn.functional.interpolate``,
  then normalised to float32), the same handing uint8 frames to the trainer (normalised on the
  device), and candidates that change one step: the Pillow decoder, PyTurboJPEG (when it and
  libturbojpeg are installed), Pillow's uint8 ``resize(box=...)`` per frame, a float
  ``interpolate`` (antialiased) after the crop, and Pillow with draft-mode DCT scaling on
  frames stored at 720p; against ``ClipDataset.__getitem__`` (``read_clip``) on the mp4 files.

Clips/s/core is clips per CPU-second of this process (everything runs on one thread, so
this is per core, and a shared machine's load shifts it less than wall time). Pipelines run
interleaved (one batch of ``--clips`` clips each per round, ``--repeats`` rounds after a
warm-up round); each figure is the median round.

Training (``--train-steps``, 0 skips it): the demo's model (AV-digits settings: dim 128,
depth 2, 8 frames of 32x32, 1 s of audio, supervised) trained by ``zorro.train.Trainer``
from a shard folder of such clips (as ``data.train_shards`` reads it: training crops, uint8
frames normalised in the loop; DataLoader with 2 workers, and with none) and from the same
clips held as in-memory tensors (no workers). Runs of ``--train-steps`` timed steps (after
``--warmup``) alternate over ``--rounds`` rounds; medians of steps/s, CPU seconds per step
(this process) and the share of the timed wall time the loop spent waiting for a batch (a
DataLoader wrapper times each ``next``). The ratio shards / memory of steps/s is the figure
(goal >= 0.9); the waiting share says how much of any shortfall is the loader's.

Usage: ``python benchmarks/bench_shards.py [--clips 16] [--repeats 5] [--store 256]
[--train-steps 10] [--rounds 4] [--workdir DIR] [--json FILE]``
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_decode import make_file  # noqa: E402

from zorro.data import ClipDataset, ManifestEntry, ShardDataset  # noqa: E402
from zorro.data.shards import SampleData, write_samples  # noqa: E402

SECONDS = 10.0
FRAMES = 8
SIZE = 224
RATE = 16000


# ---------------------------------------------------------------------------- data


def stored_frames(path: Path, short_side: int) -> np.ndarray:
    """The 8 frames of the 10 s clip (at ``(i + 0.5) * 10 / 8`` s), short side resized to
    ``short_side`` (Pillow, antialiased): ``(8, H, W, 3)`` uint8."""
    from PIL import Image

    targets = (np.arange(FRAMES) + 0.5) * SECONDS / FRAMES
    frames: list[np.ndarray] = []
    with av.open(str(path)) as c:
        for f in c.decode(c.streams.video[0]):
            while len(frames) < FRAMES and f.time is not None and f.time + 1e-6 >= targets[len(frames)]:
                img = f.to_image()
                scale = short_side / min(img.size)
                img = img.resize((round(img.size[0] * scale), round(img.size[1] * scale)), Image.BILINEAR, reducing_gap=None)
                frames.append(np.asarray(img.convert("RGB")))
    while len(frames) < FRAMES:
        frames.append(frames[-1])
    return np.stack(frames)


def file_audio(path: Path) -> np.ndarray:
    """10 s of the file's audio, mono 16 kHz float32."""
    res = av.AudioResampler(format="flt", layout="mono", rate=RATE)
    parts = []
    with av.open(str(path)) as c:
        for f in c.decode(c.streams.audio[0]):
            parts += [r.to_ndarray().reshape(-1) for r in res.resample(f)]
    parts += [r.to_ndarray().reshape(-1) for r in res.resample(None)]
    wave = np.concatenate(parts)[: int(SECONDS * RATE)]
    return np.pad(wave, (0, int(SECONDS * RATE) - wave.shape[0])).astype(np.float32)


def make_shard_set(out: Path, source: Path, short_side: int, clips: int) -> Path:
    """A shard folder of ``clips`` samples holding the frames and audio of ``source``."""
    if (out / "dataset.json").exists():
        return out
    frames, audio = stored_frames(source, short_side), file_audio(source)
    samples = [SampleData(labels=("a",), audio=audio, frames=frames, start=0.0, end=SECONDS, path=str(source)) for _ in range(clips)]
    write_samples(out, samples, labels=["a"], samples_per_shard=max(1, clips // 4), sample_rate=RATE)
    return out


# ---------------------------------------------------------------------------- candidates


class FloatResize(ShardDataset):
    """Candidate: crop in uint8, then a float32 antialiased ``interpolate`` and normalise."""

    def _crop_resize(self, frames, box):
        _, h, w, _ = frames.shape
        x0, y0 = int(round(box.x)), int(round(box.y))
        x1, y1 = min(w, int(round(box.x + box.w))), min(h, int(round(box.y + box.h)))
        x = torch.from_numpy(frames[:, y0:y1, x0:x1]).permute(0, 3, 1, 2).float().div_(255.0)
        x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", antialias=True, align_corners=False)
        if box.flip:
            x = x.flip(-1)
        x = x.permute(1, 0, 2, 3)
        mean = torch.tensor(self.mean).view(3, 1, 1, 1)
        std = torch.tensor(self.std).view(3, 1, 1, 1)
        return (x - mean) / std


class PillowBoxResize(ShardDataset):
    """Candidate: Pillow decode and Pillow's uint8 ``resize(box=...)`` per frame."""

    def _crop_resize(self, frames, box):
        from PIL import Image

        s = self.image_size
        rect = (box.x, box.y, box.x + box.w, box.y + box.h)
        out = np.stack([np.asarray(Image.fromarray(f).resize((s, s), Image.BILINEAR, box=rect)) for f in frames])
        x = torch.from_numpy(out).permute(3, 0, 1, 2)
        if box.flip:
            x = x.flip(-1)
        return x.float().mul_(self._norm_scale).add_(self._norm_offset)


class PillowDraft(ShardDataset):
    """Candidate: Pillow decodes each JPEG with draft-mode DCT scaling (1/2 .. 1/8, as far
    as the crop still has >= S pixels), then ``resize(box=...)`` in uint8."""

    def _frames(self, where, key, members, suffixes, offset, clip_len, stored_len, rng):
        from PIL import Image

        from zorro.data.transforms import random_resized_crop_box

        s = self.image_size
        with Image.open(io.BytesIO(members[suffixes[0]])) as im:
            w, h = im.size
        box = random_resized_crop_box(w, h, rng, scale=self.scale, ratio=self.ratio, hflip_prob=self.hflip_prob)
        n = self.num_frames or len(suffixes)
        picks = np.minimum((np.arange(n) * len(suffixes)) // n, len(suffixes) - 1)
        out = np.empty((n, s, s, 3), dtype=np.uint8)
        for i, j in enumerate(picks.tolist()):
            with Image.open(io.BytesIO(members[suffixes[j]])) as im:
                im.draft("RGB", (max(s, int(w * s / box.w)), max(s, int(h * s / box.h))))
                k = w / im.size[0]
                out[i] = np.asarray(im.convert("RGB").resize((s, s), Image.BILINEAR, box=(box.x / k, box.y / k, (box.x + box.w) / k, (box.y + box.h) / k)))
        x = torch.from_numpy(out).permute(3, 0, 1, 2)
        if box.flip:
            x = x.flip(-1)
        return x.float().mul_(self._norm_scale).add_(self._norm_offset)


def turbojpeg_decoder():
    """PyTurboJPEG as ``(size, decode_into)``, or None when the package or libturbojpeg is missing."""
    try:
        import turbojpeg

        tj = turbojpeg.TurboJPEG()
    except Exception:  # the package or the shared library is missing, or of the wrong version
        return None

    def size(data):
        w, h, _, _ = tj.decode_header(bytes(data))
        return h, w

    def decode_into(data, out):
        tj.decode(bytes(data), pixel_format=turbojpeg.TJPF_RGB, dst=out)

    return size, decode_into


class TurboJPEG(ShardDataset):
    """Candidate: PyTurboJPEG decode (into the frame buffer), then the shipped crop and resize."""

    def _jpeg_functions(self):
        return turbojpeg_decoder()


# ---------------------------------------------------------------------------- reading


def measure(pipelines: dict, clips: int, repeats: int) -> dict[str, float]:
    """Clips per CPU-second of each pipeline; rounds interleaved, median round."""
    times: dict[str, list[float]] = {k: [] for k in pipelines}
    for rnd in range(repeats + 1):
        for name, (ds, count) in pipelines.items():
            ds.set_epoch(rnd)
            t0 = time.process_time()
            for i in range(count):
                item = ds[i % len(ds)]
                if not isinstance(item, dict):
                    raise RuntimeError(f"{name}: item {i} was skipped: {item}")
            if rnd:
                times[name].append((time.process_time() - t0) / count)
    return {k: 1.0 / float(np.median(v)) for k, v in times.items()}


def reading(work: Path, clips: int, repeats: int, store: int) -> list[tuple[str, float]]:
    files = {}
    for name, (w, h) in {"720p": (1280, 720), "224p": (398, 224)}.items():
        files[name] = work / f"bench_{name}_g50.mp4"
        if not files[name].exists():
            make_file(files[name], w, h, SECONDS, gop=50)
    small = make_shard_set(work / f"shards_{store}", files["720p"], store, clips)
    big = make_shard_set(work / "shards_720", files["720p"], 720, clips)
    kw = dict(train=True, duration=SECONDS, num_frames=FRAMES, image_size=SIZE, sample_rate=RATE)
    pipes: dict[str, tuple] = {
        f"shards {store}p: ShardDataset, float32 out (shipped)": (ShardDataset(small, **kw), clips),
        f"shards {store}p: ShardDataset, uint8 out (normalise on device)": (ShardDataset(small, video_dtype="uint8", **kw), clips),
        f"shards {store}p: Pillow decoder, uint8 interpolate": (ShardDataset(small, jpeg_decoder="pillow", **kw), clips),
    }
    if turbojpeg_decoder() is not None:
        pipes[f"shards {store}p: PyTurboJPEG decoder, uint8 interpolate"] = (TurboJPEG(small, **kw), clips)
    pipes[f"shards {store}p: simplejpeg, Pillow resize(box) per frame"] = (PillowBoxResize(small, **kw), clips)
    pipes[f"shards {store}p: simplejpeg, float interpolate"] = (FloatResize(small, **kw), max(2, clips // 4))
    pipes["shards 720p: Pillow draft (DCT scaling) + resize(box)"] = (PillowDraft(big, **kw), max(2, clips // 4))
    pipes["shards 720p: ShardDataset, float32 out"] = (ShardDataset(big, **kw), max(2, clips // 4))
    for name, path in files.items():
        entry = ManifestEntry(str(path), ("a",))
        pipes[f"on the fly: ClipDataset from {name} mp4"] = (ClipDataset([entry], **kw), 1)
    res = measure(pipes, clips, repeats)
    return list(res.items())


# ---------------------------------------------------------------------------- training


class InMemory(torch.utils.data.Dataset):
    """The items of ``source`` decoded once and held as tensors."""

    def __init__(self, source):
        self.items = [source[i] for i in range(len(source))]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def _cpu_seconds() -> float:
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


class _TimedLoader(torch.utils.data.DataLoader):
    """A DataLoader that adds the seconds the consumer waits for each batch to ``waits``."""

    waits: list[float] = []

    def __iter__(self):
        it = super().__iter__()
        while True:
            t0 = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                return
            _TimedLoader.waits.append(time.perf_counter() - t0)
            yield batch


def training(work: Path, steps: int, warmup: int, rounds: int) -> dict[str, dict[str, float]]:
    """Steps/s (wall), CPU-s/step (this process) and the share of the timed steps spent
    waiting for batches, for the demo model trained from shards (workers 2 and 0) and from
    in-memory tensors; runs alternate over ``rounds`` rounds, medians."""
    import zorro.train.loop as loop
    from zorro.recipes.avdigits_demo import DEMO_SETTINGS
    from zorro.train import Trainer, TrainConfig

    folder = work / "demo_shards"
    if not (folder / "dataset.json").exists():
        rng = np.random.default_rng(0)
        samples = []
        for k in range(512):
            frames = rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
            samples.append(SampleData(labels=(str(k % 10),), audio=(0.1 * rng.standard_normal(RATE)).astype(np.float32),
                                      frames=frames, start=0.0, end=1.0, path=f"clip{k}"))
        write_samples(folder, samples, labels=[str(c) for c in range(10)], samples_per_shard=128, sample_rate=RATE)
    geometry = dict(duration=1.0, num_frames=8, image_size=32, sample_rate=RATE)
    shards = ShardDataset(folder, train=True, video_dtype="uint8", **geometry)  # what data.train_shards builds
    memory = InMemory(ShardDataset(folder, train=False, **geometry))
    batch = DEMO_SETTINGS["finetune"]["data"]["batch_size"]
    variants = (("shards, 2 workers", shards, 2), ("in-memory tensors", memory, 0), ("shards, no workers", shards, 0))
    wall: dict[str, list[float]] = {name: [] for name, _, _ in variants}
    cpu: dict[str, list[float]] = {name: [] for name, _, _ in variants}
    wait: dict[str, list[float]] = {name: [] for name, _, _ in variants}
    loop.DataLoader = _TimedLoader
    try:
        for rnd in range(rounds):
            for name, ds, workers in variants:
                out = work / f"train_{rnd}_{name.replace(' ', '_').replace(',', '')}"
                cfg = TrainConfig(
                    task="supervised",
                    model={"arch": dict(DEMO_SETTINGS["model"]), "precision": DEMO_SETTINGS["precision"]},
                    data={"batch_size": batch, "num_workers": workers, **geometry},
                    optim={"epochs": 100, "max_steps": warmup + steps, "lr": 1e-3, "warmup_steps": 5},
                    run={"out_dir": str(out), "resume": False, "progress": False, "log_every": 1},
                )
                trainer = Trainer(cfg, ds, None, shards.vocab)
                marks: list[tuple[float, float, int]] = []
                orig = trainer._log

                def log(record, orig=orig, marks=marks):
                    marks.append((time.perf_counter(), _cpu_seconds(), len(_TimedLoader.waits)))
                    orig(record)

                trainer._log = log
                _TimedLoader.waits = []
                trainer.fit()
                (w0, c0, n0), (w1, c1, n1) = marks[warmup - 1], marks[warmup + steps - 1]
                wall[name].append(steps / (w1 - w0))
                cpu[name].append((c1 - c0) / steps)
                wait[name].append(sum(_TimedLoader.waits[n0:n1]) / (w1 - w0))
    finally:
        loop.DataLoader = torch.utils.data.DataLoader
    return {name: {"steps_per_s": float(np.median(wall[name])), "cpu_s_per_step": float(np.median(cpu[name])),
                   "data_wait_share": float(np.median(wait[name]))} for name in wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=16, help="clips per pipeline per round (and samples per shard set)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--store", type=int, default=256, help="stored short side (pixels)")
    ap.add_argument("--train-steps", type=int, default=10, help="timed training steps per run (0: skip the training part)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=4, help="alternating rounds of the training runs")
    ap.add_argument("--skip-reading", action="store_true")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="zorro_bench_shards_"))
    work.mkdir(parents=True, exist_ok=True)
    result: dict = {}
    if not args.skip_reading:
        rows = reading(work, args.clips, args.repeats, args.store)
        base = dict(rows)["on the fly: ClipDataset from 224p mp4"]
        print(f"reading 8 frames at {SIZE}x{SIZE} + 10 s audio, training crops; {args.repeats} interleaved rounds, medians; one thread")
        print(f"{'pipeline':62} {'clips/s/core':>12} {'vs 224p mp4':>12}")
        for name, r in rows:
            print(f"{name:62} {r:12.1f} {r / base:11.1f}x")
        result["reading"] = {name: r for name, r in rows}
    if args.train_steps > 0:
        torch.set_num_threads(2)
        rates = training(work, args.train_steps, args.warmup, args.rounds)
        base = rates["in-memory tensors"]
        print(f"training the demo model (supervised, batch 32, fp32, 2 threads): {args.train_steps} steps after {args.warmup}, "
              f"{args.rounds} alternating rounds, medians")
        print(f"{'fed from':22} {'steps/s':>8} {'vs memory':>10} {'CPU s/step':>11} {'waiting for data':>17}")
        for name, r in rates.items():
            cpu = "-" if "2 workers" in name else f"{r['cpu_s_per_step']:.3f}"
            print(f"{name:22} {r['steps_per_s']:8.2f} {r['steps_per_s'] / base['steps_per_s']:10.3f} {cpu:>11} "
                  f"{100 * r['data_wait_share']:16.1f}%")
        print("(CPU s/step counts this process only: the 2 workers' time is not visible while they run)")
        result["training"] = rates
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
