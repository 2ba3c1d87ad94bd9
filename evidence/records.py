"""Signed manifests as typed records that read and write themselves by one set of rules.

Reading refuses, with ``IntegrityError`` and a finding code, anything the sealer never writes
(see ``evidence.schema``: unknown, missing or wrongly typed fields). Writing
(``UnitManifest.to_bytes``, ``EventManifest.to_bytes``) produces the canonical bytes and reads them
back by the same rules before anything is signed, so a manifest the verifier would refuse is
never written. Event kinds are named here once. Pure functions: no IO.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from evidence.findings import Code
from evidence.format import FORMAT, canonical_json
from evidence.schema import (
    EVENT,
    MAX_MANIFEST_BYTES,
    MAX_SIG_BYTES,
    RECORDING_ID,
    UNIT,
    UNIT_FIELDS,
    Manifest,
    check_event,
    check_unit,
    decode_json,
    parse_manifest,
)
from evidence.sealing import RecordError
from hal.errors import IntegrityError

__all__ = [
    "EVENT",
    "MAX_MANIFEST_BYTES",
    "MAX_SIG_BYTES",
    "RECORDING_ID",
    "UNIT",
    "EntryHeader",
    "EventKind",
    "EventManifest",
    "Manifest",
    "RecordError",
    "UnitManifest",
    "check_event",
    "check_unit",
    "check_writable_kind",
    "decode_json",
    "parse_manifest",
    "read_record",
]


class EventKind(StrEnum):
    """Every event kind the unit writes; the sealer refuses any other. The verifier has a rule
    for some of them; a kind it has no rule for (this one's or another writer's) is a plain
    event to it."""

    BOOT = "boot"
    SHUTDOWN = "shutdown"
    PROVISIONED = "provisioned"
    BUFFERING = "buffering"
    FAULT = "fault"
    FAULT_CLEARED = "fault_cleared"
    DAEMON_RESTART = "daemon_restart"
    LOW_BATTERY = "low_battery"
    STORAGE_FULL = "storage_full"
    CLOCK_STEP = "clock_step"
    FIRMWARE_INSTALL = "firmware_install"
    FIRMWARE_COMMIT = "firmware_commit"
    FIRMWARE_ROLLBACK = "firmware_rollback"
    RECORD_START = "record_start"
    RECORD_STOP = "record_stop"
    MARKER = "marker"
    STEALTH = "stealth"
    MUTE = "mute"
    FRAME_GAP = "frame_gap"
    POWER_LOSS_DISCOVERED = "power_loss_discovered"
    LEFTOVERS_MOVED = "leftovers_moved"
    OFFLOAD_RECEIPT = "offload_receipt"
    OFFLOAD_FREED = "offload_freed"
    OFFLOAD_MISMATCH = "offload_mismatch"  # a target copy failed the check before freeing
    TIMESTAMP_TOKEN = "timestamp_token"  # noqa: S105  (an event kind, not a secret)
    TIMESTAMP_FAILED = "timestamp_failed"


# ---------------------------------------------------------------------- typed records


_KNOWN_KINDS = frozenset(k.value for k in EventKind)


@dataclass(frozen=True, slots=True, kw_only=True)
class EntryHeader:
    """What every entry of the chain carries: its place, its signer and when it was sealed."""

    seq: int
    prev: str
    device: str
    key: str
    boot: str
    mono_us: int
    utc_us: int
    utc_source: str
    format: str = FORMAT
    """The version marker: what the sealer writes, or what a manifest read back says."""

    @classmethod
    def from_manifest(cls, m: Manifest) -> EntryHeader:
        f = m.fields
        return cls(
            format=m.format,
            seq=m.seq,
            prev=f["prev"],
            device=m.device,
            key=m.key,
            boot=m.boot,
            mono_us=f["mono_us"],
            utc_us=f["utc_us"],
            utc_source=f["utc_source"],
        )

    def to_dict(self, entry_type: str) -> dict[str, Any]:
        return {
            "format": self.format,
            "seq": self.seq,
            "prev": self.prev,
            "type": entry_type,
            "device": self.device,
            "key": self.key,
            "boot": self.boot,
            "mono_us": self.mono_us,
            "utc_us": self.utc_us,
            "utc_source": self.utc_source,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class EventManifest:
    """A signed event: a kind and its fields. ``kind`` read from a store may be one this build
    does not know (a plain event); writing one is refused."""

    header: EntryHeader
    kind: str
    fields: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {**self.header.to_dict(EVENT), "kind": self.kind, "fields": dict(self.fields)}

    def to_bytes(self) -> bytes:
        """The canonical manifest bytes, read back by the verifier's rules first."""
        check_writable_kind(self.kind)
        return _written(self.to_dict(), f"event {self.kind!r}", check_event)

    @classmethod
    def from_bytes(cls, data: bytes, path: str) -> EventManifest:
        record = read_record(data, path)
        if not isinstance(record, EventManifest):
            raise IntegrityError("not an event", path=path, code=Code.EVENT_MALFORMED)
        return record

    @classmethod
    def from_manifest(cls, m: Manifest) -> EventManifest:
        """From an already checked ``Manifest`` (``check_event``)."""
        return cls(header=EntryHeader.from_manifest(m), kind=m["kind"], fields=m["fields"])


@dataclass(frozen=True, slots=True, kw_only=True)
class UnitManifest:
    """A sealed unit: where it sits in its recording, its payload and its wrapped key material."""

    header: EntryHeader
    recording: str
    segment: int
    unit: int
    first_frame: int
    frame_count: int
    start_pts_us: int
    end_pts_us: int
    start_utc_us: int
    start_utc_source: str
    final: bool
    pre_event: bool
    audio: bool
    gnss: Mapping[str, Any] | None
    extra: Mapping[str, Any]
    payload: Mapping[str, Any]
    """``file``, ``size``, ``sha256``, ``cipher``, ``nonce`` (hex), ``aad`` (see check_unit)."""
    recipients: tuple[Mapping[str, str], ...]
    """``fingerprint``, ``suite`` and ``enc_and_ct`` (base64) of each agency recipient: the
    wrapped content key (``bwc-evidence/1``) or the wrapped segment secret (``bwc-evidence/2``)."""
    secret_id: str | None = None
    """``bwc-evidence/2`` only: the id (hex) of the segment secret the unit's key derives from."""

    def to_dict(self) -> dict[str, Any]:
        secret = {} if self.secret_id is None else {"secret_id": self.secret_id}
        return {
            **secret,
            **self.header.to_dict(UNIT),
            "recording": self.recording,
            "segment": self.segment,
            "unit": self.unit,
            "first_frame": self.first_frame,
            "frame_count": self.frame_count,
            "start_pts_us": self.start_pts_us,
            "end_pts_us": self.end_pts_us,
            "start_utc_us": self.start_utc_us,
            "start_utc_source": self.start_utc_source,
            "final": self.final,
            "pre_event": self.pre_event,
            "audio": self.audio,
            "gnss": dict(self.gnss) if self.gnss is not None else None,
            "extra": dict(self.extra),
            "payload": dict(self.payload),
            "recipients": [dict(r) for r in self.recipients],
        }

    def to_bytes(self) -> bytes:
        """The canonical manifest bytes, read back by the verifier's rules first."""
        return _written(self.to_dict(), f"unit of recording {self.recording!r}", check_unit)

    @classmethod
    def from_bytes(cls, data: bytes, path: str) -> UnitManifest:
        record = read_record(data, path)
        if not isinstance(record, UnitManifest):
            raise IntegrityError("not a unit", path=path, code=Code.UNIT_MALFORMED)
        return record

    @classmethod
    def from_manifest(cls, m: Manifest) -> UnitManifest:
        """From an already checked ``Manifest`` (``check_unit``)."""
        f = m.fields
        return cls(
            header=EntryHeader.from_manifest(m),
            **{k: f[k] for k in UNIT_FIELDS if k != "recipients"},
            gnss=f["gnss"],
            recipients=tuple(f["recipients"]),
            secret_id=f.get("secret_id"),
        )


def read_record(data: bytes, path: str) -> UnitManifest | EventManifest:
    """One manifest, strictly decoded and schema-checked, as its typed record (not its
    signature, seq or place in the chain: ``evidence.verify_chain`` judges those)."""
    m = parse_manifest(data, path)
    if m.type == UNIT:
        check_unit(m, path)
        return UnitManifest.from_manifest(m)
    if m.type == EVENT:
        check_event(m, path)
        return EventManifest.from_manifest(m)
    raise IntegrityError(
        f"unknown entry type {m.type[:40]!r}", path=path, code=Code.ENTRY_TYPE_UNKNOWN
    )


def check_writable_kind(kind: str) -> None:
    """Refuse an event kind this build does not name: kinds are named once, in ``EventKind``."""
    if kind not in _KNOWN_KINDS:
        raise RecordError(
            f"unknown event kind {kind[:40]!r}: name it in evidence.records.EventKind first",
            code=Code.EVENT_MALFORMED,
        )


def _written(obj: dict[str, Any], what: str, check: Callable[[Manifest, str], None]) -> bytes:
    """``obj`` in canonical form, refused (``RecordError``) if the verifier would refuse it."""
    try:
        data = canonical_json(obj)
    except (ValueError, TypeError) as exc:
        # NaN/Infinity, a lone surrogate (UnicodeEncodeError), a value JSON has no form for.
        raise RecordError(f"{what} cannot be written as strict JSON: {str(exc)[:120]}") from exc
    try:
        check(parse_manifest(data, what), what)
    except IntegrityError as exc:
        raise RecordError(f"{what} would not verify: {exc.reason}", code=exc.code) from exc
    return data
