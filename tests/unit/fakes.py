"""Small in-memory collaborators for recorder unit tests: a clock, an evidence sink that records
calls, an indicator that records patterns, and real H.264 frames encoded once with libx264."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import av
import numpy as np

from evidence.records import check_writable_kind
from evidence.sealing import JsonValue, RecordError, UnitMeta
from hal.errors import StorageFullError
from hal.types import OFF, ClockSource, EncodedFrame, Pattern


class FakeClock:
    def __init__(self, utc_us: int = 1_700_000_000_000_000, source: ClockSource = ClockSource.RTC):
        self.mono_us = 0
        self._utc_offset_us = utc_us
        self._source = source
        self.steps: list[tuple[int, ClockSource]] = []

    def monotonic_us(self) -> int:
        return self.mono_us

    def utc_us(self) -> int:
        return self.mono_us + self._utc_offset_us

    @property
    def source(self) -> ClockSource:
        return self._source

    def set_utc(self, utc_us: int, source: ClockSource) -> None:
        self._utc_offset_us = utc_us - self.mono_us
        self._source = source
        self.steps.append((utc_us, source))


@dataclass
class SealedUnit:
    payload: bytes
    meta: UnitMeta
    mono_us: int


@dataclass
class FakeEvidence:
    """Records every call; ``free`` bytes shrink with each unit; below 0 -> StorageFullError."""

    free: int = 10**12
    reserve: int = 0
    entries: list[tuple[str, Any]] = field(default_factory=list)
    unit_error: OSError | None = None  # raised by seal_unit while set (an I/O failure)
    event_error: Exception | None = None  # raised by event while set (a refused write)
    refuse_unit_extra: bool = False  # seal_unit refuses units carrying extra metadata (RecordError)

    def event(
        self,
        kind: str,
        fields: Mapping[str, JsonValue],
        *,
        mono_us: int,
        utc_us: int,
        reserve_ok: bool = False,
    ) -> int:
        check_writable_kind(kind)  # as the real sealer: a kind not in EventKind is a bug
        if self.event_error is not None:
            raise self.event_error
        if self.free < (-self.reserve if reserve_ok else 0) + 100:
            raise StorageFullError("full")
        self.free -= 100
        self.entries.append(("event", (kind, dict(fields), reserve_ok)))
        return len(self.entries) - 1

    def seal_unit(self, payload: bytes, meta: UnitMeta, *, mono_us: int, utc_us: int) -> int:
        if self.unit_error is not None:
            raise self.unit_error
        if self.refuse_unit_extra and (meta.extra or meta.gnss):
            raise RecordError("unit would not verify: test")
        if self.free < len(payload):
            raise StorageFullError("full")
        self.free -= len(payload)
        self.entries.append(("unit", SealedUnit(payload, meta, mono_us)))
        return len(self.entries) - 1

    def free_bytes(self) -> int:
        return self.free

    # Views for assertions.
    def kinds(self) -> list[str]:
        return [e[1][0] if e[0] == "event" else "unit" for e in self.entries]

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [e[1][1] for e in self.entries if e[0] == "event" and kind in (None, e[1][0])]

    def units(self) -> list[SealedUnit]:
        return [e[1] for e in self.entries if e[0] == "unit"]


class RecordingIndicator:
    def __init__(self, name: str) -> None:
        self._name = name
        self.history: list[str] = []

    @property
    def name(self) -> str:
        return self._name

    def play(self, pattern: Pattern) -> None:
        self.history.append(pattern.name)

    def close(self) -> None:
        self.play(OFF)


WIDTH, HEIGHT, FPS, GOP = 512, 288, 30, 30


@functools.cache
def _encoded(n: int) -> tuple[tuple[bytes, bool], ...]:
    enc: Any = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    enc.time_base = Fraction(1, FPS)
    enc.framerate = FPS
    enc.gop_size = GOP
    enc.options = {
        "preset": "ultrafast",
        "tune": "zerolatency",
        "x264-params": f"repeat-headers=1:keyint={GOP}:min-keyint={GOP}:scenecut=0:bframes=0",
    }
    out: list[tuple[bytes, bool]] = []
    img = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    for i in range(n):
        img[:] = (i * 7) % 255
        img[100:140, (i * 5) % 400 : (i * 5) % 400 + 40] = 255
        vf = av.VideoFrame.from_ndarray(img, format="bgr24").reformat(format="yuv420p")
        vf.pts = i
        out.extend((bytes(p), bool(p.is_keyframe)) for p in enc.encode(vf))
    out.extend((bytes(p), bool(p.is_keyframe)) for p in enc.encode(None))
    return tuple(out)


def h264_frames(n: int, *, start_index: int = 0, start_pts_us: int = 0) -> list[EncodedFrame]:
    """``n`` real H.264 frames at 30 fps with a keyframe every 30 frames (cached encode)."""
    base = _encoded(GOP * 4)  # reuse 4 GOPs cyclically: each GOP decodes on its own
    frames = []
    for i in range(n):
        data, key = base[i % len(base)]
        frames.append(EncodedFrame(data, start_pts_us + round(i * 1e6 / FPS), key, start_index + i))
    return frames
