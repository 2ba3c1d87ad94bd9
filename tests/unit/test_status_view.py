"""The officer's view: a pure rendering of a status snapshot, checked as text (no terminal)."""

from __future__ import annotations

from dataclasses import replace

from firmware.status_view import (
    RECENT_US,
    Notice,
    OffloadView,
    Signal,
    StatusSnapshot,
    StatusTracker,
    current_signals,
    describe_pattern,
    led_lit,
    status_text,
)
from offload.runner import OffloadProgress
from recorder.feedback import Feedback

BASE = StatusSnapshot(
    device_id="CAM-7",
    state="buffering",
    utc_us=1_767_258_000_000_000,
    buffer_s=12.5,
    pre_event_s=30.0,
    battery_pct=80.0,
    gnss=(51.5074, -0.1278, 9),
    signals=(Signal("led", "led:buffering", True),),
    keys="[r] record [q] power off",
)


def test_buffering_shows_the_filling_buffer_led_gnss_battery_and_keys() -> None:
    text = status_text(BASE)
    assert "CAM-7" in text and "2026-01-01 09:00:00Z" in text
    assert "BUFFERING" in text and "pre-event buffer 12.5 of 30 s" in text
    assert "led:buffering (blink 100 ms every 3 s)" in text
    assert "51.50740, -0.12780 (9 satellites)" in text
    assert "80%" in text and "LOW" not in text
    assert "[r] record [q] power off" in text


def test_recording_shows_elapsed_time_pre_event_and_markers_not_an_empty_buffer() -> None:
    snap = replace(
        BASE,
        state="recording",
        buffer_s=0.0,
        recording_id="0123456789abcdef",
        recording_elapsed_s=83.4,
        pre_event_captured_s=30.2,
        markers=2,
        signals=(
            Signal("led", "led:recording"),
            Signal("haptic", "haptic:marker"),
            Signal("tone", "tone:marker"),
        ),
    )
    text = status_text(snap)
    assert "REC  00:01:23 since the press, plus 30.2 s from before it" in text
    assert "2 markers" in text and "id 01234567" in text
    assert "buffer" not in text, "the handed-over RAM buffer is not the recording's figure"
    assert "● led:recording (solid)" in text
    assert "≋ haptic:marker (80 ms)" in text and "♪ tone:marker (40 ms)" in text


def test_a_full_buffer_says_it_is_ready_rather_than_over_its_length() -> None:
    text = status_text(replace(BASE, buffer_s=31.3))
    assert "pre-event buffer full: 31.3 s ready" in text and "of 30 s" not in text


def test_a_press_is_not_shown_as_a_hold() -> None:
    assert "holding" not in status_text(replace(BASE, holds=(("event", 0.1),)))
    assert "holding" in status_text(replace(BASE, holds=(("event", 0.5),)))


def test_a_recording_waiting_for_its_first_keyframe_says_so() -> None:
    snap = replace(BASE, state="recording", recording_elapsed_s=0.2, pre_event_captured_s=None)
    assert "waiting for a keyframe" in status_text(snap)


def test_stop_hold_progress_is_a_bar_towards_hold_s() -> None:
    snap = replace(BASE, state="recording", recording_elapsed_s=5, holds=(("event", 1.5),))
    text = status_text(snap)
    assert "stop (event held) ██████████░░░░░░░░░░ 1.5 of 3 s" in text
    stealth = status_text(replace(BASE, holds=(("function", 3.4),)))
    assert "stealth (function held) ████████████████████ 3.0 of 3 s" in stealth


def test_stealth_mute_low_battery_and_lost_fix() -> None:
    snap = replace(
        BASE,
        state="recording",
        recording_elapsed_s=1,
        stealth=True,
        muted=True,
        battery_pct=9.6,
        charging=False,
        gnss=None,
        gnss_age_s=42.0,
    )
    text = status_text(snap)
    assert "STEALTH" in text and "all dark (stealth)" in text
    assert "MUTED" in text
    assert "10%" in text and "LOW" in text
    assert "no fix (last one 42 s ago)" in text
    assert "no fix yet" in status_text(replace(BASE, gnss=None))


def test_offload_progress_shows_files_bytes_rate_and_time_left_then_completion() -> None:
    busy = OffloadView(
        "file:///dock/CAM-7", 120, 310, 12_300_000, 30_100_000, rate_bps=4_200_000, eta_s=4.2
    )
    text = status_text(replace(BASE, docked=True, charging=True, offload=busy))
    assert "in the dock" in text and "charging" in text
    assert "120/310 files · 12.3 MB of 30.1 MB · 4.2 MB/s · 4 s left" in text
    done = replace(busy, files_done=310, bytes_done=30_100_000, complete=True)
    text = status_text(replace(BASE, docked=True, offload=done))
    assert "✓ offload complete: 310 files, 30.1 MB confirmed" in text
    failed = status_text(replace(BASE, docked=True, offload=replace(busy, failed=True)))
    assert "offload round failed; retrying" in failed


def test_notices_and_firmware_lines_are_shown() -> None:
    snap = replace(
        BASE,
        notices=(Notice("⚑", "marker 1 added (signed)", "bold"),),
        firmware=("firmware: committed slot B (1.2.0): the health check passed",),
    )
    text = status_text(snap)
    assert "⚑ marker 1 added (signed)" in text
    assert "committed slot B (1.2.0)" in text


def test_pattern_rhythms_in_words() -> None:
    assert describe_pattern("led:recording") == "solid"
    assert describe_pattern("led:offloading") == "blink 500 ms every 1 s"
    assert describe_pattern("haptic:recording-start") == "150-100-150 ms"
    assert describe_pattern("nope") == ""


def test_the_led_blinks_with_its_pattern_phase() -> None:
    # led:buffering: 100 ms on, 2900 ms off, repeating.
    assert led_lit("led:buffering", 0, 50_000)
    assert not led_lit("led:buffering", 0, 150_000)
    assert led_lit("led:buffering", 0, 3_050_000)
    assert led_lit("led:recording", 0, 123_456_789)
    assert not led_lit("off", 0, 0)


def test_haptic_and_tone_show_only_while_recent() -> None:
    histories = {
        "led": [(0, "led:buffering"), (1_000_000, "led:recording")],
        "haptic": [(1_000_000, "haptic:recording-start")],
        "tone": [(1_000_000, "tone:recording-start")],
    }
    now = current_signals(histories, 1_000_000 + RECENT_US - 1)
    assert [s.pattern for s in now] == [
        "led:recording",
        "haptic:recording-start",
        "tone:recording-start",
    ]
    later = current_signals(histories, 1_000_000 + RECENT_US)
    assert [s.pattern for s in later] == ["led:recording"]
    assert current_signals({}, 0) == (Signal("led", "off", False),)


def test_tracker_turns_feedback_into_notices_that_expire() -> None:
    tracker = StatusTracker()
    status: dict[str, object] = {"markers": 1, "gnss": None}
    tracker.observe(1_000_000, [Feedback.RECORDING_START], status)
    tracker.observe(2_000_000, [Feedback.MARKER, Feedback.BUFFERING], status)
    texts = [n.text for _, n in tracker.notices]
    assert texts == ["recording started", "marker 1 added (signed)"]
    status = {"recording_since_mono_us": 1_000_000, "pre_event_captured_s": 30.2, "markers": 1}
    tracker.observe(3_000_000, [Feedback.RECORDING_START], status)
    assert tracker.notices[-1][1].text == "recording started, with 30.2 s from before the press"
    tracker.observe(73_000_000, [], status)
    tracker.observe(73_100_000, [Feedback.STOP], {"recording_since_mono_us": None})
    assert tracker.notices[-1][1].text == (
        "recording stopped and sealed: 00:01:12 since the press plus 30.2 s before it, 1 marker"
    )
    tracker.observe(200_000_000, [], {})
    assert tracker.notices == [], "notices expire"


def test_tracker_reports_gnss_fix_changes_and_storage_faults() -> None:
    tracker = StatusTracker()
    tracker.observe(0, [], {"gnss": None})
    fix = {"lat_deg": 51.5, "lon_deg": -0.1, "satellites": 7, "age_s": 0.5}
    tracker.observe(1, [], {"gnss": fix})
    tracker.observe(2, [], {"gnss": dict(fix, age_s=30.0)})
    assert [n.text for _, n in tracker.notices] == ["GNSS fix acquired", "GNSS fix lost"]
    tracker.observe(3, [Feedback.FAULT], {"gnss": None, "storage_blocked": True})
    tracker.observe(4, [Feedback.FAULT], {}, "the dock's offload round failed (it retries)")
    assert tracker.offload_failed
    tracker.observe(5, [Feedback.OFFLOAD_COMPLETE], {})
    assert not tracker.offload_failed
    tracker.observe(6, [Feedback.FAULT], {})
    assert [n.text for _, n in tracker.notices] == [  # the newest MAX_NOTICES (4)
        "fault: storage full, recording stopped and sealed",
        "fault: the dock's offload round failed (it retries)",
        "offload complete: every file confirmed",
        "fault: see the unit log",
    ]


def test_offload_rate_and_time_left_are_measured_per_round() -> None:
    tracker = StatusTracker()
    first = OffloadProgress("file:///d", 0, 10, 0, 1_000_000)
    view = tracker.offload_view(first, wall_s=100.0, complete=False)
    assert view is not None and view.rate_bps is None and view.eta_s is None
    half = OffloadProgress("file:///d", 5, 10, 500_000, 1_000_000)
    view = tracker.offload_view(half, wall_s=100.5, complete=False)
    assert view is not None and view.rate_bps == 1_000_000 and view.eta_s == 0.5
    done = OffloadProgress("file:///d", 10, 10, 1_000_000, 1_000_000)
    view = tracker.offload_view(done, wall_s=101.0, complete=True)
    assert view is not None and view.complete
    again = OffloadProgress("file:///d", 0, 3, 0, 30_000)  # the next round starts afresh
    view = tracker.offload_view(again, wall_s=161.0, complete=True)
    assert view is not None and not view.complete and view.rate_bps is None
    assert tracker.offload_view(None, wall_s=170.0, complete=True) is None
