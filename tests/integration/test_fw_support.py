"""Shared helpers for the firmware tests: a simulated unit, bundles, a power cut, a fake sink.

Holds no tests. ``PowerCut`` derives from BaseException so that no handler in the code under
test can swallow it, like a real loss of power.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

from firmware.boot_control import SimBootControl
from firmware.bundle import build_bundle, generate_key_pair, load_signing_key
from firmware.flash import UnitFacts, init_slots
from firmware.health import BootPlan, HealthResult, boot_decision
from firmware.layout import UnitLayout
from firmware.slot_writer import DirectorySlotWriter

BUILD_UTC_S = 1_700_000_000
NOW_UTC_US = (BUILD_UTC_S + 86_400) * 1_000_000


def fw(layout: UnitLayout) -> dict[str, Any]:
    """The simulated unit's boot control and slot writer, as keyword arguments."""
    return {"boot": SimBootControl(layout), "slots": DirectorySlotWriter(layout)}


class PowerCut(BaseException):
    """The battery was pulled."""


class CutAt:
    """A flash observer that loses power at one phase boundary."""

    def __init__(self, phase: str, when: str) -> None:
        self.phase, self.when = phase, when

    def phase_started(self, phase: str) -> None:
        if (phase, "start") == (self.phase, self.when):
            raise PowerCut(f"before {phase}")

    def progress(self, phase: str, done_bytes: int, total_bytes: int) -> None:
        pass

    def phase_done(self, phase: str) -> None:
        if (phase, "done") == (self.phase, self.when):
            raise PowerCut(f"after {phase}")


class RecordingSink:
    """A stand-in for the evidence Sealer: remembers every event it was given."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def event(
        self,
        kind: str,
        fields: Mapping[str, Any],
        *,
        mono_us: int,
        utc_us: int,
        reserve_ok: bool = False,
    ) -> int:
        self.events.append((kind, dict(fields)))
        return len(self.events) - 1

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.events]


class CuttingFile:
    """A slot image file that loses power after ``limit`` bytes have reached it."""

    def __init__(self, path: Path, limit: int) -> None:
        self._f = path.open("wb")
        self._left = limit

    def write(self, data: bytes) -> int:
        if len(data) > self._left:
            self._f.write(data[: self._left])
            self._f.flush()
            self._left = 0
            raise PowerCut(f"power cut while writing {self._f.name}")
        self._left -= len(data)
        return self._f.write(data)

    def flush(self) -> None:
        self._f.flush()

    def fileno(self) -> int:
        return self._f.fileno()

    def __enter__(self) -> CuttingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._f.close()


def cutting_opener(limit: int) -> Any:
    def open_slot_file(path: Path) -> BinaryIO:
        return CuttingFile(path, limit)  # type: ignore[return-value]

    return open_slot_file


def make_keys(root: Path, channel: str = "release") -> tuple[Path, Path]:
    return generate_key_pair(root, channel)


def make_unit(root: Path, trusted_pub: Path) -> UnitLayout:
    """A freshly provisioned simulated unit: factory firmware 0.1.0 in slot A, key trusted."""
    layout = UnitLayout(root)
    assert init_slots(layout, "0.1.0", 0, **fw(layout))
    layout.identity.mkdir(parents=True, exist_ok=True)
    shutil.copy(trusted_pub, layout.release_pub)
    return layout


def make_bundle(
    out: Path,
    key: Path,
    *,
    version: str = "1.0.0",
    security_version: int = 1,
    compatible: str = "bwc-sim",
    files: Mapping[str, bytes] | None = None,
    payload: bytes | None = None,
    min_battery_pct: int = 30,
    build_utc_s: int = BUILD_UTC_S,
) -> Path:
    src = out.with_name(out.name + ".payload")
    if payload is not None:
        src.write_bytes(payload)
    else:
        src.mkdir()
        for name, data in (files or {"VERSION": f"{version}\n".encode()}).items():
            (src / name).write_bytes(data)
    build_bundle(
        src,
        out,
        version=version,
        security_version=security_version,
        compatible=compatible,
        key=load_signing_key(key),
        build_utc_s=build_utc_s,
        min_battery_pct=min_battery_pct,
    )
    return out


def tree_digest(root: Path) -> str:
    """SHA-256 over every path, type, mode and file content under ``root``."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted([*dirnames, *filenames]):
            path = Path(dirpath) / name
            st = path.lstat()
            h.update(f"{path.relative_to(root)}\0{st.st_mode:o}\0".encode())
            if path.is_file():
                h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def facts(*, free_bytes: int = 10**12, battery_pct: float = 100.0) -> UnitFacts:
    return UnitFacts(compatible="bwc-sim", battery_pct=battery_pct, free_bytes=free_bytes)


def boot(layout: UnitLayout) -> BootPlan:
    return boot_decision(layout, SimBootControl(layout), slots=DirectorySlotWriter(layout))


def healthy() -> HealthResult:
    return HealthResult(True, True, True, True)


def unhealthy() -> HealthResult:
    return HealthResult(True, True, True, False)
