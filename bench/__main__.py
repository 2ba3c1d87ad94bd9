"""`make bench`: run every benchmark, print a table, write ``.bench/results.json`` (CONTRACT §8)
and ``.bench/results.svg``, a chart of every figure against its goal.

A benchmark that cannot run here (a missing tool, no S3 server) is reported with value null and
the reason in its note; a crash in our own code is not hidden (exit status 1).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.chart import goal_chart, write_svg
from bench.rig import machine

Row = dict[str, Any]

RESULTS = Path(".bench/results.json")


def _evidence() -> list[Row]:
    from bench.evidence import verify_vs_sha256sum

    speed = verify_vs_sha256sum()
    return [
        {
            "name": "verify_vs_sha256sum",
            "value": None if speed is None else round(speed, 3),
            "unit": "x sha256sum throughput",
            "goal": ">= 0.8",
            "note": "bwc verify's verify_store over a 40-unit (50 MB) store vs sha256sum over the "
            "same files, warm cache, wall time, median of 3; signatures and chain included; "
            + ("" if speed is not None else "skipped: no sha256sum on PATH; ")
            + machine(),
        }
    ]


def _sim() -> list[Row]:
    from bench.sim_speed import bench_sim_realtime_factor_vga

    return [
        {
            "name": "sim_realtime_factor_vga",
            "value": round(bench_sim_realtime_factor_vga(), 2),
            "unit": "simulated s per wall s",
            "goal": ">= 10",
            "note": "SimCamera 640x480@30 2 Mbit/s: scene, overlay, stripe, libx264 "
            f"ultrafast/zerolatency, 10 s after a 1 s warm-up; {machine()}",
        }
    ]


def _offload() -> list[Row]:
    skipped: Row = {
        "name": "offload_vs_boto3_put",
        "value": None,
        "unit": "x boto3 put_object throughput",
        "goal": ">= 0.8",
        "note": "",
    }
    try:
        module = importlib.import_module("bench.offload")
    except ModuleNotFoundError as exc:
        if exc.name != "bench.offload":
            raise
        skipped["note"] = "skipped: bench/offload.py not present yet"
        return [skipped]
    rows: list[Row] = module.run()
    if not any(r.get("name") == skipped["name"] for r in rows):
        reasons = "; ".join(str(r.get("note")) for r in rows if r.get("value") is None)
        skipped["note"] = "skipped: bench/offload.py reported no offload_vs_boto3_put" + (
            f" ({reasons})" if reasons else ""
        )
        rows.append(skipped)
    return rows


def _topic(name: str) -> Callable[[], list[Row]]:
    def run() -> list[Row]:
        rows: list[Row] = importlib.import_module(f"bench.{name}").run()
        return rows

    return run


TOPICS: dict[str, Callable[[], list[Row]]] = {
    "recorder_speed": _topic("recorder_speed"),
    "press": _topic("press"),
    "memory": _topic("memory"),
    "boot": _topic("boot"),
    "evidence": _evidence,
    "sim": _sim,
    "offload": _offload,
}


def save(rows: list[Row], results: Path, *, keep_previous: bool) -> list[Row]:
    """Write ``results`` (JSON, CONTRACT §8) and beside it the chart of every figure against its
    goal (``results.svg``). With ``keep_previous`` (a run of some topics only) the figures of the
    other topics already in ``results`` are kept. Returns what was written."""
    results.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(results.read_text()) if results.exists() and keep_previous else []
    names = {r["name"] for r in rows}
    merged = [r for r in previous if r["name"] not in names] + rows
    results.write_text(json.dumps(merged, indent=2) + "\n")
    write_svg(results.with_suffix(".svg"), goal_chart(merged))
    return merged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("topics", nargs="*", choices=[*TOPICS, []], help="default: all")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    rows: list[Row] = []
    for name in args.topics or TOPICS:
        t = time.perf_counter()
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        rows.extend(TOPICS[name]())
        print(f"bench: {name} took {time.perf_counter() - t:.1f} s", file=sys.stderr, flush=True)
    save(rows, RESULTS, keep_previous=bool(args.topics))
    print(f"\n{'metric':28} {'value':>10}  {'goal':8} unit")
    for r in rows:
        value = "skipped" if r["value"] is None else r["value"]
        print(f"{r['name']:28} {value!s:>10}  {r['goal'] or '':8} {r['unit']}")
    print(f"\nwrote {RESULTS} and the chart {RESULTS.with_suffix('.svg')} ({machine()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
