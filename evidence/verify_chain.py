"""The verifier's first part: the hash chain. Every manifest decodes strictly, is signed by the one
device key, sits at its own seq, and names its predecessor's hash; the store's device-pub.pem, if
present, is that key (a convenience, never trust).

Only entries that pass every check here are handed on to the meaning (``verify_events``) and the
payloads (``verify_payloads``).
"""

from __future__ import annotations

import hashlib
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from evidence.findings import Code
from evidence.format import (
    DEVICE_PUB_NAME,
    ORPHANS_DIR,
    SIG_LEN,
    TMP_PREFIX,
    ZERO_HASH,
    canonical_json,
    entry_name,
    parse_entry_name,
)
from evidence.records import (
    EVENT,
    MAX_MANIFEST_BYTES,
    MAX_SIG_BYTES,
    UNIT,
    Manifest,
    check_event,
    check_unit,
    parse_manifest,
)
from evidence.verify_context import Context, Entry
from hal.errors import IntegrityError
from hal.software_key import fingerprint_raw

MAX_PUB_BYTES = 4096


class Listing:
    """The store's names sorted into manifests, other entry files and everything else."""

    def __init__(self, ctx: Context, names: list[str]) -> None:
        self.names = names
        self.jsons: set[int] = set()
        self.others: dict[int, set[str]] = {}
        for name in names:
            parsed = parse_entry_name(name)
            if parsed is None:
                _classify_other(ctx, name)
            elif parsed[1] == "json":
                self.jsons.add(parsed[0])
            else:
                self.others.setdefault(parsed[0], set()).add(parsed[1])
        self.head = max(self.jsons) if self.jsons else -1
        for seq, exts in sorted(self.others.items()):
            if seq > self.head:
                for ext in sorted(exts):
                    ctx.report.notes.append(
                        f"{ctx.path(entry_name(seq, ext))}: uncommitted leftover "
                        "(power cut during a write; moved to orphans/ at the next boot)"
                    )

    def has(self, seq: int, ext: str) -> bool:
        return ext in self.others.get(seq, set())


def _format_runs(entries: list[Entry]) -> list[dict[str, Any]]:
    """Consecutive entries of one format version, as ``format``/``first_seq``/``last_seq``."""
    runs: list[dict[str, Any]] = []
    for e in entries:
        if runs and runs[-1]["format"] == e.manifest.format:
            runs[-1]["last_seq"] = e.seq
        else:
            runs.append({"format": e.manifest.format, "first_seq": e.seq, "last_seq": e.seq})
    return runs


def _classify_other(ctx: Context, name: str) -> None:
    if name == DEVICE_PUB_NAME or name.startswith(f"{ORPHANS_DIR}/"):
        return
    if name.startswith(TMP_PREFIX):
        ctx.report.notes.append(
            f"{ctx.path(name)}: uncommitted temp file (a write was interrupted)"
        )
    else:
        ctx.report.notes.append(f"{ctx.path(name)}: not part of the evidence format")


class ChainCheck:
    """Walks the entries present in seq order; see the module docstring."""

    def __init__(self, ctx: Context, listing: Listing) -> None:
        self.ctx = ctx
        self.listing = listing
        self.chain_key: str | None = None
        self.chain_device: str | None = None
        self.store_pub_fp: str | None = None  # None: no file; "": unreadable or not canonical
        self.named_keys: set[str] = set()  # every fingerprint a manifest names, valid or not

    def run(self) -> list[Entry]:
        ctx = self.ctx
        self._load_store_pub()
        good: list[Entry] = []
        prev_hash: str | None = ZERO_HASH
        expected = 0
        # Walk the entries present, reporting each run of missing ones once: a single hostile
        # name like 9999999999.json must cost one finding, not ten billion loop turns.
        for seq in sorted(self.listing.jsons):
            name = entry_name(seq, "json")
            if seq != expected:
                missing = (
                    f"entry {expected} is"
                    if seq - expected == 1
                    else f"entries {expected} to {seq - 1} are"
                )
                ctx.finding(
                    IntegrityError(
                        f"{missing} missing (deleted?); the chain is broken here",
                        path=ctx.path(entry_name(expected, "json")),
                        code=Code.ENTRY_MISSING,
                    )
                )
                prev_hash = None
            expected = seq + 1
            try:
                data = ctx.read(name, MAX_MANIFEST_BYTES)
            except OSError as exc:
                ctx.finding(
                    IntegrityError(f"unreadable: {exc.strerror or exc}", path=ctx.path(name)),
                    code=Code.ENTRY_UNREADABLE,
                )
                prev_hash = None
                continue
            except IntegrityError as exc:
                ctx.finding(exc)
                prev_hash = None
                continue
            try:
                good.append(Entry(seq, self._check_entry(seq, name, data, prev_hash), name))
            except IntegrityError as exc:
                ctx.finding(exc)
            prev_hash = hashlib.sha256(data).hexdigest()
            if seq == self.listing.head:
                ctx.report.head_hash = prev_hash
        ctx.report.entries = len(self.listing.jsons)
        ctx.report.head_seq = self.listing.head
        ctx.report.device = self.chain_device
        self._check_store_pub()
        ctx.report.keys = sorted({e.manifest.key for e in good})
        ctx.report.formats = _format_runs(good)
        return good

    def _check_entry(self, seq: int, name: str, data: bytes, prev_hash: str | None) -> Manifest:
        path = self.ctx.path(name)
        m = parse_manifest(data, path)
        self.named_keys.add(m.key)
        self._check_signature(seq, data, m.key, path)
        if canonical_json(m.fields) != data:
            raise IntegrityError(
                "manifest is not in canonical form", path=path, code=Code.MANIFEST_NOT_CANONICAL
            )
        if m.seq != seq:
            raise IntegrityError(
                f"manifest says seq {m.seq} but is stored as entry {seq} (moved or replayed)",
                path=path,
                code=Code.SEQ_MISMATCH,
            )
        if prev_hash is not None and m["prev"] != prev_hash:
            before = "the zero hash" if seq == 0 else f"the hash of {entry_name(seq - 1, 'json')}"
            raise IntegrityError(
                f"prev does not match {before} (entry removed, reordered, replayed or spliced)",
                path=path,
                code=Code.PREV_MISMATCH,
            )
        if self.chain_key is None:
            self.chain_key = m.key
        elif m.key != self.chain_key:
            raise IntegrityError(
                f"signed by device key {m.key[:16]}…, the rest of the chain by "
                f"{self.chain_key[:16]}…",
                path=path,
                code=Code.KEY_CHANGED,
            )
        if self.chain_device is None:
            self.chain_device = m.device
        elif m.device != self.chain_device:
            raise IntegrityError(
                f"device id {m.device[:60]!r} differs from the chain's {self.chain_device!r}",
                path=path,
                code=Code.DEVICE_CHANGED,
            )
        if m.type == UNIT:
            check_unit(m, path)
        elif m.type == EVENT:
            check_event(m, path)
            if self.listing.has(seq, "bin"):
                raise IntegrityError(
                    "an event has a payload file beside it",
                    path=self.ctx.path(entry_name(seq, "bin")),
                    code=Code.EVENT_WITH_PAYLOAD,
                )
        else:
            raise IntegrityError(
                f"unknown entry type {m.type[:40]!r}", path=path, code=Code.ENTRY_TYPE_UNKNOWN
            )
        return m

    def _check_signature(self, seq: int, data: bytes, fp: str, path: str) -> None:
        ctx = self.ctx
        sig_name = entry_name(seq, "sig")
        sig_path = ctx.path(sig_name)
        if ctx.trusted and fp not in ctx.trusted:
            raise IntegrityError(
                f"signed by key {fp} which is not a trusted (--trust) key",
                path=path,
                code=Code.KEY_NOT_TRUSTED,
            )
        key = ctx.keys.get(fp)
        if key is None:
            raise IntegrityError(
                f"signing key {fp} unknown (no matching device-pub.pem; pass --trust)",
                path=path,
                code=Code.KEY_UNKNOWN,
            )
        try:
            sig = ctx.read(sig_name, MAX_SIG_BYTES)
        except (OSError, IntegrityError) as exc:
            raise IntegrityError(
                "signature file missing or unreadable", path=sig_path, code=Code.SIGNATURE_MISSING
            ) from exc
        if len(sig) != SIG_LEN:
            raise IntegrityError(
                f"signature is {len(sig)} bytes, not {SIG_LEN}",
                path=sig_path,
                code=Code.SIGNATURE_INVALID,
            )
        try:
            key.verify(sig, data)
        except InvalidSignature as exc:
            # Either file may be the altered one, so the finding names both.
            raise IntegrityError(
                f"Ed25519 signature {sig_path} does not verify over this manifest",
                path=path,
                code=Code.SIGNATURE_INVALID,
            ) from exc

    def _load_store_pub(self) -> None:
        # The store's own device-pub.pem is a convenience, never trust: it only supplies a key to
        # try when no --trust is given; origin is established only by --trust.
        ctx = self.ctx
        if DEVICE_PUB_NAME not in self.listing.names:
            return
        self.store_pub_fp = ""
        try:
            data = ctx.read(DEVICE_PUB_NAME, MAX_PUB_BYTES)
            key = serialization.load_pem_public_key(data)
        except (ValueError, UnsupportedAlgorithm, OSError, IntegrityError):
            return
        if isinstance(key, Ed25519PublicKey):
            canonical = key.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            if canonical != data:
                return  # The sealer writes exactly this encoding; anything else was altered.
            raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            self.store_pub_fp = fingerprint_raw(raw)
            ctx.keys.setdefault(self.store_pub_fp, key)

    def _check_store_pub(self) -> None:
        if self.store_pub_fp is None:
            return
        path = self.ctx.path(DEVICE_PUB_NAME)
        expected = self.chain_key or (min(self.named_keys) if len(self.named_keys) == 1 else None)
        if not self.store_pub_fp:
            self.ctx.finding(
                IntegrityError(
                    "not an Ed25519 public key PEM in canonical form",
                    path=path,
                    code=Code.STORE_PUB_MISMATCH,
                )
            )
        elif expected is None or self.store_pub_fp != expected:
            self.ctx.finding(
                IntegrityError(
                    "does not match the key the chain is signed with",
                    path=path,
                    code=Code.STORE_PUB_MISMATCH,
                )
            )
