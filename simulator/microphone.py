"""The simulated microphone: a quiet tone-and-noise bed with a sharp click at every whole second of
the unit's monotonic time, delivered as raw s16le chunks on simulated time.

It implements ``hal.protocols.Microphone``. The clicks let anyone measure audio/video sync from a
recording alone: the camera starts at monotonic 0 on the simulated unit, so the click at
monotonic ``k`` s sits on frame ``k * fps`` of the frame stripe. It must not read the wall clock:
chunks are produced by events on the ``VirtualClock``, so a run is deterministic.

Threading: every method and the sink run on the thread that advances the virtual clock.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from hal.errors import ConfigError
from hal.protocols import AudioSink
from hal.types import AudioChunk
from simulator.clock import Handle, VirtualClock

CODEC = "pcm_s16le"
CLICK_PERIOD_US = 1_000_000
"""A click starts at every multiple of this on the monotonic clock."""
CLICK_TONE_HZ = 1000.0


class SimMicrophone:
    """A ``Microphone`` that synthesises sound; chunk ``n`` covers samples ``[n*S, (n+1)*S)``.

    A chunk is delivered when its last sample has been "captured" (at its end time), as a real
    capture device does, and carries the monotonic time of its first sample in ``pts_us``.
    """

    def __init__(
        self,
        clock: VirtualClock,
        sample_rate_hz: int = 48_000,
        channels: int = 1,
        chunk_ms: int = 20,
        *,
        tone_hz: float = 440.0,
        bed_level: float = 0.02,
        click_level: float = 0.8,
        click_ms: float = 5.0,
        seed: int = 0,
    ) -> None:
        if sample_rate_hz <= 0 or channels not in (1, 2) or chunk_ms <= 0:
            raise ConfigError(
                f"simulated microphone: sample_rate_hz > 0, channels 1 or 2, chunk_ms > 0 "
                f"(got {sample_rate_hz}, {channels}, {chunk_ms})"
            )
        samples = sample_rate_hz * chunk_ms / 1000
        if samples != int(samples):
            raise ConfigError(
                f"simulated microphone: {chunk_ms} ms at {sample_rate_hz} Hz is not a whole "
                "number of samples"
            )
        self._clock = clock
        self.sample_rate_hz = sample_rate_hz
        self.channels = channels
        self.chunk_samples = int(samples)
        self._tone_hz = tone_hz
        self._bed_level = bed_level
        self._click_level = click_level
        self._click_us = round(click_ms * 1000)
        self._rng = np.random.default_rng(seed)
        self._sink: AudioSink | None = None
        self._timer: Handle | None = None
        self._start_us = 0
        self._next_chunk = 0
        self.chunks_delivered = 0

    # -- hal.protocols.Microphone ----------------------------------------------------------------

    def start(self, sink: AudioSink) -> None:
        if self._sink is not None:
            raise RuntimeError("microphone already started")
        self._sink = sink
        self._start_us = self._clock.monotonic_us()
        self._next_chunk = 0
        self._timer = self._clock.call_at(self._sample_time_us(self.chunk_samples), self._deliver)

    def stop(self) -> None:
        """Stop capture; nothing reaches the sink after this returns."""
        self._sink = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- production ------------------------------------------------------------------------------

    def _sample_time_us(self, sample: int) -> int:
        # Exact integer timing from the start, so no drift accumulates over long runs.
        return self._start_us + sample * 1_000_000 // self.sample_rate_hz

    def _deliver(self) -> None:
        sink = self._sink
        if sink is None:
            return
        n = self._next_chunk
        self._next_chunk += 1
        first = n * self.chunk_samples
        pcm = self.render(first, self.chunk_samples)
        pts_us = self._sample_time_us(first)
        duration_us = self._sample_time_us(first + self.chunk_samples) - pts_us
        self.chunks_delivered += 1
        sink(
            AudioChunk(
                pcm.tobytes(), pts_us, duration_us, CODEC, self.sample_rate_hz, self.channels
            )
        )
        if self._sink is not None:
            end = first + 2 * self.chunk_samples
            self._timer = self._clock.call_at(self._sample_time_us(end), self._deliver)

    def render(self, first_sample: int, count: int) -> npt.NDArray[np.int16]:
        """Samples ``[first_sample, first_sample + count)`` since start, interleaved s16."""
        idx = np.arange(first_sample, first_sample + count, dtype=np.int64)
        t_us = self._start_us + idx * 1_000_000 // self.sample_rate_hz
        t_s = idx / self.sample_rate_hz
        bed = self._bed_level * (
            0.7 * np.sin(2 * math.pi * self._tone_hz * t_s) + 0.3 * self._rng.uniform(-1, 1, count)
        )
        click = (t_us % CLICK_PERIOD_US) < self._click_us
        # The click is a 1 kHz square burst: a sharp onset well inside any codec's passband.
        burst = self._click_level * np.where(np.cos(2 * math.pi * CLICK_TONE_HZ * t_s) >= 0, 1, -1)
        mono = np.where(click, burst, bed)
        pcm = np.clip(np.round(mono * 32767), -32768, 32767).astype(np.int16)
        if self.channels == 1:
            return pcm
        return np.repeat(pcm, self.channels)
