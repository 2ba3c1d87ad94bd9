"""The real unit's clock: monotonic time on CLOCK_BOOTTIME (the clock picamera2's sensor
timestamps use, and which keeps counting in suspend), UTC from the system clock.

``set_utc`` does not step the kernel clock (that needs privileges and is chrony's job); it keeps
an offset so the recorder's UTC follows the better source at once. It must not sleep.
"""

from __future__ import annotations

import time

from hal.types import ClockSource

_BOOTTIME = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)


class SystemClock:
    """A ``Clock`` on the host's clocks."""

    def __init__(self, source: ClockSource = ClockSource.RTC) -> None:
        self._source = source
        self._utc_offset_us = 0

    def monotonic_us(self) -> int:
        return time.clock_gettime_ns(_BOOTTIME) // 1000

    def utc_us(self) -> int:
        return time.time_ns() // 1000 + self._utc_offset_us

    @property
    def source(self) -> ClockSource:
        return self._source

    def set_utc(self, utc_us: int, source: ClockSource) -> None:
        self._utc_offset_us = utc_us - time.time_ns() // 1000
        self._source = source
