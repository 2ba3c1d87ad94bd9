"""Button contract: GpiozeroButton on gpiozero's MockFactory, and the simulator's SimButton."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from hal.gpio import GpiozeroButton
from hal.protocols import Button
from simulator.clock import VirtualClock
from simulator.gpio import SimButton

PIN = 17
Drive = Callable[[bool], None]


def _gpiozero(clock: VirtualClock) -> tuple[Button, Drive]:
    factory = MockFactory()
    button = GpiozeroButton("event", PIN, clock, pin_factory=factory)
    pin: Any = factory.pin(PIN)
    return button, lambda pressed: pin.drive_low() if pressed else pin.drive_high()


def _sim(clock: VirtualClock) -> tuple[Button, Drive]:
    button = SimButton("event", PIN, clock, MockFactory(pin_class=MockPWMPin))
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
    assert edges == [("event", True, 1_000), ("event", False, 151_000)]


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
