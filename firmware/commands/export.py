"""`bwc export STORE --key AGENCY_KEY --out DIR`: verify, decrypt, remux to MP4 plus JSON metadata.

Exit 1 with the reason if anything fails verification or decryption; 2 for a wrong key file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from evidence.export import export_store
from evidence.keys import load_agency_private
from evidence.verify import load_trusted_key
from offload.store_url import open_store_reader


def add_parser(sub: Any) -> None:
    p = sub.add_parser("export", help="verify, decrypt and export recordings as MP4 + JSON")
    p.add_argument(
        "store",
        metavar="STORE",
        help="evidence directory, offloaded copy or offload target: a directory, file:// or "
        "s3://bucket/prefix URL",
    )
    p.add_argument(
        "--key", required=True, type=Path, help="the agency private key (agency-key.pem)"
    )
    p.add_argument("--out", required=True, type=Path, help="directory for <recording-id>.mp4/.json")
    p.add_argument(
        "--trust",
        action="append",
        type=Path,
        default=[],
        metavar="FILE",
        help="device public key PEM the evidence must be signed with",
    )
    p.add_argument("--json", action="store_true", help="print the files written as JSON on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    key = load_agency_private(args.key)
    trusted = [load_trusted_key(p) for p in args.trust]
    reader = open_store_reader(args.store)
    written = export_store(reader, key, args.out, trusted or None)
    if args.json:
        print(json.dumps({"out": str(args.out), "written": [str(p) for p in written]}))
        return 0
    for path in written:
        print(path)
    if not written:
        print("no recordings in the store")
    return 0
