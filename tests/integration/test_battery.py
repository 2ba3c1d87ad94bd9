"""Low battery and the RTC: warning feedback and a signed event below ``low_battery_pct``, a clean
stop below ``critical_battery_pct`` before the cut-off, the cut-off as a power cut that the next
boot explains; an RTC reset then GNSS time gives signed clock steps and the chain keeps order."""

from __future__ import annotations

from pathlib import Path

from firmware.layout import UnitLayout
from firmware.sim_unit import RTC_RESET_UTC_US, boot_simulated_unit
from recorder.feedback import Feedback
from simulator.scenario import ScenarioEvent
from tests.integration.conftest import SMALL, Bwc, ProvisionedUnit, ScenarioWriter
from tests.integration.faults import read_manifests

SETTINGS = {"camera.width": 512, "camera.height": 288, "recorder.pre_event_s": 2.0}


def _events(store: Path) -> list[dict[str, object]]:
    return [m for m in read_manifests(store) if m["type"] == "event"]


def _kinds(store: Path) -> list[object]:
    return [m["kind"] for m in _events(store)]


def test_low_then_critical_battery_warns_then_stops_cleanly(unit: ProvisionedUnit) -> None:
    sim = boot_simulated_unit(UnitLayout(unit.device), SETTINGS)
    sim.schedule(ScenarioEvent(1.0, "double_press"))
    sim.schedule(ScenarioEvent(5.0, "battery", level_pct=12.0))
    sim.run_until(7_000_000)
    # While recording the LED stays steady red (recording); the warning is the tone.
    tone = sim.indicators["buzzer"].pattern
    assert tone is not None and tone.name == f"tone:{Feedback.LOW_BATTERY.value}"
    assert sim.recorder.recording_id is not None  # low is a warning, not a stop

    sim.schedule(ScenarioEvent(8.0, "battery", level_pct=4.0))
    sim.schedule(ScenarioEvent(11.0, "double_press"))  # refused while critical
    sim.run_until(14_000_000)
    assert sim.recorder.recording_id is None
    sim.power_off("scenario_end")

    events = _events(unit.device / "evidence")
    kinds = [e["kind"] for e in events]
    assert kinds.count("low_battery") == 1
    assert kinds.count("record_start") == 1
    low = next(e for e in events if e["kind"] == "low_battery")
    assert low["fields"]["level_pct"] < 15.0
    (stop,) = [e for e in events if e["kind"] == "record_stop"]
    assert stop["fields"]["trigger"] == "low_battery"
    assert kinds.index("low_battery") < kinds.index("record_stop")


def test_cut_off_is_a_power_cut_and_everything_verifies(
    unit: ProvisionedUnit, bwc: Bwc, scenario: ScenarioWriter, tmp_path: Path
) -> None:
    sets = [*SMALL, "--set", "recorder.pre_event_s=2"]
    run = bwc(
        "sim",
        scenario(
            30.0,
            {"at_s": 1.0, "action": "double_press"},
            {"at_s": 4.0, "action": "battery", "level_pct": 10.0},
            {"at_s": 8.0, "action": "battery", "level_pct": 4.0},
            {"at_s": 12.0, "action": "battery", "level_pct": 1.0},
        ),
        "--device",
        unit.device,
        *sets,
        check=137,
    )
    assert "Traceback" not in run.stderr
    store = unit.device / "evidence"
    kinds = _kinds(store)
    after_start = kinds[kinds.index("record_start") :]
    assert "low_battery" in after_start and "record_stop" in after_start
    assert "shutdown" not in after_start  # the cut-off is not an orderly power-off

    # Charged again: the next boot explains the cut and nothing was open.
    bwc("sim", scenario(2.0), "--device", unit.device, *sets, "--set", "battery.initial_pct=90")
    events = _events(store)
    kinds = [e["kind"] for e in events]
    assert "power_loss_discovered" in kinds
    stops = [e["fields"]["trigger"] for e in events if e["kind"] == "record_stop"]  # type: ignore[index]
    assert stops == ["low_battery"]  # stopped cleanly before the cut-off: no recovery stop
    report = bwc.json("verify", *unit.trust, store, "--json")
    assert report["intact"] is True
    (rec,) = report["recordings"]
    assert rec["stop_trigger"] == "low_battery"
    bwc("export", *unit.trust, store, "--key", unit.agency_key, "--out", tmp_path / "out")


def test_rtc_reset_then_gnss_time_steps_the_clock_in_chain_order(
    unit: ProvisionedUnit, bwc: Bwc, scenario: ScenarioWriter
) -> None:
    bwc(
        "sim",
        scenario(
            40.0,
            {"at_s": 1.0, "action": "double_press"},
            {"at_s": 4.0, "action": "rtc_reset"},
            {"at_s": 5.0, "action": "gnss_loss"},
            {"at_s": 12.0, "action": "hold", "hold_s": 3.5},
            {"at_s": 20.0, "action": "gnss_restore"},
            {"at_s": 30.0, "action": "double_press"},
        ),
        "--device",
        unit.device,
        *SMALL,
        "--set",
        "recorder.pre_event_s=2",
    )
    store = unit.device / "evidence"
    steps = [e for e in _events(store) if e["kind"] == "clock_step"]
    sources = [s["fields"]["source"] for s in steps]  # type: ignore[index]
    assert sources[0] == "rtc_reset"
    assert "gnss" in sources[1:]
    reset = steps[0]["fields"]
    assert reset["new_utc_us"] == RTC_RESET_UTC_US  # type: ignore[index]
    gnss_step = steps[sources.index("gnss")]["fields"]
    assert gnss_step["old_utc_us"] < 1_000_000_000_000_000 < gnss_step["new_utc_us"]  # type: ignore[index]
    # Wall-clock time went backwards mid-recording; the chain (seq) still orders everything.
    manifests = read_manifests(store)
    utcs = [m["utc_us"] for m in manifests]
    assert utcs != sorted(utcs)
    report = bwc.json("verify", *unit.trust, store, "--json")
    assert report["intact"] is True
    recs = report["recordings"]
    assert len(recs) == 2
    assert recs[0]["last_frame"] < recs[1]["first_frame"]
