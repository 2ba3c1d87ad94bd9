"""Thumbnails decoded from the sealed video: the start, the press, each marker, regular intervals.

Frames are found by number: the verified unit manifests say which frames each unit holds, and a
segment's decrypted MPEG-TS decodes to exactly those frames in order (no B-frames). Only segments
that hold a wanted frame are decoded, and decoding stops after the last wanted one. Pictures are
scaled down and JPEG-encoded in memory, as ``data:`` URIs; nothing is written to disk here.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from report.clock_text import iso_utc, offset_text
from report.model import RecordingFacts, UnitSpan

THUMB_W = 320
_INTERVALS_S = (5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)


@dataclass(frozen=True)
class Wanted:
    frame: int
    kind: str  # start, press, marker, interval, end
    label: str


@dataclass(frozen=True)
class Thumbnail:
    frame: int
    kind: str
    label: str
    at_iso: str
    offset: str
    data_uri: str
    width: int
    height: int


SegmentBytes = Callable[[int], Iterable[bytes]]
"""Segment index -> its decrypted MPEG-TS, in chunks (``Segment.iter_plaintext``)."""


def interval_for(duration_s: float, most: int = 10) -> int:
    """A round interval giving at most ``most`` regular thumbnails."""
    return next((s for s in _INTERVALS_S if duration_s / s <= most), _INTERVALS_S[-1])


def wanted_frames(facts: RecordingFacts, interval_s: float | None = None) -> list[Wanted]:
    """Which frames to show, each once, in frame order; the first reason for a frame wins."""
    if not facts.units:
        return []
    first, last = facts.units[0].first_frame, facts.units[-1].last_frame
    press = facts.press_utc_us
    base = press if press is not None else facts.units[0].start_utc_us
    end = facts.units[-1].end_utc_us
    picks: list[Wanted] = [Wanted(first, "start", "Start of the video")]
    if press is not None and press > facts.units[0].start_utc_us:
        f = facts.frame_at(press)
        if f is not None:
            picks.append(Wanted(f, "press", "Button pressed"))
    for m in facts.markers:
        f = m.frame if m.frame is not None and facts.unit_of_frame(m.frame) else None
        f = f if f is not None else facts.frame_at(m.utc_us)
        if f is not None:
            picks.append(Wanted(f, "marker", f"Marker {m.number}"))
    step_s = interval_s or interval_for((end - base) / 1e6)
    t = base + int(step_s * 1_000_000)
    while t < end:
        f = facts.frame_at(t)
        if f is not None:
            picks.append(Wanted(f, "interval", offset_text((t - base) / 1e6)))
        t += int(step_s * 1_000_000)
    picks.append(Wanted(last, "end", "End of the video"))
    chosen: dict[int, Wanted] = {}
    for w in picks:
        # A marker on a frame already chosen for another reason still shows as the marker.
        if w.frame not in chosen or w.kind == "marker":
            chosen[w.frame] = w
    return [chosen[f] for f in sorted(chosen) if first <= f <= last]


def render_thumbnails(
    facts: RecordingFacts, wanted: list[Wanted], segment_bytes: SegmentBytes
) -> list[Thumbnail]:
    """Decode the ``wanted`` frames and return them as JPEG thumbnails, in frame order.

    A picture's frame number comes from counting decoded frames against the signed units; its
    decoded timestamp is checked against the units' timing, and a picture whose timing disagrees
    by half a frame or more says so in its caption rather than being shown as exact.
    """
    import av  # PyAV: imported here so that importing the report costs no codec start-up

    by_frame = {w.frame: w for w in wanted}
    base = facts.press_utc_us or (facts.units[0].start_utc_us if facts.units else 0)
    out: list[Thumbnail] = []
    for segment, frames in _frames_per_segment(facts).items():
        targets = [f for f in frames if f in by_frame]
        if not targets:
            continue
        seg_start = facts.unit_of_frame(frames[0])
        data = b"".join(segment_bytes(segment))
        container: Any = av.open(io.BytesIO(data), mode="r", format="mpegts")
        try:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            first_s: float | None = None
            for frame_no, picture in zip(frames, container.decode(stream), strict=False):
                if first_s is None:
                    first_s = picture.time
                if frame_no in by_frame and seg_start is not None:
                    unit = facts.unit_of_frame(frame_no)
                    at = unit.frame_utc_us(frame_no) if unit else base
                    decoded_us = (
                        None
                        if picture.time is None or first_s is None
                        else (picture.time - first_s) * 1e6 + seg_start.start_utc_us
                    )
                    out.append(_thumbnail(picture, by_frame[frame_no], at, base, decoded_us, unit))
                if frame_no >= targets[-1]:
                    break
        finally:
            container.close()
    out.sort(key=lambda t: t.frame)
    return out


def _thumbnail(
    picture: Any,
    wanted: Wanted,
    at_us: int,
    base_us: int,
    decoded_us: float | None,
    unit: UnitSpan | None,
) -> Thumbnail:
    import cv2

    height = max(2, round(THUMB_W * picture.height / picture.width / 2) * 2)
    bgr = picture.reformat(width=THUMB_W, height=height, format="bgr24").to_ndarray()
    ok, jpeg = cv2.imencode(".jpg", bgr, [int(cv2.IMWRITE_JPEG_QUALITY), 80])
    if not ok:
        raise ValueError("JPEG encoding failed")  # cv2 only fails on an empty or odd image
    label = wanted.label
    if decoded_us is not None and unit is not None:
        half_frame_us = (unit.end_utc_us - unit.start_utc_us) / max(1, unit.frame_count) / 2
        off_ms = (decoded_us - at_us) / 1000
        if abs(decoded_us - at_us) >= max(half_frame_us, 1000):
            label += f" (decoded timing differs by {off_ms:+.0f} ms: approximate)"
    return Thumbnail(
        wanted.frame,
        wanted.kind,
        label,
        iso_utc(at_us),
        offset_text((at_us - base_us) / 1e6),
        "data:image/jpeg;base64," + base64.b64encode(jpeg.tobytes()).decode("ascii"),
        THUMB_W,
        height,
    )


def _frames_per_segment(facts: RecordingFacts) -> dict[int, list[int]]:
    """Segment index -> the frame numbers its MPEG-TS decodes to, in order."""
    per: dict[int, list[int]] = {}
    for u in facts.units:
        per.setdefault(u.segment, []).extend(range(u.first_frame, u.last_frame + 1))
    return per
