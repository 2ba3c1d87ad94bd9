"""Remuxing a recording's MPEG-TS segments into one MP4 without re-encoding (PyAV stream copy).

Timestamps are shifted per segment so the MP4 timeline is continuous. It never decodes or
re-encodes a frame: the pictures in the MP4 are the bytes the camera's encoder produced.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from hal.errors import IntegrityError


def remux_to_mp4(segments: Iterable[bytes], out_path: Path) -> dict[str, int]:
    """Write ``out_path`` from MPEG-TS ``segments`` in order; returns packet counts per stream type.

    ``IntegrityError`` if a segment cannot be demuxed (the decrypted bytes are not MPEG-TS).
    """
    counts: dict[str, int] = {}
    out: Any = av.open(str(out_path), mode="w", format="mp4", options={"movflags": "+faststart"})
    try:
        out_streams: dict[str, Any] = {}
        end_s: Fraction | None = None  # end of the timeline written so far, in seconds
        for index, data in enumerate(segments):
            try:
                src: Any = av.open(io.BytesIO(data), mode="r", format="mpegts")
            except av.error.FFmpegError as exc:
                raise IntegrityError(f"segment {index} is not a readable MPEG-TS stream") from exc
            try:
                end_s = _copy_segment(src, out, out_streams, end_s, counts)
            finally:
                src.close()
    finally:
        out.close()
    return counts


def _copy_segment(
    src: Any,
    out: Any,
    out_streams: dict[str, Any],
    end_s: Fraction | None,
    counts: dict[str, int],
) -> Fraction | None:
    streams = [s for s in src.streams if s.type in ("video", "audio")]
    if not out_streams:
        # The first segment fixes the output's streams; later segments map onto them by type.
        for s in streams:
            out_streams.setdefault(s.type, out.add_stream_from_template(s))
    packets = [
        p
        for p in src.demux(streams)
        if p.dts is not None and p.size > 0 and p.stream.type in out_streams
    ]
    if not packets:
        return end_s
    # The segment's own start: its earliest decode time over all copied streams, in seconds.
    seg_start = min(Fraction(p.dts) * p.time_base for p in packets)
    offset = -seg_start if end_s is None else end_s - seg_start
    new_end = end_s if end_s is not None else Fraction(0)
    for p in packets:
        tb = p.time_base
        shift = round(offset / tb)
        p.dts += shift
        if p.pts is not None:
            p.pts += shift
        ost = out_streams[p.stream.type]
        stop = Fraction(max(p.pts or p.dts, p.dts) + (p.duration or 0)) * tb
        new_end = max(new_end, stop)
        p.stream = ost
        out.mux(p)
        counts[ost.type] = counts.get(ost.type, 0) + 1
    return new_end
