"""An open media file (:class:`MediaReader`) and the one-call entry points :func:`read_clip`
and :func:`probe`."""

from __future__ import annotations

import math
import os
from typing import Any, Sequence

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from zorro.data.decode.audio_window import PyAVAudioWindow
from zorro.data.decode.clip import Clip, MediaInfo
from zorro.data.decode.errors import DecodeError, decode_errors
from zorro.data.decode.packets import PacketDecoding
from zorro.data.decode.planned_video import PlannedVideo
from zorro.data.decode.streams import MAX_SAMPLE_RATE, _check_path, _pick_stream, _stream_span, available_backends
from zorro.data.decode.torchcodec_backend import TorchcodecWindows
from zorro.data.decode.video_window import PyAVVideoWindow
from zorro.data.transforms import CROP_RATIO, CROP_SCALE, HFLIP_PROB, CropBox, center_crop_box, random_resized_crop_box


class MediaReader(PacketDecoding, PyAVAudioWindow, PyAVVideoWindow, PlannedVideo, TorchcodecWindows):
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
        self._demux_error_logged = False
        try:
            self._container = av.open(self.path, mode="r")
        except av.error.FFmpegError as exc:
            raise DecodeError(self.path, f"FFmpeg cannot open it ({exc})") from exc
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise DecodeError(self.path, f"cannot open it ({exc})") from exc
        try:
            with decode_errors(self.path, "reading the stream parameters"):
                self._setup()
        except BaseException:
            self.close()
            raise
        self._tc_video = None
        self._tc_audio = None

    # -- setup -------------------------------------------------------------------------
    def _setup(self) -> None:
        c = self._container
        self._origin = (c.start_time / 1e6) if c.start_time is not None else 0.0
        problems: list[str] = []
        self._vstream = _pick_stream(c, "video", problems)
        self._astream = _pick_stream(c, "audio", problems)
        if self._vstream is None and self._astream is None and not problems:
            raise DecodeError(self.path, "no audio or video stream")
        if self._vstream is not None:
            cc = self._vstream.codec_context
            if not cc.width or not cc.height:
                problems.append(f"video stream #{self._vstream.index} has no frame dimensions")
                self._vstream = None  # undecodable video parameters: treat as absent
            else:
                if self.threads == 0:
                    self._vstream.thread_type = "AUTO"
                else:
                    cc.thread_count = self.threads
                if self.fast_decode and cc.name in ("h264", "hevc"):
                    cc.options = {**dict(cc.options or {}), "skip_loop_filter": "all", "flags2": "+fast"}
        if self._astream is not None and (self._astream.codec_context.sample_rate or 0) > MAX_SAMPLE_RATE:
            problems.append(
                f"audio stream #{self._astream.index} claims {self._astream.codec_context.sample_rate} Hz, "
                f"more than {MAX_SAMPLE_RATE} (a damaged header?)"
            )
            self._astream = None  # decoding and resampling it would take seconds and gigabytes
        if self._vstream is None and self._astream is None:
            raise DecodeError(self.path, "no decodable audio or video stream (" + "; ".join(problems) + ")")
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
        scale: Sequence[float] = CROP_SCALE,
        ratio: Sequence[float] = CROP_RATIO,
        hflip_prob: float = HFLIP_PROB,
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
                with decode_errors(self.path, f"decoding audio in [{start:.3f}, {start + duration:.3f}) s"):
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
                with decode_errors(self.path, f"decoding video in [{start:.3f}, {start + duration:.3f}) s"):
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
    scale: Sequence[float] = CROP_SCALE,
    ratio: Sequence[float] = CROP_RATIO,
    hflip_prob: float = HFLIP_PROB,
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
