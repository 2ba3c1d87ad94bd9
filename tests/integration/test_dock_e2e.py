"""The dock: a unit put in its dock offloads on its own, frees only confirmed payloads, and the
agency verifies and exports what arrived, where it arrived (CONTRACT §9, file:// target)."""

from __future__ import annotations

import json
import shutil
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
    # The unit's own chain verifies with --allow-freed only: freed payloads are explained by
    # signed events there, but strict verify (for any copy that must hold them) says they are gone.
    strict = json.loads(
        bwc("verify", unit.device / "evidence", *unit.trust, "--json", check=1).stdout
    )
    assert set(strict["finding_counts"]) == {"payload-freed"}
    local = bwc("verify", unit.device / "evidence", *unit.trust, "--allow-freed")
    assert "freed on the unit after offload" in local.stdout
    report = bwc.json(
        "verify",
        f"file://{arrived}",
        "--json",
        "--trust",
        unit.device / "identity" / "device-pub.pem",
    )
    assert report["intact"] is True
    # The dock share's root, verified as a whole against the agency's registry of device keys.
    registry = tmp_path / "registry"
    registry.mkdir()
    shutil.copy(unit.device_pub, registry / "CAM-TEST-1.pem")
    share = bwc("verify", target, "--trust", registry)
    assert "CAM-TEST-1" in share.stdout and "result: every unit INTACT" in share.stdout
    refused = bwc("verify", target, check=1)
    assert "origin-not-established" in refused.stdout
    bwc(
        "export",
        f"file://{arrived}",
        "--key",
        unit.agency_key,
        "--out",
        tmp_path / "out",
        *unit.trust,
    )
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
    report = bwc.json("verify", unit.device / "evidence", "--json", *unit.trust, "--allow-freed")
    assert report["intact"] is True
