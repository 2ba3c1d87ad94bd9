"""`bwc report STORE --key AGENCY_KEY --out DIR [--trust FILE ...]`: verify, decrypt and write one
self-contained HTML report per recording (timeline, pictures, GNSS track, verification summary).

A store that does not verify is not decrypted: its pages lead with every finding, and the exit
status is 1. Exit 2 for usage errors.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from evidence.keys import load_agency_private
from evidence.verify import load_trust
from firmware import __version__
from hal.errors import UsageError
from offload.store_url import open_store_reader
from report.render import write_reports


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "report",
        help="verify, decrypt and write an HTML report per recording for investigators",
        description="Verifies STORE (as `bwc verify`), decrypts it with the agency key and writes "
        "DIR/<recording-id>.html per recording: a timeline, pictures decoded from the sealed "
        "video, the GNSS track and the verification summary. Each page is self-contained and "
        "offline (nothing is fetched) and prints to PDF from a browser. A store that does not "
        "verify is not decrypted: its pages list every finding and the exit status is 1.",
    )
    p.add_argument(
        "store",
        metavar="STORE",
        help="evidence directory (DEVICE/evidence), an offloaded copy, file:// or s3:// URL",
    )
    p.add_argument(
        "--key",
        required=True,
        type=Path,
        metavar="AGENCY_KEY",
        help="the agency private key (agency-key.pem)",
    )
    p.add_argument(
        "--out",
        required=True,
        type=Path,
        metavar="DIR",
        help="directory for <recording-id>.html (never overwritten)",
    )
    p.add_argument(
        "--trust",
        action="append",
        type=Path,
        default=[],
        metavar="FILE|DIR",
        help="device public key PEM the evidence must be signed with, or a directory of them "
        "(the agency's registry); required: origin is part of intact (repeatable)",
    )
    p.add_argument(
        "--every-s",
        type=float,
        default=None,
        metavar="SECONDS",
        help="a picture every SECONDS of video (default: a round interval giving about ten)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print the pages written and whether the store is intact as JSON on stdout",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.every_s is not None and not 0.5 <= args.every_s <= 86400:
        raise UsageError(f"--every-s {args.every_s:g}: must be from 0.5 to 86400 seconds")
    key = load_agency_private(args.key)
    trusted = load_trust(args.trust)
    reader = open_store_reader(args.store)
    done = write_reports(
        reader,
        key,
        args.out,
        lambda: time.time_ns() // 1000,
        __version__,
        trusted or None,
        args.every_s,
    )
    if args.json:
        print(
            json.dumps(
                {
                    "out": str(args.out),
                    "written": [str(p) for p in done.paths],
                    "intact": done.intact,
                    "problem": done.problem if not done.intact else None,
                }
            )
        )
        return 0 if done.intact else 1
    for path in done.paths:
        print(path)
    if not done.intact:
        from firmware.hints import freed_copy_message

        # A unit's own store after docking: name the copy the report should be made from.
        problem = done.problem or ""
        if "[payload-freed]" in problem:
            problem = freed_copy_message(args.store, "report") or problem
        # The pages say it all; stderr says it once, and the exit status says the work failed.
        print(
            f"bwc report: integrity failure: {problem}; every finding is listed in "
            f"{'the page(s) above' if done.paths else 'bwc verify'} (nothing was decrypted)",
            file=sys.stderr,
        )
        return 1
    if not done.paths:
        print("no recordings in the store")
    return 0
