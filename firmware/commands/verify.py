"""`bwc verify STORE [--trust FILE|DIR ...] [--unpinned] [--allow-freed] [--tsa-ca FILE ...]
[--expect-head SEQ:HASH ...] [--json]`: check evidence without any secret key.

STORE is one unit's store, or a dock share / offload target root holding several (each verified
against the same registry and reported per unit). Exit 0 only if every store is intact, origin
included; 1 with findings (each naming a file, a reason and a stable code); 2 for usage.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from evidence.findings import Code, Finding
from evidence.timestamp import load_tsa_roots
from evidence.verify import Report, load_trust, parse_expected_head, verify_store
from hal.errors import UsageError
from offload.store_url import open_store_readers


def add_origin_args(p: argparse.ArgumentParser) -> None:
    """--trust and --unpinned, shared by verify and export."""
    p.add_argument(
        "--trust",
        action="append",
        type=Path,
        default=[],
        metavar="FILE|DIR",
        help="device public key PEM (or certificate) the evidence must be signed with, or a "
        "directory of them (the agency's registry of provisioned units); repeatable",
    )
    p.add_argument(
        "--unpinned",
        action="store_true",
        help="without --trust, check integrity only and say plainly that origin was NOT checked",
    )


def trusted_keys(args: argparse.Namespace) -> list[bytes]:
    if args.trust and args.unpinned:
        raise UsageError("--unpinned: give either --trust or --unpinned, not both")
    return load_trust(args.trust)


def add_parser(sub: Any) -> None:
    p = sub.add_parser("verify", help="verify the signed evidence in STORE")
    p.add_argument(
        "store",
        help="a unit's evidence directory, an offloaded copy, or a dock share / target root "
        "holding several units' stores (a directory, file:// or s3:// URL)",
    )
    add_origin_args(p)
    p.add_argument(
        "--allow-freed",
        action="store_true",
        help="payloads freed on the unit after a signed, confirmed offload are not findings "
        "(for a unit's own store only: an offloaded copy must hold every payload)",
    )
    p.add_argument(
        "--tsa-ca",
        action="append",
        type=Path,
        default=[],
        metavar="FILE",
        help="PEM CA certificate(s) of the time-stamping authority: timestamp tokens must "
        "verify to it (without it tokens are reported as unverified)",
    )
    p.add_argument(
        "--expect-head",
        action="append",
        default=[],
        metavar="SEQ:SHA256",
        help="an entry recorded earlier (the head seq and head hash a previous verify printed) "
        "that must still be in the chain, unchanged: detects entries cut off the end",
    )
    p.add_argument("--json", action="store_true", help="print a machine-readable report")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    trusted = trusted_keys(args)
    tsa_roots = [cert for path in args.tsa_ca for cert in load_tsa_roots(path)]
    expected = [parse_expected_head(text) for text in args.expect_head]
    found = open_store_readers(args.store)
    readers = found.stores
    if expected and found.share:
        raise UsageError("--expect-head: name one unit's store, not a share of several")
    reports = [
        verify_store(
            r,
            trusted,
            tsa_roots or None,
            expected,
            unpinned=args.unpinned,
            allow_freed=args.allow_freed,
        )
        for r in readers
    ]
    if not reports:
        empty = Report(store=args.store)
        empty.findings.append(
            Finding(
                args.store,
                "no evidence store here: no entries, no device key, and no unit's store directly "
                "below it",
                code=Code.NO_EVIDENCE.value,
            )
        )
        reports = [empty]
    share = found.share and bool(found.stores)
    intact = all(r.intact for r in reports)
    if args.json:
        if not share:
            out: dict[str, Any] = reports[0].to_json()
        else:
            out = {
                "root": args.store,
                "intact": intact,
                "units": [r.to_json() for r in reports],
            }
        print(json.dumps(out, indent=2, sort_keys=True))
    else:
        print("\n\n".join(r.format_text() for r in reports))
        if share:
            print(share_summary(args.store, reports))
    return 0 if intact else 1


def share_summary(root: str, reports: list[Report]) -> str:
    """One line per unit and a verdict for the share as a whole."""
    lines = [f"\nshare {root}: {len(reports)} units"]
    unpinned = ", ORIGIN NOT CHECKED (--unpinned)"
    for r in reports:
        verdict = "INTACT" if r.intact else f"NOT intact ({len(r.all_findings)} finding(s))"
        if r.intact and r.origin == "unpinned":
            verdict += unpinned
        lines.append(f"  {r.device or '?'} at {r.store}: {verdict}")
    bad = sum(1 for r in reports if not r.intact)
    any_unpinned = any(r.origin == "unpinned" for r in reports)
    lines.append(
        f"result: every unit INTACT{unpinned if any_unpinned else ''}"
        if not bad
        else f"result: {bad} of {len(reports)} units NOT intact"
    )
    return "\n".join(lines)
