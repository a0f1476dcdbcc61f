"""Which decoded frame is shown at each target time of a window (PyAV).

Three ways to choose, tried in this order: the planned path
(:mod:`zorro.data.decode.planned_video`), the packet-by-packet exact path, and, with
``seek_mode="keyframe"``, the last keyframe before each target.
:class:`PyAVVideoWindow` is a part of :class:`~zorro.data.decode.MediaReader`.
"""

from __future__ import annotations

from typing import Any

import av
import numpy as np
import torch

from zorro.data.decode.frame_pixels import _frame_to_rgb, _rescale_box
from zorro.data.decode.packets import _flush
from zorro.data.transforms import CropBox, ScalePlan, plan_scale


class PyAVVideoWindow:
    """PyAV video decoding of one window (a mixin of ``MediaReader``)."""

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
