"""Clip decoding throughput: zorro.data.read_clip vs a naive baseline.

Clips/s/core is measured as clips per CPU-second of the benchmark process.

Workload (issue 5): one clip = 8 frames at 224x224 + 10 s of 16 kHz mono audio from a 10 s
h264+AAC mp4, for a 1280x720 file and a 224p file. Everything runs single-threaded
(``threads=1``; torchcodec ``num_ffmpeg_threads=1``), so clips/s is clips/s per core.

Naive baseline: decode every frame, convert each to a full-resolution RGB array, pick the 8
evenly spaced frames, resize (torch bilinear, antialiased) + centre-crop, and decode + resample
all the audio.

Pipelines are run interleaved (one clip of each per round, ``--repeats`` rounds after a
warm-up round) and each figure is the median over rounds, so a load change on a shared machine
hits every pipeline alike. Also printed: the decode cost per frame and how many frames exact
alignment must decode (frames from each run's keyframe up to its last target), i.e. the floor
of any exact decoder on the file.

Usage: ``python benchmarks/bench_decode.py [--seconds 10] [--repeats 5] [--gop 50] [--workdir DIR]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from zorro.data import available_backends, read_clip
from zorro.data.decode import MediaReader


def make_file(path: Path, width: int, height: int, seconds: float, fps: int = 25, gop: int = 50) -> Path:
    """A textured, moving h264 (x264 veryfast: up to 3 B-frames, b-pyramid, CRF 23; keyframe
    at most every ``gop`` frames, scene cuts may add some) + AAC 48 kHz stereo mp4."""
    out = av.open(str(path), "w")
    vs = out.add_stream("libx264", rate=fps)
    vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
    vs.options = {"preset": "veryfast", "g": str(gop), "crf": "23"}
    aus = out.add_stream("aac", rate=48000, layout="stereo")
    rng = np.random.default_rng(0)
    # camera-like content: a large smooth texture (upsampled noise) panning, plus motion
    low = rng.integers(0, 256, (height // 8 + 2, width // 8 + 2, 3)).astype(np.float32)
    tex = np.kron(low, np.ones((16, 16, 1), dtype=np.float32))
    tex = (tex + np.roll(tex, 8, 0) + np.roll(tex, 8, 1) + np.roll(tex, (8, 8), (0, 1))) / 4
    tex = tex.astype(np.uint8)
    yy, xx = np.mgrid[0:height, 0:width]
    for i in range(int(seconds * fps)):
        dx, dy = (i * 3) % width, (i * 2) % height
        img = tex[dy : dy + height, dx : dx + width].copy()
        img[..., 1] = (128 + 100 * np.sin((xx + 5 * i) / 40.0) * np.cos(yy / 30.0)).astype(np.uint8)
        f = av.VideoFrame.from_ndarray(img, format="rgb24")
        f.pts = i
        f.time_base = Fraction(1, fps)
        for p in vs.encode(f):
            out.mux(p)
    for p in vs.encode(None):
        out.mux(p)
    n = int(seconds * 48000)
    t = np.arange(n) / 48000.0
    sig = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(n)).astype(np.float32)
    for off in range(0, n, 1024):
        chunk = np.stack([sig[off : off + 1024]] * 2)
        f = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
        f.sample_rate, f.pts, f.time_base = 48000, off, Fraction(1, 48000)
        for p in aus.encode(f):
            out.mux(p)
    for p in aus.encode(None):
        out.mux(p)
    out.close()
    return path


def naive_clip(path: Path, seconds: float, num_frames: int = 8, size: int = 224, sr: int = 16000):
    """Decode every frame to full-resolution RGB, pick ``num_frames``, resize; all audio."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        v.codec_context.thread_count = 1
        frames = [(f.time, f.to_ndarray(format="rgb24")) for f in c.decode(v)]
    times = np.array([t for t, _ in frames])
    targets = (np.arange(num_frames) + 0.5) * seconds / num_frames
    picks = [int(np.searchsorted(times, t, side="right") - 1) for t in targets]
    x = torch.from_numpy(np.stack([frames[max(i, 0)][1] for i in picks])).permute(0, 3, 1, 2).float()
    h, w = x.shape[-2:]
    s = size / min(h, w)
    x = torch.nn.functional.interpolate(x, size=(round(h * s), round(w * s)), mode="bilinear", antialias=True)
    y0, x0 = (x.shape[-2] - size) // 2, (x.shape[-1] - size) // 2
    video = x[..., y0 : y0 + size, x0 : x0 + size].div(255).permute(1, 0, 2, 3)
    with av.open(str(path)) as c:
        a = c.streams.audio[0]
        res = av.AudioResampler(format="flt", layout="mono", rate=sr)
        chunks = []
        for f in c.decode(a):
            chunks += [r.to_ndarray().reshape(-1) for r in res.resample(f)]
        chunks += [r.to_ndarray().reshape(-1) for r in res.resample(None)]
    audio = torch.from_numpy(np.concatenate(chunks)[: int(seconds * sr)])
    return audio, video


def exact_floor(path: Path, seconds: float, num_frames: int = 8) -> tuple[float, int, int]:
    """(ms per decoded frame, frames exact alignment must decode, frames in the file).

    Frames that must be decoded: for each run of targets sharing a keyframe (as zorro plans
    them), every frame from that keyframe to the frame shown at the run's last target
    (non-reference B-frames included: they are few on this content)."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        v.codec_context.thread_count = 1
        keys, pts = [], []
        for p in c.demux(v):
            if p.pts is None or not p.size:
                continue
            pts.append(float(p.pts * v.time_base))
            if p.is_keyframe:
                keys.append(pts[-1])
        c.seek(0)
        t0 = time.process_time()
        n_all = sum(1 for _ in c.decode(v))
        ms = (time.process_time() - t0) * 1000 / max(n_all, 1)
    pts_a, keys_a = np.sort(pts), np.sort(keys)
    targets = (np.arange(num_frames) + 0.5) * seconds / num_frames
    need = set()
    run_key = None
    for i, t in enumerate(targets):
        k = keys_a[np.searchsorted(keys_a, t, side="right") - 1]
        if run_key is None or k > targets[i - 1]:
            run_key = k
        need.update(np.nonzero((pts_a >= run_key) & (pts_a <= t))[0].tolist())
    return ms, len(need), n_all


def measure(pipelines: dict, repeats: int) -> dict:
    """Clips per CPU-second of this process for each pipeline (= clips/s per core: everything
    is single-threaded; CPU time rather than wall time keeps the number meaningful on a shared
    machine). Rounds are interleaved; the median round counts."""
    times: dict[str, list[float]] = {k: [] for k in pipelines}
    for rnd in range(repeats + 1):
        for name, fn in pipelines.items():
            t0 = time.process_time()
            fn()
            if rnd:  # round 0 warms up (page cache, codec init)
                times[name].append(time.process_time() - t0)
    return {k: 1.0 / float(np.median(v)) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--gop", type=int, default=50, help="max keyframe interval (frames at 25 fps)")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="zorro_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    files = {"720p": (1280, 720), "224p": (398, 224)}
    rows = []
    floors = []
    for name, (w, h) in files.items():
        path = work / f"bench_{name}_g{args.gop}.mp4"
        if not path.exists():
            make_file(path, w, h, args.seconds, gop=args.gop)
        kw = dict(start=0.0, duration=args.seconds, num_frames=8, image_size=224, sample_rate=16000, threads=1)
        clip = read_clip(path, **kw)
        assert clip.video.shape == (3, 8, 224, 224) and clip.audio.shape == (int(args.seconds * 16000),)
        pipes = {"naive (PyAV, all frames to RGB)": lambda: naive_clip(path, args.seconds)}
        for backend in available_backends():
            pipes[f"zorro exact [{backend}]"] = lambda b=backend: read_clip(path, backend=b, **kw)
        pipes["  video only [pyav]"] = lambda: read_clip(path, audio=False, **kw)
        pipes["  audio only [pyav]"] = lambda: read_clip(path, video=False, **kw)
        pipes["opt-in fast_decode=True [pyav]"] = lambda: read_clip(path, fast_decode=True, **kw)
        pipes["opt-in seek_mode='keyframe' [pyav]"] = lambda: read_clip(path, seek_mode="keyframe", **kw)
        res = measure(pipes, args.repeats)
        naive = res["naive (PyAV, all frames to RGB)"]
        rows += [(name, what, r, r / naive) for what, r in res.items()]
        floors.append((name, *exact_floor(path, args.seconds)))
    print(f"x264 veryfast, keyframe interval <= {args.gop} frames (25 fps), {args.repeats} interleaved rounds, medians")
    print(f"{'file':6} {'pipeline':38} {'clips/s/core':>12} {'vs naive':>9}")
    for name, what, r, rel in rows:
        print(f"{name:6} {what:38} {r:12.2f} {rel:8.2f}x")
    for name, ms, need, n_all in floors:
        print(
            f"{name}: {ms:.2f} ms per decoded frame (1 thread); exact alignment decodes {need} of {n_all} "
            f"frames -> video floor {ms * need:.0f} ms/clip = {1000 / (ms * need):.1f} clips/s/core before audio"
        )


if __name__ == "__main__":
    main()
