"""Simulated GPIO: the production gpiozero backends on gpiozero's ``MockFactory``, plus the driving
methods the scenario player uses (press, hold, bounce, dock) on simulated time.

Each simulated unit owns one mock factory (``make_pin_factory``) whose ticks are the simulated
clock's, so every edge carries its simulated time as lgpio's edges carry the kernel's. The mock
pin does not debounce, so ``schedule_bounce`` really delivers a burst of edges; a pin can report
its edges late (``report_delay_us``), as lgpio reports a debounced edge after the debounce period.
Gestures are not recognised here.

Threading: everything runs on the thread that advances the ``VirtualClock``; the mock pin calls
the edge sink synchronously inside ``press``/``release``.
"""

from __future__ import annotations

from typing import Any

from gpiozero.pins.mock import MockFactory, MockPin, MockPWMPin

from hal.gpio import GpiozeroButton, GpiozeroDock, GpiozeroIndicator, IndicatorKind, PinId
from hal.protocols import EdgeSink
from hal.types import Pattern
from simulator.clock import VirtualClock

DOUBLE_PRESS_PRESS_S = 0.12
DOUBLE_PRESS_GAP_S = 0.15
"""A double press: pressed 120 ms, released 150 ms, pressed 120 ms."""


class VirtualTimePin(MockPWMPin):  # type: ignore[misc]
    """gpiozero's PWM mock pin with edges stamped on the factory's (simulated) ticks.

    ``report_delay_us``: the edge's callback runs this long after its stamp, on the simulated
    clock (0: at once, inside ``drive_low``/``drive_high``). ``stamp_lag_us``: the stamp itself is
    this long after the edge, as lgpio stamps a debounced edge at edge + debounce.
    """

    report_delay_us = 0
    stamp_lag_us = 0

    def _call_when_changed(self) -> None:
        # MockPin stamps with the real monotonic clock; the edge's tick here is simulated time.
        factory: VirtualTimeFactory = self.factory
        ticks, state = factory.ticks() + self.stamp_lag_us, self.state
        report_at = ticks + self.report_delay_us
        if report_at <= factory.ticks():
            super(MockPin, self)._call_when_changed(ticks, state)
            return
        factory.clock.call_at(
            report_at, lambda: super(MockPin, self)._call_when_changed(ticks, state)
        )


class VirtualTimeFactory(MockFactory):  # type: ignore[misc]
    """gpiozero's ``MockFactory`` whose ticks are the ``VirtualClock``'s microseconds."""

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__(pin_class=VirtualTimePin)
        self.clock = clock

    def ticks(self) -> int:
        return self.clock.monotonic_us()

    @staticmethod
    def ticks_diff(later: int, earlier: int) -> float:
        return (later - earlier) / 1_000_000


def make_pin_factory(clock: VirtualClock) -> Any:
    """One mock pin factory for a simulated unit, on its clock; its pins can do PWM (for the
    haptic motor)."""
    return VirtualTimeFactory(clock)


def _s_to_us(seconds: float) -> int:
    return round(seconds * 1_000_000)


class SimButton:
    """A ``Button``: ``GpiozeroButton`` on a mock pin, driven by the scenario (active low)."""

    def __init__(self, name: str, pin: PinId, clock: VirtualClock, pin_factory: Any) -> None:
        self._clock = clock
        self._button = GpiozeroButton(name, pin, clock, pin_factory=pin_factory, active_low=True)
        self._pin = self._button.device.pin

    @property
    def name(self) -> str:
        return self._button.name

    @property
    def is_active(self) -> bool:
        return self._button.is_active

    def on_edge(self, sink: EdgeSink) -> None:
        self._button.on_edge(sink)

    def close(self) -> None:
        self._button.close()

    # -- driving -------------------------------------------------------------------------------

    def press(self) -> None:
        self._pin.drive_low()

    def release(self) -> None:
        self._pin.drive_high()

    def schedule_press(self, at_us: int, duration_s: float = 0.15) -> None:
        self._clock.call_at(at_us, self.press)
        self._clock.call_at(at_us + _s_to_us(duration_s), self.release)

    def schedule_double_press(self, at_us: int) -> None:
        press_us = _s_to_us(DOUBLE_PRESS_PRESS_S)
        second_us = at_us + press_us + _s_to_us(DOUBLE_PRESS_GAP_S)
        self.schedule_press(at_us, DOUBLE_PRESS_PRESS_S)
        self.schedule_press(second_us, DOUBLE_PRESS_PRESS_S)

    def schedule_hold(self, at_us: int, hold_s: float) -> None:
        self.schedule_press(at_us, hold_s)

    def schedule_bounce(
        self, at_us: int, edges: int = 6, spacing_us: int = 300, settle_active: bool = False
    ) -> None:
        """Contact chatter: ``edges`` alternating edges ``spacing_us`` apart (sub-millisecond),
        starting with a press; the line ends pressed if ``settle_active``, else released."""
        if settle_active and edges % 2 == 0:
            edges += 1
        if not settle_active and edges % 2 == 1:
            edges += 1
        for k in range(edges):
            self._clock.call_at(at_us + k * spacing_us, self.press if k % 2 == 0 else self.release)


class SimIndicator:
    """An ``Indicator``: ``GpiozeroIndicator`` on a mock pin, steady on/off only (no blink
    threads), recording ``history`` = [(monotonic_us, pattern name), ...] of every ``play``."""

    def __init__(
        self, name: str, pin: PinId, kind: IndicatorKind, clock: VirtualClock, pin_factory: Any
    ) -> None:
        self._clock = clock
        self._indicator = GpiozeroIndicator(name, pin, kind, pin_factory=pin_factory, animate=False)
        self.history: list[tuple[int, str]] = []

    @property
    def name(self) -> str:
        return self._indicator.name

    @property
    def is_lit(self) -> bool:
        return self._indicator.is_lit

    @property
    def pattern(self) -> Pattern | None:
        return self._indicator.pattern

    def play(self, pattern: Pattern) -> None:
        self.history.append((self._clock.monotonic_us(), pattern.name))
        self._indicator.play(pattern)

    def close(self) -> None:
        self._indicator.close()


class SimDock:
    """A ``Dock``: the dock-sense line on a mock pin (active low) and a settable network link."""

    def __init__(self, pin: PinId, pin_factory: Any) -> None:
        self._link = True
        self._dock = GpiozeroDock(pin, pin_factory, active_low=True, link_probe=self._link_state)
        self._pin = self._dock.device.pin

    def docked(self) -> bool:
        return self._dock.docked()

    def link_up(self) -> bool:
        return self._dock.link_up()

    def set_docked(self, docked: bool) -> None:
        if docked:
            self._pin.drive_low()
        else:
            self._pin.drive_high()

    def set_link(self, up: bool) -> None:
        """Whether the dock's network answers while docked (e.g. to simulate an offline dock)."""
        self._link = up

    def close(self) -> None:
        self._dock.close()

    def _link_state(self) -> bool:
        return self._link
