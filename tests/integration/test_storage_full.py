"""Full storage: the recording stops cleanly with a signed ``storage_full`` event, the indicators
show FAULT, nothing sealed is deleted, the next boot refuses to record, and everything verifies."""

from __future__ import annotations

from pathlib import Path

from firmware.layout import UnitLayout
from firmware.sim_unit import boot_simulated_unit
from recorder.feedback import Feedback
from simulator.scenario import ScenarioEvent
from tests.integration.conftest import Bwc, ProvisionedUnit, ScenarioWriter
from tests.integration.faults import read_manifests

TINY_STORE = {
    "camera.width": 512,
    "camera.height": 288,
    "camera.bitrate_bps": 2_000_000,
    "recorder.pre_event_s": 2.0,
    "recorder.segment_s": 3.0,
    "storage.capacity_mb": 3.0,
    "storage.reserve_mb": 0.5,
}
SETS = [a for k, v in TINY_STORE.items() for a in ("--set", f"{k}={v}")]


def _events(store: Path, kind: str) -> list[dict[str, object]]:
    return [m for m in read_manifests(store) if m["type"] == "event" and m.get("kind") == kind]


def test_storage_full_stops_cleanly_with_fault_feedback(unit: ProvisionedUnit) -> None:
    sim = boot_simulated_unit(UnitLayout(unit.device), TINY_STORE)
    sim.schedule(ScenarioEvent(1.0, "double_press"))
    sim.run_until(40_000_000)  # ~2.5 MB at 2 Mbit/s fill the 2.5 MB above the reserve in ~10 s
    led = sim.indicators["led"].pattern
    status = sim.recorder.status()
    assert status["storage_blocked"] is True
    assert status["recording"] is None
    assert led is not None and led.name == f"led:{Feedback.FAULT.value}"
    sim.power_off("scenario_end")

    store = unit.device / "evidence"
    full = _events(store, "storage_full")
    assert len(full) == 1
    stops = _events(store, "record_stop")
    assert [s["fields"]["trigger"] for s in stops] == ["storage_full"]  # type: ignore[index]
    seqs = [m["seq"] for m in read_manifests(store)]
    assert seqs == list(range(len(seqs)))  # nothing removed from the chain


def test_storage_full_verifies_and_next_boot_refuses(
    unit: ProvisionedUnit, bwc: Bwc, scenario: ScenarioWriter, tmp_path: Path
) -> None:
    store = unit.device / "evidence"
    bwc(
        "sim",
        scenario(30.0, {"at_s": 1.0, "action": "double_press"}),
        "--device",
        unit.device,
        *SETS,
    )
    files_after_full = {p.name for p in store.iterdir()}
    units_after_full = [m for m in read_manifests(store) if m["type"] == "unit"]
    assert units_after_full, "something was recorded before the store filled"
    assert len(_events(store, "storage_full")) == 1

    # Next boot on the full store: a double press must not seal anything more, and is refused
    # before record_start (no "recording started" feedback): a signed storage_full, no recording.
    bwc(
        "sim",
        scenario(6.0, {"at_s": 1.0, "action": "double_press"}),
        "--device",
        unit.device,
        *SETS,
    )
    assert files_after_full <= {p.name for p in store.iterdir()}  # no evidence deleted
    assert [m for m in read_manifests(store) if m["type"] == "unit"] == units_after_full
    assert len(_events(store, "record_start")) == 1
    refused = _events(store, "storage_full")
    assert len(refused) == 2 and refused[-1]["fields"]["recording"] is None  # type: ignore[index]

    report = bwc.json("verify", *unit.trust, store, "--json")
    assert report["intact"] is True
    first = report["recordings"][0]
    assert {r["stop_trigger"] for r in report["recordings"]} == {"storage_full"}
    assert first["units"] == len(units_after_full)
    bwc("export", *unit.trust, store, "--key", unit.agency_key, "--out", tmp_path / "out")
    assert (tmp_path / "out" / f"{first['id']}.mp4").stat().st_size > 0
