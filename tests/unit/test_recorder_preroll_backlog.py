"""After a press the recorder is RECORDING at once and seals the pre-roll on later frames/ticks,
in order, before live frames; a stop seals whatever is still queued. The chain verifies."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

from evidence.keys import generate_agency_keys, load_agency_public
from evidence.sealer import Sealer
from evidence.store import DirectoryStoreReader
from evidence.verify import verify_store
from hal.software_key import SoftwareDeviceKey
from recorder.core import Recorder
from recorder.feedback import FeedbackController
from recorder.state_machine import State
from tests.unit.fakes import FakeClock, RecordingIndicator, h264_frames
from tests.unit.test_recorder_core import IDENTITY, make_profile


def _build(tmp_path: Path) -> tuple[FakeClock, Path, Recorder]:
    key = SoftwareDeviceKey.generate(tmp_path / "device-key.pem")
    _priv, pub = generate_agency_keys(tmp_path / "agency")
    store = tmp_path / "evidence"
    clock = FakeClock()
    sealer = Sealer.open(store, key, [load_agency_public(pub)], "dev-1", "b" * 32, "rtc")
    indicators = [RecordingIndicator(n) for n in ("led", "haptic", "buzzer")]
    profile = make_profile(pre_event_s=5.0, segment_s=60.0)
    return clock, store, Recorder(clock, sealer, FeedbackController(*indicators), profile, IDENTITY)


def _manifests(store: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_bytes()) for p in sorted(store.glob("*.json"))]


def _press(recorder: Recorder, t_us: int, store: Path | None = None) -> None:
    """Edges and ticks of a double press; at the call that starts the recording, nothing but
    ``record_start`` may have been sealed yet (checked when ``store`` is given)."""
    steps = [(0, True), (120_000, False), (270_000, True), (390_000, False), (500_000, None)]
    for dt_us, active in steps:
        if active is None:
            recorder.tick(t_us + dt_us)
        else:
            recorder.handle_edge("event", active, t_us + dt_us)
        if recorder.state is State.RECORDING:
            if store is not None:
                kinds = [(m["type"], m.get("kind")) for m in _manifests(store)]
                assert kinds[-1] == ("event", "record_start")
                assert not any(t == "unit" for t, _ in kinds)  # no pre-roll sealed yet
            return


def test_press_seals_record_start_only_then_preroll_in_order(tmp_path: Path) -> None:
    clock, store, recorder = _build(tmp_path)
    recorder.start()
    frames = h264_frames(30 * 12)
    for f in frames[: 30 * 7]:
        clock.mono_us = f.pts_us
        recorder.handle_frame(f)
    clock.mono_us = frames[30 * 7 - 1].pts_us + 500_000
    _press(recorder, 6_500_000, store)
    assert recorder.state is State.RECORDING
    for f in frames[30 * 7 :]:
        clock.mono_us = f.pts_us
        recorder.handle_frame(f)
        recorder.tick(f.pts_us)
    recorder.shutdown("test")
    units = [m for m in _manifests(store) if m["type"] == "unit"]
    firsts = [u["first_frame"] for u in units]
    assert firsts == sorted(firsts)
    assert all(
        a["first_frame"] + a["frame_count"] == b["first_frame"]
        for a, b in itertools.pairwise(units)
    )
    assert units[0]["pre_event"] is True
    report = verify_store(DirectoryStoreReader(store), unpinned=True)
    assert report.intact, [(f.file, f.reason) for f in report.all_findings]


def test_stop_right_after_press_seals_the_whole_preroll(tmp_path: Path) -> None:
    clock, store, recorder = _build(tmp_path)
    recorder.start()
    frames = h264_frames(30 * 7)
    for f in frames:
        clock.mono_us = f.pts_us
        recorder.handle_frame(f)
    _press(recorder, 6_500_000)
    recorder.shutdown("test")  # stops the recording: the queued pre-roll is sealed first
    units = [m for m in _manifests(store) if m["type"] == "unit"]
    assert units, "the pre-roll was not sealed"
    last = units[-1]
    assert last["first_frame"] + last["frame_count"] == len(frames)
    report = verify_store(DirectoryStoreReader(store), unpinned=True)
    assert report.intact, [(f.file, f.reason) for f in report.all_findings]
