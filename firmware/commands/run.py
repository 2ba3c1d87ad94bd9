"""`bwc run [--device DEVICE]`: the recorder daemon on the profile's backends (CONTRACT §3).

With the simulated backends (``camera.backend = "sim"``) the unit runs on simulated time paced to
the wall clock, and the keyboard of the terminal presses the simulated buttons; a status line
shows the state, buffer seconds, GNSS and battery. ``--scenario`` (or ``$BWC_SCENARIO``) presses
them from a scenario file instead and powers off at its ``duration_s``: that is how the firmware
image's QEMU test drives the unit under systemd, where the simulated unit speaks sd_notify
(``READY=1`` once buffering, ``WATCHDOG=1`` while simulated time advances) like the real one.
With the Raspberry Pi backends it runs the real unit (``firmware.pi_unit``) under systemd.
"""

from __future__ import annotations

import argparse
import os
import select
import sys
import termios
import tty
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from firmware.commands.sim import add_set_option, parse_sets
from firmware.layout import UnitLayout
from hal.errors import UsageError

if TYPE_CHECKING:
    from simulator.scenario import Scenario

DEFAULT_DEVICE = os.environ.get("BWC_DEVICE", "/var/lib/bwc/unit")
DEFAULT_SCENARIO = os.environ.get("BWC_SCENARIO") or None
STEP_US = 100_000

KEYS = {
    "r": ("double_press", "event", "start recording (event button, double press)"),
    "s": ("hold", "event", "stop recording (event button, held 3.5 s)"),
    "m": ("press", "function", "marker (function button, press)"),
    "h": ("hold", "function", "stealth on/off (function button, held 3.5 s)"),
    "t": ("trigger", "trigger", "auto-activation line (holster/light bar) for 1 s"),
    "d": ("dock", "dock", "put in / take out of the dock"),
}
KEY_HELP = "  ".join(f"[{k}] {v[2]}" for k, v in KEYS.items()) + "  [q] power off"


def add_parser(sub: Any) -> None:
    p = sub.add_parser("run", help="the recorder daemon on the profile's backends")
    p.add_argument("--device", type=Path, default=Path(DEFAULT_DEVICE), metavar="DEVICE")
    add_set_option(p)
    p.add_argument(
        "--duration-s",
        type=float,
        default=None,
        metavar="S",
        help="power off cleanly after S seconds (default: run until q, Ctrl-C or SIGTERM)",
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
        return _run_simulated(layout, overrides, args.duration_s, scenario)
    if args.scenario is not None:
        raise UsageError("--scenario needs the simulated backends (camera.backend = 'sim')")
    from firmware.pi_unit import run_pi_unit

    return run_pi_unit(layout, overrides, args.duration_s)


def _status_line(status: Mapping[str, Any], docked: bool) -> str:
    gnss = status.get("gnss") or {}
    battery = status.get("battery") or {}
    where = (
        f"{gnss['lat_deg']:.5f},{gnss['lon_deg']:.5f} ({gnss.get('satellites', 0)} sats)"
        if gnss.get("lat_deg") is not None
        else "no fix"
    )
    rec = status.get("recording")
    parts = [
        f"{str(status['state']).upper():<9}",
        f"buffer {float(status['buffer_s']):5.1f} s",
        f"rec {rec[:8]}" if rec else "not recording",
        f"GNSS {where}",
        f"battery {float(battery.get('level_pct', 0)):.0f}%" if battery else "battery ?",
    ]
    if status.get("stealth"):
        parts.append("STEALTH")
    if docked:
        parts.append("DOCKED")
    return " | ".join(parts)


def _run_simulated(
    layout: UnitLayout,
    overrides: Mapping[str, Any],
    duration_s: float | None,
    scenario: Scenario | None = None,
) -> int:
    from firmware.sim_unit import boot_simulated_unit
    from firmware.supervisor import Watchdog, notify, status_text
    from recorder.state_machine import State
    from simulator.scenario import ScenarioEvent

    unit = boot_simulated_unit(layout, overrides, realtime=True)
    interactive = sys.stdin.isatty() and scenario is None
    out = sys.stdout
    print(f"bwc run: simulated unit {unit.assignment.device_id} on slot {unit.plan.slot}")
    if scenario is not None:
        print(f"bwc run: playing a scenario of {len(scenario.events)} event(s)", flush=True)
        for event in scenario.events:
            unit.schedule(event)
        if duration_s is None:
            duration_s = scenario.duration_s
    else:
        print(KEY_HELP if interactive else "stdin is not a terminal: keys disabled", flush=True)
    # Under systemd (Type=notify) the simulated unit reports like the real one: ready once it
    # buffers, and watchdog pets only while simulated time moves (a hung loop stops them).
    if unit.recorder.state is State.BUFFERING:
        notify("READY=1\n" + status_text(unit.recorder.status()))
    watchdog = Watchdog()
    saved = termios.tcgetattr(sys.stdin) if interactive else None
    end_us = round(duration_s * 1_000_000) if duration_s is not None else None
    try:
        if interactive:
            tty.setcbreak(sys.stdin)
        while end_us is None or unit.clock.monotonic_us() < end_us:
            now = unit.clock.monotonic_us()
            unit.run_until(now + STEP_US if end_us is None else min(now + STEP_US, end_us))
            watchdog.pet_if_progress(unit.clock.monotonic_us())
            if interactive and select.select([sys.stdin], [], [], 0)[0]:
                key = sys.stdin.read(1).lower()
                if key == "q":
                    break
                if key in KEYS:
                    action, button, _ = KEYS[key]
                    at_s = unit.clock.monotonic_us() / 1e6
                    if action == "dock":
                        action = "undock" if unit.dock.docked() else "dock"
                    unit.schedule(
                        ScenarioEvent(
                            at_s=at_s,
                            action=action,
                            button=button,
                            hold_s=1.0 if action == "trigger" else 3.5,
                        )
                    )
            if interactive:
                line = _status_line(unit.recorder.status(), unit.dock.docked())
                out.write("\r" + line[:160].ljust(160))
                out.flush()
    except KeyboardInterrupt:
        pass
    finally:
        if saved is not None:
            termios.tcsetattr(sys.stdin, termios.TCSADRAIN, saved)
        notify("STOPPING=1")
        unit.power_off("scenario_end" if scenario is not None else "operator power off")
    pets = f"; {watchdog.pets} watchdog ping(s)" if watchdog.enabled else ""
    print(f"\nbwc run: powered off; {len(unit.recorder.recordings)} recording(s) this boot{pets}")
    print(f"  verify: bwc verify {layout.evidence} --trust {layout.device_pub} --allow-freed")
    return 0
