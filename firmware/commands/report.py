"""`bwc report STORE --key AGENCY_KEY --out DIR [--trust FILE|DIR ... | --unpinned]`: verify,
decrypt and write one self-contained HTML report per recording (timeline, pictures, GNSS track,
verification summary), for one store or every unit's store under a dock share or target root.

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

from evidence.findings import Code
from evidence.keys import load_agency_private
from firmware import __version__
from firmware.commands.verify import add_origin_args, trusted_keys
from hal.errors import IntegrityError, UsageError
from offload.store_url import open_store_readers
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
        help="a unit's evidence directory, an offloaded copy, or a dock share / target root "
        "holding several units' stores (a directory, file:// or s3:// URL)",
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
    add_origin_args(p)
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
    trusted = trusted_keys(args)
    readers = open_store_readers(args.store).stores
    if not readers:
        raise IntegrityError(
            f"[{Code.NO_EVIDENCE}] no evidence store here: nothing to report",
            path=args.store,
            code=Code.NO_EVIDENCE,
        )
    problems: list[str] = []
    written: list[Path] = []
    for reader in readers:  # a share root: each unit's store, verified on its own
        done = write_reports(
            reader,
            key,
            args.out,
            lambda: time.time_ns() // 1000,
            __version__,
            trusted or None,
            args.every_s,
            unpinned=args.unpinned,
        )
        written += done.paths
        if not done.intact:
            problems.append(_problem(str(done.problem), args.store))
    if args.json:
        print(
            json.dumps(
                {
                    "out": str(args.out),
                    "written": [str(p) for p in written],
                    "intact": not problems,
                    "problem": problems[0] if problems else None,
                    "problems": problems,
                    "origin_checked": not args.unpinned,
                }
            )
        )
        return 1 if problems else 0
    for path in written:
        print(path)
    if args.unpinned:
        print("origin NOT checked (--unpinned): the evidence may have been signed by any key")
    if problems:
        # The pages say it all; stderr says it once, and the exit status says the work failed.
        more = f" (and {len(problems) - 1} more stores not intact)" if len(problems) > 1 else ""
        print(
            f"bwc report: integrity failure: {problems[0]}{more}; every finding is listed in "
            f"{'the page(s) above' if written else 'bwc verify'} (nothing was decrypted)",
            file=sys.stderr,
        )
        return 1
    if not written:
        print("no recordings in the store")
    return 0


def _problem(problem: str, store: str) -> str:
    """A unit's own store after docking: name the copy the report should be made from."""
    if "[payload-freed]" in problem:
        from firmware.hints import freed_copy_message

        return freed_copy_message(store, "report") or problem
    return problem
