"""`bwc run` and the `make run` demo on the simulated unit, started as a newcomer would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.integration.conftest import Bwc, ProvisionedUnit


def test_demo_provisions_on_first_run_then_runs_and_powers_off_cleanly(tmp_path: Path) -> None:
    device = tmp_path / ".demo" / "unit"
    cmd = [sys.executable, "-m", "firmware.demo", "--device", str(device), "--duration-s", "2"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert first.returncode == 0, first.stderr
    assert "provisioning a demo unit" in first.stdout
    assert (tmp_path / ".demo" / "agency" / "agency-key.pem").is_file()
    assert "bwc verify" in first.stdout and "bwc export" in first.stdout
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert second.returncode == 0, second.stderr
    assert "provisioning" not in second.stdout, "the demo unit is provisioned once"
    bwc = Bwc(tmp_path)
    report = bwc.json(
        "verify", "--trust", device / "identity" / "device-pub.pem", device / "evidence", "--json"
    )
    assert report["intact"] is True


def test_run_refuses_an_unprovisioned_device_in_one_line(bwc: Bwc, tmp_path: Path) -> None:
    proc = bwc("run", "--device", tmp_path / "nothing", check=2)
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_run_keeps_time_and_seals_a_clean_shutdown(bwc: Bwc, unit: ProvisionedUnit) -> None:
    out = bwc(
        "run",
        "--device",
        unit.device,
        "--duration-s",
        "1.5",
        "--set",
        "camera.width=512",
        "--set",
        "camera.height=288",
    )
    assert "powered off" in out.stdout
    report = bwc.json("verify", *unit.trust, unit.device / "evidence", "--json")
    assert report["intact"] is True
