"""`bwc bootctl {sync,tryboot} [--device DEVICE]`: the Pi unit's root helper (run by systemd).

The only privileged steps of a unit: writing autoboot.txt on the boot-select partition and
``reboot "0 tryboot"``. See ``firmware.root_helper`` for what each verb accepts; this shell only
reads the profile, picks the privileged Pi boot control and prints what was done.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from firmware.layout import UnitLayout
from hal.errors import UsageError

DEFAULT_DEVICE = "/var/lib/bwc/unit"


def add_parser(sub: Any) -> None:
    p = sub.add_parser("bootctl", help="root helper of a Pi unit: apply boot selection, try-boot")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb, text in (
        ("sync", "apply a pending autoboot.txt request and refresh the recorder's copy"),
        ("tryboot", 'reboot "0 tryboot" into the armed, installed slot'),
    ):
        v = verbs.add_parser(verb, help=text)
        v.add_argument(
            "--device",
            type=Path,
            default=Path(DEFAULT_DEVICE),
            metavar="DEVICE",
            help=f"the unit's directory (default: {DEFAULT_DEVICE})",
        )
        v.add_argument("--json", action="store_true", help="print what was done as JSON")
        v.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from firmware import root_helper
    from firmware.backends import firmware_backends
    from firmware.boot_control import PiBootControl
    from firmware.identity import read_profile

    layout = UnitLayout(args.device)
    if not layout.profile.is_file():
        raise UsageError(f"--device {args.device}: no unit profile ({layout.profile})")
    profile = read_profile(layout.profile, {})
    boot = firmware_backends(layout, profile.unit, privileged=True).boot
    if not isinstance(boot, PiBootControl):
        raise UsageError(f"unit.boot is {profile.unit.boot!r}; only 'pi' has a helper")
    if args.verb == "sync":
        notes = root_helper.sync(layout, boot) or []
        if args.json:
            print(json.dumps({"verb": "sync", "notes": list(notes)}))
        for note in [] if args.json else notes or ["nothing to do"]:
            print(f"bootctl: {note}")
    else:
        if args.json:
            print(json.dumps({"verb": "tryboot", "rebooting": True}), flush=True)
        root_helper.tryboot(boot)
    return 0
