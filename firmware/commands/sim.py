"""`bwc sim SCENARIO --device DEVICE`: boot the simulated unit, play a scenario (CONTRACT §3, §5).

Runs on simulated time as fast as the machine allows unless ``--realtime``. A ``power_cut``
event ends the process at once with exit status 137, as a pulled battery (or SIGKILL) would.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from firmware.layout import UnitLayout
from hal.errors import UsageError

if TYPE_CHECKING:
    from simulator.scenario import Scenario


def plural(n: int, word: str, words: str | None = None) -> str:
    """``1 recording``, ``2 recordings``, ``0 recordings``."""
    return f"{n} {word if n == 1 else (words or word + 's')}"


def add_set_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a profile key for this run, e.g. recorder.pre_event_s=30",
    )


def parse_sets(items: list[str]) -> dict[str, Any]:
    from recorder.config import parse_override

    return dict(parse_override(item) for item in items)


def add_parser(sub: Any) -> None:
    p = sub.add_parser("sim", help="boot the simulated unit in DEVICE and play a scenario")
    p.add_argument(
        "scenario", type=Path, metavar="SCENARIO", help="scenario file (TOML, see the README)"
    )
    p.add_argument(
        "--device",
        type=Path,
        required=True,
        metavar="DEVICE",
        help="the provisioned unit's directory; each run is its next boot",
    )
    add_set_option(p)
    p.add_argument("--realtime", action="store_true", help="pace simulated time to the wall clock")
    p.add_argument("--json", action="store_true", help="print a JSON summary of the boot on stdout")
    p.set_defaults(func=run)


def read_scenario(path: Path) -> Scenario:
    """Read and parse the scenario file at ``path``; a missing or bad file is a ``UsageError``."""
    from simulator.scenario import parse_scenario

    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UsageError(f"scenario {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"scenario {path}: cannot be read ({exc})") from None
    return parse_scenario(text, str(path))


def run(args: argparse.Namespace) -> int:
    from firmware.boot_outcome import boot_lines, outcome_json
    from firmware.sim_unit import boot_simulated_unit

    scenario = read_scenario(args.scenario)
    overrides = parse_sets(args.set)
    unit = boot_simulated_unit(UnitLayout(args.device), overrides, realtime=args.realtime)
    unit.play(scenario)
    summary = {
        "device": str(args.device),
        "boot_slot": unit.plan.slot,
        "firmware": unit.outcome.action if unit.outcome else None,
        "firmware_boot": outcome_json(unit.plan, unit.outcome),
        "recordings": unit.recorder.recordings,
        "frames": unit.daemon.frames_in,
        "chain_head": unit.sealer.head_seq,
    }
    if args.json:
        json.dump(summary, sys.stdout)
        sys.stdout.write("\n")
    else:
        for line in boot_lines(unit.plan, unit.outcome):
            print(f"bwc sim: {line}")
        print(
            f"bwc sim: {scenario.duration_s:g} s simulated on slot {unit.plan.slot}: "
            f"{plural(len(unit.recorder.recordings), 'recording')}, "
            f"{plural(unit.daemon.frames_in, 'frame')}, chain head {unit.sealer.head_seq}"
        )
    return 0
