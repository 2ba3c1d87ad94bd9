"""A long shift compressed on simulated time: hours of buffering with a few recordings and markers,
while a monitor samples the ``bwc sim`` process's RSS and open file descriptors from /proc.
Memory and descriptors must stay flat, and everything recorded must verify and export.

The normal suite runs a short shift (minutes); ``make soak`` (or ``LONG_SHIFT_H=12``) runs the
12-hour one, which takes tens of minutes of wall time. Figures go to ``.bench/long-shift.json`` and
a chart of RSS and open files over the run to ``.bench/long-shift.svg``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bench.chart import Series, series_chart, write_svg
from simulator.h264 import read_frame_numbers
from tests.integration.conftest import Bwc, ProvisionedUnit, write_scenario
from tests.integration.faults import bwc_argv

FPS = 2
SETS = {
    "camera.width": "512",
    "camera.height": "288",
    "camera.fps": str(FPS),
    "camera.bitrate_bps": "100000",
    "recorder.segment_s": "300",
    "recorder.pre_event_s": "30",
    "battery.drain_pct_per_h": "4",
}


@dataclass
class Samples:
    rss_kb: list[int] = field(default_factory=list)
    fds: list[int] = field(default_factory=list)
    wall_s: list[float] = field(default_factory=list)  # since the process started


def _sample(pid: int, out: Samples, stop: threading.Event, period_s: float) -> None:
    started = time.monotonic()
    while not stop.is_set():
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            rss = next(
                int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")
            )
            fds = len(os.listdir(f"/proc/{pid}/fd"))
        except (OSError, StopIteration, ValueError):
            return  # the process ended
        out.rss_kb.append(rss)
        out.fds.append(fds)
        out.wall_s.append(time.monotonic() - started)
        stop.wait(period_s)


def shift_events(hours: float) -> list[dict[str, Any]]:
    """Recordings at fixed fractions of the shift, each with markers, idle buffering between."""
    total_s = hours * 3600
    events: list[dict[str, Any]] = []
    rec_s = min(600.0, total_s / 12)
    for frac in (0.08, 0.33, 0.6, 0.85):
        start = round(total_s * frac, 1)
        events += [
            {"at_s": start, "action": "double_press"},
            {"at_s": start + rec_s / 3, "action": "press", "button": "function"},
            {"at_s": start + 2 * rec_s / 3, "action": "press", "button": "function"},
            {"at_s": start + rec_s, "action": "hold", "hold_s": 3.5},
        ]
    return events


def write_chart(path: Path, samples: Samples, hours: float, wall_s: float) -> Path:
    """RSS and open files of the `bwc sim` process over the run, as an SVG beside the figures."""
    return write_svg(
        path,
        series_chart(
            f"Long shift: {hours:g} h on simulated time",
            f"the bwc sim process sampled every {'0.25' if hours < 1 else '1'} s of wall time; "
            f"{hours * 3600 / max(wall_s, 1e-9):.0f} simulated s per wall s",
            "wall seconds into the run",
            samples.wall_s,
            [
                Series("resident memory (RSS)", "MB", [kb / 1024 for kb in samples.rss_kb]),
                Series("open file descriptors", "count", samples.fds, "#e08a00"),
            ],
        ),
    )


def run_shift(
    bwc: Bwc, unit: ProvisionedUnit, tmp_path: Path, hours: float, chart: Path
) -> dict[str, Any]:
    scen = write_scenario(tmp_path / "shift.toml", hours * 3600, *shift_events(hours))
    sets = [a for k, v in SETS.items() for a in ("--set", f"{k}={v}")]
    started = time.monotonic()
    proc = subprocess.Popen(
        bwc_argv("sim", scen, "--device", unit.device, "--json", *sets),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    samples = Samples()
    stop = threading.Event()
    period_s = 0.25 if hours < 1 else 1.0
    monitor = threading.Thread(target=_sample, args=(proc.pid, samples, stop, period_s))
    monitor.start()
    stdout, stderr = proc.communicate(timeout=3 * 3600)
    stop.set()
    monitor.join()
    wall_s = time.monotonic() - started
    assert proc.returncode == 0, stderr[-2000:]
    assert "Traceback" not in stderr
    summary = json.loads(stdout)

    # Flatness: compare the second quarter of the run (after warm-up) with the last quarter.
    n = len(samples.rss_kb)
    assert n >= 8, "the monitor needs a few samples"
    q2 = slice(n // 4, n // 2)
    q4 = slice(3 * n // 4, n)
    rss_growth_mb = (
        statistics.median(samples.rss_kb[q4]) - statistics.median(samples.rss_kb[q2])
    ) / 1024
    fd_growth = max(samples.fds[q4]) - max(samples.fds[q2])

    store = unit.device / "evidence"
    report = bwc.json("verify", *unit.trust, store, "--json")
    out = tmp_path / "export"
    bwc("export", *unit.trust, store, "--key", unit.agency_key, "--out", out)
    for rec in report["recordings"]:
        frames = read_frame_numbers(out / f"{rec['id']}.mp4")
        assert frames == list(range(rec["first_frame"], rec["last_frame"] + 1)), rec["id"]
    figures = {
        "shift_h": hours,
        "wall_s": round(wall_s, 1),
        "frames": summary["frames"],
        "recordings": len(report["recordings"]),
        "markers": sum(len(r["markers"]) for r in report["recordings"]),
        "chain_entries": report["entries"],
        "rss_mb_start": round(samples.rss_kb[n // 4] / 1024, 1),
        "rss_mb_max": round(max(samples.rss_kb) / 1024, 1),
        "rss_growth_mb_q2_to_q4": round(rss_growth_mb, 2),
        "fds_min": min(samples.fds[n // 4 :]),
        "fds_max": max(samples.fds[n // 4 :]),
        "intact": report["intact"],
        "samples": n,
    }
    print(json.dumps(figures))
    write_chart(chart, samples, hours, wall_s)
    assert report["intact"] is True
    assert len(report["recordings"]) == 4
    assert figures["markers"] == 8
    assert fd_growth <= 2, figures
    assert rss_growth_mb < 24, figures
    return figures


def test_short_shift_memory_and_fds_stay_flat(
    bwc: Bwc, unit: ProvisionedUnit, tmp_path: Path
) -> None:
    chart = tmp_path / "long-shift.svg"
    figures = run_shift(bwc, unit, tmp_path, hours=0.1, chart=chart)
    svg = chart.read_text()
    assert svg.count("<polyline") == 2
    assert "open file descriptors (count)" in svg
    assert f"{figures['shift_h']:g} h on simulated time" in svg


@pytest.mark.slow
@pytest.mark.soak
@pytest.mark.timeout(6 * 3600)
def test_twelve_hour_shift_memory_and_fds_stay_flat(
    bwc: Bwc, unit: ProvisionedUnit, tmp_path: Path
) -> None:
    if "SOAK_TRIALS" not in os.environ and "LONG_SHIFT_H" not in os.environ:
        pytest.skip("long mode: make soak, or LONG_SHIFT_H=12")
    report = Path(os.environ.get("LONG_SHIFT_REPORT", ".bench/long-shift.json"))
    hours = float(os.environ.get("LONG_SHIFT_H", "12"))
    figures = run_shift(bwc, unit, tmp_path, hours=hours, chart=report.with_suffix(".svg"))
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps(figures, indent=2) + "\n")
