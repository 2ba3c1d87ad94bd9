"""The simulated unit's power: records shutdown and reboot requests, and can cut power.

The scenario player decides what a request means (end the run, boot again, try-boot). ``cut``
ends the process at once with exit status 137, like a pulled battery: no ``finally`` blocks,
no ``atexit`` handlers, no buffered writes flushed. Only durable (fsync'd) data survives it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import NoReturn

from hal.protocols import Clock

POWER_CUT_EXIT_STATUS = 137
"""What a shell reports for a process killed by SIGKILL (128 + 9): the closest to a pulled cell."""


def _exit_now(status: int) -> NoReturn:
    os._exit(status)


class SimPower:
    """A ``Power`` recording requests as ``(monotonic_us, "shutdown" | "reboot" | "tryboot")``."""

    def __init__(self, clock: Clock, *, exit_now: Callable[[int], NoReturn] = _exit_now) -> None:
        self._clock = clock
        self._exit_now = exit_now
        self.requests: list[tuple[int, str]] = []

    def shutdown(self) -> None:
        self.requests.append((self._clock.monotonic_us(), "shutdown"))

    def reboot(self, *, tryboot: bool = False) -> None:
        self.requests.append((self._clock.monotonic_us(), "tryboot" if tryboot else "reboot"))

    @property
    def last_request(self) -> str | None:
        return self.requests[-1][1] if self.requests else None

    def cut(self) -> NoReturn:
        """End the process immediately (``os._exit(137)``): no cleanup code of any kind runs."""
        self._exit_now(POWER_CUT_EXIT_STATUS)
