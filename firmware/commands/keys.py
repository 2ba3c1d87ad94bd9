"""`bwc keys agency --out DIR [--kem p384|mlkem1024-p384]`: agency keys for evidence encryption.

Prints paths only, never key material.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from evidence.keys import KEM_CHOICES, KEM_P384, generate_agency_keys


def add_parser(sub: Any) -> None:
    p = sub.add_parser("keys", help="create key pairs")
    kinds = p.add_subparsers(dest="kind", required=True, metavar="KIND")
    a = kinds.add_parser(
        "agency",
        help="agency key pair for evidence encryption (agency-key.pem 0600, agency-pub.pem)",
    )
    a.add_argument("--out", required=True, type=Path, help="directory to write the key pair to")
    a.add_argument(
        "--kem",
        choices=KEM_CHOICES,
        default=KEM_P384,
        help="HPKE KEM: p384 (default) or the post-quantum hybrid mlkem1024-p384",
    )
    a.add_argument("--json", action="store_true", help="print the paths as JSON on stdout")
    a.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    priv, pub = generate_agency_keys(args.out, args.kem)
    if args.json:
        print(json.dumps({"private_key": str(priv), "public_key": str(pub), "kem": args.kem}))
        return 0
    print(f"agency private key: {priv} (keep it off the device: HSM or vault)")
    print(f"agency public key:  {pub} (install on units with bwc provision --agency-pub)")
    return 0
