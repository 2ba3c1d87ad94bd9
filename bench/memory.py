"""The unit's RAM: RSS once buffering, and the overhead of a full 120 s pre-event buffer.

A child process (so nothing else the benchmarks allocated is counted) imports the Raspberry Pi
unit's own module graph (``firmware.pi_unit``: recorder, sealer, daemon; its hardware backends are
imported only when chosen, and cannot load here), builds the real ``Recorder`` on a real
``Sealer`` (store on disk) with a 120 s pre-event buffer at 1080p30 10 Mbit/s, starts it, and
reads its RSS: ``rss_after_start_mb`` (buffering, nothing buffered). Then it feeds the recorder
125 s of replayed frames while it buffers and reads the peak RSS (VmHWM): the overhead is peak
RSS minus the bytes held in the buffer minus the replay clip (held in RAM by the bench as the
camera; a unit's encoder hands over frames one at a time).

The clip reaches the child as plain length-prefixed access units that the parent demuxed, so the
bench's camera does not add PyAV's demuxer and H.264 parser pages to the unit's figure.

Run: .venv/bin/python -m bench.memory
"""

from __future__ import annotations

import json
import resource
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.rig import machine

PRE_EVENT_S = 120.0
FILL_S = 125.0
HEAVY = ("boto3", "botocore", "numpy", "cv2", "rich", "evidence.verify", "evidence.export")
"""Modules the unit must not have loaded while it buffers (reported, and tested in tests/unit)."""

_KEY_FLAG = 1 << 31


def _status_kb(*fields: str) -> dict[str, float]:
    """Fields of /proc/self/status in MiB (empty where there is no /proc)."""
    out: dict[str, float] = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name in fields:
                    out[name] = int(value.split()[0]) / 1024  # kB
    except OSError:
        pass
    return out


def _rollup_mb(*fields: str) -> dict[str, float]:
    """Fields of /proc/self/smaps_rollup in MiB (empty where there is none)."""
    out: dict[str, float] = {}
    try:
        with open("/proc/self/smaps_rollup") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name in fields:
                    out[name] = int(value.split()[0]) / 1024
    except OSError:
        pass
    return out


def _rss_mb() -> float:
    """Peak RSS of this process image in MiB: VmHWM, which exec resets. ``ru_maxrss`` is not
    used when /proc is there because Linux carries it over from the parent across fork+exec,
    so a child of a big ``make bench`` process would report the parent's peak."""
    hwm = _status_kb("VmHWM").get("VmHWM")
    if hwm is not None:
        return hwm
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def write_units(units: list[tuple[bytes, bool]], path: Path) -> None:
    """The clip as ``[u32 big-endian length | keyframe bit 31][bytes]`` records."""
    with path.open("wb") as f:
        for data, key in units:
            f.write(struct.pack(">I", len(data) | (_KEY_FLAG if key else 0)))
            f.write(data)


def read_units(path: Path) -> list[tuple[bytes, bool]]:
    units = []
    with path.open("rb") as f:
        while header := f.read(4):
            (word,) = struct.unpack(">I", header)
            units.append((f.read(word & ~_KEY_FLAG), bool(word & _KEY_FLAG)))
    return units


def child(units_path: Path, store: Path) -> dict[str, Any]:
    import firmware.pi_unit  # noqa: F401  (the unit's module graph, as `bwc run` on a Pi loads it)
    from bench.media import FPS
    from bench.rig import build_recorder, profile_1080p
    from hal.types import EncodedFrame
    from recorder.state_machine import State

    clock, _sealer, recorder = build_recorder(
        store, profile_1080p(pre_event_s=PRE_EVENT_S, reminder_interval_s=0.0)
    )
    recorder.start()
    if recorder.state is not State.BUFFERING:
        raise RuntimeError(f"recorder started in {recorder.state}")
    start = _status_kb("VmRSS", "RssAnon", "RssFile")
    rollup = _rollup_mb("Private_Dirty", "Private_Clean", "Shared_Clean")
    heavy = [m for m in HEAVY if m in sys.modules]
    units = read_units(units_path)
    clip_bytes = sum(len(d) for d, _ in units)
    n = len(units)
    peak_nbytes = 0
    for i in range(round(FILL_S * FPS)):
        data, key = units[i % n]
        pts_us = round(i * 1_000_000 / FPS)
        clock.run_until(pts_us)
        recorder.handle_frame(EncodedFrame(data, pts_us, key, i))
        if i % 3 == 0:
            recorder.tick(pts_us)
        peak_nbytes = max(peak_nbytes, int(recorder.status()["buffer_bytes"] or 0))
    status = recorder.status()
    peak_mb = _rss_mb()
    recorder.shutdown("bench")
    return {
        "start_mb": start.get("VmRSS", float("nan")),
        "start_anon_mb": start.get("RssAnon", float("nan")),
        "start_file_mb": start.get("RssFile", float("nan")),
        "start_dirty_mb": rollup.get("Private_Dirty", float("nan")),
        "start_clean_mb": rollup.get("Private_Clean", float("nan"))
        + rollup.get("Shared_Clean", float("nan")),
        "heavy": heavy,
        "peak_mb": peak_mb,
        "buffered_mb": int(status["buffer_bytes"] or 0) / 2**20,
        "peak_buffered_mb": peak_nbytes / 2**20,
        "clip_mb": clip_bytes / 2**20,
        "buffer_s": status["buffer_s"],
        "state": status["state"],
    }


def measure() -> dict[str, Any]:
    import tempfile

    from bench.media import CACHE, load_replay

    units_path = CACHE / "replay-units.bin"
    write_units(load_replay().units, units_path)
    with tempfile.TemporaryDirectory(prefix="bench-mem-") as d:
        out = subprocess.run(
            [sys.executable, "-m", "bench.memory", "--child", str(units_path), d],
            check=True,
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    # The peak buffer, not the final one: RSS peaks when the buffer held the most.
    result["overhead_mb"] = result["peak_mb"] - result["peak_buffered_mb"] - result["clip_mb"]
    return result


def run() -> list[dict[str, Any]]:
    m = measure()
    heavy = ", ".join(m["heavy"]) or "none"
    return [
        {
            "name": "buffer_rss_overhead_mb",
            "value": round(m["overhead_mb"], 1),
            "unit": "MiB",
            "goal": "<= 40",
            "note": f"peak RSS {m['peak_mb']:.1f} MiB - {m['peak_buffered_mb']:.1f} MiB buffered "
            f"at most ({m['buffer_s']:.1f} s at the end, {m['state']}) - {m['clip_mb']:.1f} MiB "
            f"replay clip; the Pi unit's module graph, real Recorder + Sealer, pre_event_s=120, "
            f"1080p30 10 Mbit/s; {machine()}",
        },
        {
            "name": "rss_after_start_mb",
            "value": round(m["start_mb"], 1),
            "unit": "MiB",
            "goal": None,
            "note": f"the unit buffering with nothing buffered: {m['start_anon_mb']:.1f} MiB "
            f"anonymous + {m['start_file_mb']:.1f} MiB file-backed (shared libraries: PyAV's "
            f"FFmpeg, cryptography's OpenSSL); {m['start_dirty_mb']:.1f} MiB private dirty (what "
            f"the kernel cannot reclaim) and {m['start_clean_mb']:.1f} MiB clean pages of mapped "
            f"files (reclaimable, read again from flash when touched); loaded of "
            f"{', '.join(HEAVY)}: {heavy}; {machine()}",
        },
    ]


if __name__ == "__main__":
    if "--child" in sys.argv:
        i = sys.argv.index("--child")
        print(json.dumps(child(Path(sys.argv[i + 1]), Path(sys.argv[i + 2]))))
    else:
        for row in run():
            print(f"{row['name']:28} {row['value']!s:>8} {row['unit']} (goal {row['goal']})")
            print(f"    {row['note']}")
    sys.exit(0)
