"""A simulated battery on simulated time: drains while running, charges when docked.

The level is computed from the ``VirtualClock`` when asked, so it costs nothing between reads.
It must not read the wall clock.
"""

from __future__ import annotations

from hal.types import BatteryStatus
from simulator.clock import VirtualClock

_EMPTY_V = 3.3
_FULL_V = 4.2


class SimBattery:
    """A ``Battery`` whose level moves linearly with simulated time, clamped to 0..100 %."""

    def __init__(
        self,
        clock: VirtualClock,
        initial_pct: float,
        drain_pct_per_h: float,
        charging: bool = False,
        *,
        charge_pct_per_h: float = 60.0,
    ) -> None:
        self._clock = clock
        self._drain_pct_per_h = drain_pct_per_h
        self._charge_pct_per_h = charge_pct_per_h
        self._charging = charging
        self._base_pct = _clamp(initial_pct)
        self._base_us = clock.monotonic_us()

    def status(self) -> BatteryStatus:
        level = self.level_pct()
        return BatteryStatus(
            level_pct=level,
            voltage_v=round(_EMPTY_V + (_FULL_V - _EMPTY_V) * level / 100, 3),
            charging=self._charging,
        )

    def level_pct(self) -> float:
        hours = (self._clock.monotonic_us() - self._base_us) / 3.6e9
        rate = self._charge_pct_per_h if self._charging else -self._drain_pct_per_h
        return _clamp(self._base_pct + rate * hours)

    def set_level(self, pct: float) -> None:
        self._base_pct = _clamp(pct)
        self._base_us = self._clock.monotonic_us()

    def set_charging(self, charging: bool) -> None:
        self.set_level(self.level_pct())  # rebase, so the rate change applies from now
        self._charging = charging


def _clamp(pct: float) -> float:
    return min(100.0, max(0.0, float(pct)))
