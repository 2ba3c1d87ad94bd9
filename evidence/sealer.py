"""The sealer: encrypts, signs, chains and durably writes units and events into the evidence store.

It implements ``evidence.sealing.EvidenceSink``. On open it finds the chain head and discovers the
leftovers of an unclean previous boot (moving them into ``orphans/``, never deleting anything).
It must not read the wall clock (times are passed in), log keys or plaintext, or delete evidence.

Threading: ``event`` and ``seal_unit`` may be called from different threads; one lock serialises
appends, so sequence numbers and ``prev`` hashes are assigned in write order.

Units are sealed as ``bwc-evidence/2``: one random segment secret per (recording, segment),
HPKE-wrapped once per recipient when the segment's first unit is sealed, its wrapped form repeated
in every unit manifest of the segment; each unit's AES key is derived from it
(``evidence.format.derive_unit_key``; the sealer computes it as ``expand_unit_key`` of the
segment's HKDF-Extract, the same bytes). That extract is held from the segment's first unit until
the segment ends (a unit marked ``final`` or ``extra.segment_final``, a unit of another segment or
recording, or a ``record_stop`` event), and no longer.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import logging
import os
import shutil
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from evidence.format import (
    AAD_NAME,
    CIPHER,
    DEVICE_PUB_NAME,
    FORMAT,
    NONCE_LEN,
    SECRET_ID_LEN,
    SEGMENT_SECRET_LEN,
    TMP_PREFIX,
    entry_name,
    expand_unit_key,
    secret_info,
    unit_aad,
    unit_key_prk,
)
from evidence.keys import AgencyPublicKey
from evidence.records import (
    EntryHeader,
    EventKind,
    EventManifest,
    UnitManifest,
    check_writable_kind,
)
from evidence.recovery import Head, RecoveryReport, describe, discover, find_head, move_orphans
from evidence.sealing import JsonValue, UnitMeta
from hal.durable import Direct, DurableDir, PageBuffer, fsync_dir, write_atomic
from hal.errors import IntegrityError, StorageFullError, UsageError
from hal.protocols import DeviceKey
from hal.software_key import fingerprint_raw

log = logging.getLogger(__name__)

RandomSource = Callable[[int], bytes]
"""Returns n random bytes. ``os.urandom`` on a unit; a seeded source for golden vectors only."""

_BLOCK = 4096  # Filesystem allocation unit assumed when counting real-disk usage.
_TAG_LEN = 16  # AES-GCM appends a 128-bit tag to the ciphertext.


def new_boot_id(rng: RandomSource = os.urandom) -> str:
    """A fresh random 128-bit boot id (hex), one per boot."""
    return rng(16).hex()


@dataclass(slots=True)
class _SegmentSecret:
    """The segment in use: whose it is, its secret's id and wrapped form for every recipient, and
    ``prk``, the HKDF-Extract of the secret (as secret as it; each unit key is one HMAC of it).

    The secret itself is overwritten as soon as it is wrapped and extracted, and ``drop``
    overwrites ``prk`` when the segment ends. That is best effort only: Python cannot truly
    zeroise (the random source's own ``bytes`` object, and any copy made inside ``cryptography``,
    ``hmac`` or by the allocator, are freed but not wiped); the point is to hold no reference to
    key material after its segment ends.
    """

    recording: str
    segment: int
    secret_id: str
    recipients: tuple[Mapping[str, str], ...]
    prk: bytearray

    def drop(self) -> None:
        self.prk[:] = bytes(len(self.prk))


class Sealer:
    """Appends to one store. Build with ``Sealer.open``; every append is durable when it returns."""

    def __init__(
        self,
        *,
        store: Path,
        key: DeviceKey,
        recipients: Sequence[AgencyPublicKey],
        device_id: str,
        boot_id: str,
        utc_source: Callable[[], str] | str,
        reserve_bytes: int,
        capacity_bytes: int | None,
        rng: RandomSource,
        head: Head,
        used_bytes: int,
        recovery: RecoveryReport | None,
    ) -> None:
        self._store = store
        self._key = key
        self._recipients = tuple(recipients)
        self._device_id = device_id
        self._boot_id = boot_id
        self._utc_source = utc_source
        self._reserve_bytes = reserve_bytes
        self._capacity_bytes = capacity_bytes
        self._rng = rng
        self._head = head
        self._used_bytes = used_bytes
        self._fingerprint = fingerprint_raw(key.public_key_raw())
        self._lock = threading.Lock()
        self._ct_buf = PageBuffer()  # ciphertext of the unit being sealed; see _encrypt
        self._segment: _SegmentSecret | None = None  # see _segment_secret; under the lock
        self._dir = DurableDir(store)  # every entry is written through this one descriptor
        self.recovery = recovery

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(
        cls,
        store: Path,
        key: DeviceKey,
        recipients: Sequence[AgencyPublicKey],
        device_id: str,
        boot_id: str,
        utc_source: Callable[[], str] | str,
        reserve_bytes: int = 0,
        capacity_bytes: int | None = None,
        *,
        rng: RandomSource = os.urandom,
        device_pub_pem: bytes | None = None,
    ) -> Sealer:
        """Open (creating if needed) the store, find the head and move an unclean boot's leftovers.

        ``device-pub.pem`` (derived from ``key``, or ``device_pub_pem`` if given) is written if
        missing, for openssl and the verifier (which never trusts it by itself).
        Raises ``IntegrityError`` if the head was sealed by another key.
        """
        if not recipients:
            raise UsageError("the sealer needs at least one agency recipient key")
        if reserve_bytes < 0 or (capacity_bytes is not None and capacity_bytes <= 0):
            raise UsageError("reserve_bytes must be >= 0 and capacity_bytes > 0")
        try:
            store.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"{store}: cannot create the evidence store: {exc.strerror}") from exc
        names = sorted(p.name for p in store.iterdir() if p.is_file())
        head = find_head(store, names)
        fp = fingerprint_raw(key.public_key_raw())
        if head.key is not None and head.key != fp:
            raise IntegrityError(
                f"the chain head was sealed by key {head.key[:16]}…, not this unit's key "
                f"{fp[:16]}…; refusing to extend another device's chain",
                path=str(store / entry_name(head.seq, "json")),
            )
        orphans = move_orphans(store, names, head.seq, boot_id)
        recovery = discover(store, head, orphans)
        if recovery is not None and orphans:
            recovery = replace(recovery, orphan_files=describe(store, orphans))
        if recovery is not None:
            log.warning(
                "unclean end of boot %s discovered (open recording %s, %d orphan files)",
                recovery.previous_boot,
                recovery.open_recording,
                len(recovery.orphans),
            )
        pub_path = store / DEVICE_PUB_NAME
        if not pub_path.exists():
            pem = device_pub_pem or Ed25519PublicKey.from_public_bytes(
                key.public_key_raw()
            ).public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            _write_durable(store, DEVICE_PUB_NAME, pem)
            fsync_dir(store)
        used = _usage(store, exact=capacity_bytes is not None)
        return cls(
            store=store,
            key=key,
            recipients=recipients,
            device_id=device_id,
            boot_id=boot_id,
            utc_source=utc_source,
            reserve_bytes=reserve_bytes,
            capacity_bytes=capacity_bytes,
            rng=rng,
            head=head,
            used_bytes=used,
            recovery=recovery,
        )

    # ------------------------------------------------------------------ queries

    @property
    def store(self) -> Path:
        return self._store

    @property
    def head_seq(self) -> int:
        """Sequence number of the last committed entry; -1 for an empty store."""
        return self._head.seq

    @property
    def head_hash(self) -> str:
        """Hex SHA-256 of the last committed manifest file; 64 zeros for an empty store."""
        return self._head.hash

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    @property
    def boot_id(self) -> str:
        return self._boot_id

    def free_bytes(self) -> int:
        """Bytes that units can still use before the reserve is reached (never negative)."""
        return max(0, self._raw_free() - self._reserve_bytes)

    def _raw_free(self) -> int:
        if self._capacity_bytes is not None:
            return self._capacity_bytes - self._used_bytes
        return shutil.disk_usage(self._store).free

    def _cost(self, *sizes: int) -> int:
        if self._capacity_bytes is not None:
            return sum(sizes)
        return sum(-(-s // _BLOCK) * _BLOCK for s in sizes)

    # ------------------------------------------------------------------ appending

    def event(
        self,
        kind: str,
        fields: Mapping[str, JsonValue],
        *,
        mono_us: int,
        utc_us: int,
        reserve_ok: bool = False,
    ) -> int:
        """Seal one event; returns its sequence number. ``reserve_ok`` lets it use the reserve."""
        check_writable_kind(kind)  # before the lock: a bug in the caller, not a full store
        with self._lock:
            seq = self._head.seq + 1
            data = EventManifest(
                header=self._header(seq, mono_us, utc_us), kind=kind, fields=fields
            ).to_bytes()
            sig = self._key.sign(data)
            self._check_space(self._cost(len(data), len(sig)), reserve_ok=reserve_ok)
            self._commit(seq, data, sig, None)
            if kind == EventKind.RECORD_STOP:
                self._drop_segment_secret()  # also ends a recording aborted mid-segment
            return seq

    def seal_unit(self, payload: bytes, meta: UnitMeta, *, mono_us: int, utc_us: int) -> int:
        """Encrypt, sign and durably store one unit; returns its sequence number."""
        with self._lock:
            seq = self._head.seq + 1
            header = self._header(seq, mono_us, utc_us)
            aad = unit_aad(
                device=self._device_id,
                key=self._fingerprint,
                seq=seq,
                recording=meta.recording_id,
                segment=meta.segment,
                unit=meta.unit,
                fmt=FORMAT,
            )
            segment = self._segment_secret(meta)
            nonce = self._rng(NONCE_LEN)
            # A distinct key per unit (the AAD names the unique seq), so a random nonce is never
            # used twice under one key however many units a segment has.
            unit_key = expand_unit_key(segment.prk, aad)
            ciphertext = self._encrypt(unit_key, nonce, payload, aad)
            del unit_key
            data = UnitManifest(
                header=header,
                recording=meta.recording_id,
                segment=meta.segment,
                unit=meta.unit,
                first_frame=meta.first_frame,
                frame_count=meta.frame_count,
                start_pts_us=meta.start_pts_us,
                end_pts_us=meta.end_pts_us,
                start_utc_us=meta.start_utc_us,
                start_utc_source=meta.utc_source,
                final=meta.final,
                pre_event=meta.pre_event,
                audio=meta.audio,
                gnss=meta.gnss,
                extra=meta.extra,
                payload={
                    "file": entry_name(seq, "bin"),
                    "size": len(ciphertext),
                    "sha256": hashlib.sha256(ciphertext).hexdigest(),
                    "cipher": CIPHER,
                    "nonce": nonce.hex(),
                    "aad": AAD_NAME,
                },
                recipients=segment.recipients,
                secret_id=segment.secret_id,
            ).to_bytes()
            sig = self._key.sign(data)
            self._check_space(self._cost(len(ciphertext), len(data), len(sig)), reserve_ok=False)
            self._commit(seq, data, sig, ciphertext)
            if meta.final or meta.extra.get("segment_final") is True:
                self._drop_segment_secret()
            return seq

    def _segment_secret(self, meta: UnitMeta) -> _SegmentSecret:
        """The secret of ``meta``'s segment: the one in use, or a fresh one wrapped to every
        recipient (one HPKE encapsulation per recipient per segment; caller holds the lock)."""
        current = self._segment
        if (
            current is not None
            and current.recording == meta.recording_id
            and current.segment == meta.segment
        ):
            return current
        self._drop_segment_secret()
        secret = bytearray(self._rng(SEGMENT_SECRET_LEN))
        secret_id = self._rng(SECRET_ID_LEN).hex()
        info = secret_info(
            device=self._device_id,
            key=self._fingerprint,
            recording=meta.recording_id,
            segment=meta.segment,
            secret_id=secret_id,
        )
        recipients = tuple(
            {
                "fingerprint": r.fingerprint,
                "suite": r.suite,
                "enc_and_ct": base64.b64encode(r.wrap(secret, info)).decode("ascii"),
            }
            for r in self._recipients
        )
        prk = bytearray(unit_key_prk(secret))
        secret[:] = bytes(len(secret))
        self._segment = _SegmentSecret(meta.recording_id, meta.segment, secret_id, recipients, prk)
        return self._segment

    def _drop_segment_secret(self) -> None:
        if self._segment is not None:
            self._segment.drop()
            self._segment = None

    def _encrypt(self, unit_key: bytes, nonce: bytes, payload: bytes, aad: bytes) -> memoryview:
        """AES-256-GCM of ``payload`` into the sealer's own ciphertext buffer (caller holds the
        lock). Reusing one buffer saves allocating (and faulting in) a fresh 1.3 MB ``bytes`` per
        unit at 10 Mbit/s; the ciphertext is identical. The view is valid until the next unit;
        nothing keeps it past ``_commit``."""
        n = len(payload) + _TAG_LEN
        out = self._ct_buf.view(n)
        AESGCM(unit_key).encrypt_into(nonce, payload, aad, out)
        return out

    def _header(self, seq: int, mono_us: int, utc_us: int) -> EntryHeader:
        source = self._utc_source() if callable(self._utc_source) else self._utc_source
        return EntryHeader(
            seq=seq,
            prev=self._head.hash,
            device=self._device_id,
            key=self._fingerprint,
            boot=self._boot_id,
            mono_us=int(mono_us),
            utc_us=int(utc_us),
            utc_source=str(source),
        )

    def _check_space(self, needed: int, *, reserve_ok: bool) -> None:
        available = self._raw_free() if reserve_ok else self.free_bytes()
        if needed > available:
            raise StorageFullError(
                errno.ENOSPC,
                f"evidence store full: need {needed} bytes, {available} available"
                + ("" if reserve_ok else f" above the {self._reserve_bytes}-byte reserve"),
            )

    def _commit(self, seq: int, manifest: bytes, sig: bytes, ciphertext: memoryview | None) -> None:
        # Order matters: payload and signature are durable under their final names before the
        # manifest's rename, which is the commit point. A cut before it leaves orphans only.
        try:
            files: list[tuple[str, bytes | memoryview | Direct]] = [(entry_name(seq, "sig"), sig)]
            if ciphertext is not None:
                # From the page-aligned ciphertext buffer: written with O_DIRECT where it can be.
                files.insert(0, (entry_name(seq, "bin"), Direct(ciphertext)))
            # All three written, then fsync'd; payload and signature renamed and the directory
            # fsync'd; then the manifest renamed (the commit point) and the directory fsync'd.
            self._dir.commit_entry(
                files, (entry_name(seq, "json"), manifest), tmp_prefix=TMP_PREFIX
            )
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise StorageFullError(errno.ENOSPC, "evidence store full (disk)") from exc
            raise
        self._used_bytes += len(manifest) + len(sig) + (len(ciphertext) if ciphertext else 0)
        self._head = Head(seq, hashlib.sha256(manifest).hexdigest(), None, self._fingerprint)


# ---------------------------------------------------------------------- file helpers


def _write_durable(directory: Path, name: str, data: bytes | memoryview) -> None:
    """Write one file of an entry; the caller fsyncs the directory once per entry."""
    write_atomic(directory / name, data, tmp_name=f"{TMP_PREFIX}{name}", sync_dir=False)


def _usage(store: Path, *, exact: bool) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(store):
        for f in files:
            size = os.path.getsize(os.path.join(dirpath, f))
            total += size if exact else -(-size // _BLOCK) * _BLOCK
    return total
