"""Decode time-aligned audio-video clips from media files (PyAV, optionally torchcodec).

Timeline: every time in this package is in seconds on the file's presentation timeline shifted
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

The package, by concern: :mod:`~zorro.data.decode.reader` (:class:`MediaReader`,
:func:`read_clip`, :func:`probe`), :mod:`~zorro.data.decode.streams` (finding streams and
their spans), :mod:`~zorro.data.decode.packets` (seeking, packet decoding with damaged-packet
skips), :mod:`~zorro.data.decode.audio_window` and :mod:`~zorro.data.decode.audio_samples`
(audio), :mod:`~zorro.data.decode.video_window`, :mod:`~zorro.data.decode.planned_video` and
:mod:`~zorro.data.decode.frame_pixels` (video), :mod:`~zorro.data.decode.torchcodec_backend`,
:mod:`~zorro.data.decode.clip` (:class:`Clip`, :class:`MediaInfo`) and
:mod:`~zorro.data.decode.errors` (:class:`DecodeError` and which decoder errors map to it),
:mod:`~zorro.data.decode.time_limit` (the per-item time limit, :class:`DecodeTimeout`).
"""

from zorro.data.decode.clip import Clip, MediaInfo
from zorro.data.decode.errors import DecodeError
from zorro.data.decode.reader import MediaReader, probe, read_clip
from zorro.data.decode.streams import available_backends
from zorro.data.decode.time_limit import DecodeTimeout, decode_time_limit

__all__ = [
    "DecodeError",
    "DecodeTimeout",
    "decode_time_limit",
    "Clip",
    "MediaInfo",
    "MediaReader",
    "read_clip",
    "probe",
    "available_backends",
]
