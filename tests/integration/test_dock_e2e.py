"""The dock: a unit put in its dock offloads on its own, frees only confirmed payloads, and the
agency verifies and exports what arrived, where it arrived (CONTRACT §9, file:// target)."""

from __future__ import annotations

from pathlib import Path

from simulator.h264 import read_frame_numbers
from tests.integration.conftest import SMALL, Bwc, ProvisionedUnit, ScenarioWriter


def test_docked_unit_offloads_frees_and_the_target_verifies_and_exports(
    bwc: Bwc, unit: ProvisionedUnit, scenario: ScenarioWriter, tmp_path: Path
) -> None:
    target = tmp_path / "dock-share"
    s = scenario(
        30.0,
        {"at_s": 3.0, "action": "double_press"},
        {"at_s": 8.0, "action": "press", "button": "function"},
        {"at_s": 12.0, "action": "hold", "hold_s": 3.5},
        {"at_s": 20.0, "action": "dock"},
    )
    bwc("sim", s, "--device", unit.device, *SMALL, "--set", f"offload.target=file://{target}")
    assert not list((unit.device / "evidence").glob("*.bin")), "confirmed payloads are freed"
    arrived = target / "CAM-TEST-1"
    assert list(arrived.glob("*.bin")), "payloads arrived at the target"
    # The unit's own chain still verifies: freed payloads are explained by signed events.
    local = bwc("verify", unit.device / "evidence")
    assert "offloaded" in local.stdout
    report = bwc.json(
        "verify",
        f"file://{arrived}",
        "--json",
        "--trust",
        unit.device / "identity" / "device-pub.pem",
    )
    assert report["intact"] is True
    bwc("export", f"file://{arrived}", "--key", unit.agency_key, "--out", tmp_path / "out")
    (mp4,) = (tmp_path / "out").glob("*.mp4")
    frames = read_frame_numbers(str(mp4))
    assert frames == list(range(frames[0], frames[0] + len(frames)))


def test_provision_refuses_until_evidence_is_offloaded(
    bwc: Bwc, unit: ProvisionedUnit, scenario: ScenarioWriter, tmp_path: Path
) -> None:
    s = scenario(12.0, {"at_s": 2.0, "action": "double_press"}, {"at_s": 6.0, "action": "hold"})
    bwc("sim", s, "--device", unit.device, *SMALL)
    again: list[str | Path] = [
        "provision",
        unit.device,
        "--agency-pub",
        unit.agency_pub,
        "--device-id",
        "CAM-TEST-1",
        "--officer",
        "PC-9999",
    ]
    refused = bwc(*again, check=2)
    assert "not yet offloaded" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    bwc("offload", "--device", unit.device, "--set", f"offload.target=file://{tmp_path / 'share'}")
    bwc(*again)
    assert "PC-9999" in (unit.device / "config" / "unit.json").read_text()
    assert bwc.json("verify", unit.device / "evidence", "--json")["intact"] is True
