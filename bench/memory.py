"""RAM overhead of a full 120 s pre-event buffer at 1080p30 10 Mbit/s.

A child process (so nothing else the benchmarks allocated is counted) imports what the recorder
imports, loads the replay clip, fills a ``PreEventBuffer`` sized as the recorder sizes it with
125 s of replayed frames, and reports its peak RSS (VmHWM from /proc, else ``ru_maxrss``). The
overhead is peak RSS minus the bytes held in the buffer minus the clip itself (held in RAM by the
bench as the camera; a unit's encoder hands over frames one at a time).

Run: .venv/bin/python -m bench.memory
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.rig import machine

PRE_EVENT_S = 120.0
FILL_S = 125.0


def _rss_mb() -> float:
    """Peak RSS of this process image in MiB: VmHWM, which exec resets. ``ru_maxrss`` is not
    used when /proc is there because Linux carries it over from the parent across fork+exec,
    so a child of a big ``make bench`` process would report the parent's peak."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def child() -> dict[str, Any]:
    import recorder.core  # noqa: F401  (what the daemon has loaded: av, cryptography, ...)
    from bench.media import BITRATE_BPS, FPS, load_replay
    from hal.types import EncodedFrame
    from recorder.pre_event_buffer import PreEventBuffer

    base_mb = _rss_mb()
    replay = load_replay()
    clip_bytes = sum(len(d) for d, _ in replay.units)
    from recorder.config import parse_profile

    # Sized exactly as the Recorder sizes it (lookback for a late-recognised press included).
    profile = parse_profile({})
    lookback_s = profile.recorder.double_press_window_s + profile.gpio.bounce_ms / 1000 + 0.25
    buf = PreEventBuffer(
        PRE_EVENT_S,
        1.0,
        PreEventBuffer.max_bytes_for(BITRATE_BPS, PRE_EVENT_S + lookback_s, 1.0),
        lookback_s=lookback_s,
    )
    n = len(replay.units)
    peak_nbytes = 0
    for i in range(round(FILL_S * FPS)):
        data, key = replay.units[i % n]
        buf.push(EncodedFrame(data, round(i * 1_000_000 / FPS), key, i))
        peak_nbytes = max(peak_nbytes, buf.nbytes)
    peak_mb = _rss_mb()
    return {
        "base_mb": base_mb,
        "peak_mb": peak_mb,
        "buffered_mb": buf.nbytes / 2**20,
        "peak_buffered_mb": peak_nbytes / 2**20,
        "clip_mb": clip_bytes / 2**20,
        "buffer_s": buf.duration_s(),
        "byte_limited": buf.byte_limited,
    }


def measure() -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.memory", "--child"],
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    result["overhead_mb"] = result["peak_mb"] - result["buffered_mb"] - result["clip_mb"]
    return result


def run() -> list[dict[str, Any]]:
    m = measure()
    return [
        {
            "name": "buffer_rss_overhead_mb",
            "value": round(m["overhead_mb"], 1),
            "unit": "MiB",
            "goal": "<= 60",
            "note": f"peak RSS {m['peak_mb']:.1f} MiB - {m['buffered_mb']:.1f} MiB buffered "
            f"({m['buffer_s']:.1f} s, byte_limited={m['byte_limited']}) - {m['clip_mb']:.1f} MiB "
            f"replay clip; RSS after imports alone {m['base_mb']:.1f} MiB; pre_event_s=120, "
            f"1080p30 10 Mbit/s; {machine()}",
        }
    ]


if __name__ == "__main__":
    if "--child" in sys.argv:
        print(json.dumps(child()))
    else:
        for row in run():
            print(f"{row['name']:28} {row['value']!s:>8} {row['unit']} (goal {row['goal']})")
            print(f"    {row['note']}")
    sys.exit(0)
