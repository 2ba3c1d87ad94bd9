"""Recorder throughput at 1080p30 10 Mbit/s: real-time factor and cost over raw crypto.

Drives the real ``Recorder`` and the real ``Sealer`` (durable writes into a store on disk) on a
``VirtualClock`` with frames replayed from the cached pre-encoded clip, so no encoding is counted.
One cycle: ``pre_event_s`` of buffering, a double press (the pre-roll is drained and sealed), then
recording, then a hold to stop. Every frame fed ends up sealed, so CPU per fed byte is CPU per
sealed byte of video. CPU time is the process's (``time.process_time``: user + system, all
threads); fsync waits are not CPU and are reported apart as wall time.

Run: .venv/bin/python -m bench.recorder_speed
"""

from __future__ import annotations

import hashlib
import os
import statistics
import sys
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bench.media import FPS, HEIGHT, WIDTH, Replay, load_replay
from bench.rig import build_recorder, machine, profile_1080p
from bench.store_fs import store_fs
from recorder.state_machine import State

PRE_EVENT_S = 5.0
RECORD_S = 25.0
RUNS = 5
_US = Fraction(1, 1_000_000)


@dataclass(frozen=True)
class Cycle:
    cpu_s: float
    wall_s: float
    video_s: float
    video_bytes: int
    units: int


def _press(recorder: Any, clock: Any, t_us: int) -> None:
    """A double press at ``t_us`` as the debounced edges the recogniser sees (120/150/120 ms)."""
    for dt_us, active in ((0, True), (120_000, False), (270_000, True), (390_000, False)):
        recorder.handle_edge("event", active, t_us + dt_us)


def run_cycle(replay: Replay, store: Path) -> Cycle:
    """Buffer ``PRE_EVENT_S``, press, record ``RECORD_S``, stop; time the whole recorder."""
    profile = profile_1080p(pre_event_s=PRE_EVENT_S, reminder_interval_s=0.0)
    clock, _sealer, recorder = build_recorder(store, profile)
    recorder.start()
    total_frames = round((PRE_EVENT_S + RECORD_S) * FPS)
    frames = replay.frames(total_frames)
    press_us = round(PRE_EVENT_S * 1e6)
    pressed = False
    video_bytes = 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for frame in frames:
        clock.run_until(frame.pts_us)
        if not pressed and frame.pts_us >= press_us:
            _press(recorder, clock, press_us)
            pressed = True
        recorder.handle_frame(frame)
        video_bytes += len(frame.data)
        if frame.frame_index % 3 == 0:  # the unit ticks every 50 ms; about every 3rd frame
            recorder.tick(frame.pts_us)
    # Stop: the hold gesture (event held past hold_s) fires on a tick.
    end_us = frames[-1].pts_us + 1
    recorder.handle_edge("event", True, end_us)
    recorder.tick(end_us + 3_100_000)
    cpu_s, wall_s = time.process_time() - cpu0, time.perf_counter() - wall0
    if recorder.state is not State.BUFFERING:
        raise RuntimeError(f"recorder ended in {recorder.state}")
    units = sum(1 for p in store.glob("*.bin"))
    recorder.shutdown("bench")
    return Cycle(cpu_s, wall_s, len(frames) / FPS, video_bytes, units)


def raw_crypto_cpu_per_byte(replay: Replay) -> float:
    """One sample: AES-256-GCM + SHA-256 of the ciphertext, per byte, over ten one-second
    payloads of the clip."""
    data = b"".join(d for d, _ in replay.units)
    payloads = [data[i : i + len(data) // 10] for i in range(0, len(data), len(data) // 10)][:10]
    aead = AESGCM(AESGCM.generate_key(bit_length=256))
    t = time.process_time()
    for p in payloads:
        hashlib.sha256(aead.encrypt(os.urandom(12), p, b"aad")).digest()
    return (time.process_time() - t) / sum(len(p) for p in payloads)


def bare_mux_cpu_per_video_s(replay: Replay, video_s: float, out: Path) -> float:
    """One sample: CPU per video second of a bare PyAV loop muxing the same access units into an
    MPEG-TS file ``out``, as picamera2's ``PyavOutput`` does: no buffer, no crypto, no fsync, no
    evidence."""
    frames = replay.frames(round(video_s * FPS))
    t = time.process_time()
    with av.open(str(out), mode="w", format="mpegts") as container:
        stream = container.add_stream("h264")
        stream.width, stream.height = WIDTH, HEIGHT
        stream.time_base = Fraction(1, 90_000)
        for frame in frames:
            packet = av.Packet(frame.data)
            packet.stream = stream
            packet.time_base = _US
            packet.pts = packet.dts = frame.pts_us
            packet.is_keyframe = frame.is_keyframe
            container.mux(packet)
    return (time.process_time() - t) / video_s


@dataclass(frozen=True)
class Run:
    """One run: a recorder cycle and, right after it on the same machine state, the two
    references it is compared with; every goal is a ratio within one run."""

    cycle: Cycle
    raw_per_byte: float
    mux_per_video_s: float

    @property
    def cpu_per_video_s(self) -> float:
        return self.cycle.cpu_s / self.cycle.video_s

    @property
    def ratio(self) -> float:
        return self.cycle.cpu_s / self.cycle.video_bytes / self.raw_per_byte

    @property
    def raw_per_video_s(self) -> float:
        return self.raw_per_byte * self.cycle.video_bytes / self.cycle.video_s

    @property
    def overhead_vs_mux(self) -> float:
        return (self.cpu_per_video_s - self.raw_per_video_s) / self.mux_per_video_s


def measure(runs: int = RUNS) -> dict[str, Any]:
    replay = load_replay()
    with store_fs("bench-rec-") as place:
        results: list[Run] = []
        for i in range(runs + 1):  # the first is the warm-up
            cycle = run_cycle(replay, place.path / f"s{i}")
            results.append(
                Run(
                    cycle,
                    raw_crypto_cpu_per_byte(replay),
                    bare_mux_cpu_per_video_s(replay, cycle.video_s, place.path / f"mux{i}.ts"),
                )
            )
        store = place.describe()
    results = results[1:]
    c0 = results[0].cycle

    def med(values: Any) -> float:
        return float(statistics.median(values))

    return {
        "realtime_factor": med(r.cycle.video_s / r.cycle.cpu_s for r in results),
        "wall_realtime_factor": med(r.cycle.video_s / r.cycle.wall_s for r in results),
        "cpu_per_byte": med(r.cycle.cpu_s / r.cycle.video_bytes for r in results),
        "raw_per_byte": med(r.raw_per_byte for r in results),
        "ratio": med(r.ratio for r in results),
        "ratios": [round(r.ratio, 2) for r in results],
        "mbit_s": replay.bytes_per_s * 8 / 1e6,
        "units": c0.units,
        "video_s": c0.video_s,
        "cpu_ms_per_video_s": med(r.cpu_per_video_s for r in results) * 1e3,
        "raw_ms_per_video_s": med(r.raw_per_video_s for r in results) * 1e3,
        "mux_ms_per_video_s": med(r.mux_per_video_s for r in results) * 1e3,
        "overhead_vs_mux": med(r.overhead_vs_mux for r in results),
        "store": store,
    }


def run() -> list[dict[str, Any]]:
    m = measure()
    common = (
        f"{m['video_s']:.0f} s of replayed 1080p30 H.264 at {m['mbit_s']:.2f} Mbit/s actual "
        f"({PRE_EVENT_S:g} s pre-roll + recording, {m['units']} units sealed to disk with fsync, "
        f"{m['store']}), "
        f"median of {RUNS} runs after a warm-up, each the recorder cycle then the raw crypto "
        f"and the bare mux of the same bytes; {machine()}"
    )
    return [
        {
            "name": "seal_cost_ratio",
            "value": round(m["ratio"], 2),
            "unit": "x raw AES-256-GCM+SHA-256 CPU per byte",
            "goal": "<= 2.5",
            "note": f"recorder {m['cpu_per_byte'] * 1e9:.2f} ns/B vs raw "
            f"{m['raw_per_byte'] * 1e9:.2f} ns/B (medians); per run {m['ratios']}; {common}",
        },
        {
            "name": "realtime_factor_1080p30",
            "value": round(m["realtime_factor"], 1),
            "unit": "video s per CPU s",
            "goal": ">= 260",
            "note": f"{m['cpu_ms_per_video_s']:.2f} ms CPU per video second; wall-clock factor "
            f"{m['wall_realtime_factor']:.1f} (fsync waits included); {common}",
        },
        {
            "name": "overhead_vs_pyav_mux",
            "value": round(m["overhead_vs_mux"], 2),
            "unit": "x a bare PyAV MPEG-TS mux loop's CPU",
            "goal": "<= 1.0",
            "note": f"(recorder {m['cpu_ms_per_video_s']:.2f} - raw AES-256-GCM+SHA-256 "
            f"{m['raw_ms_per_video_s']:.2f} ms) / bare mux {m['mux_ms_per_video_s']:.2f} ms CPU "
            "per video second (the same access units into an MPEG-TS file, as picamera2's "
            f"PyavOutput; no fsync), median of {RUNS} after a warm-up; {common}",
        },
    ]


if __name__ == "__main__":
    for row in run():
        print(f"{row['name']:28} {row['value']!s:>8} {row['unit']} (goal {row['goal']})")
        print(f"    {row['note']}")
    sys.exit(0)
