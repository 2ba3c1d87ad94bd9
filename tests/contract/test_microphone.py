"""Microphone contract: SimMicrophone always; AlsaMicrophone where an ALSA capture device exists."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from hal.alsa import AlsaMicrophone, capture_devices
from hal.protocols import Microphone
from hal.system_clock import SystemClock
from hal.types import AudioChunk
from simulator.clock import VirtualClock
from simulator.microphone import SimMicrophone

RATE, CHANNELS = 48_000, 1
Advance = Callable[[float], None]
Now = Callable[[], int]


def _sim() -> tuple[Microphone, Advance, Now]:
    clock = VirtualClock(1_764_000_000_000_000)
    mic = SimMicrophone(clock, RATE, CHANNELS)
    return mic, lambda s: clock.advance(round(s * 1e6)), clock.monotonic_us


def _alsa() -> tuple[Microphone, Advance, Now]:
    clock = SystemClock()
    mic = AlsaMicrophone(capture_devices()[0], RATE, CHANNELS, clock, allow_card_numbers=True)
    return mic, time.sleep, clock.monotonic_us


@pytest.fixture(
    params=[
        pytest.param(_sim, id="sim"),
        pytest.param(
            _alsa,
            id="alsa",
            marks=pytest.mark.skipif(
                not capture_devices(), reason="no ALSA capture device (/proc/asound/pcm)"
            ),
        ),
    ]
)
def microphone(request: pytest.FixtureRequest) -> Iterator[tuple[Microphone, Advance, Now]]:
    mic, advance, now = request.param()
    yield mic, advance, now
    mic.stop()


class _Collect:
    """A sink that may be called from a capture thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.chunks: list[AudioChunk] = []

    def __call__(self, chunk: AudioChunk) -> None:
        with self._lock:
            self.chunks.append(chunk)

    def snapshot(self) -> list[AudioChunk]:
        with self._lock:
            return list(self.chunks)


def test_is_a_microphone(microphone: tuple[Microphone, Advance, Now]) -> None:
    assert isinstance(microphone[0], Microphone)


def test_chunks_are_raw_pcm_contiguous_on_the_monotonic_clock(
    microphone: tuple[Microphone, Advance, Now],
) -> None:
    mic, advance, now = microphone
    sink = _Collect()
    started_us = now()
    mic.start(sink)
    advance(1.0)
    chunks = sink.snapshot()
    assert len(chunks) >= 10
    for c in chunks:
        assert (c.codec, c.sample_rate_hz, c.channels) == ("pcm_s16le", RATE, CHANNELS)
        assert len(c.data) == 2 * CHANNELS * round(c.duration_us * RATE / 1e6)
        assert c.pts_us + c.duration_us <= now()  # delivered after it was captured
    assert chunks[0].pts_us >= started_us - 100_000
    for a, b in itertools.pairwise(chunks):
        # Each chunk starts where the previous one ended (to one sample's rounding).
        assert abs(b.pts_us - (a.pts_us + a.duration_us)) <= 1_000_000 // RATE + 1


def test_nothing_arrives_after_stop(microphone: tuple[Microphone, Advance, Now]) -> None:
    mic, advance, _ = microphone
    sink = _Collect()
    mic.start(sink)
    advance(0.3)
    mic.stop()
    n = len(sink.snapshot())
    advance(0.3)
    assert len(sink.snapshot()) == n


def test_start_twice_is_refused(microphone: tuple[Microphone, Advance, Now]) -> None:
    mic, _, _ = microphone
    mic.start(_Collect())
    with pytest.raises(RuntimeError):
        mic.start(_Collect())
