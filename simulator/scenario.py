"""Scenario files (CONTRACT §5): what happens to the simulated unit, and when, on simulated time.

Parsing is strict: an unknown key, a wrong type or an impossible time is a ``UsageError`` naming
the file and the event (and TOML syntax errors name the line). Playing a scenario is the
composition root's job (``firmware.sim_unit``); this module only describes it.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from typing import Any

from hal.errors import UsageError

BUTTONS = ("event", "function")

# action -> (allowed extra keys, required extra keys)
ACTIONS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "press": (frozenset({"button"}), frozenset()),
    "double_press": (frozenset({"button"}), frozenset()),
    "hold": (frozenset({"button", "hold_s"}), frozenset()),
    "bounce": (frozenset({"button"}), frozenset()),
    "trigger": (frozenset({"hold_s"}), frozenset()),
    "power_cut": (frozenset(), frozenset()),
    "dock": (frozenset(), frozenset()),
    "undock": (frozenset(), frozenset()),
    "battery": (frozenset({"level_pct", "charging"}), frozenset({"level_pct"})),
    "gnss_loss": (frozenset(), frozenset()),
    "gnss_restore": (frozenset(), frozenset()),
    "gnss_garbage": (frozenset({"count"}), frozenset()),
    "rtc_reset": (frozenset(), frozenset()),
}
_COMMON = frozenset({"at_s", "action"})


@dataclass(frozen=True)
class ScenarioEvent:
    at_s: float
    action: str
    button: str = "event"
    hold_s: float = 3.5
    level_pct: float = 0.0
    charging: bool = False
    count: int = 10


@dataclass(frozen=True)
class Scenario:
    duration_s: float
    events: tuple[ScenarioEvent, ...]


def _number(value: Any, where: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UsageError(f"{where} must be a number, not {value!r}")
    if not lo <= value <= hi:
        raise UsageError(f"{where} must be from {lo:g} to {hi:g}, not {value!r}")
    return float(value)


def parse_scenario(text: str, source: str) -> Scenario:
    """Parse scenario TOML ``text`` read from ``source`` (named in every error)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"scenario {source}: not valid TOML ({exc})") from None
    unknown = set(data) - {"duration_s", "events"}
    if unknown:
        raise UsageError(
            f"scenario {source}: unknown key {sorted(unknown)[0]!r} (known: duration_s, events)"
        )
    if "duration_s" not in data:
        raise UsageError(f"scenario {source}: missing duration_s (simulated seconds from power-on)")
    duration_s = _number(data["duration_s"], f"scenario {source}: duration_s", 0.001, 30 * 86400)
    raw_events = data.get("events", [])
    if not isinstance(raw_events, list):
        raise UsageError(f"scenario {source}: events must be an array of tables ([[events]])")
    events: list[ScenarioEvent] = []
    for i, raw in enumerate(raw_events):
        where = f"scenario {source}: events[{i}]"
        if not isinstance(raw, dict):
            raise UsageError(f"{where} must be a table")
        action = raw.get("action")
        if action not in ACTIONS:
            raise UsageError(f"{where}.action must be one of {', '.join(ACTIONS)}, not {action!r}")
        allowed, required = ACTIONS[action]
        extra = set(raw) - _COMMON - allowed
        if extra:
            raise UsageError(
                f"{where}: key {sorted(extra)[0]!r} does not apply to action {action!r}"
            )
        missing = required - set(raw)
        if missing:
            raise UsageError(f"{where}: action {action!r} needs {sorted(missing)[0]!r}")
        if "at_s" not in raw:
            raise UsageError(f"{where}: missing at_s (simulated seconds from power-on)")
        at_s = _number(raw["at_s"], f"{where}.at_s", 0.0, duration_s)
        button = raw.get("button", "event")
        if button not in BUTTONS:
            raise UsageError(f"{where}.button must be one of {', '.join(BUTTONS)}, not {button!r}")
        charging = raw.get("charging", False)
        if not isinstance(charging, bool):
            raise UsageError(f"{where}.charging must be true or false")
        count = raw.get("count", 10)
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 100_000:
            raise UsageError(f"{where}.count must be an integer from 1 to 100000")
        events.append(
            ScenarioEvent(
                at_s=at_s,
                action=action,
                button=button,
                hold_s=_number(raw.get("hold_s", 3.5), f"{where}.hold_s", 0.01, 3600),
                level_pct=_number(raw.get("level_pct", 0.0), f"{where}.level_pct", 0, 100),
                charging=charging,
                count=count,
            )
        )
    events.sort(key=lambda e: e.at_s)  # stable: same-time events keep file order
    return Scenario(duration_s=duration_s, events=tuple(events))
