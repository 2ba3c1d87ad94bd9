"""Fixtures for end-to-end runs through the real `bwc` console script on a simulated unit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

SMALL = ["--set", "camera.width=512", "--set", "camera.height=288"]
"""Small frames keep the suite fast; the stripe needs at least 512 pixels of width."""


@dataclass
class Bwc:
    """Runs ``bwc`` as a user would, in its own process, and returns the completed process."""

    cwd: Path

    def __call__(
        self, *args: str | Path, check: int | None = 0
    ) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        proc = subprocess.run(
            [sys.executable, "-m", "firmware.cli", *map(str, args)],
            cwd=self.cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if check is not None and proc.returncode != check:
            raise AssertionError(
                f"bwc {' '.join(map(str, args))} exited {proc.returncode}, expected {check}\n"
                f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            )
        return proc

    def json(self, *args: str | Path) -> Any:
        return json.loads(self(*args).stdout)


@pytest.fixture
def bwc(tmp_path: Path) -> Bwc:
    return Bwc(tmp_path)


@dataclass
class ProvisionedUnit:
    device: Path
    agency_key: Path
    agency_pub: Path

    @property
    def device_pub(self) -> Path:
        """The unit's public identity, which the agency registers and verify pins."""
        return self.device / "identity" / "device-pub.pem"

    @property
    def trust(self) -> tuple[str, Path]:
        """``--trust`` of this unit's key: verify and export are strict about origin."""
        return ("--trust", self.device_pub)


def provision_unit(
    root: Path, device_id: str = "CAM-TEST-1", officer: str = "PC-1234"
) -> ProvisionedUnit:
    """Agency keys in ROOT/agency and a unit provisioned in ROOT/unit, through `bwc` itself."""
    bwc = Bwc(root)
    bwc("keys", "agency", "--out", root / "agency")
    device = root / "unit"
    pub = root / "agency" / "agency-pub.pem"
    bwc("provision", device, "--agency-pub", pub, "--device-id", device_id, "--officer", officer)
    return ProvisionedUnit(device, root / "agency" / "agency-key.pem", pub)


@pytest.fixture
def unit(tmp_path: Path) -> ProvisionedUnit:
    return provision_unit(tmp_path)


def write_scenario(path: Path, duration_s: float, *events: dict[str, Any]) -> Path:
    """A scenario file from plain dicts (CONTRACT §5)."""
    lines = [f"duration_s = {duration_s}"]
    for ev in events:
        lines.append("[[events]]")
        for key, value in ev.items():
            lines.append(f"{key} = {json.dumps(value)}")
    path.write_text("\n".join(lines) + "\n")
    return path


ScenarioWriter = Callable[..., Path]


@pytest.fixture
def scenario(tmp_path: Path) -> ScenarioWriter:
    counter = iter(range(1000))

    def make(duration_s: float, *events: dict[str, Any]) -> Path:
        return write_scenario(tmp_path / f"scenario-{next(counter)}.toml", duration_s, *events)

    return make
