"""The recorder with a microphone, on fakes: units carry audio, the pre-event audio policy, and
mute as a signed event (function double press) that silences the track without breaking it."""

from __future__ import annotations

import io
import itertools
from typing import Any

import av
import numpy as np

from hal.types import AudioChunk
from recorder.state_machine import State
from tests.unit.test_recorder_core import Unit, make_profile

RATE = 48_000
CHUNK_US = 20_000
LEVEL = 0.25  # a steady tone: any decoded stretch is loud unless muted


def tone_chunk(n: int) -> AudioChunk:
    samples = RATE * CHUNK_US // 1_000_000
    t = (np.arange(samples) + n * samples) / RATE
    pcm = (LEVEL * 32767 * np.sin(2 * np.pi * 440 * t)).astype("<i2")
    return AudioChunk(pcm.tobytes(), n * CHUNK_US, CHUNK_US, "pcm_s16le", RATE, 1)


class AudioUnit(Unit):
    """``Unit`` plus a microphone: each chunk is handed over when its last sample is captured."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        self.next_chunk = 0
        super().__init__(*args, **kw)

    def run_until(self, t_s: float, skip: set[int] | None = None) -> None:
        end_us = round(t_s * 1e6)
        while True:
            frame_us = self.frames[self.next].pts_us
            chunk_end_us = (self.next_chunk + 1) * CHUNK_US
            if min(frame_us, chunk_end_us) > end_us:
                return
            if chunk_end_us <= frame_us:
                self.clock.mono_us = chunk_end_us
                self.recorder.handle_audio(tone_chunk(self.next_chunk))
                self.next_chunk += 1
            else:
                super().run_until(frame_us / 1e6, skip)

    def function_double(self, t_s: float) -> None:
        self.press("function", t_s)
        self.press("function", t_s + 0.27)


def recording_ts(u: Unit) -> bytes:
    return b"".join(s.payload for s in u.evidence.units())


def audio_levels(ts: bytes) -> list[tuple[float, float]]:
    """(time relative to the first video frame in s, peak level) of every decoded audio frame."""
    with av.open(io.BytesIO(ts), mode="r", format="mpegts") as c:
        video0 = min(
            float(p.pts * p.time_base)
            for p in c.demux(video=0)
            if p.size and p.pts is not None and p.time_base is not None
        )
    out: list[tuple[float, float]] = []
    with av.open(io.BytesIO(ts), mode="r", format="mpegts") as c:
        for f in c.decode(audio=0):
            assert f.pts is not None and f.time_base is not None
            out.append((float(f.pts * f.time_base) - video0, float(np.abs(f.to_ndarray()).max())))
    return out


def record(u: AudioUnit, press_s: float = 6.0, stop_s: float = 9.0) -> None:
    u.run_until(press_s)
    u.double_press(press_s)
    u.hold("event", stop_s)
    u.run_until(stop_s + 4.0)


def test_units_carry_audio_and_pre_roll_has_none_by_default() -> None:
    u = AudioUnit(make_profile(pre_event_s=2.0))
    record(u)
    start = u.evidence.events("record_start")[0]
    assert start["pre_event_audio"] is False
    units = u.evidence.units()
    # Every unit from the press on carries sound (the final one may be a single frame's worth
    # of video whose audio has not been captured yet when the stop seals it).
    assert units and all(s.meta.audio for s in units[:-1] if not s.meta.pre_event)
    assert not any(s.meta.audio for s in units if s.meta.end_pts_us <= 6_000_000)
    first_frame_s = units[0].meta.start_pts_us / 1e6
    levels = audio_levels(recording_ts(u))
    first_audio_s = levels[0][0] + first_frame_s
    # No sound from before the press (one AAC priming frame of 21.3 ms may precede it).
    assert first_audio_s >= 6.0 - 0.022
    assert u.recorder.status()["buffer_audio_chunks"] == 0


def test_pre_event_audio_starts_with_the_first_pre_roll_frame() -> None:
    u = AudioUnit(make_profile(pre_event_s=2.0, pre_event_audio=True))
    u.run_until(5.9)
    assert u.recorder.status()["buffer_audio_chunks"] > 0
    record(u)
    units = u.evidence.units()
    assert units[0].meta.pre_event and units[0].meta.audio
    levels = audio_levels(recording_ts(u))
    assert abs(levels[0][0]) <= 0.022  # from the pre-roll's first frame (priming aside)


def test_mute_is_a_signed_event_and_silences_the_track() -> None:
    u = AudioUnit(make_profile(pre_event_s=0.0))
    u.run_until(3.0)
    u.double_press(3.0)
    u.function_double(5.0)
    assert u.recorder.status()["muted"] is True
    u.function_double(7.0)
    assert u.recorder.status()["muted"] is False
    u.hold("event", 9.0)
    u.run_until(13.0)
    mutes = u.evidence.events("mute")
    assert [m["on"] for m in mutes] == [True, False]
    assert all(m["recording"] == "rec0" for m in mutes)
    assert [m["press_mono_us"] for m in mutes] == [5_000_000, 7_000_000]
    assert "haptic:muted" in u.haptic.history and "haptic:unmuted" in u.haptic.history
    assert u.evidence.events("marker") == []  # a double press is not two markers
    first_frame_s = u.evidence.units()[0].meta.start_pts_us / 1e6
    levels = [(t + first_frame_s, peak) for t, peak in audio_levels(recording_ts(u))]
    # The gesture completes on the second press (+0.27 s); silence until the unmute completes.
    muted = [peak for t, peak in levels if 5.4 < t < 7.2]
    # (Segments start at 3, 7 and 11 s: each begins with its encoder's quiet priming frame.)
    loud = [peak for t, peak in levels if 3.4 < t < 5.1 or 7.4 < t < 10.9]
    assert muted and max(muted) < 0.01
    assert loud and min(loud) > LEVEL / 2
    # The track stays continuous through the mute: no hole in the audio timeline.
    times = [t for t, _ in levels]
    assert max(b - a for a, b in itertools.pairwise(times)) < 0.03


def test_mute_refused_while_buffering_and_where_not_allowed() -> None:
    u = AudioUnit(make_profile())
    u.run_until(3.0)
    u.function_double(3.0)
    u.run_until(4.0)
    assert u.evidence.events("mute") == []
    assert "haptic:refused" in u.haptic.history

    v = AudioUnit(make_profile(mute_allowed=False))
    v.run_until(3.0)
    v.double_press(3.0)
    v.function_double(5.0)
    v.run_until(6.0)
    assert v.evidence.events("mute") == []
    assert len(v.evidence.events("marker")) == 2  # without mute, function presses are markers


def test_stealth_does_not_mute_and_a_new_recording_starts_unmuted() -> None:
    u = AudioUnit(make_profile(pre_event_s=0.0))
    u.run_until(2.0)
    u.double_press(2.0)
    u.function_double(3.0)
    u.hold("event", 4.0)  # stop while muted: the stop ends the mute
    u.run_until(8.0)
    assert u.recorder.state is State.BUFFERING
    assert u.recorder.status()["muted"] is False
    u.double_press(8.0)
    u.hold("function", 9.0)  # stealth on
    assert u.recorder.stealth
    u.hold("event", 13.0)
    u.run_until(17.0)
    assert u.evidence.events("mute") == [
        {
            "on": True,
            "recording": "rec0",
            "press_mono_us": 3_000_000,
            "press_utc_us": u.evidence.events("mute")[0]["press_utc_us"],
        }
    ]
    second = [s for s in u.evidence.units() if s.meta.recording_id == "rec1"]
    ts = b"".join(s.payload for s in second)
    first_frame_s = second[0].meta.start_pts_us / 1e6
    stealthy = [p for t, p in audio_levels(ts) if 12.5 < t + first_frame_s < 15.5]
    assert stealthy and min(stealthy) > LEVEL / 2
