"""Audio end to end through `bwc sim`, `verify` and `export`: the exported MP4's audio clicks line
up with the frame stripe within one frame interval, the pre-event audio policy decides whether
there is sound before the press, and mute intervals reach `bwc verify` and the export metadata.

The simulated microphone clicks at every whole second of monotonic time and the camera starts at
monotonic 0, so the click at k s belongs with stripe frame k * FPS (docs/audio.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest

from simulator.stripe import STRIPE_HEIGHT_PX, read_stripe
from tests.integration.conftest import SMALL, Bwc, ProvisionedUnit, ScenarioWriter

FPS = 10
FRAME_S = 1 / FPS
PRESS_S = 4.0
MUTE_S, UNMUTE_S = 6.2, 7.6  # function double presses; the click at 7 s falls inside
CLICK_THRESHOLD = 0.4  # the bed is at 0.02 full scale, the click at 0.8


def video_frames(mp4: Path) -> list[tuple[float, int]]:
    """(presentation time in s, stripe number) of every decoded frame."""
    out: list[tuple[float, int]] = []
    with av.open(str(mp4)) as c:
        for f in c.decode(video=0):
            plane = f.planes[0]
            rows = np.frombuffer(memoryview(plane), dtype=np.uint8).reshape(-1, plane.line_size)
            assert f.pts is not None and f.time_base is not None
            out.append(
                (float(f.pts * f.time_base), read_stripe(rows[:STRIPE_HEIGHT_PX, : f.width]))
            )
    return out


def audio_onsets(mp4: Path) -> tuple[float | None, list[float]]:
    """(time of the first audio sample, onset time of every click) in the MP4's timeline."""
    first: float | None = None
    onsets: list[float] = []
    with av.open(str(mp4)) as c:
        if not c.streams.audio:
            return None, []
        for f in c.decode(audio=0):
            assert f.pts is not None and f.time_base is not None
            t0 = float(f.pts * f.time_base)
            first = t0 if first is None else first
            loud = np.nonzero(np.abs(f.to_ndarray()[0]) > CLICK_THRESHOLD)[0]
            for i in loud:
                t = t0 + i / f.sample_rate
                if not onsets or t - onsets[-1] > 0.5:
                    onsets.append(t)
    return first, onsets


@pytest.mark.parametrize("pre_event_audio", [False, True])
def test_audio_sync_policy_and_mute(
    bwc: Bwc, unit: ProvisionedUnit, scenario: ScenarioWriter, tmp_path: Path, pre_event_audio: bool
) -> None:
    s = scenario(
        13.0,
        {"at_s": PRESS_S, "action": "double_press", "button": "event"},
        {"at_s": MUTE_S, "action": "double_press", "button": "function"},
        {"at_s": UNMUTE_S, "action": "double_press", "button": "function"},
        {"at_s": 9.0, "action": "hold", "button": "event", "hold_s": 3.2},
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
        "recorder.pre_event_s=2",
        "--set",
        "recorder.segment_s=3",
        "--set",
        f"recorder.pre_event_audio={str(pre_event_audio).lower()}",
    )
    store = unit.device / "evidence"
    report = bwc.json("verify", *unit.trust, store, "--json")
    assert report["intact"] is True
    (rec,) = report["recordings"]
    assert len(rec["mute"]) == 1
    mute = rec["mute"][0]
    assert mute["from_utc_us"] < mute["to_utc_us"]
    assert (mute["to_utc_us"] - mute["from_utc_us"]) / 1e6 == pytest.approx(
        UNMUTE_S - MUTE_S, abs=0.1
    )
    assert "  mute " in bwc("verify", *unit.trust, store).stdout

    out = tmp_path / "out"
    bwc("export", *unit.trust, store, "--key", unit.agency_key, "--out", out)
    (meta_path,) = out.glob("*.json")
    meta = json.loads(meta_path.read_text())
    assert meta["audio"]["pre_event_audio"] is pre_event_audio
    assert meta["audio"]["mute"] == rec["mute"]
    assert meta["audio"]["units_with_audio"] >= 1
    assert meta["audio_packets"] > 0

    mp4 = meta_path.with_suffix(".mp4")
    frames = video_frames(mp4)
    first_audio_s, onsets = audio_onsets(mp4)
    assert first_audio_s is not None
    whole = {n // FPS: t for t, n in frames if n % FPS == 0}  # second -> that frame's time
    press_frame_t = next(t for t, n in frames if n == round(PRESS_S * FPS))

    # Sync: every click sits on the frame of its second, within one frame interval.
    matched: dict[int, float] = {}
    for t in onsets:
        k, frame_t = min(whole.items(), key=lambda kv: abs(kv[1] - t))
        assert abs(t - frame_t) < FRAME_S, f"click at {t:.3f}s is {t - frame_t:+.3f}s off frame"
        matched[k] = t - frame_t
    # Clicks after the start, apart from the muted one (7 s), are all there.
    assert {5, 6, 8, 9, 10, 11} <= set(matched)
    assert 7 not in matched, "muted: the click at 7 s must be silent"

    if pre_event_audio:
        assert {2, 3} <= set(matched), "pre-roll audio (from the first frame) is missing"
        assert first_audio_s <= frames[0][0] + FRAME_S
    else:
        assert not {2, 3, 4} & set(matched), "audio from before the press was recorded"
        assert first_audio_s >= press_frame_t - 0.025  # one AAC frame of encoder priming
