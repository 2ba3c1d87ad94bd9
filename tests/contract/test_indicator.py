"""Indicator contract: GpiozeroIndicator (LED, buzzer, haptic) on MockFactory, and SimIndicator."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from hal.gpio import GpiozeroIndicator
from hal.protocols import Indicator
from hal.types import OFF, SOLID, Pattern
from simulator.clock import VirtualClock
from simulator.gpio import SimIndicator

BLINK = Pattern("blink", ((100, 400),), repeat=True)
TRIPLE = Pattern("triple", ((80, 80), (80, 80), (300, 0)), repeat=False)


def _gpiozero(kind: str) -> GpiozeroIndicator | SimIndicator:
    factory = MockFactory(pin_class=MockPWMPin)
    return GpiozeroIndicator("status", 22, kind, pin_factory=factory)  # type: ignore[arg-type]


def _sim(kind: str) -> GpiozeroIndicator | SimIndicator:
    factory = MockFactory(pin_class=MockPWMPin)
    return SimIndicator("status", 22, kind, VirtualClock(0), factory)  # type: ignore[arg-type]


@pytest.fixture(
    params=[
        (_gpiozero, "led"),
        (_gpiozero, "buzzer"),
        (_gpiozero, "haptic"),
        (_sim, "led"),
        (_sim, "haptic"),
    ],
    ids=["gpiozero-led", "gpiozero-buzzer", "gpiozero-haptic", "sim-led", "sim-haptic"],
)
def indicator(request: pytest.FixtureRequest) -> Iterator[GpiozeroIndicator | SimIndicator]:
    make, kind = request.param
    ind = make(kind)
    yield ind
    ind.close()


def test_is_an_indicator(indicator: GpiozeroIndicator | SimIndicator) -> None:
    assert isinstance(indicator, Indicator)
    assert indicator.name == "status"
    assert not indicator.is_lit


def test_solid_lights_and_off_darkens(indicator: GpiozeroIndicator | SimIndicator) -> None:
    indicator.play(SOLID)
    assert indicator.is_lit
    assert indicator.pattern == SOLID
    indicator.play(OFF)
    assert not indicator.is_lit


def test_animated_patterns_replace_each_other_and_off_wins(
    indicator: GpiozeroIndicator | SimIndicator,
) -> None:
    indicator.play(BLINK)
    indicator.play(TRIPLE)
    assert indicator.pattern == TRIPLE
    indicator.play(OFF)
    # Off stops any blink or source thread at once, so the output stays dark.
    assert not indicator.is_lit
    assert indicator.pattern == OFF
