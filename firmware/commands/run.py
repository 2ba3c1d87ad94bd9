"""`bwc run [--device DEVICE]`: the recorder daemon on the profile's backends (CONTRACT §3).

With the simulated backends (``camera.backend = "sim"``) the unit runs on simulated time paced to
the wall clock, and the keyboard of the terminal presses the simulated buttons; a status line
shows the state, buffer seconds, GNSS and battery. With the Raspberry Pi backends it runs the real
unit (``firmware.pi_unit``) under systemd.
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
from typing import Any

from firmware.commands.sim import add_set_option, parse_sets
from firmware.layout import UnitLayout

DEFAULT_DEVICE = os.environ.get("BWC_DEVICE", "/var/lib/bwc/unit")
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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from firmware.identity import read_profile, require_provisioned

    layout = UnitLayout(args.device)
    require_provisioned(layout)
    overrides = parse_sets(args.set)
    profile = read_profile(layout.profile, overrides)
    if profile.camera.backend == "sim":
        return _run_simulated(layout, overrides, args.duration_s)
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
    layout: UnitLayout, overrides: Mapping[str, Any], duration_s: float | None
) -> int:
    from firmware.sim_unit import boot_simulated_unit
    from simulator.scenario import ScenarioEvent

    unit = boot_simulated_unit(layout, overrides, realtime=True)
    interactive = sys.stdin.isatty()
    out = sys.stdout
    print(f"bwc run: simulated unit {unit.assignment.device_id} on slot {unit.plan.slot}")
    print(KEY_HELP if interactive else "stdin is not a terminal: keys disabled")
    saved = termios.tcgetattr(sys.stdin) if interactive else None
    end_us = round(duration_s * 1_000_000) if duration_s is not None else None
    try:
        if interactive:
            tty.setcbreak(sys.stdin)
        while end_us is None or unit.clock.monotonic_us() < end_us:
            now = unit.clock.monotonic_us()
            unit.run_until(now + STEP_US if end_us is None else min(now + STEP_US, end_us))
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
        unit.power_off("operator power off")
    print(f"\nbwc run: powered off; {len(unit.recorder.recordings)} recording(s) this boot")
    print(f"  verify: bwc verify {layout.evidence} --trust {layout.device_pub} --allow-freed")
    return 0
