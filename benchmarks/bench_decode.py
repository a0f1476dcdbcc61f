"""Clip decoding throughput: zorro.data.read_clip vs a naive baseline.

Clips/s/core is measured as clips per CPU-second of the benchmark process.

Workload (issue 5): one clip = 8 frames at 224x224 + 10 s of 16 kHz mono audio from a 10 s
h264+AAC mp4, for a 1280x720 file and a 224p file. Everything runs single-threaded
(``threads=1``; torchcodec ``num_ffmpeg_threads=1``), so clips/s is clips/s per core.

Naive baseline: decode every frame, convert each to a full-resolution RGB array, pick the 8
evenly spaced frames, resize (torch bilinear, antialiased) + centre-crop, and decode + resample
all the audio.

Usage: ``python benchmarks/bench_decode.py [--seconds 10] [--repeats 5] [--workdir DIR]``
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
    """A textured, moving h264 (x264 veryfast, keyframe every ``gop`` frames) + AAC 48 kHz
    stereo mp4."""
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


def rate(fn, repeats: int) -> float:
    """Clips per CPU-second of this process (= clips/s per core: everything is single-threaded;
    CPU time rather than wall time keeps the number meaningful on a shared machine)."""
    fn()  # warm-up (page cache, codec init)
    t0 = time.process_time()
    for _ in range(repeats):
        fn()
    return repeats / (time.process_time() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="zorro_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    files = {"720p": (work / "bench_720p.mp4", 1280, 720), "224p": (work / "bench_224p.mp4", 398, 224)}
    rows = []
    for name, (path, w, h) in files.items():
        if not path.exists():
            make_file(path, w, h, args.seconds)
        kw = dict(start=0.0, duration=args.seconds, num_frames=8, image_size=224, sample_rate=16000, threads=1)
        clip = read_clip(path, **kw)
        assert clip.video.shape == (3, 8, 224, 224) and clip.audio.shape == (int(args.seconds * 16000),)
        naive = rate(lambda: naive_clip(path, args.seconds), args.repeats)
        rows.append((name, "naive (PyAV, all frames to RGB)", naive, 1.0))
        for backend in available_backends():
            r = rate(lambda: read_clip(path, backend=backend, **kw), args.repeats)
            rows.append((name, f"zorro read_clip [{backend}]", r, r / naive))
            # audio and video separately, to see where the time goes
            rv = rate(lambda: read_clip(path, backend=backend, audio=False, **kw), args.repeats)
            rows.append((name, f"  video only [{backend}]", rv, rv / naive))
            ra = rate(lambda: read_clip(path, backend=backend, video=False, **kw), args.repeats)
            rows.append((name, f"  audio only [{backend}]", ra, ra / naive))
    print(f"{'file':6} {'pipeline':38} {'clips/s/core':>12} {'vs naive':>9}")
    for name, what, r, rel in rows:
        print(f"{name:6} {what:38} {r:12.2f} {rel:8.2f}x")


if __name__ == "__main__":
    main()
