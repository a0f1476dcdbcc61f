"""Prepare throughput (``zorro prepare``): clips/s per core and bytes stored per clip.

Workload: one clip = a 10 s window of a 10 s h264+AAC mp4 (made here with
``bench_decode.make_file``: textured, moving picture; 440 Hz tone + noise at -16 dB under it),
stored as 8 frames (short side 256, JPEG quality 90) + 10 s of 16 kHz mono audio; sources at
224p (398x224) and 720p (1280x720).

Measured, in one run so a shared machine's load hits every figure alike:

1. End to end: :func:`zorro.data.prepare.prepare_shards` with a pool of ``--workers``
   processes. clips/s per core = clips / CPU-seconds (the main process plus its workers,
   from ``getrusage``), i.e. what one core sustains; also wall clips/s.
2. Per clip stage costs (single thread, median of ``--repeats``): decoding
   (``MediaReader.read`` at the stored size, the part every prepare pays) beside the same
   clip decoded at 224x224 as training without shards does (interleaved), frames to JPEG
   (antialiased resize + encode), audio encoding (WAV and FLAC).
3. Bytes stored per clip: frames (sum of the 8 JPEGs) and audio (WAV, FLAC), from the index.
4. Audio member codec: WAV vs FLAC bytes, encode and decode time per clip.
5. JPEG codec: Pillow vs simplejpeg vs PyTurboJPEG (whichever are installed), encode and
   decode time of one stored frame and its size.

Usage: ``python benchmarks/bench_prepare.py [--clips 16] [--workers 2] [--repeats 5] [--json FILE]``
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_decode import make_file  # noqa: E402

from zorro.data import MediaReader  # noqa: E402
from zorro.data.prepare import PrepareSettings, PrepareSource, _frames_to_jpeg, _source_box, _stored_size, prepare_shards  # noqa: E402
from zorro.data.shards.format import decode_audio, encode_audio, is_frame_suffix, read_index  # noqa: E402


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def end_to_end(path: Path, out: Path, clips: int, workers: int, settings: PrepareSettings) -> dict:
    srcs = [PrepareSource(str(path), ("x",)) for _ in range(clips)]
    cpu0, t0 = _cpu_seconds(), time.perf_counter()
    desc = prepare_shards(srcs, out, labels=["x"], settings=settings, workers=workers)
    wall, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
    frames = audio = 0
    for sh in desc["shards"]:
        for smp in read_index(out / sh["index"])["samples"]:
            for suf, (_, size) in smp["members"].items():
                if is_frame_suffix(suf):
                    frames += size
                elif suf in ("wav", "flac"):
                    audio += size
    n = desc["num_samples"]
    return {
        "clips": n,
        "wall_s": wall,
        "cpu_s": cpu,
        "clips_per_s_wall": n / wall,
        "clips_per_s_per_core": n / cpu,
        "frame_bytes_per_clip": frames / n,
        "audio_bytes_per_clip": audio / n,
        "tar_bytes_per_clip": sum(s["bytes"] for s in desc["shards"]) / n,
    }


def stages(path: Path, s: PrepareSettings, repeats: int) -> dict:
    with MediaReader(path, threads=1) as r:
        info = r.info
        box = _source_box(info.width, info.height)
        out_w, out_h = _stored_size(box.w, box.h, s.store_size)

        def decode():
            return r.read(start=0.0, duration=s.duration, num_frames=s.num_frames, image_size=max(out_w, out_h), sample_rate=s.sample_rate, crop=box)

        def on_the_fly():  # what training without shards decodes per clip (224x224 centre crop)
            return r.read(start=0.0, duration=s.duration, num_frames=s.num_frames, image_size=s.image_size, sample_rate=s.sample_rate)

        clip = decode()
        on_the_fly()
        t_decode, t_fly = [], []
        for _ in range(repeats):  # interleaved
            t_decode.append(_median_time(decode, 1))
            t_fly.append(_median_time(on_the_fly, 1))
        t_decode, t_fly = statistics.median(t_decode), statistics.median(t_fly)
    t_jpeg = _median_time(lambda: _frames_to_jpeg(clip.video, out_w, out_h, s.jpeg_quality), repeats)
    wave = clip.audio.numpy()
    res = {"decode_ms": 1e3 * t_decode, "read_clip_224_ms": 1e3 * t_fly, "frames_to_jpeg_ms": 1e3 * t_jpeg, "stored_frame": f"{out_w}x{out_h}"}
    for fmt in ("wav", "flac"):
        data = encode_audio(wave, s.sample_rate, fmt)
        res[f"audio_{fmt}_encode_ms"] = 1e3 * _median_time(lambda: encode_audio(wave, s.sample_rate, fmt), repeats)
        res[f"audio_{fmt}_decode_ms"] = 1e3 * _median_time(lambda: decode_audio(data, fmt), max(repeats, 20))
        res[f"audio_{fmt}_bytes"] = len(data)
    res["frames_uint8"] = (clip.video * 255).round().byte().permute(1, 2, 3, 0).numpy()
    return res


def jpeg_codecs(frames: np.ndarray, out_w: int, out_h: int, quality: int, repeats: int) -> dict:
    from PIL import Image

    frame = np.asarray(Image.fromarray(frames[0]).resize((out_w, out_h), Image.BILINEAR))
    res = {}

    def pil_enc():
        b = io.BytesIO()
        Image.fromarray(frame).save(b, format="JPEG", quality=quality, subsampling=2)
        return b.getvalue()

    def pil_dec(data):
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"))

    codecs = {"pillow": (pil_enc, pil_dec)}
    try:
        import simplejpeg

        codecs["simplejpeg"] = (
            lambda: simplejpeg.encode_jpeg(np.ascontiguousarray(frame), quality=quality, colorspace="RGB", colorsubsampling="420"),
            lambda data: simplejpeg.decode_jpeg(data, colorspace="RGB"),
        )
    except ImportError:
        pass
    try:
        import turbojpeg

        tj = turbojpeg.TurboJPEG()
        codecs["turbojpeg"] = (
            lambda: tj.encode(np.ascontiguousarray(frame), quality=quality, pixel_format=turbojpeg.TJPF_RGB, jpeg_subsample=turbojpeg.TJSAMP_420),
            lambda data: tj.decode(data, pixel_format=turbojpeg.TJPF_RGB),
        )
    except (ImportError, RuntimeError, OSError):
        pass
    # interleaved rounds: one call of every codec per round
    enc_t = {k: [] for k in codecs}
    dec_t = {k: [] for k in codecs}
    blobs = {k: enc() for k, (enc, _) in codecs.items()}
    for _ in range(max(repeats, 30)):
        for k, (enc, dec) in codecs.items():
            t0 = time.perf_counter()
            enc()
            t1 = time.perf_counter()
            dec(blobs[k])
            t2 = time.perf_counter()
            enc_t[k].append(t1 - t0)
            dec_t[k].append(t2 - t1)
    for k in codecs:
        res[k] = {"encode_ms": 1e3 * statistics.median(enc_t[k]), "decode_ms": 1e3 * statistics.median(dec_t[k]), "bytes": len(blobs[k])}
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=16, help="clips prepared per source kind (end to end)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()
    settings = PrepareSettings(duration=args.seconds, num_frames=8, image_size=224, store_size=256, samples_per_shard=1000, shard_bytes=None)
    results: dict = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "python": platform.python_version(),
        "settings": {"duration": args.seconds, "num_frames": 8, "store_size": 256, "jpeg_quality": 90, "sample_rate": 16000},
        "sources": {},
    }
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        d = Path(tmp)
        files = {"224p": make_file(d / "src224.mp4", 398, 224, args.seconds), "720p": make_file(d / "src720.mp4", 1280, 720, args.seconds)}
        for name, path in files.items():
            n = args.clips if name == "224p" else max(2, args.clips // 2)
            e2e = end_to_end(path, d / f"out_{name}", n, args.workers, settings)
            st = stages(path, settings, args.repeats)
            frames = st.pop("frames_uint8")
            results["sources"][name] = {"end_to_end": e2e, "stages": st}
            if name == "224p":
                w, h = (int(x) for x in st["stored_frame"].split("x"))
                results["jpeg_codecs"] = jpeg_codecs(frames, w, h, 90, args.repeats)
    print(f"prepare benchmark: {args.seconds:g} s windows, 8 frames (short side 256, JPEG q90), 16 kHz audio; {results['machine']}")
    print(f"{'source':7} {'clips/s/core':>12} {'wall clips/s':>12} {'decode ms':>10} {'read224 ms':>10} {'jpeg ms':>8} {'frames B':>9} {'wav B':>8} {'flac B':>8} {'tar B/clip':>10}")
    for name, r in results["sources"].items():
        e, s = r["end_to_end"], r["stages"]
        print(f"{name:7} {e['clips_per_s_per_core']:12.2f} {e['clips_per_s_wall']:12.2f} {s['decode_ms']:10.1f} {s['read_clip_224_ms']:10.1f} {s['frames_to_jpeg_ms']:8.1f} "
              f"{e['frame_bytes_per_clip']:9.0f} {s['audio_wav_bytes']:8d} {s['audio_flac_bytes']:8d} {e['tar_bytes_per_clip']:10.0f}")
    s = results["sources"]["224p"]["stages"]
    print(f"audio per clip: wav {s['audio_wav_bytes']} B, encode {s['audio_wav_encode_ms']:.2f} ms, decode {s['audio_wav_decode_ms']:.3f} ms; "
          f"flac {s['audio_flac_bytes']} B, encode {s['audio_flac_encode_ms']:.2f} ms, decode {s['audio_flac_decode_ms']:.3f} ms")
    for k, v in results["jpeg_codecs"].items():
        print(f"jpeg {k:10} encode {v['encode_ms']:.3f} ms  decode {v['decode_ms']:.3f} ms  {v['bytes']} B  ({s['stored_frame']}, q90)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
