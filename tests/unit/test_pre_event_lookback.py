"""The pre-event buffer on the press path: lookback_s for late-recognised presses, and
hand_over (no copy) with detach_frame and zeroise_frame."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hal.types import EncodedFrame
from recorder.pre_event_buffer import PreEventBuffer, detach_frame, zeroise_frame

FPS = 30
GOP = 30  # 1 s


def _frames(until_us: int) -> list[EncodedFrame]:
    out = []
    i = 0
    while (pts := i * 1_000_000 // FPS) <= until_us:
        out.append(EncodedFrame(b"x" * 100, pts, i % GOP == 0, i))
        i += 1
    return out


def test_late_recognition_without_lookback_loses_history() -> None:
    # The case the lookback exists for: press at 10.8 s, recognised at 11.1 s with 2 s asked.
    buf = PreEventBuffer(2.0, 1.0, 10**9)
    for f in _frames(11_100_000):
        buf.push(f)
    assert buf.drain(10_800_000).captured_s < 2.0


@settings(max_examples=100, deadline=None)
@given(
    pre_event_ms=st.integers(0, 5000),
    press_ms=st.integers(6000, 9000),
    delay_ms=st.integers(0, 800),
)
def test_lookback_covers_recognition_delay(pre_event_ms: int, press_ms: int, delay_ms: int) -> None:
    buf = PreEventBuffer(pre_event_ms / 1000, 1.0, 10**9, lookback_s=0.8)
    for f in _frames((press_ms + delay_ms) * 1000):
        buf.push(f)
    roll = buf.drain(press_ms * 1000)
    assert roll.captured_s >= pre_event_ms / 1000
    assert roll.captured_s <= pre_event_ms / 1000 + 1.0  # never more than one GOP extra
    assert roll.frames[0].is_keyframe


def test_hand_over_moves_storage_without_copy_and_zeroise_frame_clears_it() -> None:
    buf = PreEventBuffer(1.0, 1.0, 10**9)
    sent = [EncodedFrame(bytes([i + 1]) * 64, i * 33_333, i == 0, i) for i in range(10)]
    for f in sent:
        buf.push(f)
    roll = buf.hand_over(300_000)
    assert [f.data for f in roll.frames] == [f.data for f in sent]
    assert buf.frame_count == 0 and buf.nbytes == 0
    detached = [detach_frame(f) for f in roll.frames[:5]]
    assert [f.data for f in detached] == [f.data for f in sent[:5]]
    assert all(isinstance(f.data, bytes) for f in detached)
    for f in roll.frames[5:]:
        zeroise_frame(f)
    assert all(not any(f.data) for f in roll.frames)  # detached ones were zeroised too
    for f in sent:  # frames that are not a buffer's storage are left alone
        zeroise_frame(f)
    assert all(any(f.data) for f in sent)
