"""Gesture recognition from raw button edges: double press, hold, press, and the trigger line.

Fed ``(name, active, t_us)`` edges and ``tick(now_us)``; emits ``Gesture`` values. Pure: no IO,
no clock reads (time comes with every call), single-threaded.

Debounce (the mock pin and some wiring do not debounce): a level counts only once it has been
stable for ``debounce_ms``; it is then timestamped at the edge that started it. A burst of edges
shorter than ``debounce_ms`` that ends where it began therefore produces nothing at all.

Gestures (``button`` is the input name):

* ``double_press`` of ``event``: a second press starting within ``double_press_window_s`` of the
  first press's start; emitted on the second press, with ``t_us`` = the first press's start
  (the officer's moment of intent, from which the pre-roll is counted).
* ``hold``: emitted once per press when the input has been held ``hold_s``; ``t_us`` is the
  moment the threshold was crossed, even if ``tick`` comes later. A held press yields no ``press``.
* ``press`` of ``event``: a single press, emitted once the double-press window has passed with no
  second press. ``press`` of ``function`` (and any other button): emitted at once on release,
  since those buttons have no double gesture, unless the owner names them in ``double_buttons``
  (the recorder does for ``function`` where mute is allowed: its double press toggles mute, and
  a single press then waits out the window like ``event``'s, keeping its press time).
* ``trigger``: the auto-activation line named ``trigger`` became active (``button`` = "trigger").
"""

from __future__ import annotations

from dataclasses import dataclass

DOUBLE_BUTTON = "event"
TRIGGER_LINE = "trigger"


@dataclass(frozen=True, slots=True)
class Gesture:
    kind: str  # "press" | "double_press" | "hold" | "trigger"
    button: str
    t_us: int


@dataclass(slots=True)
class _Input:
    raw_active: bool = False
    raw_t_us: int = 0
    active: bool = False  # the debounced level
    pressed_t_us: int = 0
    hold_fired: bool = False
    second_of_double: bool = False
    single_pending_t_us: int | None = None  # first press of a possible double


class GestureRecogniser:
    def __init__(
        self,
        double_press_window_s: float,
        hold_s: float,
        debounce_ms: float,
        *,
        double_buttons: tuple[str, ...] = (DOUBLE_BUTTON,),
    ) -> None:
        self.double_buttons = frozenset(double_buttons)
        self.window_us = round(double_press_window_s * 1_000_000)
        self.hold_us = round(hold_s * 1_000_000)
        self.debounce_us = round(debounce_ms * 1000)
        self._inputs: dict[str, _Input] = {}
        self._now_us = 0
        self.ignored_edges = 0

    def feed(self, name: str, active: bool, t_us: int) -> list[Gesture]:
        """One raw edge; returns the gestures that are complete at ``t_us``."""
        out = self.tick(t_us)
        inp = self._inputs.setdefault(name, _Input())
        t_us = max(t_us, self._now_us)
        if active == inp.raw_active:
            self.ignored_edges += 1  # a repeated level carries no news
            return out
        inp.raw_active = active
        inp.raw_t_us = t_us
        if self.debounce_us == 0:
            out.extend(self._settle(name, inp))
        return out

    def tick(self, now_us: int) -> list[Gesture]:
        """Advance time to ``now_us``: settle levels and fire due timers, in time order."""
        now_us = max(now_us, self._now_us)
        out: list[Gesture] = []
        while True:
            due = self._next_due(now_us)
            if due is None:
                break
            _t, name, what = due
            inp = self._inputs[name]
            if what == "settle":
                out.extend(self._settle(name, inp))
            elif what == "hold":
                inp.hold_fired = True
                out.append(Gesture("hold", name, inp.pressed_t_us + self.hold_us))
            else:  # "single": the window passed without a second press
                assert inp.single_pending_t_us is not None
                out.append(Gesture("press", name, inp.single_pending_t_us))
                inp.single_pending_t_us = None
        self._now_us = now_us
        return out

    def _next_due(self, now_us: int) -> tuple[int, str, str] | None:
        best: tuple[int, str, str] | None = None
        for name, inp in self._inputs.items():
            pending_change = inp.raw_active != inp.active
            cands: list[tuple[int, str]] = []
            if pending_change:
                cands.append((inp.raw_t_us + self.debounce_us, "settle"))
            elif inp.active and not inp.hold_fired and name != TRIGGER_LINE:
                # Only when no change is pending: a release still settling must not count as held.
                cands.append((inp.pressed_t_us + self.hold_us, "hold"))
            if inp.single_pending_t_us is not None:
                single_due_us = inp.single_pending_t_us + self.window_us
                # Wait only while a second press that began inside the window is still settling.
                second_settling = (
                    pending_change and inp.raw_active and (inp.raw_t_us <= single_due_us)
                )
                if not second_settling:
                    cands.append((single_due_us, "single"))
            for t, what in cands:
                if t <= now_us and (best is None or t < best[0]):
                    best = (t, name, what)
        return best

    def _settle(self, name: str, inp: _Input) -> list[Gesture]:
        inp.active = inp.raw_active
        t_us = inp.raw_t_us
        if name == TRIGGER_LINE:
            return [Gesture("trigger", name, t_us)] if inp.active else []
        if inp.active:
            inp.pressed_t_us = t_us
            inp.hold_fired = False
            inp.second_of_double = False
            first = inp.single_pending_t_us
            if name in self.double_buttons and first is not None and t_us - first <= self.window_us:
                inp.single_pending_t_us = None
                inp.second_of_double = True
                return [Gesture("double_press", name, first)]
            return []
        # Release.
        if inp.hold_fired or inp.second_of_double:
            return []
        if name in self.double_buttons:
            inp.single_pending_t_us = inp.pressed_t_us
            return []
        return [Gesture("press", name, inp.pressed_t_us)]

    def holding(self, now_us: int) -> dict[str, float]:
        """Buttons held down now whose hold has not fired yet: seconds held so far (for the
        officer's view of a stop or stealth hold in progress). Reads state; changes nothing."""
        return {
            name: max(0, now_us - inp.pressed_t_us) / 1e6
            for name, inp in self._inputs.items()
            if inp.active and inp.raw_active and not inp.hold_fired and name != TRIGGER_LINE
        }

    def is_active(self, name: str) -> bool:
        inp = self._inputs.get(name)
        return bool(inp and inp.active)
