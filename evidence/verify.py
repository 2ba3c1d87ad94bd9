"""The verifier: checks a store's signatures, hash chain, payloads, continuity and events, and
whether its origin is established by a pinned key.

Needs no secret key and never writes to the store. The work is split into parts: the chain
(``verify_chain``), what it means (``verify_events``), the files it names (``verify_payloads``)
and the report (``verify_report``). Strict by default (``Policy``): no trusted key, a freed
payload, or a store with no entries is not intact.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.x509 import Certificate, load_pem_x509_certificate

from evidence.findings import Code, Finding
from evidence.format import entry_name
from evidence.records import MAX_MANIFEST_BYTES, EventKind
from evidence.store import StoreReader
from evidence.timestamp import Anchor, check_anchor
from evidence.verify_chain import ChainCheck, Listing
from evidence.verify_context import Context, Entry, Policy
from evidence.verify_events import Meaning
from evidence.verify_payloads import check_orphans, check_payloads, check_secrets
from evidence.verify_report import BootReport, RecordingReport, Report
from hal.errors import IntegrityError, UsageError

__all__ = [
    "BootReport",
    "Policy",
    "RecordingReport",
    "Report",
    "load_trust",
    "load_trusted_key",
    "parse_expected_head",
    "verify_store",
]

MAX_KEY_FILE_BYTES = 64 * 1024
MAX_REGISTRY_FILES = 100_000

# ---------------------------------------------------------------------- trusted keys


def load_trusted_key(path: Path) -> bytes:
    """The raw Ed25519 public key of a device public key PEM (SPKI) or an X.509 certificate."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_KEY_FILE_BYTES + 1)
    except FileNotFoundError as exc:
        raise UsageError(f"--trust {path}: file not found") from exc
    except OSError as exc:
        raise UsageError(f"--trust {path}: cannot read: {exc.strerror}") from exc
    if len(data) > MAX_KEY_FILE_BYTES:
        raise UsageError(f"--trust {path}: too large to be a public key file")
    if b"PRIVATE KEY" in data:
        raise UsageError(f"--trust {path}: holds private key material; pass the public key only")
    try:
        if b"BEGIN CERTIFICATE" in data:
            key: object = load_pem_x509_certificate(data).public_key()
        else:
            key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise UsageError(f"--trust {path}: not a public key PEM or certificate") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise UsageError(f"--trust {path}: not an Ed25519 device public key")
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def load_trust(paths: Sequence[Path]) -> list[bytes]:
    """Every device key named by ``--trust``: key files, and directories of them (the agency's
    registry of provisioned units), read recursively; every ``*.pem``/``*.crt`` in a directory
    must be a device public key, so a registry polluted with other files is refused, not skimmed.
    """
    keys: list[bytes] = []
    for path in paths:
        if not path.is_dir():
            keys.append(load_trusted_key(path))
            continue
        found = 0
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files):
                if not name.endswith((".pem", ".crt")):
                    continue
                file = Path(root) / name
                try:
                    regular = stat.S_ISREG(os.stat(file).st_mode)
                except OSError as exc:
                    raise UsageError(f"--trust {file}: cannot read: {exc.strerror}") from exc
                if not regular:
                    continue
                keys.append(load_trusted_key(file))
                found += 1
                if found > MAX_REGISTRY_FILES:
                    raise UsageError(f"--trust {path}: more than {MAX_REGISTRY_FILES} key files")
        if not found:
            raise UsageError(f"--trust {path}: no device public key (*.pem) in this directory")
    return keys


# ---------------------------------------------------------------------- verification


def verify_store(
    store: StoreReader,
    trusted_keys: Sequence[bytes] | None = None,
    tsa_roots: Sequence[Certificate] | None = None,
    expected_heads: Sequence[tuple[int, str]] = (),
    *,
    unpinned: bool = False,
    allow_freed: bool = False,
) -> Report:
    """Verify everything in ``store``.

    ``trusted_keys`` are raw Ed25519 public keys to pin; without them the report has an
    origin-not-established finding unless ``unpinned``. ``allow_freed`` excuses payloads freed
    after a signed offload (a unit's own store only). ``tsa_roots`` are the CA certificates that
    timestamp tokens must chain to (else unverified); ``expected_heads`` (seq, manifest SHA-256)
    pairs recorded earlier (``check_expected_head``).
    """
    policy = Policy(tuple(trusted_keys or ()), unpinned, allow_freed, tuple(tsa_roots or ()))
    return verify_with(store, policy, expected_heads)


def verify_with(
    store: StoreReader, policy: Policy, expected_heads: Sequence[tuple[int, str]] = ()
) -> Report:
    ctx = Context.start(store, policy)
    try:
        names = store.names()
    except OSError as exc:
        ctx.finding(
            IntegrityError(f"cannot list the store: {exc.strerror or exc}"), code=Code.NO_EVIDENCE
        )
        return ctx.report
    listing = Listing(ctx, names)
    entries = ChainCheck(ctx, listing).run()
    report = ctx.report
    if not listing.jsons:
        ctx.finding(
            IntegrityError(
                "the store holds no evidence entries",
                path=store.describe(""),
                code=Code.NO_EVIDENCE,
            )
        )
    Meaning(ctx, entries).run()
    check_payloads(ctx, entries, set(names))
    check_secrets(ctx, entries)
    check_orphans(ctx, names, entries)
    _check_anchors(ctx, entries)
    _judge_origin(ctx)
    for r in ctx.recs.values():
        r.key = report.keys[0] if len(report.keys) == 1 else None
        r.pinned = report.pinned
    report.recordings = list(ctx.recs.values())
    for seq, digest in expected_heads:
        check_expected_head(store, report, seq, digest)
    return report


def _judge_origin(ctx: Context) -> None:
    report = ctx.report
    report.pinned = (
        bool(ctx.trusted) and bool(report.keys) and all(k in ctx.trusted for k in report.keys)
    )
    if report.pinned:
        report.origin = "pinned"
    elif ctx.policy.unpinned:
        report.origin = "unpinned"
        report.notes.append("origin NOT checked (--unpinned): any key could have signed this store")
    elif not ctx.trusted:
        report.origin = "not-established"
        ctx.finding(
            IntegrityError(
                "origin not established: no --trust key pins who signed this store (pass the "
                "agency's registry of device keys, or --unpinned to check integrity alone)",
                path=ctx.store.describe(""),
                code=Code.ORIGIN_NOT_ESTABLISHED,
            )
        )


def _check_anchors(ctx: Context, entries: list[Entry]) -> None:
    """Judge every ``timestamp_token`` event (see ``evidence.timestamp``)."""
    good = {e.seq: e for e in entries}
    report = ctx.report

    def manifest_bytes(seq: int) -> bytes | None:
        # Only entries that passed the chain checks count as anchored content.
        if seq not in good:
            return None
        try:
            return ctx.read(good[seq].name, MAX_MANIFEST_BYTES)
        except (OSError, IntegrityError):
            return None

    for e in entries:
        m = e.manifest
        if not m.is_event(EventKind.TIMESTAMP_TOKEN):
            continue
        f = m.event_fields
        try:
            a = check_anchor(
                e.seq,
                f,
                m["utc_us"],
                manifest_bytes,
                list(ctx.policy.tsa_roots) or None,
                ctx.path(e.name),
            )
        except IntegrityError as exc:
            ctx.finding(exc, code=Code.ANCHOR_INVALID)
            hs, hh = f.get("head_seq"), f.get("head_hash")
            report.anchors.append(
                Anchor(
                    e.seq,
                    hs if isinstance(hs, int) and not isinstance(hs, bool) else None,
                    hh if isinstance(hh, str) else None,
                    None,
                    None,
                    "invalid",
                )
            )
            continue
        report.anchors.append(a)
        if a.head_seq is not None and (
            report.anchored_seq is None or a.head_seq > report.anchored_seq
        ):
            report.anchored_seq = a.head_seq
            report.anchored_at = a.gen_time
            report.anchor_verified = a.status == "verified"


def parse_expected_head(text: str) -> tuple[int, str]:
    """``SEQ:SHA256`` as printed by an earlier ``bwc verify`` (head seq, head hash)."""
    seq_text, sep, digest = text.partition(":")
    digest = digest.strip().lower()
    if (
        not sep
        or not seq_text.strip().isdigit()
        or len(digest) != 64
        or not all(c in "0123456789abcdef" for c in digest)
    ):
        raise UsageError(
            f"--expect-head {text!r}: use SEQ:SHA256, the head seq and head hash an earlier "
            "`bwc verify` printed"
        )
    return int(seq_text), digest


def check_expected_head(store: StoreReader, report: Report, seq: int, digest: str) -> None:
    """The one check a store cannot make alone: that nothing was cut off its end.

    An agency that recorded the head (seq and manifest hash) at an earlier intake, or a receipt or
    anchor that names it, passes it here: the entry must still exist with exactly that hash.
    Because every entry names its predecessor's hash, that also fixes every entry before it.
    """
    name = entry_name(seq, "json")
    where = store.describe(name)
    if seq > report.head_seq:
        report.findings.append(
            Finding(
                where,
                f"expected head entry {seq} is missing: the chain now ends at "
                f"{report.head_seq} (entries removed from the end)",
                code=Code.HEAD_MISSING,
            )
        )
        return
    try:
        if store.size(name) > MAX_MANIFEST_BYTES:
            raise OSError("too large")
        actual = hashlib.sha256(store.read(name)).hexdigest()
    except (OSError, IntegrityError):
        report.findings.append(
            Finding(where, f"expected head entry {seq} is unreadable", code=Code.HEAD_MISSING)
        )
        return
    if actual != digest:
        report.findings.append(
            Finding(
                where,
                f"expected head entry {seq} has hash {actual[:16]}…, not the "
                f"recorded {digest[:16]}… (the chain was rewritten)",
                code=Code.HEAD_MISMATCH,
            )
        )
    else:
        report.notes.append(f"expected head entry {seq} present with the recorded hash")
