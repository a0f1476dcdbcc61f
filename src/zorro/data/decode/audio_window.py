"""The audio of a window decoded with PyAV: pre-roll, placement by timestamp, padding.

:class:`PyAVAudioWindow` is a part of :class:`~zorro.data.decode.MediaReader`.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from zorro.data.decode.audio_samples import _audio_channels, _downmix_resample
from zorro.data.decode.streams import MAX_SAMPLE_RATE

# Audio decoded this far before the window (s): AAC/Opus decoders need a frame or two to
# warm up after a seek, and the resampler's filter needs context.
_AUDIO_PREROLL = 0.25
# Extra audio decoded past the window (s) so the resampler's filter tail is real signal.
_AUDIO_POSTROLL = 0.05


class PyAVAudioWindow:
    """PyAV audio decoding of one window (a mixin of ``MediaReader``)."""

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
            if not 0 < frame.sample_rate <= MAX_SAMPLE_RATE:
                self._skipped += 1  # a damaged frame header: see MAX_SAMPLE_RATE
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
                if data is None:  # a sample format this code does not know: drop the frame
                    self._skipped += 1
                    continue
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
