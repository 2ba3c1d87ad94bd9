"""`bwc verify STORE [--trust FILE ...] [--tsa-ca FILE ...] [--json]`: check a store's evidence
without any secret key; timestamp tokens are checked against --tsa-ca when given.

Exit 0 only if everything is intact; 1 with findings (each naming a file and reason); 2 for usage.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from evidence.timestamp import load_tsa_roots
from evidence.verify import load_trusted_key, parse_expected_head, verify_store
from offload.store_url import open_store_reader


def add_parser(sub: Any) -> None:
    p = sub.add_parser("verify", help="verify the signed evidence in STORE")
    p.add_argument(
        "store",
        metavar="STORE",
        help="a unit's evidence directory (DEVICE/evidence), an offloaded copy, or a dock share "
        "or offload target holding several units: a directory, file:// or s3://bucket/prefix URL",
    )
    p.add_argument(
        "--trust",
        action="append",
        type=Path,
        default=[],
        metavar="FILE",
        help="device public key PEM (or certificate) the evidence must be signed with",
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
    trusted = [load_trusted_key(p) for p in args.trust]
    reader = open_store_reader(args.store)
    tsa_roots = [cert for path in args.tsa_ca for cert in load_tsa_roots(path)]
    expected = [parse_expected_head(text) for text in args.expect_head]
    report = verify_store(reader, trusted or None, tsa_roots or None, expected)
    if args.json:
        print(json.dumps(report.to_json(), indent=2, sort_keys=True))
    else:
        print(report.format_text())
    return 0 if report.intact else 1
