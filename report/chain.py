"""The signed events around one recording that the verifier checks but does not summarise:
low battery, clock steps, gaps, restarts and firmware changes while it ran, and afterwards the
power-loss discovery that closed it, the offload receipts that name its files and the timestamp
tokens that anchor them.

Only called on a store the opener has already verified (it refuses any other), so every entry read
here has passed the chain and signature checks; this module only selects and words them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from evidence.format import entry_name
from evidence.records import EventKind, EventManifest, UnitManifest, read_record
from evidence.store import StoreReader
from hal.errors import IntegrityError
from report.clock_text import iso_utc

# Event kinds that concern the whole unit, shown when they happen while the recording runs.
_DURING: dict[str, tuple[str, str]] = {
    EventKind.LOW_BATTERY: ("Low battery", "battery"),
    EventKind.CLOCK_STEP: ("Clock corrected", "clock"),
    EventKind.STORAGE_FULL: ("Storage full", "storage"),
    EventKind.DAEMON_RESTART: ("Recorder restarted", "restart"),
    EventKind.FIRMWARE_COMMIT: ("Firmware committed", "firmware"),
    EventKind.FIRMWARE_ROLLBACK: ("Firmware rolled back", "firmware"),
    EventKind.FRAME_GAP: ("Frames not captured (signed)", "gap"),
}
RECEIPT_KIND = EventKind.OFFLOAD_RECEIPT
FREED_KIND = EventKind.OFFLOAD_FREED
LOSS_KIND = EventKind.POWER_LOSS_DISCOVERED


@dataclass(frozen=True)
class ChainEvent:
    seq: int
    utc_us: int
    kind: str  # css class
    title: str
    detail: str
    during: bool  # inside the recording's time span (drawn on the timeline) or after it


class EventEntries:
    """The store's event entries, each read at most once however many recordings ask.

    Unit manifests are only looked at (to skip them), never kept: a long shift holds tens of
    thousands of them, and the opener already hands each recording its own.
    """

    def __init__(self, store: StoreReader) -> None:
        self._store = store
        self._seen: dict[int, EventManifest | None] = {}

    def get(self, seq: int) -> EventManifest | None:
        if seq not in self._seen:
            m = _read(self._store, seq)
            self._seen[seq] = m if isinstance(m, EventManifest) else None
        return self._seen[seq]


def recording_events(
    store: StoreReader | EventEntries,
    recording: str,
    units: list[dict[str, Any]],
    head_seq: int,
    boot_seq: int | None = None,
) -> list[ChainEvent]:
    """Signed events that concern ``recording`` (whose verified unit manifests are ``units``),
    starting with the boot it was recorded in (entry ``boot_seq``: firmware, slot, clock)."""
    if not units:
        return []
    entries = store if isinstance(store, EventEntries) else EventEntries(store)
    out: list[ChainEvent] = []
    boot = entries.get(boot_seq) if boot_seq is not None else None
    if boot is not None and boot.kind == EventKind.BOOT:
        out.append(_boot_event(boot_seq or 0, boot))
    files = _unit_files(units)
    first_seq, last_seq = units[0]["seq"], units[-1]["seq"]
    for seq in range(max(0, first_seq - 1), head_seq + 1):
        m = entries.get(seq)
        if m is None:
            continue
        kind, fields, utc = m.kind, m.fields, m.header.utc_us
        during = seq <= last_seq
        rec = fields.get("recording")
        if during and kind in _DURING and rec in (None, recording):
            title, css = _DURING[kind]
            out.append(ChainEvent(seq, utc, css, title, _during_detail(kind, fields), True))
        elif kind == LOSS_KIND and fields.get("open_recording") == recording:
            note = str(fields.get("lost_note") or "")
            out.append(
                ChainEvent(
                    seq,
                    utc,
                    "power-loss",
                    "Power loss discovered at the next start",
                    f"Signed at entry {seq}: {note}" if note else f"Signed at entry {seq}.",
                    False,
                )
            )
        elif kind in (RECEIPT_KIND, FREED_KIND) and not during:
            named = {_file_name(f) for f in fields.get("files") or []}
            mine = len(named & files)
            if not mine:
                continue
            target = str(fields.get("target") or "the offload target")
            if kind == RECEIPT_KIND:
                title, detail = (
                    "Offloaded",
                    f"{target} confirmed receipt of {mine} of this recording's "
                    f"{len(files)} unit files (entry {seq}).",
                )
            else:
                title, detail = (
                    "Freed on the unit",
                    f"{mine} of this recording's files freed on the unit after the confirmed "
                    f"offload to {target} (entry {seq}).",
                )
            out.append(ChainEvent(seq, utc, "offload", title, detail, False))
    return out


def _unit_files(units: list[dict[str, Any]]) -> set[str]:
    """The file names of the recording's units (manifests, signatures, payloads)."""
    names: set[str] = set()
    for m in units:
        seq = m["seq"]
        names.add(entry_name(seq, "json"))
        names.add(entry_name(seq, "sig"))
        payload = m.get("payload")
        if isinstance(payload, dict) and isinstance(payload.get("file"), str):
            names.add(payload["file"])
    return names


def _boot_event(seq: int, m: EventManifest) -> ChainEvent:
    f = m.fields
    parts = [f"firmware {f.get('firmware_version') or 'not recorded'}"]
    if f.get("slot"):
        parts.append(f"slot {f['slot']}" + (" (trying a new firmware)" if f.get("tryboot") else ""))
    parts.append(f"clock from {f.get('clock_source') or m.header.utc_source or 'unknown'}")
    return ChainEvent(
        seq,
        m.header.utc_us,
        "boot",
        "Unit started",
        "; ".join(parts) + f" (entry {seq}).",
        False,
    )


def _file_name(item: object) -> str:
    """A receipt lists ``{"file": name, ...}``; a freed event lists plain names."""
    if isinstance(item, dict):
        return str(item.get("file") or item.get("name"))
    return str(item)


def _during_detail(kind: str, fields: Mapping[str, Any]) -> str:
    if kind == "low_battery" and isinstance(fields.get("level_pct"), int | float):
        return f"Battery at {fields['level_pct']:.0f} %."
    if kind == "clock_step":
        old, new = fields.get("old_utc_us"), fields.get("new_utc_us")
        if isinstance(old, int) and isinstance(new, int):
            return (
                f"The unit's clock was set from {iso_utc(old)} to {iso_utc(new)} "
                f"(source: {fields.get('source', 'unknown')})."
            )
    if kind == "frame_gap":
        return f"Signed explanation: {fields.get('reason', 'not given')}."
    return ""


def _read(store: StoreReader, seq: int) -> UnitManifest | EventManifest | None:
    """The typed record of entry ``seq``, through the verifier's strict reading; None if it is
    unreadable (an entry the verifier accepted is readable; a race with a writer is not ours)."""
    try:
        name = entry_name(seq, "json")
        return read_record(store.read(name), name)
    except (OSError, ValueError, IntegrityError):
        return None
