"""The unit's firmware update state (DEVICE/update/state.json) and the atomic writes it relies on.

Holds the security_version floor, the pending try-boot (which slot, how many attempts so far) and
the firmware events owed to the evidence chain. Every write is atomic and durable: temp file,
fsync, ``os.replace``, fsync of the directory, so a power cut leaves either the old or the new
state, never a torn one. It must not decide anything about booting: that is ``firmware.health``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from firmware.layout import UnitLayout
from hal.durable import write_atomic
from hal.errors import IntegrityError

STATE_FORMAT = "bwc-update-state/1"
MAX_STATE_BYTES = 1 << 20
DEFAULT_MAX_ATTEMPTS = 3


def canonical_json(value: Any) -> bytes:
    """The one JSON encoding used for state and manifests: sorted keys, no spaces, ASCII."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def read_json_file(path: Path, *, max_bytes: int = MAX_STATE_BYTES) -> Any:
    """Read a small JSON file; ``IntegrityError`` if it is oversized or not JSON."""
    with path.open("rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise IntegrityError(f"larger than {max_bytes} bytes", path=str(path))
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IntegrityError(f"not valid JSON ({exc})", path=str(path)) from None


@dataclass(frozen=True)
class PendingTry:
    """A slot installed and armed for a one-shot try-boot, not yet committed or rolled back."""

    slot: str
    version: str
    security_version: int
    sha256: str
    install_id: int = 0
    attempts: int = 0
    max_attempts: int = DEFAULT_MAX_ATTEMPTS

    def to_dict(self) -> dict[str, Any]:
        return {
            "install_id": self.install_id,
            "slot": self.slot,
            "version": self.version,
            "security_version": self.security_version,
            "sha256": self.sha256,
            "attempts": self.attempts,
            "max_attempts": self.max_attempts,
        }


@dataclass(frozen=True)
class OwedEvent:
    """A firmware event decided durably but not yet sealed into the evidence chain.

    ``event_id`` is stable, so a verifier can recognise the rare duplicate left by a power cut
    between sealing the event and clearing it here (delivery is at least once).
    """

    kind: str
    fields: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "fields": dict(self.fields)}


@dataclass(frozen=True)
class UpdateState:
    floor: int = 0
    installs: int = 0
    pending: PendingTry | None = None
    owed_events: tuple[OwedEvent, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "floor": self.floor,
            "installs": self.installs,
            "pending": self.pending.to_dict() if self.pending else None,
            "owed_events": [e.to_dict() for e in self.owed_events],
        }

    def with_event(self, kind: str, fields: Mapping[str, Any]) -> UpdateState:
        return replace(self, owed_events=(*self.owed_events, OwedEvent(kind, dict(fields))))


def _pending_from(raw: Any, path: Path) -> PendingTry | None:
    if raw is None:
        return None
    try:
        return PendingTry(
            slot=_typed(raw["slot"], str),
            version=_typed(raw["version"], str),
            security_version=_typed(raw["security_version"], int),
            sha256=_typed(raw["sha256"], str),
            install_id=_typed(raw["install_id"], int),
            attempts=_typed(raw["attempts"], int),
            max_attempts=_typed(raw["max_attempts"], int),
        )
    except (KeyError, TypeError) as exc:
        raise IntegrityError(f"malformed pending try-boot ({exc})", path=str(path)) from None


def _typed(value: Any, kind: type[Any]) -> Any:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
    return value


def load_state(layout: UnitLayout) -> UpdateState:
    """The unit's update state; a unit that never had one has floor 0 and nothing pending."""
    path = layout.update_state_json
    if not path.exists():
        return UpdateState()
    raw = read_json_file(path)
    if not isinstance(raw, dict) or raw.get("format") != STATE_FORMAT:
        raise IntegrityError(f"not a {STATE_FORMAT} file", path=str(path))
    try:
        floor = _typed(raw["floor"], int)
        installs = _typed(raw.get("installs", 0), int)
        events = tuple(
            OwedEvent(_typed(e["kind"], str), _typed(e["fields"], dict))
            for e in _typed(raw.get("owed_events", []), list)
        )
    except (KeyError, TypeError) as exc:
        raise IntegrityError(f"malformed update state ({exc})", path=str(path)) from None
    return UpdateState(
        floor=floor,
        installs=installs,
        pending=_pending_from(raw.get("pending"), path),
        owed_events=events,
    )


def save_state(layout: UnitLayout, state: UpdateState) -> None:
    write_atomic(layout.update_state_json, canonical_json(state.to_dict()) + b"\n")


class EventSink(Protocol):
    """The part of ``evidence.sealing.EvidenceSink`` the firmware needs: one signed event."""

    def event(self, kind: str, fields: Mapping[str, Any], *, mono_us: int, utc_us: int) -> int: ...


def owe_event(state: UpdateState, kind: str, pending: PendingTry, **extra: Any) -> UpdateState:
    """``state`` plus one owed firmware event about ``pending``'s install."""
    fields: dict[str, Any] = {
        "event_id": f"fw-{pending.install_id}-{kind}",
        "version": pending.version,
        "security_version": pending.security_version,
        "slot": pending.slot,
        "sha256": pending.sha256,
        **extra,
    }
    return state.with_event(kind, fields)


def drain_events(layout: UnitLayout, sink: EventSink, *, mono_us: int, utc_us: int) -> int:
    """Seal every owed firmware event into the chain, then forget them; returns how many.

    Each is removed from the state only after the sink returned (durable), so a power cut in
    between repeats the event at the next drain rather than losing it.
    """
    count = 0
    while True:
        state = load_state(layout)
        if not state.owed_events:
            return count
        first = state.owed_events[0]
        sink.event(first.kind, first.fields, mono_us=mono_us, utc_us=utc_us)
        save_state(layout, replace(state, owed_events=state.owed_events[1:]))
        count += 1
