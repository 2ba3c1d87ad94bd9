"""What the officer (and people nearby) see, feel and hear: the feedback vocabulary.

Each ``Feedback`` maps to at most one pattern per indicator (LED, haptic motor, buzzer). LED
patterns are steady states (they repeat until replaced); haptic and tone patterns play once.
Every pattern has a unique name of the form ``<indicator>:<feedback>``; the simulated indicators
record those names, and docs/feedback.md lists the table. This module must not read the clock or
do anything but call ``Indicator.play``.

Stealth: while on, ALL indicators are dark and nothing plays. Entering stealth gives exactly one
short haptic confirmation (``haptic:stealth-on``, felt only by the wearer) and then switches every
indicator off; leaving stealth gives ``haptic:stealth-off`` and restores the steady LED state.

LED precedence: LOW_BATTERY's fast blink does not replace the solid recording LED, since the
recording light is what tells bystanders they are being recorded; the beeps still play.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from hal.protocols import Indicator
from hal.types import OFF, Pattern


class Feedback(enum.StrEnum):
    BUFFERING = "buffering"
    RECORDING_START = "recording-start"
    RECORDING = "recording"
    REMINDER = "reminder"
    STOP = "stop"
    MARKER = "marker"
    LOW_BATTERY = "low-battery"
    FAULT = "fault"
    STEALTH_ON = "stealth-on"
    STEALTH_OFF = "stealth-off"
    REFUSED = "refused"
    OFFLOADING = "offloading"
    OFFLOAD_COMPLETE = "offload-complete"
    MUTED = "muted"
    UNMUTED = "unmuted"


@dataclass(frozen=True, slots=True)
class Signals:
    led: Pattern | None = None
    haptic: Pattern | None = None
    tone: Pattern | None = None


def _p(indicator: str, fb: Feedback, steps: tuple[tuple[int, int], ...], repeat: bool) -> Pattern:
    return Pattern(f"{indicator}:{fb.value}", steps, repeat)


def _led(fb: Feedback, *steps: tuple[int, int]) -> Pattern:
    return _p("led", fb, steps, True)


def _haptic(fb: Feedback, *steps: tuple[int, int]) -> Pattern:
    return _p("haptic", fb, steps, False)


def _tone(fb: Feedback, *steps: tuple[int, int]) -> Pattern:
    # A buzzer pattern's steps are (on_ms, off_ms); pitch is the buzzer backend's business, so
    # "rising" and "falling" tones differ in rhythm: short-then-long vs long-then-short.
    return _p("tone", fb, steps, False)


F = Feedback
PATTERNS: dict[Feedback, Signals] = {
    F.BUFFERING: Signals(led=_led(F.BUFFERING, (100, 2900))),
    F.RECORDING_START: Signals(
        led=_led(F.RECORDING, (1000, 0)),
        haptic=_haptic(F.RECORDING_START, (150, 100), (150, 0)),
        tone=_tone(F.RECORDING_START, (80, 40), (160, 0)),
    ),
    F.RECORDING: Signals(led=_led(F.RECORDING, (1000, 0))),
    F.REMINDER: Signals(haptic=_haptic(F.REMINDER, (100, 0)), tone=_tone(F.REMINDER, (60, 0))),
    F.STOP: Signals(
        led=_led(F.BUFFERING, (100, 2900)),
        haptic=_haptic(F.STOP, (600, 0)),
        tone=_tone(F.STOP, (160, 40), (80, 0)),
    ),
    F.MARKER: Signals(haptic=_haptic(F.MARKER, (80, 0)), tone=_tone(F.MARKER, (40, 0))),
    F.LOW_BATTERY: Signals(
        led=_led(F.LOW_BATTERY, (100, 100)),
        tone=_tone(F.LOW_BATTERY, (60, 60), (60, 60), (60, 0)),
    ),
    F.FAULT: Signals(led=_led(F.FAULT, (50, 50)), tone=_tone(F.FAULT, (1500, 0))),
    F.STEALTH_ON: Signals(haptic=_haptic(F.STEALTH_ON, (200, 0))),
    F.STEALTH_OFF: Signals(haptic=_haptic(F.STEALTH_OFF, (100, 100), (100, 0))),
    F.REFUSED: Signals(haptic=_haptic(F.REFUSED, (40, 60), (40, 60), (40, 0))),
    F.OFFLOADING: Signals(led=_led(F.OFFLOADING, (500, 500))),
    F.OFFLOAD_COMPLETE: Signals(led=_led(F.OFFLOAD_COMPLETE, (1000, 0))),
    F.MUTED: Signals(haptic=_haptic(F.MUTED, (60, 60), (60, 0))),
    F.UNMUTED: Signals(haptic=_haptic(F.UNMUTED, (120, 0))),
}


def all_patterns() -> list[Pattern]:
    """Every distinct pattern (the recording LED is shared by RECORDING_START and RECORDING)."""
    seen: dict[str, Pattern] = {}
    for signals in PATTERNS.values():
        for p in (signals.led, signals.haptic, signals.tone):
            if p is not None:
                seen.setdefault(p.name, p)
    return list(seen.values())


class FeedbackController:
    """Plays ``Feedback`` on the unit's indicators, honouring stealth."""

    def __init__(self, led: Indicator, haptic: Indicator, buzzer: Indicator) -> None:
        self._led = led
        self._haptic = haptic
        self._buzzer = buzzer
        self._stealth = False
        self._steady: Pattern = OFF  # the LED state to show (or restore after stealth)
        self.history: list[Feedback] = []

    @property
    def stealth(self) -> bool:
        return self._stealth

    def show(self, feedback: Feedback) -> None:
        self.history.append(feedback)
        if feedback is Feedback.STEALTH_ON:
            self.set_stealth(True)
            return
        if feedback is Feedback.STEALTH_OFF:
            self.set_stealth(False)
            return
        signals = PATTERNS[feedback]
        led = signals.led
        if led is not None and not (
            feedback is Feedback.LOW_BATTERY and self._steady.name == "led:recording"
        ):
            self._steady = led
        else:
            led = None
        if self._stealth:
            return
        if led is not None:
            self._led.play(led)
        if signals.haptic is not None:
            self._haptic.play(signals.haptic)
        if signals.tone is not None:
            self._buzzer.play(signals.tone)

    def set_stealth(self, on: bool) -> None:
        if on == self._stealth:
            return
        if on:
            self._haptic.play(PATTERNS[Feedback.STEALTH_ON].haptic or OFF)
            self._led.play(OFF)
            self._buzzer.play(OFF)
            self._stealth = True
        else:
            self._stealth = False
            self._haptic.play(PATTERNS[Feedback.STEALTH_OFF].haptic or OFF)
            self._led.play(self._steady)

    def close(self) -> None:
        for ind in (self._led, self._haptic, self._buzzer):
            ind.play(OFF)
