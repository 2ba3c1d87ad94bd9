"""The export is exactly what happened, over the matrix users hit (issue #13):
pre_event_s in {0, 7, 30, 120} x pre_event_audio in {false, true} x segment_s in {2, 60}.

Each case boots a copy of one provisioned unit, records through `bwc sim` (small frames, 5 fps,
simulated time), verifies and exports through `bwc`, then reads the MP4 and the sealed TS back:
an audio stream whenever the recording had sound (the simulated microphone always has), every
click within one frame of the stripe frame of its second, the stripe contiguous, every frame
step exactly one frame interval (MP4 and sealed TS, across segment boundaries and the
pre-roll/recording seam), the AAC packets one unbroken run, and the JSON's times in ISO form.
The one slow case is the shipped profile itself (640x480 at 30 fps, 30 s pre-event, no
pre-event audio, 60 s segments). Each case prints the A/V offset and the largest frame step.
"""

from __future__ import annotations

import io
import itertools
import json
import re
import shutil
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import pytest

from evidence.keys import load_agency_private
from evidence.opener import open_store
from evidence.verify import load_trusted_key
from tests.integration.conftest import SMALL, Bwc, ProvisionedUnit, provision_unit, write_scenario
from tests.integration.test_audio_e2e import audio_onsets, video_frames

FPS = 5
DEFAULT_FPS = 30  # configs/sim.toml
RECORD_S = 4.5  # from the press to the start of the stop hold
HOLD_S = 3.2
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
AAC_FRAME = 1024
RATE = 48_000


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> ProvisionedUnit:
    """One provisioned unit; every case boots its own copy (a unit's next boot is a new run)."""
    return provision_unit(tmp_path_factory.mktemp("template"))


def sealed_ts_steps(unit: ProvisionedUnit) -> tuple[set[Fraction], set[int], int]:
    """(video frame steps in s, AAC packet steps in samples, segments) over the sealed TS of
    the recording, segment after segment, read from the decrypted units themselves."""
    key = load_agency_private(unit.agency_key)
    (rec,) = list(open_store(unit.device / "evidence", key, _trust(unit)))
    video: list[Fraction] = []
    audio: list[int] = []
    for seg in rec.segments:
        with av.open(io.BytesIO(seg.plaintext()), mode="r", format="mpegts") as c:
            for p in c.demux():
                if not p.size or p.pts is None or p.time_base is None:
                    continue
                t = Fraction(p.pts) * p.time_base
                if p.stream.type == "video":
                    video.append(t)
                elif p.stream.type == "audio":
                    audio.append(round(t * RATE))
    vsteps = {b - a for a, b in itertools.pairwise(video)}
    asteps = {b - a for a, b in itertools.pairwise(audio)}
    return vsteps, asteps, len(rec.segments)


def _trust(unit: ProvisionedUnit) -> list[bytes]:
    return [load_trusted_key(unit.device / "identity" / "device-pub.pem")]


def run_case(
    tmp_path: Path,
    template: ProvisionedUnit,
    pre_event_s: float,
    audio: bool,
    segment_s: float,
    *,
    default_profile: bool = False,
    record_s: float = RECORD_S,
) -> dict[str, Any]:
    """One recording through `bwc`, read back; returns the figures measured.

    ``default_profile``: the shipped simulated profile's frame size and rate (640x480 at 30 fps)
    instead of small frames at ``FPS``.
    """
    fps = DEFAULT_FPS if default_profile else FPS
    frame_s = Fraction(1, fps)
    size = [] if default_profile else [*SMALL, "--set", f"camera.fps={FPS}"]
    device = tmp_path / "unit"
    shutil.copytree(template.device, device)
    unit = ProvisionedUnit(device, template.agency_key, template.agency_pub)
    bwc = Bwc(tmp_path)
    press_s = max(3.0, pre_event_s + 2.0)  # the buffer is full at the press
    scenario = write_scenario(
        tmp_path / "s.toml",
        press_s + record_s + HOLD_S + 1.5,
        {"at_s": press_s, "action": "double_press", "button": "event"},
        {"at_s": press_s + record_s, "action": "hold", "button": "event", "hold_s": HOLD_S},
    )
    bwc(
        "sim",
        scenario,
        "--device",
        device,
        *size,
        "--set",
        f"recorder.pre_event_s={pre_event_s}",
        "--set",
        f"recorder.pre_event_audio={str(audio).lower()}",
        "--set",
        f"recorder.segment_s={segment_s}",
    )
    store = device / "evidence"
    trust = ("--trust", device / "identity" / "device-pub.pem")
    report = bwc.json("verify", store, *trust, "--json")
    assert report["intact"] is True
    (rec,) = report["recordings"]
    assert ISO.match(rec["start_utc"]) and ISO.match(rec["end_utc"]) and ISO.match(rec["press_utc"])
    out = tmp_path / "out"
    bwc("export", store, "--key", unit.agency_key, "--out", out, *trust)
    (meta_path,) = out.glob("*.json")
    meta = json.loads(meta_path.read_text())
    mp4 = meta_path.with_suffix(".mp4")

    # -- the JSON's times: named, ISO, consistent --------------------------------------------
    times = meta["times"]
    for name in ("first_frame", "press", "record_start", "stop", "last_frame", "video_end"):
        assert ISO.match(times[f"{name}_utc"]), name
    assert times["first_frame_utc_us"] <= times["press_utc_us"] <= times["record_start_utc_us"]
    assert times["last_frame_utc_us"] < times["video_end_utc_us"]
    assert times["last_frame_utc_us"] <= times["stop_utc_us"] + 1  # no frame after the stop
    assert times["pre_event_s"] == pre_event_s
    captured = times["pre_event_captured_s"]
    assert captured == pytest.approx(
        (times["press_utc_us"] - times["first_frame_utc_us"]) / 1e6, abs=1e-3
    )
    assert pre_event_s <= captured <= pre_event_s + 1.0 + 1e-6  # at most one extra GOP
    assert ISO.match(meta["start_utc"]) and meta["start_utc_us"] == times["record_start_utc_us"]

    # -- streams: sound in every export ----------------------------------------------------
    with av.open(str(mp4)) as c:
        assert len(c.streams.video) == 1
        assert len(c.streams.audio) == 1, "the recording had sound; the export has no audio"
        assert c.streams.audio[0].codec_context.sample_rate == RATE
    assert meta["audio_packets"] > 0 and meta["audio"]["units_with_audio"] > 0
    assert meta["streams"]["audio"]["sample_rate_hz"] == RATE  # declared by the signed units

    # -- video: stripe contiguous, every step one frame interval --------------------------
    frames = video_frames(mp4)
    numbers = [n for _, n in frames]
    press_frame = round(press_s * fps)
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), "stripe broken"
    assert numbers[0] <= press_frame - round(pre_event_s * fps)
    assert numbers[-1] >= press_frame + round(record_s * fps)
    steps = [
        Fraction(b[0]).limit_denominator(90_000) - Fraction(a[0]).limit_denominator(90_000)
        for a, b in itertools.pairwise(frames)
    ]
    max_step = max(steps)
    assert set(steps) == {frame_s}, f"frame steps {sorted(set(steps))}"
    assert meta["timeline"]["video_max_step_us"] == round(1e6 / fps)

    # -- audio: clicks on their frames, policy before the press ---------------------------
    first_audio_s, onsets = audio_onsets(mp4)
    assert first_audio_s is not None
    whole = {n // fps: t for t, n in frames if n % fps == 0}
    offsets: dict[int, float] = {}
    for t in onsets:
        k, frame_t = min(whole.items(), key=lambda kv: abs(kv[1] - t))
        offsets[k] = t - frame_t
    assert offsets, "no click found"
    worst = max(abs(v) for v in offsets.values())
    assert worst < float(frame_s), f"A/V offset {worst * 1000:.1f} ms"
    first_s, press_sec = numbers[0] // fps + 1, int(press_s)
    after = set(range(press_sec + 1, int(press_s + record_s)))
    assert after <= set(offsets), f"clicks after the press missing: {after - set(offsets)}"
    before = set(range(first_s, press_sec))
    if audio:
        assert before <= set(offsets), f"pre-roll clicks missing: {before - set(offsets)}"
    else:
        assert not before & set(offsets), "sound from before the press was exported"

    # -- the sealed TS itself: one interval per frame, one unbroken AAC run ----------------
    vsteps, asteps, segments = sealed_ts_steps(unit)
    assert vsteps == {frame_s}, f"sealed TS frame steps {sorted(vsteps)}"
    assert asteps == {AAC_FRAME}, f"sealed TS AAC steps {sorted(asteps)}"
    if segment_s == 2:
        assert segments >= 3
    return {
        "av_offset_ms_max": round(float(worst) * 1000, 2),
        "max_frame_step_ms": float(max_step * 1000),
        "segments": segments,
        "pre_event_captured_s": captured,
    }


CASES = [
    (pre, audio, seg)
    for pre in (0.0, 7.0, 30.0, 120.0)
    for audio in (False, True)
    for seg in (2.0, 60.0)
]


@pytest.mark.parametrize(("pre_event_s", "pre_event_audio", "segment_s"), CASES)
def test_export_matrix(
    tmp_path: Path,
    template: ProvisionedUnit,
    pre_event_s: float,
    pre_event_audio: bool,
    segment_s: float,
) -> None:
    figures = run_case(tmp_path, template, pre_event_s, pre_event_audio, segment_s)
    print(f"\nmatrix pre={pre_event_s} audio={pre_event_audio} segment={segment_s}: {figures}")


@pytest.mark.slow
def test_default_profile_export_plays_with_sound(tmp_path: Path, template: ProvisionedUnit) -> None:
    """The shipped profile as a new user runs it: 640x480 at 30 fps, 30 s pre-event buffer,
    no pre-event audio, 60 s segments. The export has sound, in sync, on an unbroken timeline."""
    # 30 s of pre-roll and 32 s after the press: the 60 s segment boundary falls inside.
    figures = run_case(tmp_path, template, 30.0, False, 60.0, default_profile=True, record_s=32.0)
    assert figures["segments"] == 2
    print(f"\ndefault profile: {figures}")
