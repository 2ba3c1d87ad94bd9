"""`bwc fw`: the technician's firmware tool (CONTRACT §7): keygen, build, inspect, flash, status.

Thin shell over ``firmware.bundle``, ``firmware.flash`` and ``firmware.boot_control``: it reads
files, the profile and the wall clock (for a bundle's build time), prints, and raises the
project's errors for cli.py to map to exit codes. Progress goes to stderr; ``--json`` puts one
JSON object per line on stdout instead of the human text.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from firmware.backends import FirmwareBackends, firmware_backends
from firmware.boot_control import SLOTS
from firmware.layout import UnitLayout
from firmware.update_state import EventSink
from hal.errors import BwcError, IntegrityError, RefusedError, UsageError


def add_parser(sub: Any) -> None:
    p = sub.add_parser("fw", help="firmware bundles, A/B slots and updates")
    fw = p.add_subparsers(
        dest="fw_command", required=True, parser_class=type(p), metavar="SUBCOMMAND"
    )

    k = fw.add_parser("keygen", help="create a firmware signing key pair")
    k.add_argument(
        "--out",
        required=True,
        type=Path,
        metavar="DIR",
        help="directory for release-key.pem (private, 0600) and release-pub.pem",
    )
    k.add_argument(
        "--channel",
        choices=("release", "development"),
        default="release",
        help="release (default) or development: a release unit refuses development bundles",
    )
    k.add_argument("--json", action="store_true", help="print the paths as JSON on stdout")
    k.set_defaults(func=run_keygen)

    b = fw.add_parser("build", help="build one signed bundle from a file or directory")
    b.add_argument(
        "payload", type=Path, metavar="PAYLOAD", help="the slot image: a file or a directory"
    )
    b.add_argument(
        "--version", required=True, metavar="X.Y.Z", help="the firmware version, e.g. 1.2.0"
    )
    b.add_argument(
        "--security-version",
        required=True,
        type=int,
        metavar="N",
        help="anti-rollback level: units refuse a bundle below their floor, which rises to N "
        "when this bundle commits",
    )
    b.add_argument(
        "--compatible",
        required=True,
        metavar="ID",
        help="hardware id the bundle is for (bwc-sim for the simulated unit)",
    )
    b.add_argument(
        "--key",
        required=True,
        type=Path,
        metavar="FILE",
        help="the private signing key (release-key.pem from bwc fw keygen)",
    )
    b.add_argument(
        "--out", required=True, type=Path, metavar="BUNDLE", help="the bundle file to write"
    )
    b.add_argument(
        "--min-battery",
        type=int,
        default=30,
        metavar="PCT",
        help="battery level a unit needs before it accepts this bundle (default 30)",
    )
    b.add_argument(
        "--build-utc",
        type=int,
        default=None,
        metavar="SECONDS",
        help="build time (default: $SOURCE_DATE_EPOCH, else now)",
    )
    b.add_argument("--json", action="store_true", help="print the manifest as JSON on stdout")
    b.set_defaults(func=run_build)

    i = fw.add_parser("inspect", help="show a bundle's manifest; --trust checks its signature")
    i.add_argument("bundle", type=Path, metavar="BUNDLE", help="the bundle file")
    i.add_argument(
        "--trust",
        type=Path,
        metavar="PUB",
        help="release-pub.pem: also check the signature and payload (exit 1 if they fail)",
    )
    i.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    i.set_defaults(func=run_inspect)

    f = fw.add_parser("flash", help="preflight, plan, write the inactive slot and arm a try-boot")
    f.add_argument("bundle", type=Path, metavar="BUNDLE", help="the bundle file")
    f.add_argument(
        "--device", required=True, type=Path, metavar="DEVICE", help="the unit's directory"
    )
    f.add_argument("--dry-run", action="store_true", help="preflight and plan only; write nothing")
    f.add_argument(
        "--allow-downgrade",
        action="store_true",
        help="install a lower version than the installed one at the same security_version "
        "(refused without it; a lower security_version is always refused)",
    )
    f.add_argument(
        "--json", action="store_true", help="print JSON lines (plan, progress, result) on stdout"
    )
    f.set_defaults(func=run_flash)

    s = fw.add_parser("status", help="slots, primary, booted slot, floor and pending try-boot")
    s.add_argument(
        "--device", required=True, type=Path, metavar="DEVICE", help="the unit's directory"
    )
    s.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    s.set_defaults(func=run_status)


def run(args: argparse.Namespace) -> int:  # pragma: no cover - argparse dispatches to run_*
    raise UsageError("bwc fw: give a subcommand (keygen, build, inspect, flash, status)")


def _emit(obj: dict[str, Any]) -> None:
    print(json.dumps(obj, sort_keys=True), flush=True)


# ---------------------------------------------------------------------------------------------


def run_keygen(args: argparse.Namespace) -> int:
    from firmware.bundle import generate_key_pair

    private, public = generate_key_pair(args.out, args.channel)
    if args.json:
        _emit({"channel": args.channel, "private_key": str(private), "public_key": str(public)})
        return 0
    print(f"{args.channel} signing key: {private} (keep it offline)")
    print(f"public key for units:  {public}")
    return 0


def run_build(args: argparse.Namespace) -> int:
    from firmware.bundle import build_bundle, load_signing_key

    build_utc_s = args.build_utc
    if build_utc_s is None:
        epoch = os.environ.get("SOURCE_DATE_EPOCH", "")
        try:
            build_utc_s = int(epoch) if epoch else int(time.time())
        except ValueError:
            raise UsageError(f"SOURCE_DATE_EPOCH: not an integer: {epoch!r}") from None
    key = load_signing_key(args.key)
    manifest = build_bundle(
        args.payload,
        args.out,
        version=args.version,
        security_version=args.security_version,
        compatible=args.compatible,
        key=key,
        build_utc_s=build_utc_s,
        min_battery_pct=args.min_battery,
    )
    if args.json:
        _emit({"bundle": str(args.out), "manifest": manifest.to_dict()})
        return 0
    print(
        f"{args.out}: {manifest.channel} bundle {manifest.version} "
        f"(security_version {manifest.security_version}, {manifest.compatible}), "
        f"payload {manifest.payload_kind} {manifest.payload_size} bytes sha256 "
        f"{manifest.payload_sha256}"
    )
    return 0


def run_inspect(args: argparse.Namespace) -> int:
    from firmware.bundle import (
        BundleFormatError,
        load_trusted_key,
        open_bundle,
        read_header,
        verify_payload,
        verify_signature,
    )

    trusted = load_trusted_key(args.trust) if args.trust else None
    with open_bundle(args.bundle) as f:
        try:
            header = read_header(f)
        except BundleFormatError as exc:
            raise BundleFormatError(f"{args.bundle}: {exc}") from None
        problem = ""
        if trusted is not None:
            try:
                verify_signature(header, trusted)
                verify_payload(f, header)
            except IntegrityError as exc:
                problem = exc.reason
    report: dict[str, Any] = {
        "bundle": str(args.bundle),
        "manifest": header.manifest.to_dict(),
        "signature": "unchecked" if trusted is None else ("invalid" if problem else "valid"),
    }
    if problem:
        report["problem"] = problem
    if args.json:
        _emit(report)
    else:
        m = header.manifest
        print(f"bundle            {args.bundle}")
        print(f"version           {m.version}")
        print(f"security_version  {m.security_version}")
        print(f"compatible        {m.compatible}")
        print(f"channel           {m.channel}")
        print(f"min_battery_pct   {m.min_battery_pct}")
        print(f"build_utc_s       {m.build_utc_s}")
        print(f"payload           {m.payload_kind}, {m.payload_size} bytes")
        print(f"payload sha256    {m.payload_sha256}")
        print(f"signing key       {m.key_fingerprint}")
        print(f"signature         {report['signature']}")
    if problem:
        raise IntegrityError(problem, path=str(args.bundle))
    return 0


# ---------------------------------------------------------------------------------------------


def _unit_profile(layout: UnitLayout) -> Any:
    from recorder.config import Profile, load_profile_text

    if layout.profile.is_file():
        return load_profile_text(layout.profile.read_text(), str(layout.profile))
    return Profile()


def _backends(layout: UnitLayout, *, privileged: bool) -> FirmwareBackends:
    """The unit's boot control and slot writer, as its profile's ``unit.boot`` says."""
    return firmware_backends(layout, _unit_profile(layout).unit, privileged=privileged)


def _unit_facts(layout: UnitLayout) -> Any:
    from firmware.flash import UnitFacts, read_battery_pct

    profile = _unit_profile(layout)
    default_pct = profile.battery.initial_pct if profile.battery.backend == "sim" else 100.0
    where = layout.slots if layout.slots.exists() else layout.root
    free = shutil.disk_usage(where).free if where.exists() else 0
    return UnitFacts(
        compatible=profile.unit.compatible,
        battery_pct=read_battery_pct(layout, default_pct),
        free_bytes=free,
    )


def evidence_sink_for(layout: UnitLayout) -> EventSink | None:
    """The unit's evidence sink for firmware events when flashing, or None.

    A technician flashes a powered-off unit, whose sealer is not running; the install event is
    then owed in DEVICE/update/state.json and sealed by the unit itself at its next boot
    (``firmware.health.commit_or_rollback`` / ``update_state.drain_events``). This is the one
    place to wire a live sealer if flashing a running unit is ever supported.
    """
    return None


class _JsonObserver:
    def __init__(self) -> None:
        self._last_pct = -1

    def phase_started(self, phase: str) -> None:
        _emit({"event": "phase", "phase": phase, "status": "started"})

    def progress(self, phase: str, done_bytes: int, total_bytes: int) -> None:
        pct = 100 if total_bytes == 0 else done_bytes * 100 // total_bytes
        if pct // 10 != self._last_pct // 10 or done_bytes == total_bytes:
            self._last_pct = pct
            _emit({"event": "progress", "phase": phase, "done_bytes": done_bytes,
                   "total_bytes": total_bytes})  # fmt: skip

    def phase_done(self, phase: str) -> None:
        _emit({"event": "phase", "phase": phase, "status": "done"})


class _RichObserver:
    """A rich progress bar on stderr, one task per phase."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

        self._progress = Progress(
            TextColumn("{task.description:<10}"),
            BarColumn(),
            TaskProgressColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> _RichObserver:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def phase_started(self, phase: str) -> None:
        self._tasks[phase] = self._progress.add_task(phase, total=None)

    def progress(self, phase: str, done_bytes: int, total_bytes: int) -> None:
        self._progress.update(self._tasks[phase], completed=done_bytes, total=total_bytes)

    def phase_done(self, phase: str) -> None:
        task = self._tasks[phase]
        total = self._progress.tasks[task].total or 1
        self._progress.update(task, total=total, completed=total)


def run_flash(args: argparse.Namespace) -> int:
    from firmware.bundle import open_bundle
    from firmware.flash import check_downgrade, flash, preflight

    layout = UnitLayout(args.device)
    if not args.device.is_dir():
        raise UsageError(f"--device {args.device}: no such unit directory")
    open_bundle(args.bundle).close()  # a missing or unreadable file is a usage error (exit 2)
    # A technician flashes as root on the unit (or a simulated unit's directory): privileged.
    fw = _backends(layout, privileged=True)
    try:
        facts = _unit_facts(layout)
        plan = preflight(layout, args.bundle, facts, boot=fw.boot, slots=fw.slots)
        plan = check_downgrade(plan, fw.slots.read_info(plan.primary), allow=args.allow_downgrade)
    except RefusedError as exc:
        if args.json:
            _emit({"event": "refused", "reason": str(exc)})
        raise
    if args.json:
        _emit({"event": "plan", "dry_run": args.dry_run, **plan.to_dict()})
    else:
        m = plan.manifest
        print(f"bundle   {plan.bundle}: {m.version} (security_version {m.security_version})")
        for check in plan.checks:
            print(f"  ok  {check.name:<17} {check.detail}")
        print(f"plan     slot {plan.target} (primary {plan.primary}, booted {plan.current}):")
        for n, step in enumerate(plan.steps, 1):
            print(f"  {n}. {step}")
    if args.dry_run:
        if not args.json:
            print("dry run: nothing written")
        return 0
    evidence = evidence_sink_for(layout)
    if args.json:
        result = flash(
            layout, plan, boot=fw.boot, slots=fw.slots, observer=_JsonObserver(), evidence=evidence
        )
    else:
        with _RichObserver() as observer:
            result = flash(
                layout, plan, boot=fw.boot, slots=fw.slots, observer=observer, evidence=evidence
            )
    if args.json:
        _emit({"event": "staged", "slot": result.slot, "version": result.version,
               "security_version": result.security_version, "sha256": result.sha256})  # fmt: skip
    else:
        print(
            f"staged {result.version} in slot {result.slot}; the next boot tries it once "
            "and commits it if the health check passes"
        )
        if _unit_profile(layout).unit.boot == "pi":
            print('  try it now: systemctl start bwc-tryboot  (reboot "0 tryboot")')
    return 0


# ---------------------------------------------------------------------------------------------


def unit_status(layout: UnitLayout) -> dict[str, Any]:
    """Everything `bwc fw status` shows, as one JSON-ready dict."""
    from firmware.boot_outcome import last_firmware_event
    from firmware.update_state import load_state

    fw = _backends(layout, privileged=False)
    boot = fw.boot
    if not boot.is_initialised():
        raise UsageError(f"--device {layout.root}: not a unit with boot slots")
    state = load_state(layout)
    try:
        booted: str | None = boot.get_current()
        by_tryboot = boot.booted_by_tryboot()
    except BwcError:
        booted, by_tryboot = None, False
    slots = {}
    for slot in SLOTS:
        info = fw.slots.read_info(slot)
        slots[slot] = {
            "state": boot.get_state(slot),
            "version": info.version if info else None,
            "security_version": info.security_version if info else None,
            "sha256": info.sha256 if info else None,
            "source": info.source if info else None,
        }
    pending = state.pending
    last = last_firmware_event(layout.evidence)
    return {
        "device": str(layout.root),
        "last_firmware_event": None
        if last is None
        else {"seq": last.seq, "kind": last.kind, "utc_us": last.utc_us, "fields": last.fields},
        "slots": slots,
        "primary": boot.get_primary(),
        "booted": booted,
        "booted_by_tryboot": by_tryboot,
        "floor": state.floor,
        "tryboot_armed": boot.armed_tryboot(),
        "pending": pending.to_dict() if pending else None,
        "owed_events": [e.kind for e in state.owed_events],
    }


def run_status(args: argparse.Namespace) -> int:
    status = unit_status(UnitLayout(args.device))
    if args.json:
        _emit(status)
        return 0
    out = sys.stdout
    print(f"unit      {status['device']}", file=out)
    for slot, s in status["slots"].items():
        marks = []
        if slot == status["primary"]:
            marks.append("primary")
        if slot == status["booted"]:
            marks.append("booted" + (" by try-boot" if status["booted_by_tryboot"] else ""))
        version = s["version"] or "-"
        sv = "-" if s["security_version"] is None else s["security_version"]
        print(
            f"slot {slot}    {s['state']:<9} version {version:<10} security_version {sv:<4} "
            f"{', '.join(marks)}",
            file=out,
        )
    print(f"floor     security_version {status['floor']}", file=out)
    pending = status["pending"]
    if pending:
        print(
            f"pending   try-boot of slot {pending['slot']} ({pending['version']}), "
            f"{pending['attempts']} of {pending['max_attempts']} attempts used, "
            f"{'armed' if status['tryboot_armed'] else 'not armed'}",
            file=out,
        )
    else:
        print("pending   none", file=out)
    if status["owed_events"]:
        print(f"to seal   {', '.join(status['owed_events'])} (at the next boot)", file=out)
    last = status["last_firmware_event"]
    if last is not None:
        from firmware.boot_outcome import FirmwareEvent

        event = FirmwareEvent(last["seq"], last["kind"], last["utc_us"], last["fields"])
        print(f"last      {event.describe()}", file=out)
    return 0
