"""Remuxing a recording's MPEG-TS segments into one MP4 without re-encoding (PyAV stream copy).

Timestamps are shifted per segment so the MP4 timeline is continuous. It never decodes or
re-encodes a frame: the pictures in the MP4 are the bytes the camera's encoder produced, and
the sound is the AAC the unit encoded.

An MP4 declares its streams before the first packet, from the first segment's streams. A segment
may declare an audio stream that carries no packet yet (a pre-roll without pre-event audio), so
FFmpeg cannot tell its sample rate; ``probe`` (a second pass over the same segments, read only
until a segment with sound turns up) then supplies the stream's parameters.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from hal.errors import IntegrityError


def remux_to_mp4(
    segments: Iterable[bytes], out_path: Path, *, probe: Iterable[bytes] | None = None
) -> dict[str, int]:
    """Write ``out_path`` from MPEG-TS ``segments`` in order; returns packet counts per stream type.

    ``probe``: the same segments again (lazily), for streams the first segment cannot describe.
    ``IntegrityError`` if a segment cannot be demuxed (the decrypted bytes are not MPEG-TS).
    """
    counts: dict[str, int] = {}
    out: Any = av.open(str(out_path), mode="w", format="mp4", options={"movflags": "+faststart"})
    try:
        out_streams: dict[str, Any] = {}
        end_s: Fraction | None = None  # end of the timeline written so far, in seconds
        for index, data in enumerate(segments):
            src = _open_ts(data, index)
            try:
                if index == 0:
                    _add_streams(src, out, out_streams, probe)
                end_s = _copy_segment(src, out, out_streams, end_s, counts)
            finally:
                src.close()
    finally:
        out.close()
    return counts


def _open_ts(data: bytes, index: int) -> Any:
    try:
        return av.open(io.BytesIO(data), mode="r", format="mpegts")
    except av.error.FFmpegError as exc:
        raise IntegrityError(f"segment {index} is not a readable MPEG-TS stream") from exc


def _described(stream: Any) -> bool:
    """Whether FFmpeg found enough of ``stream`` to declare it in an MP4."""
    if stream.type == "audio":
        return bool(stream.codec_context.sample_rate)
    return True


def _add_streams(
    src: Any, out: Any, out_streams: dict[str, Any], probe: Iterable[bytes] | None
) -> None:
    """The first segment fixes the output's streams; later segments map onto them by type."""
    missing: set[str] = set()
    for s in src.streams:
        if s.type not in ("video", "audio") or s.type in out_streams:
            continue
        if _described(s):
            out_streams[s.type] = out.add_stream_from_template(s)
        else:
            missing.add(s.type)
    if not missing or probe is None:
        return  # a stream nothing describes is left out (no packet of it exists to copy)
    for index, data in enumerate(probe):
        other = _open_ts(data, index)
        try:
            for s in other.streams:
                if s.type in missing and _described(s):
                    out_streams[s.type] = out.add_stream_from_template(s)
                    missing.discard(s.type)
        finally:
            other.close()
        if not missing:
            return


def _copy_segment(
    src: Any,
    out: Any,
    out_streams: dict[str, Any],
    end_s: Fraction | None,
    counts: dict[str, int],
) -> Fraction | None:
    streams = [s for s in src.streams if s.type in ("video", "audio")]
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
