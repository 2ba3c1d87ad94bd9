"""Small immutable value types that cross the hardware boundary.

They carry no behaviour and no references to devices, so they can be passed between threads.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    """One encoded H.264 access unit (Annex B), as the encoder produced it.

    ``pts_us`` is the presentation time in microseconds on the unit's monotonic (boot-time)
    clock, the same clock ``Clock.monotonic_us`` reads. ``frame_index`` counts frames from 0
    at camera start of this boot, so drops are visible to the recorder.
    """

    data: bytes
    pts_us: int
    is_keyframe: bool
    frame_index: int


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """Encoded (or raw s16le, see ``codec``) audio starting at ``pts_us`` on the monotonic clock."""

    data: bytes
    pts_us: int
    duration_us: int
    codec: str
    sample_rate_hz: int
    channels: int


class ClockSource(enum.StrEnum):
    """Where the unit's UTC time came from. Recorded with every timestamp that matters."""

    UNSET = "unset"  # no trusted time yet (RTC lost, no GNSS, no NTP)
    RTC = "rtc"
    GNSS = "gnss"
    NTP = "ntp"
    SIMULATED = "simulated"


class FixQuality(enum.IntEnum):
    """GGA fix quality indicator (NMEA 0183)."""

    NONE = 0
    GPS = 1
    DGPS = 2
    PPS = 3
    RTK = 4
    FLOAT_RTK = 5
    ESTIMATED = 6


@dataclass(frozen=True, slots=True)
class GnssFix:
    """One position fix. ``utc_us`` is the receiver's time of fix (microseconds since the epoch)."""

    utc_us: int | None
    lat_deg: float | None
    lon_deg: float | None
    alt_m: float | None
    quality: FixQuality
    satellites: int
    hdop: float | None
    received_mono_us: int

    @property
    def has_position(self) -> bool:
        return self.quality != FixQuality.NONE and self.lat_deg is not None


@dataclass(frozen=True, slots=True)
class BatteryStatus:
    level_pct: float
    voltage_v: float | None
    charging: bool


@dataclass(frozen=True, slots=True)
class Pattern:
    """An indicator pattern: ``steps`` of (on_ms, off_ms), played once or repeated.

    ``name`` is what the simulated indicators record in their history and what the README
    documents, so tests and people talk about the same thing.
    """

    name: str
    steps: tuple[tuple[int, int], ...]
    repeat: bool = False

    @property
    def period_ms(self) -> int:
        return sum(on + off for on, off in self.steps)


OFF = Pattern("off", ())
SOLID = Pattern("solid", ((1000, 0),), repeat=True)
