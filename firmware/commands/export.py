"""`bwc export STORE --key AGENCY_KEY --out DIR [--trust FILE|DIR ... | --unpinned]`: verify,
decrypt, remux to MP4 plus JSON metadata, for one store or every unit's store under a share root.

Strict like verify: without --trust it refuses (origin not established) unless --unpinned. Writes
only inside DIR and never overwrites. Exit 1 with the reason if anything fails verification or
decryption; 2 for a wrong key file or option.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from evidence.export import export_store
from evidence.findings import Code
from evidence.keys import load_agency_private
from evidence.verify import verify_store
from firmware.commands.verify import add_origin_args, trusted_keys
from hal.errors import IntegrityError
from offload.store_url import open_store_readers


def add_parser(sub: Any) -> None:
    p = sub.add_parser("export", help="verify, decrypt and export recordings as MP4 + JSON")
    p.add_argument("store", help="evidence directory, share root, file:// or s3:// URL")
    p.add_argument(
        "--key", required=True, type=Path, help="the agency private key (agency-key.pem)"
    )
    p.add_argument("--out", required=True, type=Path, help="directory for <recording-id>.mp4/.json")
    add_origin_args(p)
    p.add_argument("--json", action="store_true", help="print the files written as JSON on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    key = load_agency_private(args.key)
    trusted = trusted_keys(args)
    readers = open_store_readers(args.store).stores
    if not readers:
        raise IntegrityError(
            f"[{Code.NO_EVIDENCE}] no evidence store here: nothing to export",
            path=args.store,
            code=Code.NO_EVIDENCE,
        )
    if len(readers) > 1:
        # A share: every unit must verify before anything is written for any of them.
        for reader in readers:
            report = verify_store(reader, trusted, unpinned=args.unpinned)
            if not report.intact:
                first = report.all_findings[0]
                raise IntegrityError(
                    f"unit {report.device or '?'} not intact: [{first.code}] {first.reason}",
                    path=first.file,
                    code=first.code,
                )
    written: list[Path] = []
    for reader in readers:
        # Each unit's store is verified in full before anything of it is written.
        try:
            written += export_store(reader, key, args.out, trusted or None, unpinned=args.unpinned)
        except IntegrityError as exc:
            raise _where_the_copy_is(exc, args.store) from None
    if args.json:
        print(
            json.dumps(
                {
                    "out": str(args.out),
                    "written": [str(p) for p in written],
                    "origin": "unpinned" if args.unpinned else "pinned",
                }
            )
        )
        return 0
    for path in written:
        print(path)
    if not written:
        print("no recordings in the store")
    if args.unpinned:
        print(
            "origin NOT checked (--unpinned): the exported evidence may have been signed by any key"
        )
    return 0


def _where_the_copy_is(exc: IntegrityError, store: str) -> IntegrityError:
    """A unit's own store whose video was freed after offload: name the copy to export from."""
    from firmware.hints import freed_copy_message

    message = freed_copy_message(store, "export") if exc.code == "payload-freed" else None
    if message is None:
        return exc
    return IntegrityError(message, path=store, code=exc.code)
