"""The opener: verifies a store, then decrypts its units with an agency private key, per recording.

It refuses to decrypt anything from a store with findings. Decrypted bytes are only returned to the
caller, never logged or written here.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from evidence.findings import Code
from evidence.format import (
    CONTENT_KEY_LEN,
    FORMAT_V1,
    SEGMENT_SECRET_LEN,
    derive_unit_key,
    entry_name,
    hpke_info,
    secret_info,
    unit_aad,
)
from evidence.keys import AgencyPrivateKey
from evidence.records import MAX_MANIFEST_BYTES, read_record
from evidence.store import DirectoryStoreReader, StoreReader
from evidence.verify import BootReport, RecordingReport, Report, verify_store
from hal.errors import IntegrityError, RefusedError

log = logging.getLogger(__name__)


SecretCache = dict[tuple[bytes, bytes], bytes]
"""``bwc-evidence/2`` segment secrets already opened: (HPKE info, ``enc_and_ct``) -> secret.

Keyed by exactly what the HPKE open takes besides the agency key, so a hit returns what opening
again would (a manifest with an altered blob or binding misses the cache and is opened, and
refused, on its own)."""


def decrypt_unit(
    store: StoreReader,
    manifest: dict[str, Any],
    key: AgencyPrivateKey,
    secrets: SecretCache | None = None,
) -> bytes:
    """The plaintext of one verified unit, ``bwc-evidence/1`` or ``/2`` (decided by the manifest's
    own format marker). ``IntegrityError`` if it does not decrypt. ``secrets`` (optional) caches
    ``/2`` segment secrets so each wrapped secret is opened once."""
    seq = manifest["seq"]
    name = entry_name(seq, "json")
    path = store.describe(name)
    entry = next(
        (r for r in manifest["recipients"] if r.get("fingerprint") == key.fingerprint), None
    )
    if entry is None:
        raise RefusedError(
            f"{path}: no recipient entry for agency key {key.fingerprint[:16]}…; "
            "this key cannot open this evidence"
        )
    if entry.get("suite") != key.suite:
        raise IntegrityError(
            f"recipient suite {entry.get('suite')!r} does not match the key", path=path
        )
    fmt = manifest["format"]
    aad = unit_aad(
        device=manifest["device"],
        key=manifest["key"],
        seq=seq,
        recording=manifest["recording"],
        segment=manifest["segment"],
        unit=manifest["unit"],
        fmt=fmt,
    )
    try:
        wrapped = base64.b64decode(str(entry.get("enc_and_ct")), validate=True)
        nonce = bytes.fromhex(manifest["payload"]["nonce"])
    except (binascii.Error, ValueError) as exc:
        raise IntegrityError("recipient entry or nonce is not well-formed", path=path) from exc
    if fmt == FORMAT_V1:
        content_key = _unwrap(key, wrapped, hpke_info(aad), CONTENT_KEY_LEN, "content key", path)
    else:
        info = secret_info(
            device=manifest["device"],
            key=manifest["key"],
            recording=manifest["recording"],
            segment=manifest["segment"],
            secret_id=manifest["secret_id"],
        )
        secret = secrets.get((info, wrapped)) if secrets is not None else None
        if secret is None:
            secret = _unwrap(key, wrapped, info, SEGMENT_SECRET_LEN, "segment secret", path)
            if secrets is not None:
                secrets[(info, wrapped)] = secret
        content_key = derive_unit_key(secret, aad)
    bin_name = manifest["payload"]["file"]
    try:
        ciphertext = store.read(bin_name)
    except OSError as exc:
        raise RefusedError(
            f"{store.describe(bin_name)}: payload not here (offloaded?); open the offloaded copy"
        ) from exc
    try:
        return AESGCM(content_key).decrypt(nonce, ciphertext, aad)
    except InvalidTag as exc:
        raise IntegrityError(
            "payload does not decrypt (wrong place in the chain or altered)",
            path=store.describe(bin_name),
            code=Code.PAYLOAD_UNDECRYPTABLE,
        ) from exc


def _unwrap(
    key: AgencyPrivateKey, wrapped: bytes, info: bytes, length: int, what: str, path: str
) -> bytes:
    """Open one HPKE blob; ``IntegrityError`` (``key-undecryptable``) naming the manifest if it
    does not open (altered, or moved from another unit, segment or device) or has the wrong
    length."""
    try:
        opened = key.unwrap(wrapped, info)
    except IntegrityError as exc:
        raise IntegrityError(
            f"the wrapped {what} does not open with the agency key (altered, or moved here "
            "from another unit, segment or device)",
            path=path,
            code=Code.KEY_UNDECRYPTABLE,
        ) from exc
    if len(opened) != length:
        raise IntegrityError(
            f"unwrapped {what} has the wrong length", path=path, code=Code.KEY_UNDECRYPTABLE
        )
    return opened


def _manifest(store: StoreReader, seq: int) -> dict[str, Any]:
    """A manifest the verifier passed, read again (strictly: it may have changed since)."""
    name = entry_name(seq, "json")
    try:
        if store.size(name) > MAX_MANIFEST_BYTES:
            raise IntegrityError("changed after verification", path=store.describe(name))
        data = store.read(name)
    except OSError as exc:
        raise IntegrityError("unreadable after verification", path=store.describe(name)) from exc
    if len(data) > MAX_MANIFEST_BYTES:
        raise IntegrityError("changed after verification", path=store.describe(name))
    return read_record(data, store.describe(name)).to_dict()


@dataclass
class Segment:
    """One segment of a recording: its units' payloads concatenated form one MPEG-TS stream."""

    index: int
    manifests: list[dict[str, Any]]
    _store: StoreReader
    _key: AgencyPrivateKey
    _secrets: SecretCache = field(default_factory=dict)

    def iter_plaintext(self) -> Iterator[bytes]:
        """Decrypt unit by unit, so a long segment never has to sit in memory at once. A
        ``bwc-evidence/2`` segment secret is opened once (cached for this segment's units)."""
        for m in self.manifests:
            yield decrypt_unit(self._store, m, self._key, self._secrets)

    def plaintext(self) -> bytes:
        return b"".join(self.iter_plaintext())


@dataclass
class Recording:
    report: RecordingReport
    boot: BootReport | None
    store_report: Report
    device: str | None
    segments: list[Segment] = field(default_factory=list)
    units: list[dict[str, Any]] = field(default_factory=list)


def open_store(
    store: StoreReader | Path,
    agency_private_key: AgencyPrivateKey,
    trusted_keys: list[bytes] | None = None,
    *,
    unpinned: bool = False,
) -> Iterator[Recording]:
    """Verify ``store`` (refusing with ``IntegrityError`` on any finding), then yield recordings.

    Strict like ``verify_store``: without ``trusted_keys`` it refuses (origin not established)
    unless ``unpinned``. Decryption is lazy (``Segment.iter_plaintext``), so the caller streams
    each segment.
    """
    reader = DirectoryStoreReader(store) if isinstance(store, Path) else store
    report = verify_store(reader, trusted_keys, unpinned=unpinned)
    findings = report.all_findings
    if findings:
        # Name a finding about the evidence itself before the missing trust anchor.
        first = min(findings, key=lambda f: f.code == Code.ORIGIN_NOT_ESTABLISHED)
        more = f" (and {len(findings) - 1} more findings)" if len(findings) > 1 else ""
        raise IntegrityError(
            f"[{first.code}] {first.reason}{more}", path=first.file, code=first.code
        )
    boots = {b.id: b for b in report.boots}
    for rec in report.recordings:
        manifests = [_manifest(reader, seq) for seq in rec.unit_seqs]
        segments: dict[int, list[dict[str, Any]]] = {}
        for m in manifests:
            segments.setdefault(m["segment"], []).append(m)
        yield Recording(
            report=rec,
            boot=boots.get(rec.boot) if rec.boot else None,
            store_report=report,
            device=report.device,
            segments=[
                Segment(i, ms, reader, agency_private_key) for i, ms in sorted(segments.items())
            ],
            units=manifests,
        )
