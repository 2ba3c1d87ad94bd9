"""Button contract: GpiozeroButton on gpiozero's MockFactory, and the simulator's SimButton."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from hal.errors import HardwareError
from hal.gpio import MAX_EDGE_AGE_S, GpiozeroButton, make_pin_factory, stamps_after_debounce
from hal.protocols import Button
from simulator.clock import VirtualClock
from simulator.gpio import SimButton, VirtualTimeFactory
from simulator.gpio import make_pin_factory as make_sim_pin_factory

PIN = 17
Drive = Callable[[bool], None]


def _gpiozero(clock: VirtualClock) -> tuple[Button, Drive]:
    factory = MockFactory()
    button = GpiozeroButton("event", PIN, clock, pin_factory=factory)
    pin: Any = factory.pin(PIN)
    return button, lambda pressed: pin.drive_low() if pressed else pin.drive_high()


def _sim(clock: VirtualClock) -> tuple[Button, Drive]:
    button = SimButton("event", PIN, clock, make_sim_pin_factory(clock))
    return button, lambda pressed: button.press() if pressed else button.release()


@pytest.fixture(params=[_gpiozero, _sim], ids=["gpiozero-mock", "sim"])
def rig(request: pytest.FixtureRequest) -> Iterator[tuple[Button, Drive, VirtualClock]]:
    clock = VirtualClock(1_764_000_000_000_000)
    button, drive = request.param(clock)
    yield button, drive, clock
    button.close()


def test_is_a_button(rig: tuple[Button, Drive, VirtualClock]) -> None:
    button, _, _ = rig
    assert isinstance(button, Button)
    assert button.name == "event"
    assert not button.is_active


def test_edges_carry_name_state_and_clock_time(rig: tuple[Button, Drive, VirtualClock]) -> None:
    button, drive, clock = rig
    edges: list[tuple[str, bool, int]] = []
    button.on_edge(lambda name, active, t_us: edges.append((name, active, t_us)))
    clock.advance(1_000)
    drive(True)
    assert button.is_active
    clock.advance(150_000)
    drive(False)
    assert not button.is_active
    # gpiozero's stock mock pins tick on the real monotonic clock: the age of the edge when its
    # callback runs is then the few microseconds of real time between the two.
    assert [(n, a) for n, a, _ in edges] == [("event", True), ("event", False)]
    assert abs(edges[0][2] - 1_000) <= 1_000
    assert abs(edges[1][2] - 151_000) <= 1_000


def test_on_edge_replaces_the_sink(rig: tuple[Button, Drive, VirtualClock]) -> None:
    button, drive, _ = rig
    first: list[bool] = []
    second: list[bool] = []
    button.on_edge(lambda _n, active, _t: first.append(active))
    button.on_edge(lambda _n, active, _t: second.append(active))
    drive(True)
    drive(False)
    assert first == []
    assert second == [True, False]


def test_no_edge_without_a_change(rig: tuple[Button, Drive, VirtualClock]) -> None:
    button, drive, _ = rig
    edges: list[bool] = []
    button.on_edge(lambda _n, active, _t: edges.append(active))
    drive(False)  # already released
    drive(True)
    drive(True)
    assert edges == [True]


def _late_reporting_button(
    clock: VirtualClock, report_delay_us: int, *, lgpio_stamps: bool = False
) -> tuple[GpiozeroButton, Drive, list[tuple[bool, int]]]:
    """A button on gpiozero mock pins that tick on ``clock`` and report each edge
    ``report_delay_us`` late; with ``lgpio_stamps`` the stamp is edge + debounce (20 ms), as
    lgpio's debounced reports are."""
    factory = VirtualTimeFactory(clock)
    button = GpiozeroButton(
        "event", PIN, clock, pin_factory=factory, bounce_ms=20, stamp_includes_debounce=lgpio_stamps
    )
    pin: Any = factory.pin(PIN)
    pin.report_delay_us = report_delay_us
    pin.stamp_lag_us = 20_000 if lgpio_stamps else 0
    edges: list[tuple[bool, int]] = []
    button.on_edge(lambda _n, active, t_us: edges.append((active, t_us)))
    return button, lambda pressed: pin.drive_low() if pressed else pin.drive_high(), edges


def test_edges_are_dated_by_the_pins_tick_not_by_the_late_callback() -> None:
    clock = VirtualClock(1_764_000_000_000_000)
    button, drive, edges = _late_reporting_button(clock, report_delay_us=20_000)
    clock.advance(1_000)
    drive(True)
    assert edges == []  # the report comes after the debounce period
    clock.advance(150_000)
    drive(False)
    clock.advance(100_000)
    assert edges == [(True, 1_000), (False, 151_000)]
    assert button.untrusted_ticks == 0
    button.close()


def test_lgpio_style_stamps_at_the_end_of_the_debounce_are_dated_back_to_the_edge() -> None:
    clock = VirtualClock(1_764_000_000_000_000)
    button, drive, edges = _late_reporting_button(clock, report_delay_us=3_000, lgpio_stamps=True)
    clock.advance(1_000)
    drive(True)
    clock.advance(150_000)
    drive(False)
    clock.advance(100_000)
    assert edges == [(True, 1_000), (False, 151_000)]
    button.close()


def test_only_lgpio_is_taken_to_stamp_after_its_debounce() -> None:
    assert not stamps_after_debounce(MockFactory())
    assert not stamps_after_debounce(VirtualTimeFactory(VirtualClock(0)))


def test_an_edge_tick_too_old_to_trust_is_dated_at_its_callback() -> None:
    clock = VirtualClock(1_764_000_000_000_000)
    late_us = round(MAX_EDGE_AGE_S * 1e6) + 500_000
    button, drive, edges = _late_reporting_button(clock, report_delay_us=late_us)
    drive(True)
    clock.advance(late_us)
    assert edges == [(True, late_us)]
    assert button.untrusted_ticks == 1
    button.close()


def test_pin_factories_are_chosen_by_name() -> None:
    assert isinstance(make_pin_factory("mock"), MockFactory)
    with pytest.raises(HardwareError, match="unknown GPIO pin factory 'rpigpio'"):
        make_pin_factory("rpigpio")


_NO_GPIO_CHIP = pytest.mark.skipif(
    any(Path("/dev").glob("gpiochip*")), reason="a GPIO chip exists here: lgpio may open"
)


@_NO_GPIO_CHIP
def test_lgpio_where_it_cannot_run_is_one_hardware_error() -> None:
    """With lgpio installed (the test extra, where a wheel exists) this runs gpiozero's real
    ``LGPIOFactory``, which finds no Pi here; without it, the import fails. Either way: one
    ``HardwareError`` naming the factory and the cause."""
    cause = "PinUnknownPi" if importlib.util.find_spec("lgpio") else "ModuleNotFoundError"
    with pytest.raises(HardwareError, match=f"GPIO pin factory lgpio: {cause}: "):
        make_pin_factory("lgpio")
