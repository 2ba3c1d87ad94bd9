"""`bwc offload --device DEVICE [--json]`: one offload round of a unit to its profile's target.

Thin shell over ``offload``: it reads the unit's profile, identity and the S3 variables
of the environment, opens the unit's evidence sink (the receipts are signed chain entries of
their own short session, closed by a ``shutdown`` event), runs the round and prints the result.
Exit 0 when every file is confirmed at the target; 1 when the round stopped or failed (the
reason is printed; whatever was confirmed before is receipted and freed); 2 for usage errors.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from evidence.sealer import Sealer
from evidence.timestamp import anchor_head
from firmware.commands.sim import plural
from firmware.evidence_access import open_unit_sealer, record_recovery
from firmware.identity import Assignment, load_assignment, read_profile, require_provisioned
from firmware.layout import UnitLayout
from firmware.offload_target import build_target
from hal.errors import BwcError
from hal.protocols import Clock
from hal.system_clock import SystemClock
from offload.runner import (
    OffloadProgress,
    OffloadResult,
    ProgressSink,
    Retention,
    offload,
    send_closing_entry,
)
from recorder.config import Profile, parse_override

log = logging.getLogger(__name__)


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "offload",
        help="upload the unit's sealed evidence to its offload target, then free confirmed space",
    )
    p.add_argument("--device", required=True, type=Path, help="the unit's storage directory")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a profile key for this run, e.g. offload.target=s3://bucket/prefix",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.set_defaults(func=run)


def open_sink(layout: UnitLayout, profile: Profile, assignment: Assignment, clock: Clock) -> Sealer:
    """The unit's evidence sink for this session; explains an unclean previous boot first.

    The one place to switch when the unit's own composition root offers a shared opener.
    """
    from hal.software_key import SoftwareDeviceKey

    key = SoftwareDeviceKey.load(layout.device_key)
    sealer = open_unit_sealer(layout, profile, assignment, key, lambda: clock.source.value)
    record_recovery(sealer, clock)
    return sealer


@contextmanager
def _stop_on_signal() -> Iterator[dict[str, bool]]:
    """SIGINT/SIGTERM end the round between chunks (like an undock), so receipts are kept."""
    flag = {"stop": False}

    def handler(_sig: int, _frame: FrameType | None) -> None:
        flag["stop"] = True

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextmanager
def _progress_bar(wanted: bool) -> Iterator[ProgressSink | None]:
    """Files, bytes, rate and time left on stderr while a round runs, when stderr is a terminal."""
    from rich.console import Console

    console = Console(stderr=True)
    if not wanted or not console.is_terminal:
        yield None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    bar = Progress(
        TextColumn("offload {task.fields[files]}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
    )
    task = bar.add_task("offload", total=None, files="")

    def update(p: OffloadProgress) -> None:
        files = f"{p.files_done}/{p.files_total} files"
        bar.update(task, completed=p.bytes_done, total=p.bytes_total or None, files=files)

    with bar:
        yield update


def run(args: argparse.Namespace) -> int:
    layout = UnitLayout(args.device)
    require_provisioned(layout)
    overrides = dict(parse_override(text) for text in args.set)
    profile = read_profile(layout.profile, overrides)
    assignment = load_assignment(layout)
    target = build_target(profile, assignment.device_id, os.environ, layout.root)
    clock = SystemClock()
    retention = Retention(profile.offload.retention_days, profile.offload.marked_retention_days)
    sealer = open_sink(layout, profile, assignment, clock)
    result: OffloadResult | None = None
    try:
        if profile.offload.tsa_url:
            # Before the round, so the token travels with it; never fatal (see timestamp.py).
            anchored = anchor_head(sealer, profile.offload.tsa_url, clock)
            if not anchored.anchored:
                print(f"warning: time anchor failed: {anchored.error}", file=sys.stderr)
        with _stop_on_signal() as flag, _progress_bar(not args.json) as progress:
            result = offload(
                layout.evidence,
                target,
                sealer,
                clock,
                lambda: not flag["stop"],
                retention=retention,
                progress=progress,
            )
    finally:
        reason = "offload complete" if result is not None and result.complete else "offload ended"
        closing = sealer.event(
            "shutdown",
            {"reason": reason},
            mono_us=clock.monotonic_us(),
            utc_us=clock.utc_us(),
            reserve_ok=True,
        )
    if result.complete:
        try:
            send_closing_entry(layout.evidence, target, clock, closing, retention=retention)
        except BwcError as exc:
            # Not fatal: the next round sends it; until then the target lacks only this entry.
            print(f"warning: the closing entry was not sent: {exc}", file=sys.stderr)
    if result.stopped == "undocked":
        result.stopped = "interrupted"
    _print(result, args.json)
    return 0 if result.complete else 1


def _print(result: OffloadResult, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result.to_json(), indent=2, sort_keys=True))
        return
    print(f"offload to {result.target}")
    print(
        f"  sent {plural(result.uploaded_files, 'file')} ({result.uploaded_bytes} bytes), "
        f"{result.found_files} already there, {result.confirmed_before} confirmed before"
    )
    print(
        f"  {plural(result.receipt_events, 'receipt event')}; freed "
        f"{plural(len(result.freed_files), 'payload')} ({result.freed_bytes} bytes)"
    )
    for name, why in result.mismatched:
        print(f"offload: {name} kept on the unit: its copy at the target {why}", file=sys.stderr)
    if result.complete:
        print("  complete: every file is confirmed at the target")
    else:
        print(
            f"  not complete ({result.stopped or 'stopped'}): "
            f"{plural(result.pending_files, 'file')} left",
            file=sys.stderr,
        )
