"""`bwc fw` end to end on a simulated unit: keygen, build, inspect, flash, status, boot, commit.

The boots in between are played with ``firmware.health`` (what `bwc sim` calls at power-on and
once the recorder buffers). Refusals must leave the unit byte-for-byte untouched.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from firmware.boot_control import SimBootControl
from firmware.cli import main
from firmware.health import commit_or_rollback
from firmware.layout import UnitLayout
from firmware.slot_writer import DirectorySlotWriter
from tests.integration.test_fw_support import (
    RecordingSink,
    boot,
    healthy,
    make_bundle,
    make_unit,
    tree_digest,
    unhealthy,
)


@pytest.fixture
def keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path]:
    assert main(["fw", "keygen", "--out", str(tmp_path / "keys")]) == 0
    capsys.readouterr()
    return tmp_path / "keys" / "release-key.pem", tmp_path / "keys" / "release-pub.pem"


@pytest.fixture
def unit(tmp_path: Path, keys: tuple[Path, Path]) -> UnitLayout:
    return make_unit(tmp_path / "unit", keys[1])


def status(layout: UnitLayout, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert main(["fw", "status", "--device", str(layout.root), "--json"]) == 0
    result: dict[str, Any] = json.loads(capsys.readouterr().out)
    return result


def fw_build(tmp_path: Path, key: Path, name: str, *extra: str, files: str = "") -> Path:
    payload = tmp_path / f"{name}.d"
    payload.mkdir()
    (payload / "VERSION").write_text(name)
    for extra_file in filter(None, files.split(",")):
        (payload / extra_file).write_text("knob")
    out = tmp_path / f"{name}.bwc"
    args = ["fw", "build", str(payload), "--key", str(key), "--out", str(out), "--build-utc", "0"]
    assert main([*args, *extra]) == 0
    return out


def test_full_update_commits_and_raises_the_floor(
    tmp_path: Path, keys: tuple[Path, Path], unit: UnitLayout, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = fw_build(
        tmp_path, keys[0], "b", "--version", "1.1.0", "--security-version", "3",
        "--compatible", "bwc-sim",
    )  # fmt: skip
    assert main(["fw", "inspect", str(bundle), "--trust", str(keys[1]), "--json"]) == 0
    report = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert report["signature"] == "valid"
    assert report["manifest"]["version"] == "1.1.0"

    s = status(unit, capsys)
    assert (s["primary"], s["slots"]["A"]["state"], s["slots"]["B"]["state"]) == (
        "A",
        "good",
        "empty",
    )
    assert s["slots"]["A"]["version"] == "0.1.0"

    before = tree_digest(unit.root)
    assert main(["fw", "flash", str(bundle), "--device", str(unit.root), "--dry-run"]) == 0
    assert "dry run" in capsys.readouterr().out
    assert tree_digest(unit.root) == before

    assert main(["fw", "flash", str(bundle), "--device", str(unit.root), "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0]["event"] == "plan" and lines[0]["target_slot"] == "B"
    phases = [x["phase"] for x in lines if x["event"] == "phase" and x["status"] == "done"]
    assert phases == ["invalidate", "write", "verify", "swap", "mark", "arm"]
    assert lines[-1]["event"] == "staged"
    s = status(unit, capsys)
    assert s["slots"]["B"] == {**s["slots"]["B"], "state": "installed", "version": "1.1.0"}
    assert (s["primary"], s["tryboot_armed"], s["floor"]) == ("A", "B", 0)
    assert s["pending"]["attempts"] == 0

    plan = boot(unit)
    assert (plan.slot, plan.tryboot, plan.attempts) == ("B", True, 1)
    s = status(unit, capsys)
    assert (s["booted"], s["booted_by_tryboot"], s["tryboot_armed"]) == ("B", True, None)

    sink = RecordingSink()
    outcome = commit_or_rollback(
        unit, SimBootControl(unit), healthy(), sink, slots=DirectorySlotWriter(unit)
    )
    assert outcome.action == "committed"
    assert sink.kinds() == ["firmware_install", "firmware_commit"]
    assert sink.events[0][1]["sha256"] == report["manifest"]["payload"]["sha256"]
    s = status(unit, capsys)
    assert (s["primary"], s["slots"]["B"]["state"], s["floor"], s["pending"]) == (
        "B",
        "good",
        3,
        None,
    )
    assert s["owed_events"] == []

    plan = boot(unit)
    assert (plan.slot, plan.tryboot, plan.version) == ("B", False, "1.1.0")
    # The floor now refuses the older security version, and the unit is untouched.
    old = fw_build(
        tmp_path, keys[0], "old", "--version", "1.0.9", "--security-version", "2",
        "--compatible", "bwc-sim",
    )  # fmt: skip
    before = tree_digest(unit.root)
    assert main(["fw", "flash", str(old), "--device", str(unit.root)]) == 1
    assert "below the unit's floor 3" in capsys.readouterr().err
    assert tree_digest(unit.root) == before


def test_failed_health_check_rolls_back(
    tmp_path: Path, keys: tuple[Path, Path], unit: UnitLayout, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = fw_build(
        tmp_path, keys[0], "bad", "--version", "2.0.0", "--security-version", "5",
        "--compatible", "bwc-sim", files="HEALTH_FAIL",
    )  # fmt: skip
    assert main(["fw", "flash", str(bundle), "--device", str(unit.root)]) == 0
    capsys.readouterr()
    assert boot(unit).slot == "B"
    sink = RecordingSink()
    outcome = commit_or_rollback(
        unit, SimBootControl(unit), healthy(), sink, slots=DirectorySlotWriter(unit)
    )
    assert outcome.action == "rolled_back" and outcome.reboot_required
    assert "HEALTH_FAIL" in outcome.reason
    assert sink.kinds() == ["firmware_install", "firmware_rollback"]
    s = status(unit, capsys)
    assert (s["primary"], s["slots"]["B"]["state"], s["floor"], s["pending"]) == (
        "A",
        "bad",
        0,
        None,
    )
    plan = boot(unit)
    assert (plan.slot, plan.tryboot, plan.version) == ("A", False, "0.1.0")

    # A later good bundle can replace the bad slot.
    good = fw_build(
        tmp_path, keys[0], "good", "--version", "2.0.1", "--security-version", "5",
        "--compatible", "bwc-sim",
    )  # fmt: skip
    assert main(["fw", "flash", str(good), "--device", str(unit.root)]) == 0
    assert boot(unit).slot == "B"
    assert (
        commit_or_rollback(
            unit, SimBootControl(unit), healthy(), None, slots=DirectorySlotWriter(unit)
        ).action
        == "committed"
    )
    capsys.readouterr()
    assert status(unit, capsys)["floor"] == 5


def test_unhealthy_clock_rolls_back(
    tmp_path: Path, keys: tuple[Path, Path], unit: UnitLayout, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = fw_build(
        tmp_path, keys[0], "c", "--version", "1.0.0", "--security-version", "1",
        "--compatible", "bwc-sim",
    )  # fmt: skip
    assert main(["fw", "flash", str(bundle), "--device", str(unit.root)]) == 0
    boot(unit)
    outcome = commit_or_rollback(
        unit, SimBootControl(unit), unhealthy(), None, slots=DirectorySlotWriter(unit)
    )
    assert outcome.action == "rolled_back" and "clock_ok" in outcome.reason
    capsys.readouterr()
    s = status(unit, capsys)
    assert s["owed_events"] == ["firmware_install", "firmware_rollback"]
    assert boot(unit).slot == "A"


def _refused(
    unit: UnitLayout, bundle: Path, capsys: pytest.CaptureFixture[str], reason: str
) -> None:
    before = tree_digest(unit.root)
    assert main(["fw", "flash", str(bundle), "--device", str(unit.root)]) == 1
    err = capsys.readouterr().err
    assert "refused" in err and reason in err, err
    assert tree_digest(unit.root) == before


def test_refusals_leave_the_unit_untouched(
    tmp_path: Path, keys: tuple[Path, Path], unit: UnitLayout, capsys: pytest.CaptureFixture[str]
) -> None:
    sim = ["--version", "1.0.0", "--security-version", "1", "--compatible", "bwc-sim"]
    good = fw_build(tmp_path, keys[0], "good", *sim)

    tampered = tmp_path / "tampered.bwc"
    data = bytearray(good.read_bytes())
    data[-600] ^= 0xFF
    tampered.write_bytes(bytes(data))
    _refused(unit, tampered, capsys, "SHA-256 does not match")

    assert main(["fw", "keygen", "--out", str(tmp_path / "other")]) == 0
    wrong = fw_build(tmp_path, tmp_path / "other" / "release-key.pem", "wrong", *sim)
    _refused(unit, wrong, capsys, "names signing key")

    assert main(["fw", "keygen", "--out", str(tmp_path / "dev"), "--channel", "development"]) == 0
    dev = fw_build(tmp_path, tmp_path / "dev" / "development-key.pem", "dev", *sim)
    _refused(unit, dev, capsys, "development channel")

    pi = fw_build(
        tmp_path, keys[0], "pi", "--version", "1.0.0", "--security-version", "1",
        "--compatible", "bwc-pi4",
    )  # fmt: skip
    _refused(unit, pi, capsys, "'bwc-pi4'")

    hungry = fw_build(tmp_path, keys[0], "hungry", *sim, "--min-battery", "50")
    unit.run.mkdir()
    unit.battery_json.write_text('{"level_pct": 20.0}')
    _refused(unit, hungry, capsys, "battery 20% is below the bundle's minimum 50%")

    garbage = tmp_path / "garbage.bwc"
    garbage.write_bytes(b"\x00" * 100)
    _refused(unit, garbage, capsys, "bad magic")

    # The same good bundle flashes once the battery is charged.
    unit.battery_json.write_text('{"level_pct": 90}')
    assert main(["fw", "flash", str(good), "--device", str(unit.root)]) == 0


def test_inspect_exit_codes(
    tmp_path: Path, keys: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    good = fw_build(
        tmp_path, keys[0], "g", "--version", "1.0.0", "--security-version", "1",
        "--compatible", "bwc-sim",
    )  # fmt: skip
    assert main(["fw", "inspect", str(good)]) == 0
    assert "signature         unchecked" in capsys.readouterr().out
    assert main(["fw", "keygen", "--out", str(tmp_path / "other")]) == 0
    assert (
        main(["fw", "inspect", str(good), "--trust", str(tmp_path / "other" / "release-pub.pem")])
        == 1
    )
    assert main(["fw", "inspect", str(keys[1])]) == 2
    assert main(["fw", "inspect", str(tmp_path / "missing.bwc")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "bad magic" in err


def test_status_of_a_directory_that_is_no_unit_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["fw", "status", "--device", str(tmp_path)]) == 2
    assert "not a unit" in capsys.readouterr().err


def test_bundle_built_by_the_support_helper_flashes(
    tmp_path: Path, keys: tuple[Path, Path], unit: UnitLayout, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = make_bundle(tmp_path / "raw.bwc", keys[0], payload=b"\x7fELF" + b"\x00" * 5000)
    assert main(["fw", "flash", str(bundle), "--device", str(unit.root)]) == 0
    capsys.readouterr()
    assert status(unit, capsys)["slots"]["B"]["version"] == "1.0.0"
