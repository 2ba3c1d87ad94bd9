"""`bwc run [--device DEVICE]`: the recorder daemon on the profile's backends (CONTRACT §3).

With the simulated backends (``camera.backend = "sim"``) the unit runs on simulated time paced to
the wall clock, and the keyboard of the terminal presses the simulated buttons; a live status
(``firmware.status_view``, rendered with rich) shows what the unit is doing and giving as
feedback, and at power-off the commands that check and export what it holds are printed.
``--scenario`` (or ``$BWC_SCENARIO``) presses them from a scenario file instead and powers off
at its ``duration_s``: that is how the firmware image's QEMU test drives the unit under systemd,
where the simulated unit speaks sd_notify (``READY=1`` once buffering, ``WATCHDOG=1`` while
simulated time advances) like the real one.
With the Raspberry Pi backends it runs the real unit (``firmware.pi_unit``) under systemd.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import sys
import termios
import threading
import time
import tty
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from firmware.commands.sim import add_set_option, parse_sets, plural
from firmware.layout import UnitLayout
from hal.errors import UsageError

if TYPE_CHECKING:
    from simulator.scenario import Scenario

DEFAULT_DEVICE = os.environ.get("BWC_DEVICE", "/var/lib/bwc/unit")
DEFAULT_SCENARIO = os.environ.get("BWC_SCENARIO") or None
STEP_US = 100_000

KEYS = {
    "r": ("double_press", "event", "record"),
    "m": ("press", "function", "marker"),
    "s": ("hold", "event", "stop (hold)"),
    "u": ("double_press", "function", "mute"),
    "h": ("hold", "function", "stealth (hold)"),
    "t": ("trigger", "trigger", "trigger line"),
    "d": ("dock", "dock", "dock/undock"),
}
KEY_HELP = " ".join(f"[{k}] {v[2]}" for k, v in KEYS.items()) + " [q] power off"
HOLD_MARGIN_S = 0.5
"""A held key holds the simulated button this much longer than the profile's ``hold_s``."""
REDRAW_S = 0.1
"""Fastest redraw of the status while an offload round runs (wall seconds)."""


def add_parser(sub: Any) -> None:
    p = sub.add_parser("run", help="the recorder daemon on the profile's backends")
    p.add_argument(
        "--device",
        type=Path,
        default=Path(DEFAULT_DEVICE),
        metavar="DEVICE",
        help="the provisioned unit's directory (default: $BWC_DEVICE, else /var/lib/bwc/unit)",
    )
    add_set_option(p)
    p.add_argument(
        "--duration-s",
        type=float,
        default=None,
        metavar="S",
        help="power off cleanly after S seconds (default: run until q, Ctrl-C or SIGTERM)",
    )
    p.add_argument(
        "--hint-agency-key",
        type=Path,
        default=None,
        metavar="FILE",
        help="agency private key to name in the export command printed at power-off "
        "(the demo's; a unit never holds an agency private key)",
    )
    p.add_argument(
        "--scenario",
        type=Path,
        default=Path(DEFAULT_SCENARIO) if DEFAULT_SCENARIO else None,
        metavar="SCENARIO",
        help="simulated backends only: press the buttons from SCENARIO (as `bwc sim` does) "
        "and power off at its duration_s (default: $BWC_SCENARIO)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from firmware.identity import read_profile, require_provisioned

    layout = UnitLayout(args.device)
    require_provisioned(layout)
    overrides = parse_sets(args.set)
    profile = read_profile(layout.profile, overrides)
    if profile.camera.backend == "sim":
        scenario = None
        if args.scenario is not None:
            from firmware.commands.sim import read_scenario

            scenario = read_scenario(args.scenario)
        return _run_simulated(layout, overrides, args.duration_s, args.hint_agency_key, scenario)
    if args.scenario is not None:
        raise UsageError("--scenario needs the simulated backends (camera.backend = 'sim')")
    from firmware.pi_unit import run_pi_unit

    return run_pi_unit(layout, overrides, args.duration_s)


def _run_simulated(
    layout: UnitLayout,
    overrides: Mapping[str, Any],
    duration_s: float | None,
    agency_key: Path | None,
    scenario: Scenario | None = None,
) -> int:
    from rich.console import Console
    from rich.live import Live

    from firmware.boot_outcome import boot_lines
    from firmware.hints import format_hints, unit_hints
    from firmware.sim_unit import boot_simulated_unit
    from firmware.status_view import StatusTracker, clock_s, read_snapshot, render_status
    from firmware.supervisor import Watchdog, notify, status_text
    from recorder.state_machine import State
    from simulator.scenario import ScenarioEvent

    unit = boot_simulated_unit(layout, overrides, realtime=True)
    interactive = sys.stdin.isatty() and scenario is None
    console = Console(highlight=False)
    firmware = boot_lines(unit.plan, unit.outcome)
    print(
        f"bwc run: simulated unit {unit.assignment.device_id} on slot {unit.plan.slot} "
        f"({unit.plan.version})"
    )
    for line in firmware:
        print(f"bwc run: {line}")
    # systemd stops the unit with SIGTERM (KillSignal=, also at reboot): stop as on Ctrl-C, so the
    # open recording is sealed and the boot ends with its shutdown event, not as a power loss.
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    if scenario is not None:
        print(f"bwc run: playing a scenario of {plural(len(scenario.events), 'event')}", flush=True)
        for event in scenario.events:
            unit.schedule(event)
        if duration_s is None:
            duration_s = scenario.duration_s
    elif not interactive:
        print("bwc run: stdin is not a terminal: keys disabled", flush=True)
    # Under systemd (Type=notify) the simulated unit reports like the real one: ready once it
    # buffers, and watchdog pets only while simulated time moves (a hung loop stops them).
    if unit.recorder.state is State.BUFFERING:
        notify("READY=1\n" + status_text(unit.recorder.status()))
    watchdog = Watchdog()
    tracker = StatusTracker()
    keys = KEY_HELP if interactive else ""
    live = Live(console=console, auto_refresh=False) if console.is_terminal else None
    printed: set[int] = set()
    last_draw = [0.0]
    docked = [False]

    def draw(force: bool = True, powered: bool = True) -> None:
        wall = time.monotonic()
        if not force and wall - last_draw[0] < REDRAW_S:
            return
        last_draw[0] = wall
        if powered:
            docked[0] = unit.dock.docked()
        snap = read_snapshot(
            unit,
            tracker,
            wall_s=wall,
            keys=keys if powered else "",
            firmware=firmware,
            docked=docked[0],
        )
        if live is not None:
            live.update(render_status(snap), refresh=True)
            return
        # Not a terminal (a log, a pipe): each notice once, as a plain line.
        for t_us, notice in tracker.notices:
            key = hash((t_us, notice))
            if key not in printed:
                printed.add(key)
                print(f"bwc run: [{clock_s(t_us / 1e6)}] {notice.symbol} {notice.text}")

    unit.dock_offload.on_progress = lambda _progress: draw(force=False)
    hold_s = unit.profile.recorder.hold_s + HOLD_MARGIN_S
    saved = termios.tcgetattr(sys.stdin) if interactive else None
    end_us = round(duration_s * 1_000_000) if duration_s is not None else None
    try:
        if live is not None:
            live.start()
        if interactive:
            tty.setcbreak(sys.stdin)
        while (end_us is None or unit.clock.monotonic_us() < end_us) and not stop.is_set():
            now = unit.clock.monotonic_us()
            unit.run_until(now + STEP_US if end_us is None else min(now + STEP_US, end_us))
            watchdog.pet_if_progress(unit.clock.monotonic_us())
            if interactive and select.select([sys.stdin], [], [], 0)[0]:
                key = sys.stdin.read(1).lower()
                if key == "q":
                    break
                if key in KEYS:
                    action, button, _ = KEYS[key]
                    if action == "dock":
                        action = "undock" if unit.dock.docked() else "dock"
                    unit.schedule(
                        ScenarioEvent(
                            at_s=unit.clock.monotonic_us() / 1e6,
                            action=action,
                            button=button,
                            hold_s=1.0 if action == "trigger" else hold_s,
                        )
                    )
            draw()
    except KeyboardInterrupt:
        pass
    finally:
        if saved is not None:
            termios.tcsetattr(sys.stdin, termios.TCSADRAIN, saved)
        unit.dock_offload.on_progress = None
        notify("STOPPING=1")
        unit.power_off("scenario_end" if scenario is not None else "operator power off")
        draw(powered=False)
        if live is not None:
            live.stop()
    n = len(unit.recorder.recordings)
    pets = f"; {plural(watchdog.pets, 'watchdog ping')}" if watchdog.enabled else ""
    print(f"bwc run: powered off; {plural(n, 'recording')} this boot{pets}", flush=True)
    hints = unit_hints(layout, unit.profile, unit.assignment.device_id, agency_key=agency_key)
    print("Check" + (" and play" if agency_key else "") + " what the unit holds:")
    print(format_hints(hints))
    return 0
