"""The feedback vocabulary: distinct named patterns, what each indicator plays, and stealth."""

from __future__ import annotations

import pytest

from recorder.feedback import PATTERNS, Feedback, FeedbackController, all_patterns
from tests.unit.fakes import RecordingIndicator


def controller() -> tuple[
    FeedbackController, RecordingIndicator, RecordingIndicator, RecordingIndicator
]:
    led, haptic, buzzer = (
        RecordingIndicator("led"),
        RecordingIndicator("haptic"),
        RecordingIndicator("buzzer"),
    )
    return FeedbackController(led, haptic, buzzer), led, haptic, buzzer


def test_every_feedback_has_a_pattern_and_names_are_unique_and_prefixed() -> None:
    assert set(PATTERNS) == set(Feedback)
    patterns = all_patterns()
    names = [p.name for p in patterns]
    assert len(names) == len(set(names))
    for fb, sig in PATTERNS.items():
        for prefix, p in (("led:", sig.led), ("haptic:", sig.haptic), ("tone:", sig.tone)):
            if p is not None:
                assert p.name.startswith(prefix), fb
                assert p.steps, fb
    # Same name means the same pattern everywhere it is used.
    by_name: dict[str, object] = {}
    for sig in PATTERNS.values():
        for p in (sig.led, sig.haptic, sig.tone):
            if p is not None:
                assert by_name.setdefault(p.name, p) == p


def test_led_patterns_repeat_and_one_shots_do_not() -> None:
    for sig in PATTERNS.values():
        if sig.led is not None:
            assert sig.led.repeat
        for p in (sig.haptic, sig.tone):
            assert p is None or not p.repeat


def test_record_cycle_history() -> None:
    fc, led, haptic, buzzer = controller()
    for fb in (Feedback.BUFFERING, Feedback.RECORDING_START, Feedback.MARKER, Feedback.STOP):
        fc.show(fb)
    assert led.history == ["led:buffering", "led:recording", "led:buffering"]
    assert haptic.history == ["haptic:recording-start", "haptic:marker", "haptic:stop"]
    assert buzzer.history == ["tone:recording-start", "tone:marker", "tone:stop"]


def test_buffering_blink_is_slow() -> None:
    led = PATTERNS[Feedback.BUFFERING].led
    assert led is not None and led.steps == ((100, 2900),)


def test_stealth_suppresses_everything_after_one_confirmation() -> None:
    fc, led, haptic, buzzer = controller()
    fc.show(Feedback.BUFFERING)
    fc.show(Feedback.STEALTH_ON)
    assert haptic.history == ["haptic:stealth-on"]
    assert led.history[-1] == "off" and buzzer.history[-1] == "off"
    before = (len(led.history), len(haptic.history), len(buzzer.history))
    for fb in (Feedback.RECORDING_START, Feedback.REMINDER, Feedback.MARKER, Feedback.FAULT):
        fc.show(fb)
    assert (len(led.history), len(haptic.history), len(buzzer.history)) == before
    fc.show(Feedback.STEALTH_OFF)
    assert haptic.history[-1] == "haptic:stealth-off"
    assert led.history[-1] == "led:fault"  # the steady state reached while dark


def test_stealth_twice_is_idempotent() -> None:
    fc, _led, haptic, _ = controller()
    fc.set_stealth(True)
    fc.set_stealth(True)
    assert haptic.history == ["haptic:stealth-on"]


def test_low_battery_does_not_hide_the_recording_light() -> None:
    fc, led, _, buzzer = controller()
    fc.show(Feedback.RECORDING_START)
    fc.show(Feedback.LOW_BATTERY)
    assert led.history == ["led:recording"]
    assert buzzer.history[-1] == "tone:low-battery"
    fc2, led2, _, _ = controller()
    fc2.show(Feedback.BUFFERING)
    fc2.show(Feedback.LOW_BATTERY)
    assert led2.history[-1] == "led:low-battery"


@pytest.mark.parametrize("fb", list(Feedback))
def test_each_feedback_plays_its_table_row(fb: Feedback) -> None:
    fc, led, haptic, buzzer = controller()
    fc.show(fb)
    sig = PATTERNS[fb]
    if fb in (Feedback.STEALTH_ON, Feedback.STEALTH_OFF):
        return  # covered by the stealth tests
    assert led.history == ([sig.led.name] if sig.led else [])
    assert haptic.history == ([sig.haptic.name] if sig.haptic else [])
    assert buzzer.history == ([sig.tone.name] if sig.tone else [])


def test_table_in_docs_matches_code() -> None:
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "feedback.md").read_text()
    for p in all_patterns():
        assert f"`{p.name}`" in doc, p.name
