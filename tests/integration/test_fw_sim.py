"""CONTRACT §7 through the real commands: provision, fw flash, then `bwc sim` is the try-boot.

A healthy slot commits at that boot and raises the floor; a slot with the HEALTH_FAIL knob rolls
back, and the boot after runs the old slot again.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

# Older than the simulated RTC's first power-on, so the clock check is not what is tested here.
BUILD_UTC = "1700000000"
SMALL = ["--set", "camera.width=512", "--set", "camera.height=288", "--set", "camera.fps=10"]


def bwc(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "firmware.cli", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"bwc {' '.join(args)} -> {result.returncode}\n{result.stderr}")
    return result


def status(unit: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(bwc("fw", "status", "--device", str(unit), "--json").stdout)
    return result


@pytest.fixture
def unit(tmp_path: Path) -> Path:
    bwc("keys", "agency", "--out", str(tmp_path / "agency"))
    bwc("fw", "keygen", "--out", str(tmp_path / "fwkeys"))
    bwc(
        "provision", str(tmp_path / "unit"),
        "--agency-pub", str(tmp_path / "agency" / "agency-pub.pem"),
        "--device-id", "BWC-T1", "--officer", "O-1",
        "--release-pub", str(tmp_path / "fwkeys" / "release-pub.pem"),
    )  # fmt: skip
    (tmp_path / "scenario.toml").write_text("duration_s = 1.0\n")
    return tmp_path / "unit"


def build(tmp_path: Path, name: str, version: str, security_version: int, *files: str) -> Path:
    payload = tmp_path / name
    payload.mkdir()
    (payload / "VERSION").write_text(version)
    for extra in files:
        (payload / extra).write_text("simulator fault knob")
    out = tmp_path / f"{name}.bwc"
    bwc(
        "fw", "build", str(payload), "--version", version,
        "--security-version", str(security_version), "--compatible", "bwc-sim",
        "--key", str(tmp_path / "fwkeys" / "release-key.pem"), "--out", str(out),
        "--build-utc", BUILD_UTC,
    )  # fmt: skip
    return out


def sim(tmp_path: Path, unit: Path) -> None:
    bwc("sim", str(tmp_path / "scenario.toml"), "--device", str(unit), *SMALL)


def test_flash_then_boot_commits(tmp_path: Path, unit: Path) -> None:
    s = status(unit)
    assert (s["primary"], s["slots"]["A"]["version"], s["slots"]["B"]["state"]) == (
        "A",
        "0.1.0",
        "empty",
    )
    bwc("fw", "flash", str(build(tmp_path, "v110", "1.1.0", 4)), "--device", str(unit))
    assert status(unit)["tryboot_armed"] == "B"
    sim(tmp_path, unit)
    s = status(unit)
    assert (s["primary"], s["booted"], s["booted_by_tryboot"]) == ("B", "B", True)
    assert (s["slots"]["B"]["state"], s["floor"], s["pending"], s["owed_events"]) == (
        "good",
        4,
        None,
        [],
    )
    sim(tmp_path, unit)
    s = status(unit)
    assert (s["booted"], s["booted_by_tryboot"]) == ("B", False)
    trust = str(unit / "identity" / "device-pub.pem")
    assert bwc("verify", str(unit / "evidence"), "--trust", trust, check=False).returncode == 0


def test_failed_health_check_returns_to_the_old_slot(tmp_path: Path, unit: Path) -> None:
    bad = build(tmp_path, "v200", "2.0.0", 7, "HEALTH_FAIL")
    bwc("fw", "flash", str(bad), "--device", str(unit))
    sim(tmp_path, unit)
    s = status(unit)
    assert (s["primary"], s["booted"], s["slots"]["B"]["state"], s["floor"]) == ("A", "B", "bad", 0)
    sim(tmp_path, unit)
    s = status(unit)
    assert (s["booted"], s["booted_by_tryboot"]) == ("A", False)
