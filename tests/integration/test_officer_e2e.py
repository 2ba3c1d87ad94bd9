"""The officer's side end to end: triggers, markers and stealth reach the signed record and the
export metadata at the right times, and the simulated indicators show (or, in stealth, hide) it."""

from __future__ import annotations

import json
from pathlib import Path

from firmware.layout import UnitLayout
from firmware.sim_unit import boot_simulated_unit
from simulator.scenario import parse_scenario
from tests.integration.conftest import Bwc, ProvisionedUnit, ScenarioWriter

FPS = 10


def overrides() -> dict[str, object]:
    return {
        "camera.width": 512,
        "camera.height": 288,
        "camera.fps": float(FPS),
        "recorder.pre_event_s": 2.0,
        "recorder.reminder_interval_s": 10.0,
    }


def test_trigger_marker_stealth_in_metadata_at_the_right_times(
    bwc: Bwc, unit: ProvisionedUnit, scenario: ScenarioWriter, tmp_path: Path
) -> None:
    s = scenario(
        40.0,
        {"at_s": 5.0, "action": "trigger", "hold_s": 1.0},
        {"at_s": 12.0, "action": "press", "button": "function"},
        {"at_s": 14.0, "action": "hold", "button": "function", "hold_s": 3.5},
        {"at_s": 19.0, "action": "hold", "button": "function", "hold_s": 3.5},
        {"at_s": 24.0, "action": "press", "button": "function"},
        {"at_s": 30.0, "action": "hold", "button": "event", "hold_s": 3.5},
    )
    sets = [arg for key, value in overrides().items() for arg in ("--set", f"{key}={value}")]
    bwc("sim", s, "--device", unit.device, *sets)
    bwc(
        "export",
        *unit.trust,
        unit.device / "evidence",
        "--key",
        unit.agency_key,
        "--out",
        tmp_path / "out",
    )
    (meta_path,) = (tmp_path / "out").glob("*.json")
    meta = json.loads(meta_path.read_text())
    start_utc = meta["start_utc_us"]
    assert meta["start_trigger"] == "trigger"
    assert meta["stop_trigger"] == "hold"
    # The trigger line went active at 5.0 s; the pre-roll reaches 2 s before it.
    assert meta["frames"]["first"] <= 30
    markers = meta["markers"]
    assert [m["frame"] for m in markers] == [12 * FPS, 24 * FPS]
    assert [m["at_mono_us"] for m in markers] == [12_000_000, 24_000_000]
    # Stealth toggles when the function button has been held 3 s: on at 17 s, off at 22 s.
    (stealth,) = meta["stealth"]
    assert stealth["to_utc_us"] - stealth["from_utc_us"] == 5_000_000
    assert markers[1]["at_utc_us"] - start_utc > markers[0]["at_utc_us"] - start_utc
    report = bwc.json("verify", *unit.trust, unit.device / "evidence", "--json")
    assert report["intact"] is True


def test_indicators_follow_the_recording_and_go_dark_in_stealth(unit: ProvisionedUnit) -> None:
    sim = boot_simulated_unit(UnitLayout(unit.device), overrides())
    text = """
    duration_s = 60.0
    [[events]]
    at_s = 3.0
    action = "double_press"
    [[events]]
    at_s = 8.0
    action = "press"
    button = "function"
    [[events]]
    at_s = 20.0
    action = "hold"
    button = "function"
    hold_s = 3.5
    [[events]]
    at_s = 30.0
    action = "press"
    button = "function"
    [[events]]
    at_s = 45.0
    action = "hold"
    hold_s = 3.5
    """
    sim.play(parse_scenario(text, "inline"))
    led, haptic, buzzer = (sim.indicators[n].history for n in ("led", "haptic", "buzzer"))

    def names(history: list[tuple[int, str]], lo_s: float, hi_s: float) -> list[str]:
        return [name for t, name in history if lo_s * 1e6 <= t < hi_s * 1e6]

    assert names(led, 0, 1) == ["led:buffering"]
    assert "led:recording" in names(led, 3, 4)
    assert "tone:recording-start" in names(buzzer, 3, 4)
    assert "haptic:marker" in names(haptic, 8, 9)
    assert "haptic:reminder" in names(haptic, 13, 14), "reminder every 10 s while recording"
    # Stealth on at 23 s: one confirmation for the wearer, then nothing at all until it ends.
    assert names(haptic, 23, 24) == ["haptic:stealth-on"]
    assert names(led, 23.01, 60) + names(buzzer, 23.01, 60) in ([], ["off"], ["off", "off"])
    assert names(haptic, 23.01, 60) == []
    events = [
        json.loads(p.read_text()).get("kind")
        for p in sorted((unit.device / "evidence").glob("*.json"))
    ]
    assert events.count("marker") == 2, "markers are recorded even when nothing is shown"
    assert "stealth" in events
