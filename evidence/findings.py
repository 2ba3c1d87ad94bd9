"""Verification findings and their stable codes.

A finding's ``code`` is part of the interface (``bwc verify --json``, agencies' tooling, the
adversarial tests): never rename or reuse one; add new ones. The prose ``reason`` may change.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class Code(StrEnum):
    """Every finding the verifier and exporter can report."""

    # Nothing, or the wrong thing, to verify.
    NO_EVIDENCE = "no-evidence"
    # Origin: who signed it.
    ORIGIN_NOT_ESTABLISHED = "origin-not-established"
    KEY_NOT_TRUSTED = "key-not-trusted"
    KEY_UNKNOWN = "key-unknown"
    KEY_CHANGED = "key-changed"
    DEVICE_CHANGED = "device-changed"
    STORE_PUB_MISMATCH = "store-pub-mismatch"
    # The chain and its entries.
    ENTRY_MISSING = "entry-missing"
    ENTRY_UNREADABLE = "entry-unreadable"
    MANIFEST_INVALID = "manifest-invalid"
    MANIFEST_TOO_LARGE = "manifest-too-large"
    MANIFEST_NOT_CANONICAL = "manifest-not-canonical"
    FORMAT_UNKNOWN = "format-unknown"
    SIGNATURE_MISSING = "signature-missing"
    SIGNATURE_INVALID = "signature-invalid"
    SEQ_MISMATCH = "seq-mismatch"
    PREV_MISMATCH = "prev-mismatch"
    ENTRY_TYPE_UNKNOWN = "entry-type-unknown"
    EVENT_MALFORMED = "event-malformed"
    EVENT_WITH_PAYLOAD = "event-with-payload"
    UNIT_MALFORMED = "unit-malformed"
    # bwc-evidence/2: units naming one segment secret (checked without the agency key).
    SECRET_REUSED = "secret-reused"  # noqa: S105  (a finding code, not a secret)
    SECRET_RECIPIENTS_DIFFER = "secret-recipients-differ"  # noqa: S105  (a finding code)
    # Payloads and other files the chain names.
    PAYLOAD_MISSING = "payload-missing"
    PAYLOAD_FREED = "payload-freed"
    FREED_UNRECEIPTED = "freed-unreceipted"
    PAYLOAD_UNREADABLE = "payload-unreadable"
    PAYLOAD_SIZE = "payload-size"
    PAYLOAD_HASH = "payload-hash"
    ORPHAN_UNEXPLAINED = "orphan-unexplained"
    ORPHAN_MISSING = "orphan-missing"
    ORPHAN_ALTERED = "orphan-altered"
    # Meaning: boots, recordings, frames.
    BOOT_REPLAYED = "boot-replayed"
    POWER_LOSS_UNEXPLAINED = "power-loss-unexplained"
    RECORDING_DUPLICATE = "recording-duplicate"
    RECORDING_NOT_OPEN = "recording-not-open"
    RECORDING_NOT_CLOSED = "recording-not-closed"
    RECOVERY_UNEXPLAINED = "recovery-unexplained"
    RECORDING_ID_INVALID = "recording-id-invalid"
    UNIT_OUTSIDE_RECORDING = "unit-outside-recording"
    UNIT_ORDER = "unit-order"
    FRAMES_OVERLAP = "frames-overlap"
    FRAMES_MISSING = "frames-missing"
    HANDOVER_INVALID = "handover-invalid"
    # Anchors and heads recorded elsewhere.
    ANCHOR_INVALID = "anchor-invalid"
    HEAD_MISSING = "head-missing"
    HEAD_MISMATCH = "head-mismatch"
    # Export only: what decrypting and decoding found.
    PAYLOAD_UNDECRYPTABLE = "payload-undecryptable"
    KEY_UNDECRYPTABLE = "key-undecryptable"
    MEDIA_UNDECODABLE = "media-undecodable"


@dataclass
class Finding:
    """One problem: the file it is about, why, and (for recordings) which recording."""

    file: str
    reason: str
    recording: str | None = None
    code: str = Code.MANIFEST_INVALID.value


SHOWN_PER_CODE = 3
"""How many findings of one code a report lists before summarising the rest as a count."""


def summarise(findings: Iterable[Finding], shown: int = SHOWN_PER_CODE) -> list[Finding | str]:
    """The findings to print: the first ``shown`` of each code, then one line per code saying how
    many more there were. A store with a million altered payloads gives a short report."""
    kept: list[Finding | str] = []
    counts: dict[str, int] = {}
    for f in findings:
        counts[f.code] = counts.get(f.code, 0) + 1
        if counts[f.code] <= shown:
            kept.append(f)
    for code, n in counts.items():
        if n > shown:
            kept.append(f"... and {n - shown} more {code} finding(s)")
    return kept


def counts_by_code(findings: Iterable[Finding]) -> dict[str, int]:
    out: dict[str, int] = {}
    for f in findings:
        out[f.code] = out.get(f.code, 0) + 1
    return dict(sorted(out.items()))
