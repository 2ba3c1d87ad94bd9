"""GPIO backends on gpiozero: the officer's buttons, the LED/buzzer/haptic indicators and the
dock-sense line. Works on any gpiozero pin factory (lgpio on a Pi, ``MockFactory`` in simulation).

This is the only module of ``hal`` that imports gpiozero, and only when constructed. It reports
raw edges; it must not recognise gestures (the recorder does that from edge timestamps).

Edge times: the pin factory stamps each edge (gpiozero keeps the stamp as the device's last
change) and the callback runs later, after the debounce period and thread scheduling, so the edge
is dated from that stamp: the clock's time now minus the device's ``active_time`` or
``inactive_time`` (gpiozero's age of the stamp, by the factory's own ``ticks_diff``). lgpio stamps
a debounced report with the kernel's CLOCK_MONOTONIC edge timestamp *plus* the debounce period
(``lgPthAlerts.c``: ``report.timestamp = last_evt_ts + debounce_nanos``), so on lgpio the debounce
is added back to the age (``stamps_after_debounce``).

Threading: gpiozero calls the edge callbacks on its pin-event thread (or, with the mock factory,
synchronously in ``drive_low``/``drive_high``); the sink must not block. Animated indicator
patterns run on gpiozero's own blink/source threads.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

from hal.errors import HardwareError
from hal.protocols import Clock, EdgeSink
from hal.types import Pattern

log = logging.getLogger(__name__)

PinId = int | str
IndicatorKind = Literal["led", "buzzer", "haptic"]

_MIN_STEP_MS = 10
"""Multi-step patterns are played on a grid no finer than this, so the source thread idles."""

MAX_EDGE_AGE_S = 1.0
"""An edge tick older than this when its callback runs (or in the future) is not trusted: the edge
is dated at the callback instead, and ``GpiozeroButton.untrusted_ticks`` counts it."""

PIN_FACTORIES = ("lgpio", "mock")


def stamps_after_debounce(pin_factory: Any) -> bool:
    """Whether this gpiozero pin factory stamps a debounced edge at the end of its debounce period
    rather than at the edge: true of lgpio's (gpiozero.pins.lgpio), whose reports carry the
    kernel's edge timestamp plus the debounce."""
    return type(pin_factory).__module__ == "gpiozero.pins.lgpio"


def make_pin_factory(name: str) -> Any:
    """The gpiozero pin factory named ``name``, chosen explicitly rather than by gpiozero's
    fallback chain (which would silently pick another library, or none, on a broken install).

    ``lgpio``: the Raspberry Pi's (Pi 5 and earlier, through /dev/gpiochip*). ``mock``: gpiozero's
    ``MockFactory`` with PWM-capable pins (the haptic motor is PWM, as lgpio's pins are).
    Raises ``HardwareError`` naming the factory if it cannot be opened.
    """
    if name == "mock":
        from gpiozero.pins.mock import MockFactory, MockPWMPin

        return MockFactory(pin_class=MockPWMPin)
    if name != "lgpio":
        raise HardwareError(
            f"unknown GPIO pin factory {name!r} (known: {', '.join(PIN_FACTORIES)})"
        )
    try:
        import lgpio
        from gpiozero.pins.lgpio import LGPIOFactory
    except ImportError as exc:  # no lgpio module: python3-lgpio (apt) or the `pi` extra
        raise HardwareError(f"GPIO pin factory lgpio: {type(exc).__name__}: {exc}") from exc
    # lgpio reports a chip it cannot open (absent, or no permission: the `gpio` group) as its
    # own ``lgpio.error``, which derives from Exception only.
    lgpio_error: type[Exception] = getattr(lgpio, "error", RuntimeError)
    try:
        return LGPIOFactory()
    except (lgpio_error, OSError, RuntimeError) as exc:
        raise HardwareError(f"GPIO pin factory lgpio: {type(exc).__name__}: {exc}") from exc


def _gpiozero() -> Any:
    try:
        import gpiozero
    except ImportError as exc:  # pragma: no cover - gpiozero is a dependency
        raise HardwareError(f"gpiozero is not available: {exc}") from exc
    return gpiozero


class GpiozeroButton:
    """A momentary input (button or trigger line) reported as edges dated by the pin's tick."""

    def __init__(
        self,
        name: str,
        pin: PinId,
        clock: Clock,
        pin_factory: Any = None,
        *,
        bounce_ms: int | None = 20,
        active_low: bool = True,
        stamp_includes_debounce: bool | None = None,
    ) -> None:
        """``stamp_includes_debounce``: whether the factory's edge stamps are the end of the
        debounce period (None: ask ``stamps_after_debounce`` of the device's factory)."""
        gpiozero = _gpiozero()
        self._name = name
        self._clock = clock
        self._sink: EdgeSink | None = None
        try:
            # Active low: the button shorts the line to ground, the internal pull-up holds it high.
            self._device = gpiozero.Button(
                pin,
                pull_up=active_low,
                bounce_time=None if not bounce_ms else bounce_ms / 1000,
                pin_factory=pin_factory,
            )
        except gpiozero.GPIOZeroError as exc:
            raise HardwareError(f"button {name} on pin {pin}: {exc}") from exc
        self._device.when_pressed = self._pressed
        self._device.when_released = self._released
        if stamp_includes_debounce is None:
            stamp_includes_debounce = stamps_after_debounce(self._device.pin_factory)
        self._stamp_lag_s = bounce_ms / 1000 if bounce_ms and stamp_includes_debounce else 0.0
        self.untrusted_ticks = 0

    @property
    def name(self) -> str:
        return self._name

    @property
    def is_active(self) -> bool:
        return bool(self._device.is_active)

    @property
    def device(self) -> Any:
        """The underlying ``gpiozero.Button`` (for the simulator's driving methods)."""
        return self._device

    def on_edge(self, sink: EdgeSink) -> None:
        self._sink = sink

    def close(self) -> None:
        self._sink = None
        self._device.close()

    def _pressed(self) -> None:
        self._emit(True)

    def _released(self) -> None:
        self._emit(False)

    def _emit(self, active: bool) -> None:
        sink = self._sink
        if sink is None:
            return
        now_us = self._clock.monotonic_us()
        device = self._device
        # Read on the pin-event thread, the only one that moves the last change: no race.
        stamp_age_s = device.active_time if active else device.inactive_time
        age_s = None if stamp_age_s is None else stamp_age_s + self._stamp_lag_s
        if age_s is None or not 0 <= age_s <= MAX_EDGE_AGE_S:
            self.untrusted_ticks += 1
            log.warning("button %s: edge tick age %r s not trusted; dated now", self._name, age_s)
            age_s = 0.0
        sink(self._name, active, now_us - round(age_s * 1_000_000))


class GpiozeroIndicator:
    """An LED, buzzer or haptic motor (PWM) playing ``Pattern`` values.

    With ``animate=False`` (the simulator) a pattern only switches the output steadily on, or off
    for the empty pattern, so no real-time blink thread starts.
    """

    def __init__(
        self,
        name: str,
        pin: PinId,
        kind: IndicatorKind,
        pin_factory: Any = None,
        *,
        animate: bool = True,
    ) -> None:
        gpiozero = _gpiozero()
        classes = {
            "led": gpiozero.LED,
            "buzzer": gpiozero.Buzzer,
            "haptic": gpiozero.PWMOutputDevice,
        }
        if kind not in classes:
            raise HardwareError(f"indicator {name}: unknown kind {kind!r}")
        self._name = name
        self._kind = kind
        self._animate = animate
        try:
            self._device = classes[kind](pin, pin_factory=pin_factory)
        except gpiozero.GPIOZeroError as exc:
            raise HardwareError(f"indicator {name} on pin {pin}: {exc}") from exc
        self._pattern: Pattern | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def pattern(self) -> Pattern | None:
        """The pattern last played."""
        return self._pattern

    @property
    def is_lit(self) -> bool:
        """Whether the output is driven on right now."""
        return bool(self._device.value)

    def play(self, pattern: Pattern) -> None:
        self._pattern = pattern
        device = self._device
        device.source = None  # stops a running multi-step pattern
        if not pattern.steps or all(on_ms == 0 for on_ms, _ in pattern.steps):
            device.off()
            return
        if not self._animate or all(off_ms == 0 for _, off_ms in pattern.steps):
            device.on()
            return
        if len(pattern.steps) == 1:
            on_ms, off_ms = pattern.steps[0]
            device.blink(
                on_time=on_ms / 1000,
                off_time=off_ms / 1000,
                n=None if pattern.repeat else 1,
                background=True,
            )
            return
        step_ms = _grid_ms(pattern)
        device.source_delay = step_ms / 1000
        device.source = _levels(pattern, step_ms)

    def close(self) -> None:
        self._device.source = None
        self._device.close()


def _grid_ms(pattern: Pattern) -> int:
    durations = [d for step in pattern.steps for d in step if d > 0]
    return max(_MIN_STEP_MS, math.gcd(*durations))


def _levels(pattern: Pattern, step_ms: int) -> Iterator[int]:
    """The level for every ``step_ms`` tick of ``pattern``; ends off if it does not repeat."""
    one_pass = [
        level
        for on_ms, off_ms in pattern.steps
        for level, duration_ms in ((1, on_ms), (0, off_ms))
        for _ in range(round(duration_ms / step_ms))
    ]
    if pattern.repeat:
        return itertools.cycle(one_pass)
    return iter([*one_pass, 0])


class GpiozeroDock:
    """The dock: a dock-sense input line, and the network link of the dock's interface."""

    def __init__(
        self,
        pin: PinId,
        pin_factory: Any = None,
        *,
        iface: str = "eth0",
        active_low: bool = True,
        sysfs_net: Path = Path("/sys/class/net"),
        link_probe: Callable[[], bool] | None = None,
    ) -> None:
        gpiozero = _gpiozero()
        try:
            self._device = gpiozero.DigitalInputDevice(
                pin, pull_up=active_low, pin_factory=pin_factory
            )
        except gpiozero.GPIOZeroError as exc:
            raise HardwareError(f"dock sense on pin {pin}: {exc}") from exc
        self._operstate = sysfs_net / iface / "operstate"
        self._link_probe = link_probe if link_probe is not None else self._read_operstate

    @property
    def device(self) -> Any:
        """The underlying ``gpiozero.DigitalInputDevice`` (for the simulator)."""
        return self._device

    def docked(self) -> bool:
        return bool(self._device.is_active)

    def link_up(self) -> bool:
        return self.docked() and self._link_probe()

    def close(self) -> None:
        self._device.close()

    def _read_operstate(self) -> bool:
        try:
            return self._operstate.read_text(encoding="ascii").strip() == "up"
        except OSError:
            return False
