"""The commands `make run` prints at power-off work as printed, before and after docking."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

from tests.integration.conftest import SMALL, Bwc, ProvisionedUnit, ScenarioWriter

QUICK = [*SMALL, "--set", "recorder.pre_event_s=2"]


def _demo_hints(root: Path, device: Path) -> list[str]:
    """Run the demo for a moment on ``device`` and return the commands it printed."""
    proc = subprocess.run(
        [sys.executable, "-m", "firmware.demo", "--device", str(device), "--duration-s", "0.5"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "At power off (q) the" in proc.stdout, "the start says where the commands will be"
    tail = proc.stdout.split("what the unit holds:\n", 1)[1]
    return [line.strip() for line in tail.splitlines() if line.startswith("  ") and "#" not in line]


def _run_as_printed(root: Path, commands: list[str]) -> None:
    for command in commands:
        proc = subprocess.run(
            shlex.split(command), cwd=root, capture_output=True, text=True, timeout=600, check=False
        )
        assert proc.returncode == 0, f"{command}\n{proc.stdout}\n{proc.stderr}"


def test_printed_hints_run_as_printed_before_and_after_docking(
    bwc: Bwc, unit: ProvisionedUnit, scenario: ScenarioWriter, tmp_path: Path
) -> None:
    record = scenario(
        9.0,
        {"at_s": 3.0, "action": "double_press", "button": "event"},
        {"at_s": 5.0, "action": "hold", "button": "event", "hold_s": 3.5},
    )
    bwc("sim", record, "--device", unit.device, *QUICK)
    commands = _demo_hints(tmp_path, unit.device)
    assert [shlex.split(c)[1] for c in commands] == ["verify", "export"]
    assert all(f"{unit.device}/evidence" in c for c in commands), commands
    _run_as_printed(tmp_path, commands)
    assert len(list((tmp_path / "exported").glob("*.mp4"))) == 1

    # Docked (the unit offloads and frees its video), then one more recording after undocking.
    dock_then_record = scenario(
        16.0,
        {"at_s": 1.0, "action": "dock"},
        {"at_s": 4.0, "action": "undock"},
        {"at_s": 8.0, "action": "double_press", "button": "event"},
        {"at_s": 10.0, "action": "hold", "button": "event", "hold_s": 3.5},
    )
    bwc("sim", dock_then_record, "--device", unit.device, *QUICK)
    commands = _demo_hints(tmp_path, unit.device)
    assert [shlex.split(c)[1] for c in commands] == ["offload", "verify", "verify", "export"]
    dock_copy = str(unit.device.parent / "dock" / "CAM-TEST-1")  # file://../dock in the profile
    assert "--allow-freed" in commands[1] and f"{unit.device}/evidence" in commands[1]
    assert all(dock_copy in c for c in commands[2:]), commands
    _run_as_printed(tmp_path, commands)
    exported = tmp_path / "exported-2"
    assert len(list(exported.glob("*.mp4"))) == 2, "both recordings, from the dock copy"
    # Exporting the unit's own store instead names the copy to export from.
    trust = unit.device / "identity" / "device-pub.pem"
    key: list[str | Path] = ["--key", unit.agency_key, "--trust", trust]
    proc = bwc("export", unit.device / "evidence", *key, "--out", tmp_path / "x", check=1)
    assert f"offload to {Path(dock_copy).resolve()}: export from that copy" in proc.stderr
    assert proc.stderr.count("\n") == 1
