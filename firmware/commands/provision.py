"""`bwc provision DEVICE ...`: make DEVICE an agency's unit (CONTRACT §3)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from firmware.layout import UnitLayout


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "provision",
        help="make DEVICE a provisioned unit (identity, agency key, officer, profile)",
        description="Generates the unit's signing key on the unit, installs the agency public key, "
        "the officer assignment, the profile and the firmware release key, and starts the "
        "unit's signed audit chain. Prints the path of the unit's public identity.",
    )
    p.add_argument("device", type=Path, metavar="DEVICE", help="the unit's storage directory")
    p.add_argument(
        "--agency-pub",
        type=Path,
        required=True,
        metavar="FILE",
        help="the agency public key evidence is encrypted to (agency-pub.pem from bwc keys agency)",
    )
    p.add_argument("--device-id", required=True, metavar="ID", help="the unit's id, e.g. CAM-0042")
    p.add_argument(
        "--officer", required=True, metavar="ID", help="the officer the unit is assigned to"
    )
    p.add_argument(
        "--profile",
        type=Path,
        metavar="FILE",
        help="config profile (TOML); default: the simulated unit's configs/sim.toml",
    )
    p.add_argument(
        "--release-pub",
        type=Path,
        metavar="FILE",
        help="public key firmware bundles must be signed with (release-pub.pem)",
    )
    p.add_argument(
        "--json", action="store_true", help="print the unit's identity as JSON on stdout"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from firmware.provision import provision

    result = provision(
        UnitLayout(args.device),
        agency_pub=args.agency_pub,
        device_id=args.device_id,
        officer_id=args.officer,
        profile_path=args.profile,
        release_pub=args.release_pub,
    )
    if args.json:
        print(
            json.dumps(
                {
                    "device": str(args.device),
                    "device_id": args.device_id,
                    "officer": args.officer,
                    "device_pub": str(result.device_pub),
                    "archive": str(result.archive) if result.archive is not None else None,
                }
            )
        )
        return 0
    print(result.device_pub)
    if result.archive is not None:
        # stderr: stdout stays the one path the agency registers.
        print(
            f"new identity {args.device_id}: the previous chain was archived in {result.archive}",
            file=sys.stderr,
        )
    return 0
