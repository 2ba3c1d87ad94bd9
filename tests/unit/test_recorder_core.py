"""The recorder end to end on fakes: gestures in, events and sealed units out."""

from __future__ import annotations

import io
import itertools
from typing import Any

import av
import pytest

from evidence.sealing import RecordError
from hal.types import BatteryStatus, ClockSource, FixQuality, GnssFix
from recorder.config import Profile, parse_profile
from recorder.core import Recorder
from recorder.feedback import FeedbackController
from recorder.state_machine import State
from tests.unit.fakes import FakeClock, FakeEvidence, RecordingIndicator, h264_frames

IDENTITY = {"device_id": "dev-1", "officer_id": "off-7", "firmware_version": "0.1.0", "slot": "A"}


def make_profile(**recorder: Any) -> Profile:
    base = {"pre_event_s": 5.0, "segment_s": 4.0, "unit_s": 1.0, "reminder_interval_s": 0.0}
    base.update(recorder)
    return parse_profile(
        {
            "camera": {"width": 512, "height": 288, "fps": 30.0, "keyframe_interval_s": 1.0},
            "recorder": base,
        }
    )


class Battery:
    def __init__(self, pct: float = 100.0) -> None:
        self.pct = pct

    def status(self) -> BatteryStatus:
        return BatteryStatus(self.pct, None, False)


class Gnss:
    def __init__(self) -> None:
        self.pending: list[GnssFix] = []
        self.bad_sentences = 0

    def poll(self) -> list[GnssFix]:
        out, self.pending = self.pending, []
        return out

    def close(self) -> None:
        pass


class Unit:
    """A recorder on fakes plus a frame source advancing the fake clock at 30 fps."""

    def __init__(self, profile: Profile, *, free: int = 10**12, **kw: Any) -> None:
        self.clock = FakeClock()
        self.evidence = FakeEvidence(free=free)
        self.led, self.haptic, self.buzzer = (RecordingIndicator(n) for n in ("led", "hap", "buz"))
        self.feedback = FeedbackController(self.led, self.haptic, self.buzzer)
        ids = iter(f"rec{i}" for i in range(100))
        self.recorder = Recorder(
            self.clock,
            self.evidence,
            self.feedback,
            profile,
            IDENTITY,
            id_factory=lambda: next(ids),
            **kw,
        )
        self.frames = h264_frames(30 * 200)
        self.next = 0
        self.recorder.start()

    def state(self) -> State:
        return self.recorder.state

    def run_until(self, t_s: float, skip: set[int] | None = None) -> None:
        """Deliver frames (and a tick after each) up to ``t_s``."""
        end_us = round(t_s * 1e6)
        while self.frames[self.next].pts_us <= end_us:
            frame = self.frames[self.next]
            self.next += 1
            self.clock.mono_us = frame.pts_us
            if skip and frame.frame_index in skip:
                continue
            self.recorder.handle_frame(frame)
            self.recorder.tick(frame.pts_us)

    def edge(self, name: str, active: bool, t_s: float) -> None:
        self.run_until(t_s)
        self.clock.mono_us = round(t_s * 1e6)
        self.recorder.handle_edge(name, active, round(t_s * 1e6))

    def press(self, name: str, t_s: float, dur_s: float = 0.12) -> None:
        self.edge(name, True, t_s)
        self.edge(name, False, t_s + dur_s)

    def double_press(self, t_s: float) -> None:
        self.press("event", t_s)
        self.press("event", t_s + 0.27)

    def hold(self, name: str, t_s: float, dur_s: float = 3.5) -> None:
        self.edge(name, True, t_s)
        self.edge(name, False, t_s + dur_s)


def assert_units_chain(units: list[Any]) -> None:
    for a, b in itertools.pairwise(units):
        assert b.meta.first_frame == a.meta.first_frame + a.meta.frame_count
        same_seg = b.meta.segment == a.meta.segment
        assert (b.meta.unit == a.meta.unit + 1) if same_seg else (b.meta.unit == 0)
        if not same_seg:
            assert b.meta.segment == a.meta.segment + 1


def demux_count(payload: bytes) -> int:
    with av.open(io.BytesIO(payload), mode="r", format="mpegts") as c:
        return sum(1 for p in c.demux(video=0) if p.size)


def test_press_record_marker_stop_event_sequence() -> None:
    u = Unit(make_profile())
    u.run_until(10.0)
    assert u.state() is State.BUFFERING
    u.double_press(10.0)
    assert u.state() is State.RECORDING
    u.press("function", 12.0)
    u.hold("event", 15.0)
    u.run_until(19.0)
    assert u.state() is State.BUFFERING
    events = [k for k in u.evidence.kinds() if k != "unit"]
    assert events == ["buffering", "record_start", "marker", "record_stop"]
    start = u.evidence.events("record_start")[0]
    assert start["recording"] == "rec0"
    assert start["trigger"] == "double_press"
    assert start["press_mono_us"] == 10_000_000
    assert start["pre_event_captured_s"] >= 5.0
    assert start["pre_event_captured_s"] <= 6.0
    assert start["officer_id"] == "off-7"
    assert start["profile_digest"] == make_profile().digest()
    stop = u.evidence.events("record_stop")[0]
    assert stop["trigger"] == "hold"
    units = u.evidence.units()
    assert stop["units"] == len(units)
    assert stop["segments"] == units[-1].meta.segment + 1
    assert units[0].meta.first_frame == start["first_frame"]
    assert units[0].meta.pre_event
    assert units[-1].meta.final and not any(x.meta.final for x in units[:-1])
    assert stop["last_frame"] == units[-1].meta.first_frame + units[-1].meta.frame_count - 1
    # Stop at the 3 s hold threshold: 18.0 s, so the last frame is near 18 s * 30 fps.
    assert abs(stop["last_frame"] - 18.0 * 30) <= 2
    assert_units_chain(units)
    marker = u.evidence.events("marker")[0]
    assert marker["at_mono_us"] == 12_000_000
    # The frame named is the one captured at the press, not at the release that completed it.
    assert abs(marker["frame"] - 12.0 * 30) <= 1
    assert "haptic:marker" in u.haptic.history
    assert u.led.history[-1] == "led:buffering"
    assert "led:recording" in u.led.history


def test_segments_are_valid_ts_and_cut_on_keyframes() -> None:
    u = Unit(make_profile(segment_s=3.0, pre_event_s=2.0))
    u.run_until(5.0)
    u.double_press(5.0)
    u.hold("event", 10.0)
    u.run_until(14.0)
    units = u.evidence.units()
    segments = sorted({x.meta.segment for x in units})
    assert len(segments) >= 3
    total = 0
    for s in segments:
        seg_units = [x for x in units if x.meta.segment == s]
        whole = b"".join(x.payload for x in seg_units)
        assert demux_count(whole) == sum(x.meta.frame_count for x in seg_units)
        assert u.frames[seg_units[0].meta.first_frame].is_keyframe
        total += demux_count(whole)
    stop = u.evidence.events("record_stop")[0]
    assert total == stop["last_frame"] - units[0].meta.first_frame + 1


def test_pre_event_zero_keeps_press_frame() -> None:
    u = Unit(make_profile(pre_event_s=0.0))
    u.run_until(10.5)
    u.double_press(10.5)
    start = u.evidence.events("record_start")[0]
    assert start["first_frame"] == 300  # the keyframe at 10.0 s, at or before the press
    assert start["pre_event_captured_s"] == pytest.approx(0.5)


def test_short_history_drains_from_first_keyframe() -> None:
    u = Unit(make_profile(pre_event_s=30.0))
    u.run_until(3.0)
    u.double_press(3.0)
    assert u.evidence.events("record_start")[0]["first_frame"] == 0


def test_reminders_while_recording() -> None:
    u = Unit(make_profile(reminder_interval_s=2.0))
    u.run_until(2.0)
    u.double_press(2.0)
    u.run_until(9.0)
    assert u.haptic.history.count("haptic:reminder") == 3  # at ~4.3, 6.3, 8.3 s


def test_low_battery_then_critical_stops_recording() -> None:
    battery = Battery(50.0)
    u = Unit(make_profile(low_battery_pct=15.0, critical_battery_pct=5.0), battery=battery)
    u.run_until(2.0)
    u.double_press(2.0)
    u.run_until(4.0)
    battery.pct = 10.0
    u.run_until(6.0)
    battery.pct = 4.0
    u.run_until(8.0)
    assert [k for k in u.evidence.kinds() if k != "unit"] == [
        "buffering",
        "record_start",
        "low_battery",
        "record_stop",
    ]
    assert u.evidence.events("record_stop")[0]["trigger"] == "low_battery"
    assert "tone:low-battery" in u.buzzer.history
    assert u.state() is State.BUFFERING
    u.double_press(9.0)  # refused while critical
    assert u.state() is State.BUFFERING
    assert u.haptic.history[-1] == "haptic:refused"


def test_storage_full_stops_and_blocks_until_space() -> None:
    u = Unit(make_profile(pre_event_s=1.0), free=200_000)
    u.run_until(2.0)
    u.double_press(2.0)
    u.run_until(30.0)
    assert u.state() is State.FAULT
    kinds = [k for k in u.evidence.kinds() if k != "unit"]
    assert kinds[-2:] == ["storage_full", "record_stop"]
    full = u.evidence.events("storage_full")[0]
    assert full["recording"] == "rec0"
    stop = u.evidence.events("record_stop")[0]
    assert stop["trigger"] == "storage_full"
    assert stop["units"] == len(u.evidence.units())
    assert all(e[1][2] for e in u.evidence.entries[-2:])  # both used the reserve
    assert "led:fault" in u.led.history
    u.double_press(31.0)
    assert u.state() is State.FAULT
    assert len(u.evidence.events("record_start")) == 1
    u.evidence.free = 10**9  # space freed (offloaded)
    u.run_until(33.0)
    assert u.state() is State.BUFFERING
    u.double_press(40.0)
    assert u.state() is State.RECORDING
    assert u.evidence.events("record_start")[-1]["recording"] == "rec1"


def test_frame_gap_while_recording_is_an_event() -> None:
    u = Unit(make_profile(pre_event_s=1.0))
    u.run_until(2.0)
    u.double_press(2.0)
    u.run_until(5.0, skip={130, 131, 132})
    u.hold("event", 5.0)
    gap = u.evidence.events("frame_gap")
    assert gap == [
        {"recording": "rec0", "from_frame": 130, "to_frame": 132, "reason": "camera_drop"}
    ]
    units = u.evidence.units()
    assert sum(x.meta.frame_count for x in units) == (
        units[-1].meta.first_frame + units[-1].meta.frame_count - units[0].meta.first_frame - 3
    )
    # The unit is cut at the gap: one unit ends at 129, the next starts at 133.
    assert 130 in {x.meta.first_frame + x.meta.frame_count for x in units}
    assert 133 in {x.meta.first_frame for x in units}


def test_stealth_toggle_and_refusal() -> None:
    u = Unit(make_profile())
    u.run_until(1.0)
    u.hold("function", 1.0)
    assert u.evidence.events("stealth") == [{"on": True}]
    assert u.recorder.status()["stealth"] is True
    n_led = len(u.led.history)
    u.double_press(6.0)
    assert u.state() is State.RECORDING
    assert len(u.led.history) == n_led  # nothing shown in stealth
    u.hold("function", 8.0)
    assert u.evidence.events("stealth")[-1] == {"on": False}
    assert u.led.history[-1] == "led:recording"

    v = Unit(make_profile(stealth_allowed=False))
    v.run_until(1.0)
    v.hold("function", 1.0)
    assert v.evidence.events("stealth") == []
    assert v.haptic.history[-1] == "haptic:refused"


def test_gnss_time_steps_clock_and_track_is_attached() -> None:
    gnss = Gnss()
    u = Unit(make_profile(gnss_interval_s=2.0), gnss=gnss)
    u.run_until(1.0)
    true_utc = u.clock.utc_us() + 5_000_000
    gnss.pending.append(
        GnssFix(true_utc, 51.5, -0.1, 20.0, FixQuality.GPS, 8, 0.9, u.clock.monotonic_us())
    )
    u.run_until(2.0)
    step = u.evidence.events("clock_step")
    assert len(step) == 1 and step[0]["source"] == "gnss"
    assert step[0]["new_utc_us"] - step[0]["old_utc_us"] == pytest.approx(5_000_000, abs=40_000)
    assert u.clock.source is ClockSource.GNSS
    u.double_press(3.0)
    for t in range(4, 10):
        gnss.pending.append(
            GnssFix(u.clock.utc_us(), 51.5, -0.1, 20.0, FixQuality.GPS, 8, 0.9, t * 1_000_000)
        )
        u.run_until(float(t))
    u.hold("event", 10.0)
    with_fix = [x for x in u.evidence.units() if x.meta.gnss]
    assert 2 <= len(with_fix) <= 5
    assert with_fix[0].meta.gnss is not None and with_fix[0].meta.gnss["lat_deg"] == 51.5
    assert len(u.evidence.events("clock_step")) == 1
    assert u.recorder.status()["gnss"] is not None


def test_shutdown_while_recording_stops_cleanly() -> None:
    u = Unit(make_profile())
    u.run_until(2.0)
    u.double_press(2.0)
    u.run_until(3.5)
    u.recorder.shutdown("power_button")
    kinds = [k for k in u.evidence.kinds() if k != "unit"]
    assert kinds == ["buffering", "record_start", "record_stop", "shutdown"]
    assert u.evidence.events("record_stop")[0]["trigger"] == "shutdown"
    assert u.evidence.units()[-1].meta.final
    assert u.state() is State.OFF


def test_trigger_line_starts_recording() -> None:
    u = Unit(make_profile())
    u.run_until(6.0)
    u.edge("trigger", True, 6.0)
    u.run_until(6.1)
    assert u.state() is State.RECORDING
    assert u.evidence.events("record_start")[0]["trigger"] == "trigger"


def test_pre_event_audio_off_holds_none() -> None:
    from hal.types import AudioChunk

    u = Unit(make_profile(pre_event_audio=False))
    u.run_until(1.0)
    u.recorder.handle_audio(AudioChunk(b"\x01" * 100, 900_000, 20_000, "s16le", 48000, 1))
    assert u.recorder.status()["buffer_audio_chunks"] == 0


def test_status_line() -> None:
    u = Unit(make_profile(), battery=Battery(80.0))
    u.run_until(7.0)
    s = u.recorder.status()
    assert s["state"] == "buffering"
    assert 5.0 <= s["buffer_s"] <= 6.1
    assert s["recording"] is None
    assert s["battery"] == {"level_pct": 80.0, "charging": False}


def test_io_error_while_sealing_stops_and_keeps_what_was_sealed() -> None:
    u = Unit(make_profile(pre_event_s=1.0))
    u.run_until(2.0)
    u.double_press(2.0)
    u.run_until(5.0)
    sealed = len(u.evidence.units())
    u.evidence.unit_error = OSError(5, "Input/output error")
    u.run_until(7.0)
    assert "led:fault" in u.led.history
    # The store still reports free space, so the unit returns to buffering after its check.
    assert u.state() is State.BUFFERING
    stop = u.evidence.events("record_stop")[0]
    assert stop["trigger"] == "storage_error"
    assert stop["units"] == sealed == len(u.evidence.units())


def test_full_store_refusing_even_events_does_not_break_handlers() -> None:
    u = Unit(make_profile(pre_event_s=1.0))
    u.run_until(2.0)
    u.double_press(2.0)
    u.run_until(3.0)
    u.evidence.reserve = 0
    u.evidence.free = 0  # neither units nor events fit any more
    u.press("function", 3.5)  # the marker cannot be written: logged, not raised
    u.run_until(6.0)
    assert u.state() is State.FAULT
    assert u.recorder.events_lost >= 1


def test_an_event_the_sealer_refuses_is_logged_and_the_recording_goes_on() -> None:
    u = Unit(make_profile(pre_event_s=1.0))
    u.run_until(2.0)
    u.double_press(2.0)
    u.run_until(3.0)
    u.evidence.event_error = RecordError("event 'marker' would not verify: test")
    u.press("function", 3.5)  # a bug in a marker's fields must not cost the recording
    u.run_until(4.5)
    u.evidence.event_error = None
    sealed = len(u.evidence.units())
    u.run_until(7.0)
    assert u.recorder.events_lost >= 1
    assert u.state() is State.RECORDING
    assert len(u.evidence.units()) > sealed


def test_a_unit_whose_metadata_the_sealer_refuses_is_sealed_without_it() -> None:
    u = Unit(make_profile(pre_event_s=1.0))
    u.run_until(2.0)
    u.evidence.refuse_unit_extra = True  # every segment's first unit carries extra.streams
    u.double_press(2.0)
    u.run_until(5.0)
    assert u.state() is State.RECORDING
    units = u.evidence.units()
    assert units and all(not x.meta.extra and x.meta.gnss is None for x in units)
    faults = u.evidence.events("fault")
    assert faults and faults[0]["code"] == "unit_metadata_refused"


def test_press_on_a_nearly_full_store_is_refused_before_record_start() -> None:
    u = Unit(make_profile(pre_event_s=1.0), free=10**9)
    u.run_until(3.0)
    u.evidence.free = 100  # far less than the buffered pre-roll needs
    u.double_press(3.0)
    u.run_until(4.0)
    assert u.state() is State.FAULT
    assert u.evidence.events("record_start") == []
    (full,) = u.evidence.events("storage_full")
    assert full["recording"] is None
    assert "haptic:recording-start" not in u.haptic.history, "no false 'recording' feedback"
    assert "led:fault" in u.led.history
    u.evidence.free = 10**9  # offloaded at the dock
    u.run_until(6.0)
    assert u.state() is State.BUFFERING
