"""The officer's view read from a real simulated unit: what `bwc run` shows at each step of a shift
(record, marker, stop hold, stop, dock with its offload) is what the unit is actually doing."""

from __future__ import annotations

from firmware.layout import UnitLayout
from firmware.sim_unit import SimulatedUnit, boot_simulated_unit
from firmware.status_view import StatusSnapshot, StatusTracker, read_snapshot, status_text
from offload.runner import OffloadProgress
from simulator.scenario import ScenarioEvent
from tests.integration.conftest import ProvisionedUnit

SETTINGS = {
    "camera.width": 512,
    "camera.height": 288,
    "camera.fps": 10.0,
    "recorder.pre_event_s": 4.0,
}


def _at(sim: SimulatedUnit, tracker: StatusTracker, t_s: float) -> StatusSnapshot:
    sim.run_until(round(t_s * 1_000_000))
    return read_snapshot(sim, tracker, wall_s=t_s)


def test_a_shift_as_the_view_shows_it(unit: ProvisionedUnit) -> None:
    sim = boot_simulated_unit(UnitLayout(unit.device), SETTINGS)
    tracker = StatusTracker()
    progress: list[OffloadProgress] = []
    sim.dock_offload.on_progress = progress.append
    for ev in (
        ScenarioEvent(at_s=8.0, action="double_press", button="event"),
        ScenarioEvent(at_s=12.0, action="press", button="function"),
        ScenarioEvent(at_s=15.0, action="hold", button="event", hold_s=3.5),
        ScenarioEvent(at_s=21.0, action="dock", button="event"),
    ):
        sim.schedule(ev)
    try:
        snap = _at(sim, tracker, 6.0)
        assert snap.state == "buffering" and 3.9 <= snap.buffer_s <= 6.0
        assert snap.signals[0].pattern == "led:buffering"
        assert snap.gnss is not None, "the simulated receiver has a fix"

        snap = _at(sim, tracker, 9.0)
        assert snap.state == "recording"
        assert snap.recording_elapsed_s is not None and 0.9 <= snap.recording_elapsed_s <= 1.1
        assert snap.pre_event_captured_s is not None and snap.pre_event_captured_s >= 4.0
        assert [s.pattern for s in snap.signals] == [
            "led:recording",
            "haptic:recording-start",
            "tone:recording-start",
        ]
        assert any(n.text.startswith("recording started, with 4.") for n in snap.notices)
        text = status_text(snap)
        assert "REC  00:00:01 since the press" in text and "buffer" not in text

        snap = _at(sim, tracker, 13.0)  # the marker waits out the mute double-press window
        assert snap.markers == 1
        assert "marker 1 added (signed)" in [n.text for n in snap.notices]

        snap = _at(sim, tracker, 16.5)  # the stop hold, half-way
        assert snap.state == "recording"
        ((button, held_s),) = snap.holds
        assert button == "event" and 1.4 <= held_s <= 1.6
        assert "stop (event held)" in status_text(snap)

        snap = _at(sim, tracker, 19.0)
        assert snap.state == "buffering" and snap.holds == ()
        stop = [n.text for n in snap.notices if n.text.startswith("recording stopped")]
        assert stop and "1 marker" in stop[0], stop

        snap = _at(sim, tracker, 22.0)
        assert snap.docked and snap.charging
        assert progress and progress[0].files_done == 0 and progress[-1].files_done > 0
        assert progress[-1].files_done == progress[-1].files_total
        assert snap.offload is not None and snap.offload.complete
        assert snap.signals[0].pattern == "led:offload-complete"
        texts = [n.text for n in snap.notices]
        assert "offloading to the dock" in texts
        assert "offload complete: every file confirmed" in texts
        assert "offload complete" in status_text(snap)
    finally:
        sim.power_off("test end")
    snap = read_snapshot(sim, tracker, wall_s=30.0, docked=True)
    assert snap.state == "off" and snap.signals[0].pattern == "off"
