"""End to end through `bwc keys`, `provision`, `sim`, `verify` and `export`: the exported video's
frame stripe runs without a gap or duplicate from (press - pre_event_s) to the stop, across every
segment boundary, for several buffer lengths including 0 and 120 s."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simulator.h264 import read_frame_numbers
from tests.integration.conftest import SMALL, Bwc, ProvisionedUnit, ScenarioWriter

FPS = 10
GOP_S = 1.0


@pytest.mark.parametrize(
    ("pre_event_s", "press_s"),
    [(0.0, 5.0), (7.0, 12.0), pytest.param(120.0, 125.0, marks=pytest.mark.slow)],
)
def test_exported_stripe_is_contiguous_from_preroll_to_stop(
    bwc: Bwc,
    unit: ProvisionedUnit,
    scenario: ScenarioWriter,
    tmp_path: Path,
    pre_event_s: float,
    press_s: float,
) -> None:
    hold_at_s, hold_s = press_s + 9.3, 3.2
    s = scenario(
        hold_at_s + hold_s + 2,
        {"at_s": press_s, "action": "double_press", "button": "event"},
        {"at_s": hold_at_s, "action": "hold", "button": "event", "hold_s": hold_s},
    )
    bwc(
        "sim",
        s,
        "--device",
        unit.device,
        *SMALL,
        "--set",
        f"camera.fps={FPS}",
        "--set",
        f"camera.keyframe_interval_s={GOP_S}",
        "--set",
        f"recorder.pre_event_s={pre_event_s}",
        "--set",
        "recorder.segment_s=4",
    )
    report = bwc.json(
        "verify",
        unit.device / "evidence",
        "--json",
        "--trust",
        unit.device / "identity" / "device-pub.pem",
    )
    assert report["intact"] is True
    bwc(
        "export",
        unit.device / "evidence",
        "--key",
        unit.agency_key,
        "--out",
        tmp_path / "out",
        *unit.trust,
    )
    (meta_path,) = (tmp_path / "out").glob("*.json")
    meta = json.loads(meta_path.read_text())
    frames = read_frame_numbers(str(meta_path.with_suffix(".mp4")))

    assert frames == list(range(frames[0], frames[0] + len(frames))), "gap, duplicate or reorder"
    # The double press completes on the second press's edge, 270 ms after the first.
    press_frame = round((press_s + 0.27) * FPS)
    want_first = press_frame - round(pre_event_s * FPS)
    assert frames[0] <= want_first, "pre-roll shorter than configured"
    assert frames[0] >= want_first - round(GOP_S * FPS) - 1, "pre-roll longer than one extra GOP"
    stop_frame = round((hold_at_s + 3.0) * FPS)  # the hold is recognised after recorder.hold_s
    assert abs(frames[-1] - stop_frame) <= 1
    assert len(meta["segments"]) >= 3, "the recording must cross segment boundaries"
    assert meta["pre_event_captured_s"] >= pre_event_s
    assert meta["start_trigger"] == "double_press"
    assert meta["stop_trigger"] == "hold"
