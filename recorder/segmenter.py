"""The segmenter: muxes encoded H.264 frames into MPEG-TS in memory, cut into sealing units.

It never re-encodes and never touches files: PyAV's mpegts muxer writes into ``_TsSink`` (an
in-memory file-like), with ``flush_packets=1`` so every muxed frame reaches the sink before
``mux`` returns; a unit is simply the bytes the sink holds at the cut.

* A unit is about ``unit_s`` of media, cut on a frame boundary (not necessarily a keyframe), and
  also wherever the camera's frame indices jump, so a unit's frames are always consecutive.
* A segment is one TS container (PAT/PMT at its start, continuity counters from 0). A new segment
  starts at the first keyframe at or after ``segment_s`` of segment duration, so every segment
  starts with a keyframe (SPS/PPS included, the encoder repeats them) and any prefix of a
  segment's units is itself a demuxable TS.

Cost per frame is one ``av.Packet`` copy of the frame bytes (PyAV copies into its own buffer) and
the muxer's 188-byte packetisation; no other copies. Single-threaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av

from hal.types import EncodedFrame

_US = Fraction(1, 1_000_000)


@dataclass(frozen=True, slots=True)
class TsUnit:
    """One cut: ``payload`` is TS bytes; concatenating a segment's units gives its whole TS."""

    segment: int
    unit: int
    payload: bytes
    first_frame: int
    frame_count: int
    start_pts_us: int
    end_pts_us: int
    """Exclusive end: the next frame's pts, or last pts + the last frame interval."""
    segment_final: bool
    """The last unit of its segment (the container was closed after it)."""


class _TsSink:
    """The file-like the muxer writes into; ``take`` hands the bytes over and forgets them."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self.nbytes = 0

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._chunks.append(chunk)
        self.nbytes += len(chunk)
        return len(chunk)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        out = b"".join(self._chunks)
        self._chunks.clear()
        self.nbytes = 0
        return out


class Segmenter:
    """Feed frames with ``push``; it returns the units completed so far. ``flush`` ends all."""

    def __init__(self, width: int, height: int, unit_s: float, segment_s: float) -> None:
        self.width = width
        self.height = height
        self.unit_us = round(unit_s * 1_000_000)
        self.segment_us = round(segment_s * 1_000_000)
        self.segment = -1
        self.unit = 0
        self._container: Any = None
        self._stream: Any = None
        self._sink = _TsSink()
        self._seg_start_us = 0
        self._unit_first: EncodedFrame | None = None
        self._unit_count = 0
        self._last: EncodedFrame | None = None
        self._last_interval_us = 0
        self.frames_in = 0

    @property
    def open(self) -> bool:
        return self._container is not None

    def push(self, frame: EncodedFrame) -> list[TsUnit]:
        """Mux ``frame``; returns the unit that ended just before it, if any."""
        out: list[TsUnit] = []
        if self._container is None:
            if not frame.is_keyframe:
                raise ValueError("a segment must start with a keyframe")
            self._open_segment(frame.pts_us)
        elif frame.is_keyframe and frame.pts_us - self._seg_start_us >= self.segment_us:
            unit = self._cut(frame.pts_us, close=True)
            if unit is not None:
                out.append(unit)
            self._open_segment(frame.pts_us)
        elif self._unit_first is not None and (
            frame.pts_us - self._unit_first.pts_us >= self.unit_us
            or (self._last is not None and frame.frame_index != self._last.frame_index + 1)
        ):
            # Also cut where frame indices jump, so every unit holds consecutive frames and
            # first_frame + frame_count always names the frame the next unit should start with.
            unit = self._cut(frame.pts_us, close=False)
            if unit is not None:
                out.append(unit)
        self._mux(frame)
        return out

    def take_unit(self) -> TsUnit | None:
        """Cut the current unit now (at a frame boundary) and return it; None if it is empty."""
        if self._last is None or self._unit_first is None:
            return None
        return self._cut(self._last.pts_us + self._last_interval_us, close=False)

    def flush(self) -> list[TsUnit]:
        """Close the current segment and return its last unit (marked ``segment_final``)."""
        if self._container is None or self._last is None:
            return []
        unit = self._cut(self._last.pts_us + self._last_interval_us, close=True)
        return [unit] if unit is not None else []

    def _open_segment(self, start_pts_us: int) -> None:
        self.segment += 1
        self.unit = 0
        self._seg_start_us = start_pts_us
        self._sink = _TsSink()
        container = av.open(
            self._sink,
            mode="w",
            format="mpegts",
            options={"flush_packets": "1"},
            buffer_size=4096,
        )
        stream = container.add_stream("h264")
        stream.width = self.width
        stream.height = self.height
        stream.time_base = Fraction(1, 90_000)
        self._container = container
        self._stream = stream

    def _mux(self, frame: EncodedFrame) -> None:
        packet = av.Packet(frame.data)
        packet.stream = self._stream
        packet.time_base = _US
        packet.pts = frame.pts_us
        packet.dts = frame.pts_us  # no B-frames: decode order is presentation order
        packet.is_keyframe = frame.is_keyframe
        self._container.mux(packet)
        if self._last is not None:
            self._last_interval_us = frame.pts_us - self._last.pts_us
        self._last = frame
        if self._unit_first is None:
            self._unit_first = frame
        self._unit_count += 1
        self.frames_in += 1

    def _cut(self, end_pts_us: int, *, close: bool) -> TsUnit | None:
        if close:
            self._container.close()  # writes any muxer tail into the sink
            self._container = None
            self._stream = None
        first = self._unit_first
        payload = self._sink.take()
        if first is None:
            return None
        unit = TsUnit(
            segment=self.segment,
            unit=self.unit,
            payload=payload,
            first_frame=first.frame_index,
            frame_count=self._unit_count,
            start_pts_us=first.pts_us,
            end_pts_us=end_pts_us,
            segment_final=close,
        )
        self.unit += 1
        self._unit_first = None
        self._unit_count = 0
        return unit
