"""Decode time-aligned audio-video clips from media files (PyAV, optionally torchcodec).

Timeline: every time in this module is in seconds on the file's presentation timeline shifted
so that ``0`` is the container's start time (``container.start_time``, usually 0; MPEG-PS/TS
files often start later). A clip covers the half-open window ``[start, start + duration)``:

* audio: ``round(duration * sample_rate)`` mono float32 samples; sample ``k`` is the signal at
  ``start + k / sample_rate``. Channels are downmixed and the rate converted by FFmpeg's
  swresample (band-limited) through ``av.AudioResampler``. Parts of the window without
  decoded audio (before the stream starts, after it ends, skipped damaged packets) are zeros.
* video: ``num_frames`` frames shown at ``start + (i + 0.5) * duration / num_frames`` (the
  centres of ``num_frames`` equal sub-intervals of the window), i.e. for each such time the
  frame being displayed then (latest frame whose timestamp is <= the time). Works for any
  frame rate, variable included. Times outside the decoded frames repeat the nearest decoded
  frame and count as padding.

Damaged packets are skipped (counted in :attr:`Clip.skipped_packets`); a file that cannot be
opened, has neither an audio nor a video stream, or yields nothing decodable raises
:class:`DecodeError`.
"""

from __future__ import annotations

import collections
import itertools
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

import av
from av.video.reformatter import VideoReformatter

from zorro.data.transforms import CropBox, ScalePlan, center_crop_box, plan_scale, random_resized_crop_box

__all__ = [
    "DecodeError",
    "Clip",
    "MediaInfo",
    "MediaReader",
    "read_clip",
    "probe",
    "available_backends",
]

# Audio decoded this far before the window (s): AAC/Opus decoders need a frame or two to
# warm up after a seek, and the resampler's filter needs context.
_AUDIO_PREROLL = 0.25
# Extra audio decoded past the window (s) so the resampler's filter tail is real signal.
_AUDIO_POSTROLL = 0.05
# Most frames a decoder holds back for reordering (the h264/HEVC picture buffer): once this
# many + 1 consecutive packets (decode order) are presented after a time, no later packet is
# presented at or before it.
_MAX_REORDER_FRAMES = 16


class DecodeError(RuntimeError):
    """A media file could not be read at all. ``path`` names the file; the message says why."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot decode {self.path!r}: {reason}")


@dataclass
class Clip:
    """A decoded audio-video clip.

    Attributes:
        audio: ``(samples,)`` float32 mono waveform in [-1, 1] at ``sample_rate`` Hz,
            ``samples == round(duration * sample_rate)``; None when ``has_audio`` is False.
        video: ``(3, num_frames, image_size, image_size)`` float32 RGB in [0, 1] (not
            normalised); None when ``has_video`` is False.
        has_audio / has_video: whether the modality holds decoded data for this window.
        start: window start (s, on the container timeline, see module doc).
        duration: window length (s).
        path: the source file.
        sample_rate: audio rate (Hz).
        audio_valid_samples: how many of the audio samples come from decoded audio (the rest
            are zero padding); ``0`` without audio.
        video_valid_frames: how many of the frames were decoded at their time (the rest
            repeat the nearest decoded frame); ``0`` without video.
        frame_times: ``(num_frames,)`` float64 timestamps (s) of the frames used, or None.
        skipped_packets: damaged packets skipped while decoding this clip.
    """

    audio: torch.Tensor | None
    video: torch.Tensor | None
    has_audio: bool
    has_video: bool
    start: float
    duration: float
    path: str
    sample_rate: int = 16000
    audio_valid_samples: int = 0
    video_valid_frames: int = 0
    frame_times: torch.Tensor | None = None
    skipped_packets: int = 0

    @property
    def padded(self) -> bool:
        """True when part of a present modality is padding (the clip was shorter than the
        window, e.g. the window runs past the end of the file)."""
        audio_pad = self.has_audio and self.audio is not None and self.audio_valid_samples < self.audio.shape[0]
        video_pad = self.has_video and self.video is not None and self.video_valid_frames < self.video.shape[1]
        return bool(audio_pad or video_pad)


@dataclass(frozen=True)
class MediaInfo:
    """What a file holds (times in s on the container timeline, see module doc).

    ``start``/``end`` delimit where all present streams have data (``start`` is the earliest
    valid window start); ``None`` fields are unknown or absent.
    """

    path: str
    has_audio: bool
    has_video: bool
    start: float
    end: float | None
    audio_start: float | None = None
    audio_end: float | None = None
    video_start: float | None = None
    video_end: float | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    sample_rate: int | None = None
    channels: int | None = None

    @property
    def duration(self) -> float | None:
        """``end - start`` (s), or None when the end is unknown."""
        return None if self.end is None else max(0.0, self.end - self.start)


def available_backends() -> list[str]:
    """Decoder backends usable here: always ``"pyav"``, plus ``"torchcodec"`` if importable."""
    out = ["pyav"]
    try:
        import torchcodec.decoders  # noqa: F401

        out.append("torchcodec")
    except Exception:  # torchcodec missing or its FFmpeg libraries not loadable
        pass
    return out


def _check_path(path: str | os.PathLike) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    p = os.fspath(path)
    if not os.path.exists(p):
        raise DecodeError(p, "file does not exist")
    if os.path.isdir(p):
        raise DecodeError(p, "is a directory, expected a media file")
    if os.path.getsize(p) == 0:
        raise DecodeError(p, "file is empty")
    return p


def _is_attached_picture(stream: Any) -> bool:
    try:
        return bool(stream.disposition & av.stream.Disposition.attached_pic)
    except Exception:
        return False


def _pick_stream(container: Any, kind: str) -> Any | None:
    streams = [s for s in getattr(container.streams, kind) if not (kind == "video" and _is_attached_picture(s))]
    if not streams:
        return None
    try:
        best = container.streams.best(kind)
        if best is not None and best in streams:
            return best
    except Exception:
        pass
    return streams[0]


def _stream_span(stream: Any, container: Any, origin: float) -> tuple[float | None, float | None]:
    """(start, end) of a stream in s on the container timeline (None where unknown)."""
    tb = stream.time_base
    start = end = None
    if stream.start_time is not None and tb is not None:
        start = float(stream.start_time * tb) - origin
    if stream.duration is not None and tb is not None and start is not None:
        end = start + float(stream.duration * tb)
    elif container.duration is not None:
        end = container.duration / 1e6  # container duration is from the container start
    return start, end


def _drain(cc: Any):
    """Yield the frames still buffered in a decoder (reordering); stop quietly if draining fails."""
    try:
        yield from cc.decode(None)
    except (av.error.FFmpegError, ValueError):
        return


def _flush(cc: Any) -> None:
    """Reset a decoder for the next seek; a decoder that cannot flush is left as it is."""
    try:
        cc.flush_buffers()
    except Exception:
        pass


class MediaReader:
    """An open media file that decodes clips (one file, one decoder; not thread-safe).

    Args:
        path: the media file.
        backend: ``"pyav"`` (default, always available), ``"torchcodec"`` (requires the
            package) or ``"auto"`` (torchcodec when importable, else PyAV).
        threads: decoder threads; ``0`` lets FFmpeg choose (``thread_type="AUTO"``, fastest
            for a single reader), ``1`` is best inside DataLoader workers.
        seek_mode: ``"exact"`` (default): every frame is the one displayed at its target
            time. ``"keyframe"``: each target gets the last keyframe at or before it (only
            keyframes are decoded: much faster on long windows, but frames can be up to one
            GOP early); :attr:`Clip.frame_times` reports the times actually used. Video is
            then decoded by PyAV whatever ``backend`` says. Falls back to exact decoding
            when keyframes cannot be located (no timestamps) or do not decode alone.
        fast_decode: decode h264/HEVC without the in-loop deblocking filter
            (``skip_loop_filter="all"``) and with ``flags2="+fast"``. Faster (about 20% less
            decode time at 720p) but not bit-exact: errors accumulate along a GOP's reference
            chain (on the benchmark files, 224×224 output: mean |error| 2-3 grey levels of
            255, worst pixel about 30; see ``docs/data.md``). Frame times are unchanged.
            Default False. Applies to the PyAV decoder (torchcodec ignores it).

    Raises:
        DecodeError: the file is missing, empty, not a media file, or has neither an audio
            nor a video stream.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        backend: str = "pyav",
        threads: int = 0,
        seek_mode: str = "exact",
        fast_decode: bool = False,
    ):
        self.path = _check_path(path)
        if backend not in ("pyav", "torchcodec", "auto"):
            raise ValueError(f"backend must be 'pyav', 'torchcodec' or 'auto', got {backend!r}")
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
            raise ValueError(f"threads must be an int >= 0, got {threads!r}")
        if not isinstance(seek_mode, str):
            raise TypeError(f"seek_mode must be a str, got {type(seek_mode).__name__}")
        if seek_mode not in ("exact", "keyframe"):
            raise ValueError(f"seek_mode must be 'exact' or 'keyframe', got {seek_mode!r}")
        if not isinstance(fast_decode, bool):
            raise TypeError(f"fast_decode must be a bool, got {type(fast_decode).__name__}")
        self.seek_mode = seek_mode
        self.fast_decode = fast_decode
        # one swscale context reused across frames and clips (creating one costs ~ms)
        self._reformatter = VideoReformatter()
        if backend == "auto":
            backend = "torchcodec" if "torchcodec" in available_backends() else "pyav"
        elif backend == "torchcodec" and "torchcodec" not in available_backends():
            raise ValueError("backend='torchcodec' requested but torchcodec is not importable")
        self.backend = backend
        self.threads = threads
        try:
            self._container = av.open(self.path, mode="r")
        except av.error.FFmpegError as exc:
            raise DecodeError(self.path, f"FFmpeg cannot open it ({exc})") from exc
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise DecodeError(self.path, f"cannot open it ({exc})") from exc
        try:
            self._setup()
        except DecodeError:
            self.close()
            raise
        self._tc_video = None
        self._tc_audio = None

    # -- setup -------------------------------------------------------------------------
    def _setup(self) -> None:
        c = self._container
        self._origin = (c.start_time / 1e6) if c.start_time is not None else 0.0
        self._vstream = _pick_stream(c, "video")
        self._astream = _pick_stream(c, "audio")
        if self._vstream is None and self._astream is None:
            raise DecodeError(self.path, "no audio or video stream")
        if self._vstream is not None:
            cc = self._vstream.codec_context
            if self.threads == 0:
                self._vstream.thread_type = "AUTO"
            else:
                cc.thread_count = self.threads
            if self.fast_decode and cc.name in ("h264", "hevc"):
                cc.options = {**dict(cc.options or {}), "skip_loop_filter": "all", "flags2": "+fast"}
            if not cc.width or not cc.height:
                self._vstream = None  # undecodable video parameters: treat as absent
        if self._vstream is None and self._astream is None:
            raise DecodeError(self.path, "no decodable audio or video stream")
        vs = ve = as_ = ae = None
        width = height = None
        fps = None
        if self._vstream is not None:
            vs, ve = _stream_span(self._vstream, c, self._origin)
            width, height = self._vstream.codec_context.width, self._vstream.codec_context.height
            rate = self._vstream.average_rate or self._vstream.guessed_rate or self._vstream.base_rate
            fps = float(rate) if rate else None
        sr = ch = None
        if self._astream is not None:
            as_, ae = _stream_span(self._astream, c, self._origin)
            sr = self._astream.codec_context.sample_rate or None
            ch = self._astream.codec_context.channels or None
        starts = [s if s is not None else 0.0 for s, present in ((vs, self._vstream), (as_, self._astream)) if present is not None]
        ends = [e for e, present in ((ve, self._vstream), (ae, self._astream)) if present is not None and e is not None]
        start = max(0.0, max(starts))
        end = min(ends) if ends else None
        if end is not None and end < start:  # streams do not overlap: use the longest one's span
            end = max(ends)
            start = max(0.0, min(starts))
        self.info = MediaInfo(
            path=self.path,
            has_audio=self._astream is not None,
            has_video=self._vstream is not None,
            start=start,
            end=end,
            audio_start=as_,
            audio_end=ae,
            video_start=vs,
            video_end=ve,
            width=width,
            height=height,
            fps=fps,
            sample_rate=sr,
            channels=ch,
        )

    def close(self) -> None:
        """Release the file and decoders (idempotent)."""
        c = getattr(self, "_container", None)
        if c is not None:
            try:
                c.close()
            finally:
                self._container = None
        self._tc_video = None
        self._tc_audio = None

    def __enter__(self) -> "MediaReader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    # -- public ------------------------------------------------------------------------
    def read(
        self,
        *,
        start: float | None = None,
        duration: float,
        num_frames: int,
        image_size: int,
        sample_rate: int = 16000,
        audio: bool = True,
        video: bool = True,
        crop: CropBox | str = "center",
        rng: np.random.Generator | None = None,
        scale: Sequence[float] = (0.25, 1.0),
        ratio: Sequence[float] = (3.0 / 4.0, 4.0 / 3.0),
        hflip_prob: float = 0.5,
    ) -> Clip:
        """Decode the window ``[start, start + duration)``; see :func:`read_clip`."""
        if self._container is None:
            raise ValueError(f"reader for {self.path!r} is closed")
        duration, num_frames, image_size, sample_rate = _check_args(duration, num_frames, image_size, sample_rate)
        if start is None:
            start = self.info.start
        if not isinstance(start, (int, float)) or not math.isfinite(start):
            raise ValueError(f"start must be a finite number of seconds or None, got {start!r}")
        start = float(start)
        want_audio = audio and self._astream is not None
        want_video = video and self._vstream is not None
        if not want_audio and not want_video:
            raise DecodeError(
                self.path,
                f"requested audio={audio}, video={video} but the file has "
                f"audio={self.info.has_audio}, video={self.info.has_video}",
            )
        box = None
        if want_video:
            w, h = self.info.width, self.info.height
            if isinstance(crop, CropBox):
                box = crop
            elif crop == "center":
                box = center_crop_box(w, h)
            elif crop == "random":
                if rng is None:
                    raise ValueError("crop='random' needs rng (a numpy.random.Generator)")
                box = random_resized_crop_box(w, h, rng, scale=scale, ratio=ratio, hflip_prob=hflip_prob)
            else:
                raise ValueError(f"crop must be 'center', 'random' or a CropBox, got {crop!r}")

        skipped = 0
        wave = None
        a_valid = 0
        if want_audio:
            tc = None
            if self.backend == "torchcodec":
                try:
                    tc = self._tc_audio_window(start, duration, sample_rate)
                except Exception:  # torchcodec gives up on damaged streams: PyAV skips packets
                    tc = None
                if tc is not None and tc[1] == 0:
                    tc = None  # nothing from torchcodec: let PyAV try packet by packet
            if tc is not None:
                wave, a_valid, sk = tc
            else:
                wave, a_valid, sk = self._pyav_audio_window(start, duration, sample_rate)
            skipped += sk
        frames = None
        v_valid = 0
        times = None
        if want_video:
            tc = None
            # keyframe mode needs the keyframe index: PyAV decodes video then, whatever the backend
            if self.backend == "torchcodec" and self.seek_mode == "exact" and not self._video_timestamps_unreliable():
                try:
                    tc = self._tc_video_window(start, duration, num_frames, image_size, box)
                except Exception:  # see above: fall back to PyAV's packet-level recovery
                    tc = None
                if tc is not None and tc[1] == 0:
                    tc = None
            if tc is not None:
                frames, v_valid, times = tc
            else:
                frames, v_valid, times, sk = self._pyav_video_window(start, duration, num_frames, image_size, box)
                skipped += sk
        has_audio = wave is not None and a_valid > 0
        has_video = frames is not None and v_valid > 0
        if not has_audio and not has_video:
            raise DecodeError(
                self.path,
                f"nothing decodable in window [{start:.3f}, {start + duration:.3f}) s "
                f"(skipped {skipped} damaged packets)",
            )
        return Clip(
            audio=wave if has_audio else None,
            video=frames if has_video else None,
            has_audio=has_audio,
            has_video=has_video,
            start=start,
            duration=duration,
            path=self.path,
            sample_rate=sample_rate,
            audio_valid_samples=int(a_valid) if has_audio else 0,
            video_valid_frames=int(v_valid) if has_video else 0,
            frame_times=times if has_video else None,
            skipped_packets=skipped,
        )

    # -- PyAV audio ----------------------------------------------------------------------
    def _seek(self, stream: Any, t: float) -> None:
        """Seek ``stream`` to the last keyframe at or before container time ``t`` (s)."""
        tb = stream.time_base
        target = max(t, 0.0) + self._origin
        try:
            self._container.seek(int(math.floor(target / tb)), stream=stream, backward=True, any_frame=False)
        except av.error.FFmpegError:
            self._container.seek(0)  # unseekable: decode from the beginning

    def _decode_packets(self, stream: Any, stop_time: float, targets: np.ndarray | None = None):
        """Yield decoded frames of ``stream`` from the current position, skipping packets the
        decoder rejects (counted in ``self._skipped``); stops once packet times pass
        ``stop_time`` (container s).

        With ``targets`` (sorted container times, s), packets whose frame cannot be the one
        displayed at any target are decoded with ``skip_frame="NONREF"``: FFmpeg then skips
        them when no other frame references them (typically half the B-frames). A packet with
        timestamp ``p`` is needed iff some target lies in ``[p, next)``, ``next`` being the
        smallest later timestamp among the following packets (a lookahead covering B-frame
        reordering), so the frame picked for each target is never skipped. Without
        ``targets`` every packet is decoded (:meth:`_decode_all_packets`).
        """
        if targets is None:
            yield from self._decode_all_packets(stream, stop_time)
            return
        tb = stream.time_base
        num, den = (tb.numerator, tb.denominator) if tb is not None else (0, 1)
        origin = self._origin
        cc = stream.codec_context
        lookahead = 16
        queue: collections.deque = collections.deque()
        source = itertools.chain(self._container.demux(stream), [None])
        try:
            for incoming in source:
                if incoming is not None:
                    queue.append(incoming)
                    if len(queue) <= lookahead:
                        continue
                while queue and (incoming is None or len(queue) > lookahead):
                    packet = queue.popleft()
                    cc.skip_frame = "DEFAULT" if self._packet_needed(packet, queue, targets, num, den) else "NONREF"
                    decoded = self._decode_packet(packet)
                    if decoded is None:
                        return
                    yield from decoded
                    pts = packet.pts
                    if (
                        pts is not None
                        and packet.size
                        and float(pts) * num / den - origin > stop_time
                        and all(q.pts is None or float(q.pts) * num / den - origin > stop_time for q in queue)
                    ):
                        # every frame up to stop_time is decoded (the lookahead holds no earlier
                        # one: B-frames decoded after a later P-frame are not cut off); drain
                        # the reordered frames still in the decoder before stopping
                        cc.skip_frame = "DEFAULT"
                        yield from _drain(cc)
                        return
        finally:
            if targets is not None:
                cc.skip_frame = "DEFAULT"
            _flush(cc)

    def _decode_all_packets(self, stream: Any, stop_time: float):
        """:meth:`_decode_packets` without ``targets``: every packet is decoded, with no
        lookahead queue (the audio path: hundreds of small packets per clip)."""
        tb = stream.time_base
        num, den = (tb.numerator, tb.denominator) if tb is not None else (0, 1)
        origin = self._origin
        cc = stream.codec_context
        try:
            for packet in self._container.demux(stream):
                decoded = self._decode_packet(packet)
                if decoded is None:
                    return
                yield from decoded
                pts = packet.pts
                if pts is not None and packet.size and float(pts) * num / den - origin > stop_time:
                    yield from _drain(cc)  # frames still in the decoder
                    return
        finally:
            _flush(cc)

    def _decode_packet(self, packet: Any) -> list | None:
        """The frames of one packet (an empty packet drains the decoder); ``[]`` for a damaged
        packet, which is counted in ``self._skipped``; ``None`` at the end of the stream."""
        try:
            return packet.decode()
        except av.error.EOFError:
            return None
        except (av.error.FFmpegError, ValueError):
            self._skipped += 1
            return []

    def _packet_needed(self, packet: Any, queue: Any, targets: np.ndarray, num: int, den: int) -> bool:
        """Whether ``packet``'s frame may be shown at a target (see :meth:`_decode_packets`);
        ``num / den`` is the stream's time base."""
        pts = packet.pts
        if pts is None or not packet.size:
            return True
        later = [q.pts for q in queue if q.pts is not None and q.pts > pts]
        p = float(pts) * num / den - self._origin
        nxt = float(min(later)) * num / den - self._origin if later else math.inf
        i = int(np.searchsorted(targets, p - 1e-6))
        if i < len(targets) and targets[i] < nxt:
            return True
        # until a frame has come out, decode everything: the first frame may stand in for
        # targets just before it (see the pick loop)
        return not self._seen_needed

    def _pyav_audio_window(self, start: float, duration: float, sr: int) -> tuple[torch.Tensor, int, int]:
        stream = self._astream
        self._skipped = 0
        a0 = start - _AUDIO_PREROLL
        a1 = start + duration + _AUDIO_POSTROLL
        self._seek(stream, a0)
        native_rate = None
        layout = None
        buf = valid = None
        cursor = None  # container time (s) where the next frame without pts goes
        next_off = None  # buffer index right after the previous frame
        channels = 0
        tb = stream.time_base
        tb_num, tb_den = (tb.numerator, tb.denominator) if tb is not None else (0, 0)
        for frame in self._decode_all_packets(stream, a1 + 0.1):
            samples = frame.samples
            if samples == 0:
                continue
            if native_rate is None:
                native_rate = int(frame.sample_rate)
                layout = frame.layout
                channels = layout.nb_channels
                n = int(math.ceil((a1 - a0) * native_rate))
                buf = np.zeros((channels, n), dtype=np.float32)
                valid = np.zeros(n, dtype=bool)
            if frame.sample_rate != native_rate or frame.layout.nb_channels != channels:
                self._skipped += 1  # mid-stream format change: not supported, drop the frame
                continue
            # frame.time's formula with the stream's time base (drained frames carry none)
            t = float(frame.pts) * tb_num / tb_den - self._origin if frame.pts is not None and tb_den else cursor
            if t is None:
                t = a0
            cursor = t + samples / native_rate
            if t >= a1:
                break
            off = int(round((t - a0) * native_rate))
            if next_off is not None and abs(off - next_off) <= max(2, int(0.004 * native_rate)):
                off = next_off  # timestamps are rounded (e.g. to ms in Matroska): keep contiguity
            next_off = off + samples
            lo = max(off, 0)
            hi = min(off + samples, n)
            if hi > lo:
                data = _audio_channels(frame, channels)
                for c in range(channels):
                    buf[c, lo:hi] = data[c][lo - off : hi - off]
                valid[lo:hi] = True
        n_out = int(round(duration * sr))
        if buf is not None and self.info.audio_end is not None:
            # the last coded frame is padded past the declared end (encoder padding): drop it
            cut = int(math.ceil((self.info.audio_end - a0) * native_rate))
            if 0 <= cut < buf.shape[1]:
                buf[:, cut:] = 0.0
                valid[cut:] = False
        if buf is None or not valid.any():
            return torch.zeros(n_out), 0, self._skipped
        mono = _downmix_resample(buf, layout, native_rate, sr)
        first = int(round(_AUDIO_PREROLL * sr))
        out = np.zeros(n_out, dtype=np.float32)
        seg = mono[first : first + n_out]
        out[: seg.shape[0]] = seg
        # valid samples inside the window, counted at the native rate then converted
        i0 = int(round(_AUDIO_PREROLL * native_rate))
        i1 = i0 + int(round(duration * native_rate))
        n_valid = int(round(valid[i0:i1].sum() * sr / native_rate))
        n_valid = min(n_valid, n_out)
        np.clip(out, -1.0, 1.0, out=out)
        return torch.from_numpy(out), n_valid, self._skipped

    # -- PyAV video ----------------------------------------------------------------------
    def _pyav_video_window(
        self, start: float, duration: float, num_frames: int, size: int, box: CropBox
    ) -> tuple[torch.Tensor | None, int, torch.Tensor | None, int]:
        stream = self._vstream
        targets = start + (np.arange(num_frames) + 0.5) * (duration / num_frames)
        fps = self.info.fps or 25.0
        tol = 1.0 / fps  # a frame "covers" one nominal frame period
        chosen = None
        if self.seek_mode == "keyframe":
            chosen, skipped = self._pyav_keyframe_frames(stream, targets, tol)
        if chosen is None:
            chosen, skipped = self._pyav_exact_frames(stream, targets, tol)
        if all(c is None for c in chosen):
            return None, 0, None, skipped
        plan: ScalePlan | None = None
        out = np.empty((num_frames, size, size, 3), dtype=np.uint8)
        times = np.zeros(num_frames, dtype=np.float64)
        valid = 0
        cache: dict[int, np.ndarray] = {}
        # padding: repeat the nearest chosen frame
        idx_valid = [i for i, c in enumerate(chosen) if c is not None]
        for i in range(num_frames):
            c = chosen[i]
            if c is None:
                j = min(idx_valid, key=lambda k: abs(k - i))
                c = chosen[j]
            else:
                valid += 1
            t, frame = c
            key = id(frame)
            if key not in cache:
                if plan is None:
                    plan = plan_scale(box, frame.width, frame.height, size) if (frame.width, frame.height) == (
                        self.info.width,
                        self.info.height,
                    ) else plan_scale(_rescale_box(box, self.info, frame), frame.width, frame.height, size)
                cache[key] = _frame_to_rgb(frame, plan, self._reformatter)
            out[i] = cache[key]
            times[i] = t
        video = torch.from_numpy(out).permute(3, 0, 1, 2).float().div_(255.0)
        return video, valid, torch.from_numpy(times), skipped

    def _scan_keyframes(
        self, stream: Any, t0: float, t1: float, keep_packets: bool = False
    ) -> tuple[list[tuple[float, Any]], float | None] | None:
        """Demux (without decoding) ``stream`` from the keyframe at or before ``t0`` until
        packet decode times pass ``t1`` (s). Returns ``(keyframes, end)``: the keyframes'
        ``(presentation time (s), packet or None)`` in file order, and the latest
        presentation time seen when the stream ended before ``t1`` (else None). None when
        keyframes lack timestamps or demuxing fails: the caller then decodes linearly."""
        tb = stream.time_base
        self._seek(stream, t0)
        keys: list[tuple[float, Any]] = []
        last: float | None = None
        try:
            for packet in self._container.demux(stream):
                if not packet.size:
                    continue
                pts, dts = packet.pts, packet.dts
                ts = dts if dts is not None else pts
                if ts is not None and float(ts * tb) - self._origin > t1:
                    return keys, None
                if pts is not None:
                    t = float(pts * tb) - self._origin
                    last = t if last is None else max(last, t)
                if packet.is_keyframe:
                    if pts is None:
                        return None
                    keys.append((float(pts * tb) - self._origin, packet if keep_packets else None))
        except (av.error.FFmpegError, ValueError):
            return None
        return keys, last

    def _pyav_exact_frames(self, stream: Any, targets: np.ndarray, tol: float) -> tuple[list, int]:
        """The frame displayed at each target (None where no decoded frame covers it), and
        the number of damaged packets skipped.

        Targets are split into runs that start at a keyframe: when a keyframe lies after a
        target and at or before the next one, the next run starts at that keyframe instead of
        decoding the frames in between (which no target shows). Exact: every run starts at a
        keyframe at or before its first target and decodes forward from there.

        The planned path (:meth:`_pyav_planned_frames`: one demux pass, decoding stops right
        after the last shown frame) is tried first; when it cannot vouch for its result
        (missing timestamps, damaged packets, a frame that does not come out) the window is
        decoded by the packet-by-packet path below, which seeks per run and picks frames by
        their decoded timestamps."""
        planned = self._pyav_planned_frames(stream, targets, tol)
        if planned is not None:
            return planned, 0
        stream_start = self.info.video_start or 0.0
        runs = [list(range(len(targets)))]
        if len(targets) > 1:
            scan = self._scan_keyframes(stream, float(targets[0]), float(targets[-1]))
            if scan is not None and scan[0]:
                key_times = np.sort(np.array([t for t, _ in scan[0]]))
                runs = [[0]]
                for i in range(1, len(targets)):
                    k = int(np.searchsorted(key_times, targets[i] + 1e-9, side="right")) - 1
                    if k >= 0 and key_times[k] > targets[i - 1] + 1e-9:
                        runs.append([i])
                    else:
                        runs[-1].append(i)
        chosen: list = [None] * len(targets)
        skipped = 0
        for run in runs:
            sub = targets[run]
            got, _, first = self._pyav_pick_frames(stream, sub, tol, seek_to=float(sub[0]))
            skipped += self._skipped
            if first is not None and first[0] > max(float(sub[0]), stream_start) + tol:
                # a seek landed after its target (bad index): decode everything from the start
                got, _, _ = self._pyav_pick_frames(stream, targets, tol, seek_to=None)
                return got, self._skipped
            for i, g in zip(run, got):
                chosen[i] = g
        return chosen, skipped

    def _pyav_planned_frames(self, stream: Any, targets: np.ndarray, tol: float) -> list | None:
        """Exact frames from one demux pass, decoding as little as possible; None when the
        result cannot be vouched for (the caller then decodes packet by packet).

        The window's packets are demuxed once (from the keyframe at or before the first
        target until decode timestamps pass the last target, or, without decode timestamps,
        until more packets in a row than a decoder can reorder are presented after it: every
        frame presented at or before the last target is then known) and kept. Each target's
        frame is planned from packet timestamps: the one with the latest presentation time
        ``<=`` the target, i.e. what the packet-by-packet path picks from decoded frames.
        Each run of targets
        (split at keyframes as in :meth:`_pyav_exact_frames`) feeds the decoder its kept
        packets from the run's keyframe up to the last planned frame in decode order, then
        drains it, so no frame after the last target is decoded; packets of unplanned frames
        are decoded with ``skip_frame="NONREF"``. Targets more than ``tol`` (s) after the
        last frame of a stream that ends in the window are padding (None), as in the
        packet-by-packet path. Decoded frames are matched to the plan by their integer pts;
        any mismatch, missing presentation timestamp (MPEG-PS/TS), damaged packet,
        out-of-order output or frame that does not come out returns None.

        Returns one ``(time (s), frame)`` or None (padding) per target; times are computed
        as ``av.Frame.time`` computes them, shifted to the container timeline."""
        tb = stream.time_base
        if tb is None or not targets.size or self._video_timestamps_unreliable():
            return None
        num, den = tb.numerator, tb.denominator
        origin = self._origin
        t_last = float(targets[-1])
        self._seek(stream, float(targets[0]))
        packets: list = []
        pts_list: list[int] = []
        ended = False  # the stream ends before the last target
        after = 0  # consecutive packets presented after t_last
        try:
            for packet in self._container.demux(stream):
                if not packet.size:
                    continue
                pts, dts = packet.pts, packet.dts
                if pts is None or (dts is not None and dts > pts):
                    return None
                packets.append(packet)
                pts_list.append(pts)
                if dts is not None:
                    # decode times only grow and pts >= dts: later packets are all after t_last
                    if float(dts) * num / den - origin > t_last:
                        break
                elif float(pts) * num / den - origin > t_last:  # no dts (Matroska): count
                    after += 1
                    if after > _MAX_REORDER_FRAMES:
                        break
                else:
                    after = 0
            else:
                ended = True
        except (av.error.FFmpegError, ValueError):
            return None
        if not packets or not packets[0].is_keyframe or len(set(pts_list)) != len(pts_list):
            return None
        # presentation times, computed exactly as av.Frame.time computes them
        times = np.array([float(p) * num / den for p in pts_list]) - origin
        order = np.argsort(times, kind="stable")
        sorted_times = times[order]
        keys = [i for i, p in enumerate(packets) if p.is_keyframe]
        key_times = times[keys]
        if np.any(np.diff(key_times) <= 0):
            return None  # keyframes out of presentation order: leave it to the general path
        # the frame shown at each target: the latest presentation time <= target
        pos = np.searchsorted(sorted_times, targets, side="right") - 1
        if pos[0] < 0:
            return None  # first target before every demuxed frame (stream start): general path
        shown = order[pos]  # packet (decode-order) index of each target's frame
        # past the end of the stream the last frame stands for one frame period, then padding
        beyond = np.zeros(len(targets), dtype=bool)
        if ended:
            beyond = (pos == len(order) - 1) & (targets - sorted_times[-1] > tol)
        # runs: a keyframe after one target and at or before the next starts a new run
        run_key = [0]
        for i in range(1, len(targets)):
            k = int(np.searchsorted(key_times, targets[i] + 1e-9, side="right")) - 1
            if k >= 0 and key_times[k] > targets[i - 1] + 1e-9:
                run_key.append(keys[k])
            else:
                run_key.append(run_key[-1])
        cc = stream.codec_context
        known = set(pts_list)
        frames_by_pts: dict[int, Any] = {}
        i = 0
        n = len(targets)
        try:
            while i < n:
                first = run_key[i]
                j = i
                while j < n and run_key[j] == first:
                    j += 1
                want = {int(shown[k]) for k in range(i, j) if not beyond[k]}
                if not want:
                    i = j
                    continue  # every target of the run is padding
                if min(want) < first or float(times[first]) > float(targets[i]) + 1e-9:
                    return None  # a planned frame before the run's keyframe
                want_pts = {pts_list[k] for k in want}
                cc.flush_buffers()
                prev_pts = None
                for frame in self._feed_run(cc, packets, first, max(want), want):
                    pts = frame.pts
                    if pts not in known or (prev_pts is not None and pts <= prev_pts):
                        return None  # frames the packets do not account for, or out of order
                    prev_pts = pts
                    if pts in want_pts:
                        frames_by_pts[pts] = frame
                cc.flush_buffers()
                i = j
        except (av.error.FFmpegError, ValueError):
            return None  # a damaged packet: the general path skips and counts it
        finally:
            cc.skip_frame = "DEFAULT"
            _flush(cc)
        chosen: list = []
        for k in range(n):
            if beyond[k]:
                chosen.append(None)
                continue
            frame = frames_by_pts.get(pts_list[int(shown[k])])
            if frame is None:
                return None  # a planned frame did not come out of the decoder
            # frame.time, computed from pts (drained frames carry no time base of their own)
            chosen.append((float(frame.pts) * num / den - origin, frame))
        return chosen

    @staticmethod
    def _feed_run(cc: Any, packets: list, first: int, last: int, want: set[int]):
        """Decode ``packets[first:last + 1]`` (decode order) then drain the decoder, yielding
        frames; packets whose index is not in ``want`` get ``skip_frame="NONREF"``."""
        for idx in range(first, last + 1):
            cc.skip_frame = "DEFAULT" if idx in want else "NONREF"
            yield from packets[idx].decode()
        cc.skip_frame = "DEFAULT"
        yield from cc.decode(None)  # the frames held back for reordering

    def _pyav_keyframe_frames(self, stream: Any, targets: np.ndarray, tol: float) -> tuple[list | None, int]:
        """``seek_mode="keyframe"``: for each target the last keyframe at or before it
        (decoding only those keyframes). Returns ``(None, 0)`` when the keyframes cannot be
        located or decoded alone; the caller then decodes exactly."""
        scan = self._scan_keyframes(stream, float(targets[0]), float(targets[-1]), keep_packets=True)
        if scan is None or not scan[0]:
            return None, 0
        keys, end = scan
        keys = sorted(keys, key=lambda k: k[0])
        key_times = np.array([t for t, _ in keys])
        cc = stream.codec_context
        decoded: dict[int, tuple[float, Any]] = {}
        chosen: list = [None] * len(targets)
        for i, t in enumerate(targets):
            if end is not None and t - end > tol:
                continue  # past the end of the stream: padding
            k = int(np.searchsorted(key_times, t + 1e-9, side="right")) - 1
            if k < 0:
                if key_times[0] - t > tol:
                    continue  # before the stream starts: padding
                k = 0
            if k not in decoded:
                frame = None
                try:
                    cc.flush_buffers()
                    out = list(keys[k][1].decode()) + list(cc.decode(None))
                    frame = out[0] if out else None
                except (av.error.FFmpegError, ValueError):
                    frame = None
                finally:
                    _flush(cc)
                if frame is None:
                    return None, 0  # a keyframe that does not decode alone: decode exactly
                ft = float(key_times[k])
                if frame.pts is not None:
                    ft = float(frame.pts * stream.time_base) - self._origin
                decoded[k] = (ft, frame)
            chosen[i] = decoded[k]
        return chosen, 0

    def _pyav_pick_frames(self, stream: Any, targets: np.ndarray, tol: float, seek_to: float | None):
        """For each target time, the (time, frame) displayed then, or None when no decoded
        frame covers it. Returns (chosen list, last (time, frame), first (time, frame))."""
        self._skipped = 0
        if seek_to is None:
            try:
                self._container.seek(0)
            except av.error.FFmpegError:
                pass
        else:
            self._seek(stream, seek_to)
        n = len(targets)
        chosen: list[tuple[float, Any] | None] = [None] * n
        j = 0
        prev: tuple[float, Any] | None = None
        cursor = None
        first_frame: tuple[float, Any] | None = None
        self._seen_needed = False
        tb = stream.time_base
        num, den = (tb.numerator, tb.denominator) if tb is not None else (0, 0)
        for frame in self._decode_packets(stream, float(targets[-1]) + 1.0, targets=targets):
            self._seen_needed = True
            if frame.pts is not None and den:
                # frame.time's formula with the stream's time base: frames drained from the
                # decoder (after the last packet) carry no time base and frame.time is NaN
                t = float(frame.pts) * num / den - self._origin
            else:
                t = cursor if cursor is not None else 0.0
            cursor = t + tol
            cur = (t, frame)
            if first_frame is None:
                first_frame = cur
            while j < n and targets[j] < t:
                if prev is not None:
                    chosen[j] = prev
                elif t - targets[j] <= tol:  # just before the first frame: close enough
                    chosen[j] = cur
                j += 1
            prev = cur
            if j >= n:
                break
        while j < n and prev is not None:
            if targets[j] - prev[0] <= tol:  # the last frame is still on screen
                chosen[j] = prev
            j += 1
        return chosen, prev, first_frame

    # -- torchcodec ------------------------------------------------------------------------
    def _video_timestamps_unreliable(self) -> bool:
        """MPEG program/transport streams carry timestamps on only some packets: torchcodec's
        frame index then misplaces frames and packet timestamps cannot plan which frames to
        decode, so their video goes through PyAV's packet-by-packet path."""
        names = set((self._container.format.name or "").split(","))
        return bool(names & {"mpeg", "mpegts", "mpegvideo"})

    def _tc_audio_window(self, start: float, duration: float, sr: int) -> tuple[torch.Tensor, int, int]:
        from torchcodec.decoders import AudioDecoder

        n_out = int(round(duration * sr))
        if self._tc_audio is None or self._tc_audio[0] != sr:
            self._tc_audio = (sr, AudioDecoder(self.path, stream_index=self._astream.index, sample_rate=sr))
        a_start = self.info.audio_start if self.info.audio_start is not None else 0.0
        a_end = self.info.audio_end
        lo = max(start, a_start)
        hi = start + duration if a_end is None else min(start + duration, a_end)
        out = torch.zeros(n_out)
        if hi <= lo:
            return out, 0, 0
        samples = self._tc_audio[1].get_samples_played_in_range(lo + self._origin, hi + self._origin)
        data = torch.from_numpy(_downmix(samples.data.numpy(), self._astream.codec_context.layout))
        first = float(samples.pts_seconds) - self._origin
        off = int(round((first - start) * sr))
        lo_i = max(off, 0)
        hi_i = min(off + data.shape[0], n_out)
        if hi_i > lo_i:
            out[lo_i:hi_i] = data[lo_i - off : hi_i - off].float()
        return out.clamp_(-1.0, 1.0), max(0, hi_i - lo_i), 0

    def _tc_video_window(
        self, start: float, duration: float, num_frames: int, size: int, box: CropBox
    ) -> tuple[torch.Tensor | None, int, torch.Tensor | None]:
        from torchcodec.decoders import VideoDecoder

        from torchcodec.transforms import Resize

        plan = plan_scale(box, self.info.width, self.info.height, size)
        key = (plan.scaled_h, plan.scaled_w)
        if self._tc_video is None or self._tc_video[0] != key:
            # FFmpeg-side resize (swscale, bilinear): frames never exist at full size as tensors
            dec = VideoDecoder(
                self.path,
                stream_index=self._vstream.index,
                dimension_order="NHWC",
                num_ffmpeg_threads=self.threads,
                seek_mode="exact",  # scans packet timestamps once: correct for VFR and MPEG-PS
                transforms=[Resize(key)],
            )
            self._tc_video = (key, dec)
        decoder = self._tc_video[1]
        targets = start + (np.arange(num_frames) + 0.5) * (duration / num_frames)
        fps = self.info.fps or 25.0
        tol = 1.0 / fps
        md = decoder.metadata
        first = md.begin_stream_seconds if md.begin_stream_seconds is not None else 0.0
        last = md.end_stream_seconds
        abs_t = targets + self._origin
        lo, hi = first, (last if last is not None else float("inf"))
        valid_mask = (abs_t >= lo - tol) & (abs_t < hi)
        if not valid_mask.any():
            return None, 0, None
        valid_idx = np.nonzero(valid_mask)[0]
        query = np.clip(abs_t[valid_idx], lo, (hi - 1e-6) if math.isfinite(hi) else None)
        batch = decoder.get_frames_played_at(seconds=[float(t) for t in query])
        # padding: every target outside the stream repeats the nearest decoded one
        nearest = [int(valid_idx[np.argmin(np.abs(valid_idx - i))]) for i in range(num_frames)]
        pick = torch.as_tensor([int(np.searchsorted(valid_idx, j)) for j in nearest])
        frames = _resize_crop_torch(batch.data[pick], plan)  # (N, H, W, 3) uint8 -> (3, N, S, S)
        times = batch.pts_seconds.double()[pick] - self._origin
        return frames, int(valid_mask.sum()), times


def _rescale_box(box: CropBox, info: MediaInfo, frame: Any) -> CropBox:
    """Map a box planned for the stream's nominal size onto a frame of another size."""
    sx = frame.width / info.width
    sy = frame.height / info.height
    return CropBox(box.x * sx, box.y * sy, box.w * sx, box.h * sy, box.flip)


def _frame_to_rgb(frame: Any, plan: ScalePlan, reformatter: VideoReformatter | None = None) -> np.ndarray:
    """Scale a decoded frame with swscale to the plan's size, crop, flip: ``(S, S, 3)`` uint8.
    ``reformatter`` (reused across calls) keeps swscale's context instead of rebuilding it."""
    if reformatter is None:
        reformatter = VideoReformatter()
    rgb = reformatter.reformat(frame, width=plan.scaled_w, height=plan.scaled_h, format="rgb24").to_ndarray()
    crop = rgb[plan.y0 : plan.y0 + plan.size, plan.x0 : plan.x0 + plan.size]
    if plan.flip:
        crop = crop[:, ::-1]
    return crop


def _resize_crop_torch(frames_nhwc: torch.Tensor, plan: ScalePlan) -> torch.Tensor:
    """Resize (bilinear, antialiased) + crop + flip uint8 ``(N, H, W, 3)`` frames into a float
    ``(3, N, S, S)`` clip in [0, 1] (the torchcodec path)."""
    x = frames_nhwc.permute(0, 3, 1, 2).float()
    if (x.shape[-2], x.shape[-1]) != (plan.scaled_h, plan.scaled_w):
        x = torch.nn.functional.interpolate(
            x, size=(plan.scaled_h, plan.scaled_w), mode="bilinear", antialias=True, align_corners=False
        )
    x = x[..., plan.y0 : plan.y0 + plan.size, plan.x0 : plan.x0 + plan.size]
    if plan.flip:
        x = x.flip(-1)
    x = x.round_().clamp_(0, 255).div_(255.0)
    return x.permute(1, 0, 2, 3).contiguous()


def _audio_channels(frame: Any, channels: int) -> Sequence[np.ndarray]:
    """A decoded audio frame's channels, each ``(samples,)`` float32 in [-1, 1]: read-only
    views of the frame's buffers for float formats (what AAC, MP3, Opus and Vorbis decoders
    output), converted arrays otherwise."""
    name = frame.format.name
    samples = frame.samples
    if name == "fltp":
        return [np.frombuffer(plane, dtype=np.float32, count=samples) for plane in frame.planes]
    if name == "flt":
        return np.frombuffer(frame.planes[0], dtype=np.float32, count=samples * channels).reshape(samples, channels).T
    return _audio_to_planar_float(frame)


def _audio_to_planar_float(frame: Any) -> np.ndarray:
    """A decoded audio frame as ``(channels, samples)`` float32 in [-1, 1]."""
    arr = frame.to_ndarray()
    fmt = frame.format
    channels = len(frame.layout.channels)
    if not fmt.is_planar:
        arr = arr.reshape(-1, channels).T
    if arr.dtype == np.int16:
        arr = arr.astype(np.float32) / 32768.0
    elif arr.dtype == np.int32:
        arr = arr.astype(np.float32) / 2147483648.0
    elif arr.dtype == np.uint8:
        arr = (arr.astype(np.float32) - 128.0) / 128.0
    elif arr.dtype == np.int64:
        arr = (arr.astype(np.float64) / 9223372036854775808.0).astype(np.float32)
    else:
        arr = arr.astype(np.float32, copy=False)
    return arr


def _downmix(buf: np.ndarray, layout: Any, out: np.ndarray | None = None) -> np.ndarray:
    """``(C, N)`` -> ``(N,)``: the mean of the channels, leaving out low-frequency-effects
    channels when others exist (keeps a signal present on every channel at its level).
    ``out``: optional ``(N,)`` float32 array to write into (returned)."""
    if buf.shape[0] == 1:
        if out is None:
            return buf[0]
        out[:] = buf[0]
        return out
    names = [getattr(ch, "name", "") for ch in getattr(layout, "channels", ())]
    keep = [i for i, n in enumerate(names) if n != "LFE"] if len(names) == buf.shape[0] else []
    if keep and len(keep) < buf.shape[0]:
        buf = buf[keep]
    return buf.mean(axis=0, out=out)


def _resample(mono: np.ndarray, rate: int, sr: int) -> np.ndarray:
    """Convert mono float audio from ``rate`` to ``sr`` Hz with FFmpeg's swresample
    (band-limited); output sample k is at the time of input sample ``k * rate / sr``."""
    if rate == sr:
        return mono.astype(np.float32, copy=True)
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(mono[None, :], dtype=np.float32), format="fltp", layout="mono")
    return _resample_frame(frame, rate, sr)


def _downmix_resample(buf: np.ndarray, layout: Any, rate: int, sr: int) -> np.ndarray:
    """``(C, N)`` float32 audio at ``rate`` Hz -> ``(M,)`` mono float32 at ``sr`` Hz: the same
    as ``_resample(_downmix(buf, layout), rate, sr)``, with the downmix written straight into
    the resampler's input frame instead of copied there."""
    if rate == sr:
        return np.array(_downmix(buf, layout), dtype=np.float32, copy=True)
    n = buf.shape[1]
    frame = av.AudioFrame(format="fltp", layout="mono", samples=n)
    plane = np.frombuffer(frame.planes[0], dtype=np.float32, count=n)
    if not plane.flags.writeable:  # a PyAV whose frame buffers are read-only: copy instead
        return _resample(_downmix(buf, layout), rate, sr)
    _downmix(buf, layout, out=plane)
    return _resample_frame(frame, rate, sr)


def _resample_frame(frame: Any, rate: int, sr: int) -> np.ndarray:
    """Resample a mono float ``av.AudioFrame`` holding the whole signal at ``rate`` Hz to
    ``(M,)`` float32 at ``sr`` Hz (swresample through ``av.AudioResampler``, flushed)."""
    frame.sample_rate = rate
    frame.pts = None
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sr)
    chunks = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    if not chunks:
        return np.zeros(0, dtype=np.float32)
    if len(chunks) == 1:
        return chunks[0].astype(np.float32, copy=False)
    return np.concatenate(chunks).astype(np.float32, copy=False)


def _check_args(duration: Any, num_frames: Any, image_size: Any, sample_rate: Any) -> tuple[float, int, int, int]:
    if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not (duration > 0) or not math.isfinite(duration):
        raise ValueError(f"duration must be a positive number of seconds, got {duration!r}")
    for name, v in (("num_frames", num_frames), ("image_size", image_size), ("sample_rate", sample_rate)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    return float(duration), int(num_frames), int(image_size), int(sample_rate)


def probe(path: str | os.PathLike) -> MediaInfo:
    """Open ``path`` and return its :class:`MediaInfo` (raises :class:`DecodeError`)."""
    with MediaReader(path) as r:
        return r.info


def read_clip(
    path: str | os.PathLike,
    *,
    start: float | None = None,
    duration: float,
    num_frames: int,
    image_size: int,
    sample_rate: int = 16000,
    audio: bool = True,
    video: bool = True,
    crop: CropBox | str = "center",
    rng: np.random.Generator | None = None,
    scale: Sequence[float] = (0.25, 1.0),
    ratio: Sequence[float] = (3.0 / 4.0, 4.0 / 3.0),
    hflip_prob: float = 0.5,
    backend: str = "pyav",
    threads: int = 0,
    seek_mode: str = "exact",
    fast_decode: bool = False,
) -> Clip:
    """Decode one time-aligned clip from a media file.

    Args:
        path: any file FFmpeg reads (mp4, webm, mkv, avi, mpg, ...).
        start: window start in s on the container timeline (0 = container start); None picks
            the earliest time at which every present stream has data.
        duration: window length (s).
        num_frames: frames sampled evenly over the window (frame ``i`` at
            ``start + (i + 0.5) * duration / num_frames``).
        image_size: output frames are ``image_size`` × ``image_size``.
        sample_rate: output audio rate (Hz); audio has ``round(duration * sample_rate)``
            mono samples.
        audio / video: set False to skip decoding a modality.
        crop: ``"center"`` (resize the short side to ``image_size`` then centre-crop),
            ``"random"`` (random-resized crop with ``scale``/``ratio`` and a horizontal flip
            with probability ``hflip_prob``, drawn from ``rng``) or an explicit
            :class:`~zorro.data.transforms.CropBox`.
        rng: ``numpy.random.Generator`` for ``crop="random"``.
        backend: ``"pyav"``, ``"torchcodec"`` or ``"auto"``.
        threads: decoder threads (0 = FFmpeg's choice).
        seek_mode: ``"exact"`` (default, every frame is the one displayed at its target
            time) or ``"keyframe"`` (opt-in, approximate: the last keyframe at or before each
            target; ``frame_times`` holds the times used). See :class:`MediaReader`.
        fast_decode: opt-in approximate h264/HEVC decoding without the deblocking filter
            (PyAV decoder only); see :class:`MediaReader`.

    Returns:
        A :class:`Clip`: ``audio`` ``(samples,)`` float32 in [-1, 1] or None, ``video``
        ``(3, num_frames, image_size, image_size)`` float32 in [0, 1] or None.

    Raises:
        DecodeError: the file cannot be read at all or nothing in the window decodes.
        ValueError: invalid arguments.
    """
    with MediaReader(path, backend=backend, threads=threads, seek_mode=seek_mode, fast_decode=fast_decode) as reader:
        return reader.read(
            start=start,
            duration=duration,
            num_frames=num_frames,
            image_size=image_size,
            sample_rate=sample_rate,
            audio=audio,
            video=video,
            crop=crop,
            rng=rng,
            scale=scale,
            ratio=ratio,
            hflip_prob=hflip_prob,
        )
