"""The optional torchcodec backend: audio and video windows decoded by torchcodec.

:class:`TorchcodecWindows` is a part of :class:`~zorro.data.decode.MediaReader`; the reader
falls back to PyAV when torchcodec fails or yields nothing.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from zorro.data.decode.audio_samples import _downmix
from zorro.data.decode.frame_pixels import _resize_crop_torch
from zorro.data.transforms import CropBox, plan_scale


class TorchcodecWindows:
    """torchcodec decoding of one window (a mixin of ``MediaReader``)."""

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
