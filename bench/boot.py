"""Boot to buffering: from exec of ``bwc sim`` to the signed ``buffering`` event on disk.

The unit is provisioned once; each run is one boot of it (``bwc sim`` with a short scenario), and
the clock runs from just before ``Popen`` to the moment the ``buffering`` manifest is visible in
the store (polled every 2 ms, so the figure is at most 2 ms late). Nothing is subtracted: the
interpreter's start, imports, key loading, the boot event and opening the backends all count.

Run: .venv/bin/python -m bench.boot
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.press import provision
from bench.rig import machine
from bench.store_fs import store_fs

RUNS = 5
POLL_S = 0.002


def _buffering_seen(evidence: Path, known: set[str]) -> bool:
    try:
        names = [e.name for e in os.scandir(evidence) if e.name.endswith(".json")]
    except FileNotFoundError:
        return False
    for name in names:
        if name in known or name.startswith("."):
            continue
        known.add(name)
        try:
            m = json.loads((evidence / name).read_bytes())
        except (OSError, ValueError):
            known.discard(name)  # not complete yet (cannot happen after a rename; be safe)
            continue
        if m.get("kind") == "buffering":
            return True
    return False


def boot_once(device: Path, scenario: Path) -> float:
    evidence = device / "evidence"
    known = {e.name for e in os.scandir(evidence)} if evidence.exists() else set()
    bwc = Path(sys.executable).parent / "bwc"
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [str(bwc), "sim", str(scenario), "--device", str(device)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    elapsed = None
    while proc.poll() is None or elapsed is None:
        if _buffering_seen(evidence, known):
            elapsed = time.perf_counter() - t0
            break
        if proc.poll() is not None and not _buffering_seen(evidence, known):
            raise RuntimeError(f"bwc sim exited {proc.returncode} without a buffering event")
        time.sleep(POLL_S)
    proc.wait()
    assert elapsed is not None
    return elapsed


def measure(runs: int = RUNS) -> dict[str, Any]:
    with store_fs("bench-boot-") as place:
        root = place.path
        layout = provision(root)
        scenario = root / "idle.toml"
        scenario.write_text("duration_s = 0.5\n")
        samples = [boot_once(layout.root, scenario) for _ in range(runs + 1)][1:]
        store = place.describe()
    return {
        "median_s": statistics.median(samples),
        "max_s": max(samples),
        "min_s": min(samples),
        "store": store,
    }


def run() -> list[dict[str, Any]]:
    m = measure()
    return [
        {
            "name": "boot_to_buffering_s",
            "value": round(m["median_s"], 3),
            "unit": "s wall",
            "goal": "<= 1.0",
            "note": f"median of {RUNS} boots of a provisioned simulated unit (first excluded), "
            f"exec of `bwc sim` to the buffering manifest on disk; min {m['min_s']:.3f}, "
            f"max {m['max_s']:.3f} s; {m['store']}; {machine()}",
        }
    ]


if __name__ == "__main__":
    for row in run():
        print(f"{row['name']:28} {row['value']!s:>8} {row['unit']} (goal {row['goal']})")
        print(f"    {row['note']}")
    sys.exit(0)
