"""Where the recorder's CPU goes: ``bench.recorder_speed`` cycles under cProfile, per sealed second.

Runs the same cycle as ``bench.recorder_speed`` (real Recorder, real Sealer, durable writes) under
``cProfile`` with a CPU-time timer (``time.process_time``, so waits on a loaded machine are not
counted), sorts every function's own time into the buckets of docs/performance.md and prints them
in milliseconds of CPU per second of sealed video, medians over several cycles after a warm-up.
The profiler's own overhead lands mostly in "Python overhead"; the unprofiled cost of the same
cycle is printed beside it, so the buckets can be scaled. Not part of ``make bench`` (no goal).

Run: .venv/bin/python -m bench.profile [cycles]
"""

from __future__ import annotations

import cProfile
import pstats
import statistics
import sys
import time

from bench.media import load_replay
from bench.recorder_speed import run_cycle
from bench.rig import machine
from bench.store_fs import store_fs

BUCKETS = (
    "AES-256-GCM",
    "SHA-256",
    "HPKE wrap",
    "HKDF unit key",
    "Ed25519 sign",
    "JSON",
    "fsync (CPU)",
    "file writes (open/write/rename/close)",
    "segmenting (PyAV mux + TS sink)",
    "pre-event buffer",
    "Python overhead",
)


def bucket(filename: str, name: str) -> str:
    """The bucket of one profiled function, by where it lives and what it is called."""
    where = f"{filename}:{name}"
    if "hpke" in where or name == "wrap":
        return "HPKE wrap"
    if "hkdf" in where or "hmac" in where or name in ("derive_unit_key", "expand_unit_key"):
        return "HKDF unit key"
    if "aead" in where or "AESGCM" in where:
        return "AES-256-GCM"
    if "sha256" in where or "hexdigest" in where:
        return "SHA-256"
    if "ed25519" in where or name == "sign":
        return "Ed25519 sign"
    if "json" in filename or name in ("canonical_json", "unit_aad", "hpke_info"):
        return "JSON"
    if "fsync" in where:
        return "fsync (CPU)"
    if "posix" in where or "durable" in filename or "pathlib" in filename:
        return "file writes (open/write/rename/close)"
    if "segmenter" in filename or "av." in where or "OutputContainer" in where or name == "join":
        return "segmenting (PyAV mux + TS sink)"
    if "pre_event_buffer" in filename:
        return "pre-event buffer"
    return "Python overhead"


def measure(cycles: int = 3) -> tuple[dict[str, float], float, float]:
    """(ms CPU per video second by bucket, profiled total, unprofiled total), medians."""
    replay = load_replay()
    per_bucket: dict[str, list[float]] = {b: [] for b in BUCKETS}
    profiled: list[float] = []
    plain: list[float] = []
    with store_fs("bench-prof-") as place:
        d = place.path
        run_cycle(replay, d / "warm")
        for i in range(cycles):
            prof = cProfile.Profile(time.process_time)
            prof.enable()
            cycle = run_cycle(replay, d / f"p{i}")
            prof.disable()
            sums = dict.fromkeys(BUCKETS, 0.0)
            stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
            for (filename, _line, name), (_cc, _nc, tottime, _ct, _callers) in stats.items():
                sums[bucket(filename, name)] += tottime
            for b in BUCKETS:
                per_bucket[b].append(sums[b] / cycle.video_s * 1e3)
            profiled.append(cycle.cpu_s / cycle.video_s * 1e3)
            bare = run_cycle(replay, d / f"q{i}")
            plain.append(bare.cpu_s / bare.video_s * 1e3)
    medians = {b: statistics.median(v) for b, v in per_bucket.items()}
    return medians, statistics.median(profiled), statistics.median(plain)


def main(argv: list[str]) -> int:
    cycles = int(argv[0]) if argv else 3
    medians, profiled, plain = measure(cycles)
    total = sum(medians.values())
    print(f"CPU per sealed video second, median of {cycles} cycles; {machine()}")
    print(f"unprofiled {plain:.2f} ms; under the profiler {profiled:.2f} ms")
    for b, ms in sorted(medians.items(), key=lambda kv: -kv[1]):
        print(f"  {b:40} {ms:6.2f} ms {100 * ms / total:5.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
