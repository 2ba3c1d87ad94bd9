"""`bwc verify STORE [--trust FILE ...] [--json]`: check a store's evidence without any secret key.

Exit 0 only if everything is intact; 1 with findings (each naming a file and reason); 2 for usage.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from recorder.evidence.store import open_store_reader
from recorder.evidence.verify import load_trusted_key, verify_store


def add_parser(sub: Any) -> None:
    p = sub.add_parser("verify", help="verify the signed evidence in STORE")
    p.add_argument("store", help="evidence directory (e.g. DEVICE/evidence) or file:// URL")
    p.add_argument(
        "--trust",
        action="append",
        type=Path,
        default=[],
        metavar="FILE",
        help="device public key PEM (or certificate) the evidence must be signed with",
    )
    p.add_argument("--json", action="store_true", help="print a machine-readable report")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    trusted = [load_trusted_key(p) for p in args.trust]
    reader = open_store_reader(args.store)
    report = verify_store(reader, trusted or None)
    if args.json:
        print(json.dumps(report.to_json(), indent=2, sort_keys=True))
    else:
        print(report.format_text())
    return 0 if report.intact else 1
