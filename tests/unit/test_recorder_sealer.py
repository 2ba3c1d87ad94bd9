"""The recorder against the real Sealer and verifier: what it writes verifies and decrypts."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import av

from evidence.keys import generate_agency_keys, load_agency_private, load_agency_public
from evidence.opener import open_store
from evidence.sealer import Sealer
from evidence.store import DirectoryStoreReader
from evidence.verify import verify_store
from hal.software_key import SoftwareDeviceKey
from recorder.core import Recorder
from recorder.feedback import FeedbackController
from tests.unit.fakes import FakeClock, RecordingIndicator, h264_frames
from tests.unit.test_recorder_core import IDENTITY, make_profile


def test_recording_with_gap_marker_and_segments_verifies_and_decrypts(tmp_path: Path) -> None:
    key = SoftwareDeviceKey.generate(tmp_path / "device-key.pem")
    priv_path, pub_path = generate_agency_keys(tmp_path / "agency")
    store = tmp_path / "evidence"
    clock = FakeClock()
    sealer = Sealer.open(
        store,
        key,
        [load_agency_public(pub_path)],
        "dev-1",
        "b" * 32,
        lambda: clock.source.value,
        device_pub_pem=key.public_pem(),
    )
    indicators = [RecordingIndicator(n) for n in ("led", "haptic", "buzzer")]
    recorder = Recorder(
        clock, sealer, FeedbackController(*indicators), make_profile(segment_s=2.0), IDENTITY
    )
    recorder.start()
    frames = h264_frames(30 * 12)
    gap = {200, 201}

    def edge(name: str, active: bool, t_s: float) -> None:
        recorder.handle_edge(name, active, round(t_s * 1e6))

    script = {
        6.0: ("event", True),
        6.12: ("event", False),
        6.27: ("event", True),
        6.39: ("event", False),
        8.0: ("function", True),
        8.1: ("function", False),
        9.0: ("event", True),
        12.5: ("event", False),
    }
    for f in frames:
        clock.mono_us = f.pts_us
        for t_s, (name, active) in list(script.items()):
            if round(t_s * 1e6) <= f.pts_us:
                edge(name, active, t_s)
                del script[t_s]
        if f.frame_index not in gap:
            recorder.handle_frame(f)
        recorder.tick(f.pts_us)
    recorder.shutdown("test")

    report = verify_store(DirectoryStoreReader(store), unpinned=True)
    assert report.intact, [(f.file, f.reason) for f in report.all_findings]
    assert len(report.recordings) == 1
    rec = report.recordings[0]
    assert rec.gaps and all(g["explained"] for g in rec.gaps)

    opened = list(
        open_store(DirectoryStoreReader(store), load_agency_private(priv_path), unpinned=True)
    )
    assert len(opened) == 1
    total = 0
    for segment in opened[0].segments:
        with av.open(io.BytesIO(segment.plaintext()), mode="r", format="mpegts") as c:
            total += sum(1 for _ in c.decode(video=0))
    assert len(opened[0].segments) >= 3
    start, stop = event_fields(store, "record_start"), event_fields(store, "record_stop")
    assert start["first_frame"] == 30  # 5 s of pre-roll before the press at 6 s: keyframe at 1 s
    assert total == stop["last_frame"] - start["first_frame"] + 1 - len(gap)
    assert event_fields(store, "marker")["at_mono_us"] == 8_000_000


def event_fields(store: Path, kind: str) -> dict[str, Any]:
    for p in sorted(store.glob("*.json")):
        m = json.loads(p.read_bytes())
        if m.get("kind") == kind:
            return dict(m["fields"])
    raise AssertionError(f"no {kind} event")


def test_storage_full_stop_verifies(tmp_path: Path) -> None:
    key = SoftwareDeviceKey.generate(tmp_path / "device-key.pem")
    _priv, pub_path = generate_agency_keys(tmp_path / "agency")
    store = tmp_path / "evidence"
    clock = FakeClock()
    sealer = Sealer.open(
        store,
        key,
        [load_agency_public(pub_path)],
        "dev-1",
        "c" * 32,
        lambda: clock.source.value,
        reserve_bytes=40_000,
        capacity_bytes=300_000,
        device_pub_pem=key.public_pem(),
    )
    indicators = [RecordingIndicator(n) for n in ("led", "haptic", "buzzer")]
    recorder = Recorder(
        clock, sealer, FeedbackController(*indicators), make_profile(pre_event_s=1.0), IDENTITY
    )
    recorder.start()
    for f in h264_frames(30 * 30):
        clock.mono_us = f.pts_us
        if f.frame_index == 60:
            for dt, active in ((0, True), (120_000, False), (270_000, True), (390_000, False)):
                recorder.handle_edge("event", active, f.pts_us + dt)
        recorder.handle_frame(f)
        recorder.tick(f.pts_us)
    assert recorder.state.value == "fault"
    assert event_fields(store, "record_stop")["trigger"] == "storage_full"
    report = verify_store(DirectoryStoreReader(store), unpinned=True)
    assert report.intact, [(f.file, f.reason) for f in report.all_findings]
