"""The unit's assignment (device id, officer id) and the keys it holds, loaded from its storage.

Reads files; only the composition root and the technician's commands call it. Every missing or
malformed file is a ``UsageError`` naming the file and the fix.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from firmware.layout import UnitLayout
from hal.errors import UsageError
from recorder.config import Profile, load_profile_text

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
DEFAULT_PROFILE = Path(__file__).resolve().parents[1] / "configs" / "sim.toml"


@dataclass(frozen=True)
class Assignment:
    device_id: str
    officer_id: str
    profile_source: str


def check_id(value: str, option: str) -> str:
    if not ID_PATTERN.match(value):
        raise UsageError(
            f"{option} {value!r}: use 1 to 64 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit"
        )
    return value


def require_provisioned(layout: UnitLayout) -> None:
    if not layout.root.is_dir():
        raise UsageError(f"--device {layout.root}: no such unit directory")
    if not layout.is_provisioned():
        raise UsageError(
            f"--device {layout.root}: not a provisioned unit; run `bwc provision {layout.root} "
            "--agency-pub FILE --device-id ID --officer ID` first"
        )


def load_assignment(layout: UnitLayout) -> Assignment:
    path = layout.unit_json
    try:
        data = json.loads(path.read_text())
        return Assignment(
            device_id=check_id(str(data["device_id"]), "device_id"),
            officer_id=check_id(str(data["officer_id"]), "officer_id"),
            profile_source=str(data.get("profile_source", "")),
        )
    except FileNotFoundError:
        raise UsageError(f"{path}: missing; re-run `bwc provision`") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(
            f"{path}: malformed unit assignment ({exc}); re-run `bwc provision`"
        ) from None


def read_profile(path: Path, overrides: Mapping[str, Any] | None = None) -> Profile:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UsageError(f"profile {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"profile {path}: cannot be read ({exc})") from None
    return load_profile_text(text, str(path), overrides)
