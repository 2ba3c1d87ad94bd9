"""The offload plan: which files of an evidence store still have to go, in which order. Sans-IO.

Input is what a scan of the store found (manifests already parsed); output is an ordered list
of files with their retention class. What counts as already offloaded is rebuilt from the chain
itself: ``offload_receipt`` events name confirmed files, ``offload_freed`` events name payloads
removed from the unit, and ``offload_mismatch`` events withdraw a confirmation whose target copy
no longer held the receipted bytes when the unit was about to free its own (the file is then sent
again). This module reads no files and must not decide to free anything.

Order (docs/offload.md): the store's public key first; then recordings that carry a marker
(oldest first), then the other recordings (oldest first), then the events outside recordings; in
each group, chain order, and within an entry ``.bin``, ``.sig``, then ``.json`` last, mirroring the
sealer's commit order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from evidence.records import EventKind

RECEIPT_KIND: str = EventKind.OFFLOAD_RECEIPT.value
FREED_KIND: str = EventKind.OFFLOAD_FREED.value
MISMATCH_KIND: str = EventKind.OFFLOAD_MISMATCH.value
BOOKKEEPING_KINDS = frozenset({RECEIPT_KIND, FREED_KIND, MISMATCH_KIND})
"""Events the offload itself writes. They are sent but never receipted in turn: a receipt for a
receipt would make every round write one more event, and the chain would grow while docked."""


@dataclass(frozen=True)
class Entry:
    """One committed chain entry as a scan of the store saw it."""

    seq: int
    manifest: str  # "NNNNNNNNNN.json"
    signature: str  # "NNNNNNNNNN.sig"
    payload: str | None  # "NNNNNNNNNN.bin" for units, None for events
    recording: str | None
    kind: str | None  # event kind; None for units
    fields: Mapping[str, Any] = field(default_factory=dict)

    @property
    def bookkeeping(self) -> bool:
        return self.kind in BOOKKEEPING_KINDS

    def files(self) -> list[str]:
        """The entry's files in upload order: payload and signature before the commit point."""
        out = [self.payload] if self.payload else []
        return [*out, self.signature, self.manifest]


def parse_entry(seq: int, manifest: Mapping[str, Any]) -> Entry:
    """Read what the plan needs from a manifest; tolerant, since verify (not offload) judges it."""
    name = f"{seq:010d}"
    payload = manifest.get("payload")
    fields = manifest.get("fields")
    fields = fields if isinstance(fields, Mapping) else {}
    if isinstance(payload, Mapping):
        file = payload.get("file")
        recording = manifest.get("recording")
        return Entry(
            seq=seq,
            manifest=f"{name}.json",
            signature=f"{name}.sig",
            payload=file if isinstance(file, str) and file else f"{name}.bin",
            recording=recording if isinstance(recording, str) else None,
            kind=None,
        )
    kind = manifest.get("kind")
    recording = fields.get("recording")
    return Entry(
        seq=seq,
        manifest=f"{name}.json",
        signature=f"{name}.sig",
        payload=None,
        recording=recording if isinstance(recording, str) and recording else None,
        kind=kind if isinstance(kind, str) else None,
        fields=fields,
    )


@dataclass(frozen=True)
class Confirmed:
    """One receipted file: what the target must hold, and where (S3's exact version)."""

    sha256: str
    size: int
    md5_b64: str = ""
    version_id: str = ""
    etag: str = ""
    retain_until_utc_us: int = 0


@dataclass
class ChainState:
    """What the chain says was offloaded: per target URL the confirmed files, and freed payloads."""

    confirmed: dict[str, dict[str, Confirmed]] = field(default_factory=dict)
    freed: set[str] = field(default_factory=set)

    def confirmed_at(self, target_url: str) -> dict[str, Confirmed]:
        return self.confirmed.setdefault(target_url, {})

    @classmethod
    def from_entries(cls, entries: Iterable[Entry]) -> ChainState:
        state = cls()
        for entry in entries:
            if entry.kind == RECEIPT_KIND:
                state.add_receipt_fields(entry.fields)
            elif entry.kind == FREED_KIND:
                files = entry.fields.get("files", [])
                state.freed.update(f for f in files if isinstance(f, str))
            elif entry.kind == MISMATCH_KIND:
                state.withdraw_fields(entry.fields)
        return state

    def withdraw_fields(self, fields: Mapping[str, Any]) -> None:
        """An ``offload_mismatch`` event: these files are no longer confirmed at that target."""
        target, items = fields.get("target"), fields.get("files")
        if not isinstance(target, str) or not isinstance(items, list):
            return
        done = self.confirmed_at(target)
        for row in items:
            name = row.get("file") if isinstance(row, Mapping) else None
            if isinstance(name, str):
                done.pop(name, None)

    def add_receipt_fields(self, fields: Mapping[str, Any]) -> None:
        """Accept the batched form ``{target, files: [...]}`` (ours) and a one-file form."""
        target = fields.get("target")
        if not isinstance(target, str):
            return
        items = fields.get("files")
        rows: list[Any] = list(items) if isinstance(items, list) else [fields]
        for row in rows:
            if not isinstance(row, Mapping):
                continue
            name, sha, size = row.get("file"), row.get("sha256"), row.get("size")
            if isinstance(name, str) and isinstance(sha, str) and isinstance(size, int):
                detail = row.get("receipt")
                detail = detail if isinstance(detail, Mapping) else {}
                self.confirmed_at(target)[name] = Confirmed(
                    sha,
                    size,
                    md5_b64=_text(detail.get("md5_b64")),
                    version_id=_text(detail.get("version_id")),
                    etag=_text(detail.get("etag")),
                    retain_until_utc_us=_whole(detail.get("retain_until_utc_us")),
                )


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _whole(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


@dataclass(frozen=True)
class PlannedFile:
    name: str
    group: str  # recording id, "key" or "events" (the plan orders by it)
    marked: bool  # a recording with a marker: the longer retention applies
    bookkeeping: bool
    entry_seq: int | None


def marked_recordings(entries: Iterable[Entry]) -> set[str]:
    return {e.recording for e in entries if e.kind == EventKind.MARKER and e.recording}


def build_plan(
    entries: list[Entry],
    extra_files: list[str],
    state: ChainState,
    target_url: str,
    present_payloads: set[str],
) -> list[PlannedFile]:
    """Every file not yet confirmed at ``target_url``, in offload order.

    ``extra_files`` are store files outside the chain (``device-pub.pem``, orphans); they go
    first. A payload named in an ``offload_freed`` event is gone from the unit and is skipped;
    a payload missing without such an event is skipped too (``bwc verify`` reports it).
    """
    done = state.confirmed_at(target_url)
    marked = marked_recordings(entries)
    first_seq: dict[str, int] = {}
    for e in entries:
        if e.recording is not None:
            first_seq.setdefault(e.recording, e.seq)
    recordings = sorted(first_seq, key=lambda r: (r not in marked, first_seq[r]))
    rank = {r: i for i, r in enumerate(recordings)}
    ordered = sorted(
        entries,
        key=lambda e: (rank[e.recording] if e.recording is not None else len(rank), e.seq),
    )
    plan = [PlannedFile(n, "key", False, False, None) for n in extra_files if n not in done]
    for e in ordered:
        group = e.recording if e.recording is not None else "events"
        for name in e.files():
            if name in done:
                continue
            # A payload no longer on the unit cannot go (freed, or missing: verify reports that);
            # one still present is sent even if a freed event names it, when its confirmation
            # was withdrawn (a power cut between that event and the unlink, then a bad copy).
            if name == e.payload and name not in present_payloads:
                continue
            plan.append(PlannedFile(name, group, e.recording in marked, e.bookkeeping, e.seq))
    return plan


def freeable_payloads(
    entries: Iterable[Entry], confirmed: Mapping[str, Confirmed], present_payloads: set[str]
) -> list[str]:
    """Payloads that may leave the unit: the whole entry (payload, sig, manifest) is confirmed.

    Only candidates: the runner frees one only after ``confirm_before_free`` at that moment.
    """
    out = []
    for e in entries:
        if (
            e.payload
            and e.payload in present_payloads
            and e.payload in confirmed
            and e.signature in confirmed
            and e.manifest in confirmed
        ):
            out.append(e.payload)
    return out
