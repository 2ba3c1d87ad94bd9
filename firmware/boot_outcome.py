"""The firmware decisions of one boot, in words: try-boot, commit, rollback, finished sequences.

``bwc sim`` and ``bwc run`` print these as first-class lines (not log lines) and ``bwc fw status``
shows the last signed outcome. Pure: it formats what ``firmware.health`` decided and reads
nothing but the evidence manifests handed to ``last_firmware_event``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from evidence.records import MAX_MANIFEST_BYTES, EventKind, EventManifest
from firmware.health import BootPlan, Outcome
from hal.errors import IntegrityError

FIRMWARE_EVENT_KINDS = (
    EventKind.FIRMWARE_INSTALL,
    EventKind.FIRMWARE_COMMIT,
    EventKind.FIRMWARE_ROLLBACK,
)


def boot_lines(plan: BootPlan, outcome: Outcome | None) -> list[str]:
    """What this boot decided about firmware, one line each; empty for an ordinary boot."""
    lines: list[str] = []
    for note in plan.notes:
        if note.startswith(f"try-boot of slot {plan.slot}, attempt"):
            lines.append(
                f"trying slot {plan.slot} ({plan.version}) once: attempt {plan.attempts} "
                f"of {plan.max_attempts}; it commits if the health check passes"
            )
        else:
            lines.append(note)
    if outcome is not None and outcome.action == "committed":
        lines.append(
            f"committed slot {outcome.slot} ({plan.version}): the health check passed and it is "
            "now the primary slot"
        )
    elif outcome is not None and outcome.action == "rolled_back":
        lines.append(
            f"rolled back slot {outcome.slot} ({plan.version}): {outcome.reason}; "
            f"the next boot runs slot {plan.primary}"
        )
    return [f"firmware: {line}" for line in lines]


def outcome_json(plan: BootPlan, outcome: Outcome | None) -> dict[str, Any]:
    """The same decisions for ``--json`` readers."""
    return {
        "slot": plan.slot,
        "version": plan.version,
        "tryboot": plan.tryboot,
        "action": outcome.action if outcome else None,
        "reason": outcome.reason if outcome else "",
        "notes": list(plan.notes),
    }


@dataclass(frozen=True)
class FirmwareEvent:
    """The newest signed firmware event of a unit's chain."""

    seq: int
    kind: str
    utc_us: int
    fields: dict[str, Any]

    def describe(self) -> str:
        f = self.fields
        what = {
            "firmware_install": "installed",
            "firmware_commit": "committed",
            "firmware_rollback": "rolled back",
        }.get(self.kind, self.kind)
        text = f"{what} {f.get('version', '?')} in slot {f.get('slot', '?')}"
        if self.kind == "firmware_rollback" and f.get("reason"):
            text += f" ({f['reason']})"
        when = datetime.fromtimestamp(self.utc_us / 1e6, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return f"{text} at {when} (signed event seq {self.seq})"


def last_firmware_event(evidence_dir: Path) -> FirmwareEvent | None:
    """Newest firmware event in ``evidence_dir``, reading manifests from the head backwards.

    Stops at the first one found; on a unit that never updated it reads every manifest once.
    """
    try:
        names = sorted(
            (e.name for e in os.scandir(evidence_dir) if e.name.endswith(".json")), reverse=True
        )
    except OSError:
        return None
    for name in names:
        path = evidence_dir / name
        try:
            if path.stat().st_size > MAX_MANIFEST_BYTES:
                continue
            record = EventManifest.from_bytes(path.read_bytes(), str(path))
        except (OSError, IntegrityError):
            continue  # a unit, or not a manifest the verifier would accept
        if record.kind in FIRMWARE_EVENT_KINDS:
            return FirmwareEvent(
                record.header.seq, record.kind, record.header.utc_us, dict(record.fields)
            )
    return None
