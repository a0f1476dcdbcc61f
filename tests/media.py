"""Synthesize small test media with PyAV (no network, no external files).

Every video frame is a flat grey whose level encodes the frame's presentation time, with a
saturated red strip on the left quarter of the picture (to test crops and flips):

* green/blue channels: ``level(t) = 16 + 200 * t / LEVEL_SPAN`` (``t`` in seconds, clipped),
* red channel: 255 on the left quarter, ``level(t)`` elsewhere.

Audio is a sine tone (default 440 Hz, amplitude 0.5) on every channel, optionally only
inside a "burst" interval (silence elsewhere), so tests can check time alignment.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Sequence

import av
import numpy as np

LEVEL_SPAN = 4.0  # seconds mapped onto the grey ramp


def level_at(t: float) -> float:
    """Grey level (0..255) that `make_media` paints on a frame presented at time ``t`` (s)."""
    return float(np.clip(16.0 + 200.0 * t / LEVEL_SPAN, 0.0, 255.0))


def _frame_image(t: float, width: int, height: int) -> np.ndarray:
    lvl = int(round(level_at(t)))
    img = np.full((height, width, 3), lvl, dtype=np.uint8)
    img[:, : max(1, width // 4), 0] = 255
    return img


def make_media(
    path: str | Path,
    *,
    container_format: str | None = None,
    video_codec: str | None = "libx264",
    audio_codec: str | None = "aac",
    width: int = 64,
    height: int = 48,
    fps: int = 25,
    frame_times: Sequence[float] | None = None,
    duration: float = 2.0,
    video_start: float = 0.0,
    audio_start: float = 0.0,
    sample_rate: int = 22050,
    layout: str = "stereo",
    tone_hz: float = 440.0,
    burst: tuple[float, float] | None = None,
    pix_fmt: str = "yuv420p",
    x264_preset: str = "ultrafast",
) -> Path:
    """Write a synthetic media file and return its path.

    ``frame_times`` (seconds, increasing) gives a variable frame rate; otherwise frames are at
    ``video_start + i / fps`` for ``duration`` seconds. Audio covers
    ``[audio_start, audio_start + duration)``. ``video_codec``/``audio_codec`` set to None
    omit that stream.
    """
    path = Path(path)
    out = av.open(str(path), mode="w", format=container_format)
    vstream = astream = None
    if video_codec is not None:
        if frame_times is not None:
            vstream = out.add_stream(video_codec, rate=fps)
            vstream.time_base = Fraction(1, 1000)
            vstream.codec_context.time_base = Fraction(1, 1000)
        else:
            vstream = out.add_stream(video_codec, rate=fps)
        vstream.width = width
        vstream.height = height
        vstream.pix_fmt = pix_fmt
        if video_codec == "libx264":
            vstream.options = {"preset": x264_preset, "g": "12"}
        elif video_codec == "libvpx-vp9":
            vstream.options = {"deadline": "realtime", "cpu-used": "8", "g": "12"}
        else:
            vstream.options = {"g": "12"}
    if audio_codec is not None:
        astream = out.add_stream(audio_codec, rate=sample_rate, layout=layout)

    if vstream is not None:
        if frame_times is None:
            n = int(round(duration * fps))
            times = [video_start + i / fps for i in range(n)]
        else:
            times = list(frame_times)
        for i, t in enumerate(times):
            frame = av.VideoFrame.from_ndarray(_frame_image(t, width, height), format="rgb24")
            frame = frame.reformat(format=pix_fmt)
            if frame_times is None:
                frame.pts = int(round(t * fps))
                frame.time_base = Fraction(1, fps)
            else:
                frame.pts = int(round(t * 1000))
                frame.time_base = Fraction(1, 1000)
            for packet in vstream.encode(frame):
                out.mux(packet)
        for packet in vstream.encode(None):
            out.mux(packet)

    if astream is not None:
        channels = av.AudioLayout(layout).nb_channels
        total = int(round(duration * sample_rate))
        first = int(round(audio_start * sample_rate))
        chunk = 1024
        for off in range(0, total, chunk):
            n = min(chunk, total - off)
            t = (first + off + np.arange(n)) / sample_rate
            sig = 0.5 * np.sin(2 * np.pi * tone_hz * t)
            if burst is not None:
                sig = np.where((t >= burst[0]) & (t < burst[1]), sig, 0.0)
            data = np.repeat(sig[None, :], channels, axis=0).astype(np.float32)
            frame = av.AudioFrame.from_ndarray(data, format="fltp", layout=layout)
            frame.sample_rate = sample_rate
            frame.pts = first + off
            frame.time_base = Fraction(1, sample_rate)
            for packet in astream.encode(frame):
                out.mux(packet)
        for packet in astream.encode(None):
            out.mux(packet)
    out.close()
    return path


def corrupt_first_packet(src: str | Path, dst: str | Path, *, kind: str = "audio") -> Path:
    """Copy ``src`` to ``dst`` with the payload of the first ``kind`` packet overwritten by
    pseudo-random bytes (the container's index stays intact)."""
    src, dst = Path(src), Path(dst)
    data = bytearray(src.read_bytes())
    with av.open(str(src)) as c:
        stream = c.streams.audio[0] if kind == "audio" else c.streams.video[0]
        for packet in c.demux(stream):
            if packet.size:
                payload = bytes(packet)
                break
        else:
            raise RuntimeError("no packet found")
    pos, size = data.find(payload), len(payload)
    if pos < 0:
        raise RuntimeError("packet payload not found verbatim in the file")
    rng = np.random.default_rng(0)
    data[pos : pos + size] = rng.integers(0, 256, size=size, dtype=np.uint8).tobytes()
    dst.write_bytes(bytes(data))
    return dst


def truncate(src: str | Path, dst: str | Path, fraction: float) -> Path:
    """Copy the first ``fraction`` of the bytes of ``src`` to ``dst``."""
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[: int(len(data) * fraction)])
    return Path(dst)


def build_suite(folder: str | Path) -> dict[str, Path]:
    """Write the standard set of test media into ``folder``; returns name -> path.

    Names: ``mp4`` (h264+aac, 22.05 kHz stereo, 2 s, tone burst at [1.0, 1.2) s), ``webm``
    (vp9+opus, burst), ``mkv6`` (h264 + 6-channel 48 kHz aac tone), ``late`` (audio starts at
    0.5 s), ``vfr`` (variable frame rate, see ``VFR_TIMES``), ``avi`` (mpeg4+pcm), ``mpg``
    (MPEG-PS, container start time > 0), ``noaudio``, ``novideo``, ``alias`` (48 kHz pcm
    12 kHz tone), ``tone`` (h264+aac continuous tone), ``corrupt_audio`` (``tone`` with its
    first audio packet garbled), ``truncated_mp4``, ``truncated_webm``, ``garbage``,
    ``empty``, ``missing`` (not created).
    """
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    out["mp4"] = make_media(d / "av.mp4", burst=(1.0, 1.2))
    out["webm"] = make_media(d / "av.webm", video_codec="libvpx-vp9", audio_codec="libopus", sample_rate=48000, burst=(1.0, 1.2))
    out["mkv6"] = make_media(d / "six.mkv", layout="5.1", sample_rate=48000)
    out["late"] = make_media(d / "late.mp4", audio_start=0.5, burst=(1.0, 1.2))
    out["vfr"] = make_media(d / "vfr.mkv", frame_times=VFR_TIMES, duration=1.6)
    out["avi"] = make_media(d / "av.avi", video_codec="mpeg4", audio_codec="pcm_s16le", burst=(1.0, 1.2))
    out["mpg"] = make_media(d / "av.mpg", container_format="mpeg", video_codec="mpeg2video", audio_codec="mp2", sample_rate=44100)
    out["noaudio"] = make_media(d / "noaudio.mp4", audio_codec=None)
    out["novideo"] = make_media(d / "novideo.mka", container_format="matroska", video_codec=None)
    out["alias"] = make_media(d / "alias.mkv", video_codec=None, audio_codec="pcm_s16le", sample_rate=48000, layout="mono", tone_hz=12000.0)
    out["tone"] = make_media(d / "tone.mp4")
    out["bframes"] = make_media(d / "bframes.mp4", x264_preset="veryfast", duration=3.0)
    out["corrupt_audio"] = corrupt_first_packet(out["tone"], d / "corrupt_audio.mp4", kind="audio")
    out["truncated_mp4"] = truncate(out["tone"], d / "truncated.mp4", 0.5)
    out["truncated_webm"] = truncate(out["webm"], d / "truncated.webm", 0.5)
    out["garbage"] = d / "garbage.mp4"
    out["garbage"].write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    out["empty"] = d / "empty.mp4"
    out["empty"].write_bytes(b"")
    out["missing"] = d / "missing.mp4"
    return out


VFR_TIMES = (0.0, 0.03, 0.1, 0.5, 0.52, 0.9, 1.4, 1.5)
