"""Boot recovery: what an unclean previous boot left in the store, found before the chain grows.

The sealer calls this once when it opens a store: it finds the chain head, moves temp files and
payloads or signatures without a committed manifest into ``orphans/`` (never deleting anything),
and describes the recording that was open when power was lost. The caller seals the result as
``power_loss_discovered`` (and a ``record_stop`` for the open recording). Manifests are read back
as typed records, by the verifier's strict rules.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from evidence.format import ORPHANS_DIR, TMP_PREFIX, ZERO_HASH, entry_name, parse_entry_name
from evidence.records import (
    MAX_MANIFEST_BYTES,
    EventKind,
    EventManifest,
    UnitManifest,
    read_record,
)
from evidence.sealing import JsonValue
from hal.durable import fsync_dir
from hal.errors import IntegrityError


@dataclass(frozen=True)
class RecoveryReport:
    """What an unclean previous boot left behind. The caller turns it into signed events.

    ``orphans`` are paths relative to the store (``orphans/<boot>-<name>``) of files moved aside.
    """

    previous_boot: str | None
    last_seq: int | None
    clean_shutdown: bool
    open_recording: str | None
    orphans: tuple[str, ...]
    open_recording_units: int = 0
    open_recording_segments: int = 0
    last_frame: int | None = None
    end_pts_us: int | None = None
    lost_note: str = ""
    orphan_files: tuple[dict[str, JsonValue], ...] = ()
    """``{"file", "size", "sha256"}`` of each orphan, so the verifier checks them like payloads."""

    def event_fields(self) -> dict[str, JsonValue]:
        """Fields of the ``power_loss_discovered`` event."""
        return {
            "previous_boot": self.previous_boot,
            "last_seq": self.last_seq,
            "open_recording": self.open_recording,
            "orphans": list(self.orphans),
            "orphan_files": list(self.orphan_files),
            "lost_note": self.lost_note,
        }

    def stop_fields(self) -> dict[str, JsonValue] | None:
        """Fields of the ``record_stop`` (trigger ``power_loss_recovery``) for an open recording."""
        if self.open_recording is None:
            return None
        return {
            "recording": self.open_recording,
            "trigger": "power_loss_recovery",
            "segments": self.open_recording_segments,
            "units": self.open_recording_units,
            "last_frame": self.last_frame,
            "end_pts_us": self.end_pts_us,
        }


@dataclass
class Head:
    seq: int = -1
    hash: str = ZERO_HASH
    manifest: UnitManifest | EventManifest | None = None
    key: str | None = None


@dataclass
class _OpenScan:
    recording: str | None = None
    units: int = 0
    segments: int = 0
    last_frame: int | None = None
    end_pts_us: int | None = None
    unit_counts: dict[str, list[int]] = field(default_factory=dict)


def _load_manifest(path: Path) -> UnitManifest | EventManifest | None:
    """A manifest read back at boot, by the same strict rules as the verifier; None if it is
    unreadable, oversize or not one (recovery then treats it as not sealed cleanly)."""
    try:
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            return None
        return read_record(path.read_bytes(), str(path))
    except (OSError, IntegrityError):
        return None


def find_head(store: Path, names: Sequence[str]) -> Head:
    seqs = [p[0] for p in map(parse_entry_name, names) if p is not None and p[1] == "json"]
    if not seqs:
        return Head()
    seq = max(seqs)
    path = store / entry_name(seq, "json")
    data = path.read_bytes()
    manifest = _load_manifest(path)
    key = manifest.header.key if manifest is not None else None
    return Head(seq, hashlib.sha256(data).hexdigest(), manifest, key)


def move_orphans(store: Path, names: Sequence[str], head_seq: int, boot_id: str) -> list[str]:
    """Move temp files and payloads/signatures without a committed manifest into ``orphans/``."""
    leftovers = []
    for name in names:
        parsed = parse_entry_name(name)
        if name.startswith(TMP_PREFIX) or (
            parsed is not None and parsed[1] != "json" and parsed[0] > head_seq
        ):
            leftovers.append(name)
    if not leftovers:
        return []
    orphan_dir = store / ORPHANS_DIR
    orphan_dir.mkdir(exist_ok=True)
    moved = []
    for name in leftovers:
        target = f"{boot_id}-{name}"
        os.rename(store / name, orphan_dir / target)
        moved.append(f"{ORPHANS_DIR}/{target}")
    fsync_dir(orphan_dir)
    fsync_dir(store)
    return moved


def describe(store: Path, names: Sequence[str]) -> tuple[dict[str, JsonValue], ...]:
    """Size and SHA-256 of each moved orphan: leftovers are at most one unit's files."""
    out: list[dict[str, JsonValue]] = []
    for name in names:
        data = (store / name).read_bytes()
        out.append({"file": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    return tuple(out)


def discover(store: Path, head: Head, orphans: list[str]) -> RecoveryReport | None:
    m = head.manifest
    if head.seq < 0:
        if not orphans:
            return None
        return RecoveryReport(None, None, False, None, tuple(orphans), lost_note=_note(None))
    clean = isinstance(m, EventManifest) and m.kind == EventKind.SHUTDOWN
    if clean and not orphans:
        return None
    previous_boot = m.header.boot if m is not None else None
    scan = _scan_open_recording(store, head.seq, previous_boot) if not clean else _OpenScan()
    return RecoveryReport(
        previous_boot=previous_boot,
        last_seq=head.seq,
        clean_shutdown=clean,
        open_recording=scan.recording,
        orphans=tuple(orphans),
        open_recording_units=scan.units,
        open_recording_segments=scan.segments,
        last_frame=scan.last_frame,
        end_pts_us=scan.end_pts_us,
        lost_note=_note(head.seq) if not clean else "clean shutdown; leftovers moved aside",
    )


def _note(last_seq: int | None) -> str:
    return (
        f"power lost after entry {last_seq}; anything not sealed by then (at most the unit "
        "being written and the pre-event buffer in RAM) was lost"
    )


def _scan_open_recording(store: Path, head_seq: int, boot: str | None) -> _OpenScan:
    """Walk back through the previous boot's entries to the nearest record_start/record_stop.

    Bounded by the length of the last recording, so boot time does not grow with the store.
    """
    scan = _OpenScan()
    last_unit: dict[str, tuple[int, int]] = {}
    for seq in range(head_seq, -1, -1):
        m = _load_manifest(store / entry_name(seq, "json"))
        if m is None or m.header.boot != boot:
            break
        if isinstance(m, UnitManifest):
            rec = m.recording
            counts = scan.unit_counts.setdefault(rec, [0, 0])
            counts[0] += 1
            counts[1] = max(counts[1], m.segment + 1)
            if rec not in last_unit:
                last_unit[rec] = (m.first_frame + m.frame_count - 1, m.end_pts_us)
        elif m.kind in (EventKind.RECORD_START, EventKind.RECORD_STOP):
            rec = str(m.fields.get("recording"))
            if m.kind == EventKind.RECORD_START:
                scan.recording = rec
                scan.units, scan.segments = scan.unit_counts.get(rec, [0, 0])
                if rec in last_unit:
                    scan.last_frame, scan.end_pts_us = last_unit[rec]
            break
    return scan
