"""Exact frames from one demux pass, planned from packet timestamps (the fast exact path).

:class:`PlannedVideo` is a part of :class:`~zorro.data.decode.MediaReader`.
"""

from __future__ import annotations

from typing import Any

import av
import numpy as np

from zorro.data.decode.packets import _flush

# Most frames a decoder holds back for reordering (the h264/HEVC picture buffer): once this
# many + 1 consecutive packets (decode order) are presented after a time, no later packet is
# presented at or before it.
_MAX_REORDER_FRAMES = 16


class PlannedVideo:
    """The planned exact video path (a mixin of ``MediaReader``)."""

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
