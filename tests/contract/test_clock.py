"""Clock contract, over every backend that loads here."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from hal.protocols import Clock
from hal.system_clock import SystemClock
from hal.types import ClockSource
from simulator.clock import VirtualClock

START_UTC_US = 1_764_000_000_000_000


def _virtual() -> tuple[Clock, Callable[[], None]]:
    clock = VirtualClock(START_UTC_US)
    return clock, lambda: clock.advance(250_000)


def _system() -> tuple[Clock, Callable[[], None]]:
    return SystemClock(), lambda: None


@pytest.fixture(params=[_virtual, _system], ids=["virtual", "system"])
def clock_and_tick(
    request: pytest.FixtureRequest,
) -> Iterator[tuple[Clock, Callable[[], None]]]:
    yield request.param()


def test_is_a_clock(clock_and_tick: tuple[Clock, Callable[[], None]]) -> None:
    clock, _ = clock_and_tick
    assert isinstance(clock, Clock)


def test_monotonic_never_goes_backwards(clock_and_tick: tuple[Clock, Callable[[], None]]) -> None:
    clock, tick = clock_and_tick
    readings = []
    for _ in range(50):
        readings.append(clock.monotonic_us())
        tick()
    assert readings == sorted(readings)
    assert all(isinstance(r, int) for r in readings)


def test_utc_is_a_plausible_epoch_time(clock_and_tick: tuple[Clock, Callable[[], None]]) -> None:
    clock, _ = clock_and_tick
    assert 1_600_000_000_000_000 < clock.utc_us() < 4_000_000_000_000_000


def test_set_utc_steps_utc_and_source_but_not_monotonic(
    clock_and_tick: tuple[Clock, Callable[[], None]],
) -> None:
    clock, _ = clock_and_tick
    mono_before = clock.monotonic_us()
    target = clock.utc_us() + 3_600_000_000  # an hour ahead
    clock.set_utc(target, ClockSource.GNSS)
    sources = [clock.source]
    # Within a second: only the time between the two calls separates them.
    assert abs(clock.utc_us() - target) < 1_000_000
    assert clock.monotonic_us() >= mono_before
    assert clock.monotonic_us() - mono_before < 1_000_000
    clock.set_utc(target - 7_200_000_000, ClockSource.NTP)
    assert abs(clock.utc_us() - (target - 7_200_000_000)) < 1_000_000
    sources.append(clock.source)
    assert sources == [ClockSource.GNSS, ClockSource.NTP]
