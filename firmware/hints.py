"""The commands printed after `make run` / `bwc run`: check and play what the unit holds.

They must be right in every state of the unit, and copy-pasteable as printed:
- never offloaded: verify and export the unit's own evidence directory, pinned to its key;
- offloaded (docked at least once): the unit freed the video it had confirmed at its dock, so
  the recordings are exported from the dock copy; ``bwc offload`` first copies whatever is not
  there yet (what was recorded after undocking, and the unit's latest events), then the dock copy
  is verified and exported, pinned to the same key.
Verify and export are strict (CONTRACT §3): ``--trust`` is always given; the unit's own store is
verified with ``--allow-freed`` once it offloaded; the dock copy must hold every payload. Nothing
here writes anything.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from firmware.layout import UnitLayout
from recorder.config import Profile


@dataclass(frozen=True)
class Hint:
    """One command with a comment saying what it is for."""

    comment: str
    argv: tuple[str, ...]

    def command(self) -> str:
        return shlex.join(self.argv)


def bwc_executable() -> str:
    """How a person in this directory runs ``bwc``: the venv's script, relative when it can be."""
    script = Path(sys.executable).parent / "bwc"
    if not script.is_file():
        return "bwc"
    if shutil.which("bwc") == str(script):
        return "bwc"
    try:
        rel = os.path.relpath(script)
    except ValueError:
        return str(script)
    return rel if not rel.startswith("..") else str(script)


def dock_store(layout: UnitLayout, profile: Profile, device_id: str) -> str | None:
    """Where the unit's dock copy is (a path or an s3:// URL), or None without a target."""
    target = profile.offload.target
    if not target:
        return None
    if target.startswith("s3://"):
        return target.rstrip("/") + "/" + device_id
    if target.startswith("file://"):
        rest = target[len("file://") :].removeprefix("localhost")
        base = Path(rest) if rest.startswith("/") else layout.root / rest
        return os.path.normpath(base / device_id)  # file://../dock beside the unit
    return None


def has_offloaded(layout: UnitLayout) -> bool:
    """Whether the unit's chain records any confirmed offload (receipts are signed events)."""
    from offload.plan import ChainState
    from offload.runner import scan_store

    if not layout.evidence.is_dir():
        return False
    state = ChainState.from_entries(scan_store(layout.evidence).entries)
    return bool(state.freed) or any(state.confirmed.values())


def offloaded_to(evidence_dir: Path) -> tuple[int, list[str]]:
    """How many payloads the chain of ``evidence_dir`` says were freed, and where the receipts
    say they went (a path for ``file://`` targets, else the URL)."""
    from urllib.parse import unquote, urlsplit

    from offload.plan import ChainState
    from offload.runner import scan_store

    state = ChainState.from_entries(scan_store(evidence_dir).entries)
    places = []
    for url, confirmed in state.confirmed.items():
        if confirmed:
            parts = urlsplit(url)
            places.append(unquote(parts.path) if parts.scheme == "file" else url)
    return len(state.freed), sorted(places)


def freed_copy_message(store: str, what: str) -> str | None:
    """For a unit's own store whose video was freed after offload: where the copy to ``what``
    from is, in one sentence; None if ``store`` is not such a store."""
    path = Path(store)
    if not path.is_dir():
        return None
    freed, targets = offloaded_to(path)
    if not freed or not targets:
        return None
    return (
        f"{freed} payloads were freed on the unit after a signed, confirmed offload to "
        f"{' and '.join(targets)}: {what} from that copy"
    )


def fresh_dir(base: Path) -> Path:
    """``base`` if absent or empty, else ``base-2``, ``base-3``...: export never overwrites."""
    candidate, n = base, 1
    while candidate.exists() and any(candidate.iterdir()):
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def unit_hints(
    layout: UnitLayout,
    profile: Profile,
    device_id: str,
    *,
    agency_key: Path | None = None,
    out_dir: Path = Path("exported"),
    bwc: str | None = None,
) -> list[Hint]:
    """The commands that check (and, given the agency key, export) what the unit holds now."""
    exe = bwc or bwc_executable()
    trust = ("--trust", str(layout.device_pub))
    store = str(layout.evidence)
    hints: list[Hint] = []
    dock = dock_store(layout, profile, device_id)
    if dock is not None and has_offloaded(layout):
        hints.append(
            Hint(
                "the dock holds the video the unit freed: first copy what it does not hold yet",
                (exe, "offload", "--device", str(layout.root)),
            )
        )
        hints.append(
            Hint(
                "check the unit's own store: the video it freed is explained by signed receipts",
                (exe, "verify", store, *trust, "--allow-freed"),
            )
        )
        store = dock
        hints.append(
            Hint(
                "check the dock copy, which must hold every payload (no secret key needed)",
                (exe, "verify", store, *trust),
            )
        )
    else:
        hints.append(
            Hint("check the unit's evidence (no secret key needed)", (exe, "verify", store, *trust))
        )
    if agency_key is not None:
        out = fresh_dir(out_dir)
        hints.append(
            Hint(
                f"decrypt and export each recording to {out}/ as <recording-id>.mp4 and .json",
                (exe, "export", store, "--key", str(agency_key), *trust, "--out", str(out)),
            )
        )
    return hints


def format_hints(hints: list[Hint]) -> str:
    return "\n".join(f"  # {h.comment}\n  {h.command()}" for h in hints)
