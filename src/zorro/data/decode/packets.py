"""Demuxing and decoding packets of one stream, skipping (and counting) damaged ones.

:class:`PacketDecoding` is a part of :class:`~zorro.data.decode.MediaReader`: it uses the
reader's ``_container``, ``_origin`` and ``_skipped`` attributes.
"""

from __future__ import annotations

import collections
import itertools
import logging
import math
from typing import Any, Iterator

import av
import numpy as np

from zorro.data.decode.errors import DecodeError, decoder_failure

logger = logging.getLogger(__name__)


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
    except av.error.FFmpegError:
        pass


class PacketDecoding:
    """Seeking and packet-by-packet decoding (a mixin of ``MediaReader``)."""

    def _seek(self, stream: Any, t: float) -> None:
        """Seek ``stream`` to the last keyframe at or before container time ``t`` (s); when the
        demuxer refuses, to the start of the file (decoding then runs forward from there).

        Raises:
            DecodeError: the demuxer refuses both seeks (e.g. ``av.error.PermissionError`` from
                a damaged index).
        """
        tb = stream.time_base
        target = max(t, 0.0) + self._origin
        try:
            if not tb:
                raise ValueError("stream without a time base")
            self._container.seek(int(math.floor(target / tb)), stream=stream, backward=True, any_frame=False)
        except (av.error.FFmpegError, ValueError, OverflowError):
            try:
                self._container.seek(0)  # unseekable: decode from the beginning
            except av.error.FFmpegError as exc:
                raise DecodeError(self.path, f"cannot seek to {t:.3f} s nor to the start: {decoder_failure(exc)}") from exc

    def _demux(self, stream: Any) -> Iterator[Any]:
        """The packets of ``stream`` from the current position. A demuxer error (damaged
        container data, e.g. ``av.error.MemoryError`` for a packet size no allocation can
        satisfy) ends the stream there: it is counted in ``self._skipped`` and logged once per
        reader, and the frames decoded so far stand (padding covers the rest)."""
        packets = self._container.demux(stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except av.error.EOFError:
                return
            except av.error.FFmpegError as exc:
                if decoder_failure(exc) is None:
                    raise
                self._skipped += 1
                if not self._demux_error_logged:
                    self._demux_error_logged = True
                    logger.debug("%s: %s stream ends early: %s", self.path, stream.type, decoder_failure(exc))
                return
            yield packet

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
        source = itertools.chain(self._demux(stream), [None])
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
            for packet in self._demux(stream):
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

    def _video_timestamps_unreliable(self) -> bool:
        """MPEG program/transport streams carry timestamps on only some packets: torchcodec's
        frame index then misplaces frames and packet timestamps cannot plan which frames to
        decode, so their video goes through PyAV's packet-by-packet path."""
        names = set((self._container.format.name or "").split(","))
        return bool(names & {"mpeg", "mpegts", "mpegvideo"})
