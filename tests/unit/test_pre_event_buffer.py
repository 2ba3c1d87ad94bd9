"""The pre-event buffer's invariants, as properties over random streams."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hal.types import AudioChunk, EncodedFrame
from recorder.pre_event_buffer import PreEventBuffer


def stream(
    n: int, fps: int, gop: int, sizes: list[int], first_key: int = 0, start_pts_us: int = 0
) -> list[EncodedFrame]:
    out = []
    for i in range(n):
        size = sizes[i % len(sizes)]
        key = i >= first_key and (i - first_key) % gop == 0
        out.append(
            EncodedFrame(bytes([i % 251 + 1]) * size, start_pts_us + i * 1_000_000 // fps, key, i)
        )
    return out


params = st.fixed_dictionaries(
    {
        "fps": st.sampled_from([10, 25, 30]),
        "gop_frames": st.integers(1, 40),
        "pre_event_s": st.sampled_from([0.0, 0.5, 1.0, 2.5, 5.0]),
        "n": st.integers(1, 300),
        "sizes": st.lists(st.integers(1, 3000), min_size=1, max_size=7),
        "first_key": st.integers(0, 5),
    }
)


@settings(max_examples=150, deadline=None)
@given(p=params, press_back=st.integers(0, 30))
def test_time_bound_invariants_hold_after_every_push(p: dict[str, Any], press_back: int) -> None:
    fps, gop, pre_s = p["fps"], p["gop_frames"], float(p["pre_event_s"])
    buf = PreEventBuffer(pre_s, gop / fps, max_bytes=10**9)
    frames = stream(p["n"], fps, gop, p["sizes"], p["first_key"])
    gop_us = gop * 1_000_000 // fps + 1
    for i, f in enumerate(frames):
        buf.push(f)
        kept_pts = buf.keyframe_pts()
        if not kept_pts:
            assert all(not x.is_keyframe for x in frames[: i + 1])
            continue
        oldest = kept_pts[0]
        newest = f.pts_us
        first_key_pts = next(x.pts_us for x in frames if x.is_keyframe)
        # Never shorter than asked when the history exists; never longer than asked + one GOP.
        if newest - first_key_pts >= pre_s * 1e6:
            assert newest - oldest >= pre_s * 1e6
        assert newest - oldest <= pre_s * 1e6 + gop_us
    # Draining at a press: starts on a keyframe, at or before press - pre_event_s if possible.
    press_idx = max(0, len(frames) - 1 - press_back)
    press_us = frames[press_idx].pts_us
    oldest_kept = buf.keyframe_pts()[0] if buf.keyframe_pts() else None
    got = buf.drain_from(press_us)
    assert buf.frame_count == 0 and buf.nbytes == 0
    if oldest_kept is None:
        assert got == []
        return
    assert got[0].is_keyframe
    assert [f.frame_index for f in got] == list(
        range(got[0].frame_index, frames[-1].frame_index + 1)
    )
    assert [f.data for f in got] == [frames[f.frame_index].data for f in got]
    if oldest_kept <= press_us - pre_s * 1e6:
        assert press_us - got[0].pts_us >= pre_s * 1e6


@settings(max_examples=100, deadline=None)
@given(p=params, ceiling=st.integers(1, 60_000))
def test_byte_bound_holds_except_for_one_oversized_gop(p: dict[str, Any], ceiling: int) -> None:
    fps, gop = p["fps"], p["gop_frames"]
    buf = PreEventBuffer(float(p["pre_event_s"]), gop / fps, max_bytes=ceiling)
    for f in stream(p["n"], fps, gop, p["sizes"], p["first_key"]):
        buf.push(f)
        assert buf.nbytes <= ceiling or len(buf.keyframe_pts()) == 1


def test_byte_ceiling_shortfall_is_reported() -> None:
    buf = PreEventBuffer(5.0, 1.0, max_bytes=30 * 1000 * 2)
    for f in stream(300, 30, 30, [1000]):
        buf.push(f)
    roll = buf.drain(300 * 1_000_000 // 30)
    assert roll.byte_limited
    assert roll.captured_s < 5.0
    assert roll.frames[0].is_keyframe


def test_pre_event_zero_keeps_current_gop() -> None:
    buf = PreEventBuffer(0.0, 1.0, max_bytes=10**9)
    frames = stream(100, 30, 30, [10])
    for f in frames:
        buf.push(f)
    assert buf.keyframe_pts() == [frames[90].pts_us]
    got = buf.drain_from(frames[95].pts_us)
    assert got[0].frame_index == 90 and got[-1].frame_index == 99


def test_dropped_frames_are_zeroised() -> None:
    buf = PreEventBuffer(1.0, 1.0, max_bytes=10**9)
    frames = stream(30, 30, 30, [50])
    for f in frames:
        buf.push(f)
    # Peeking at the buffer's own storage is the only way to see that it was overwritten.
    held = [s.data for g in buf._gops for s in g.frames]
    # Two later keyframes 1.5 s apart: the second makes the old GOP unnecessary.
    buf.push(EncodedFrame(b"\x07" * 50, 5_000_000, True, 500))
    assert buf.frame_count == 31 and any(held[0])
    buf.push(EncodedFrame(b"\x07" * 50, 6_500_000, True, 501))
    assert buf.frame_count == 2
    assert all(not any(b) for b in held)


def test_drain_zeroises_its_own_copies() -> None:
    buf = PreEventBuffer(1.0, 1.0, max_bytes=10**9)
    for f in stream(10, 30, 30, [50]):
        buf.push(f)
    held = [s.data for g in buf._gops for s in g.frames]
    frames = buf.drain_from(300_000)
    assert len(frames) == 10 and all(f.data != bytes(50) for f in frames)
    assert all(not any(b) for b in held)


def test_frames_before_first_keyframe_are_not_kept() -> None:
    buf = PreEventBuffer(1.0, 1.0, max_bytes=10**9)
    for f in stream(5, 30, 30, [50], first_key=10):
        buf.push(f)
    assert buf.frame_count == 0 and buf.dropped_frames == 5


def chunk(pts_us: int) -> AudioChunk:
    return AudioChunk(b"\x05" * 64, pts_us, 20_000, "s16le", 48_000, 1)


def test_audio_is_never_held_when_off() -> None:
    buf = PreEventBuffer(1.0, 1.0, max_bytes=10**9, keep_audio=False)
    for f in stream(60, 30, 30, [50]):
        buf.push(f)
        assert not buf.push_audio(chunk(f.pts_us))
    assert buf.audio_count == 0
    assert buf.drain(2_000_000).audio == []


def test_audio_is_trimmed_with_video_when_on() -> None:
    buf = PreEventBuffer(1.0, 1.0, max_bytes=10**9, keep_audio=True)
    frames = stream(120, 30, 30, [50])
    for f in frames:
        buf.push(f)
        buf.push_audio(chunk(f.pts_us))
    oldest = buf.keyframe_pts()[0]
    roll = buf.drain(frames[-1].pts_us)
    assert roll.audio and all(a.pts_us >= roll.frames[0].pts_us for a in roll.audio)
    assert roll.frames[0].pts_us == oldest
    assert all(a.data == b"\x05" * 64 for a in roll.audio)
