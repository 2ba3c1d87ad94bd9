"""The benchmark charts: every figure against its goal, and the long shift's samples over time."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from bench.__main__ import save
from bench.chart import (
    MISS,
    NONE,
    OK,
    Series,
    goal_chart,
    meets,
    parse_goal,
    series_chart,
    write_svg,
)

SVG = "{http://www.w3.org/2000/svg}"

RESULTS: list[dict[str, Any]] = [
    {"name": "boot_to_buffering_s", "value": 1.9, "unit": "s", "goal": "<= 3", "note": ""},
    {"name": "verify_vs_sha256sum", "value": 0.61, "unit": "x sha256sum", "goal": ">= 0.8",
     "note": "40 units"},
    {"name": "preroll_shortfall_s", "value": 0, "unit": "s", "goal": "<= 0", "note": ""},
    {"name": "plain_boto3_put_MBps", "value": 48.2, "unit": "MB/s", "goal": None, "note": ""},
    {"name": "offload_vs_boto3_put", "value": None, "unit": "x", "goal": ">= 0.8",
     "note": "skipped: no S3 server"},
]  # fmt: skip


def test_goals_are_read_and_judged() -> None:
    assert parse_goal(">= 0.8") == (">=", 0.8)
    assert parse_goal("<= 0") == ("<=", 0.0)
    assert parse_goal(None) is None and parse_goal("") is None and parse_goal("fast") is None
    assert meets(0.8, (">=", 0.8)) and not meets(0.79, (">=", 0.8))
    assert meets(0, ("<=", 0.0)) and not meets(0.1, ("<=", 0.0))


def test_goal_chart_has_a_row_per_figure_coloured_by_its_goal(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    results.write_text(json.dumps(RESULTS))
    path = write_svg(tmp_path / "results.svg", goal_chart(json.loads(results.read_text())))
    root = ET.parse(path).getroot()
    texts = ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]
    for row in RESULTS:
        assert row["name"] in texts
    bars = [r for r in root.iter(f"{SVG}rect") if r.find(f"{SVG}title") is not None]
    assert [b.get("fill") for b in bars] == [OK, MISS, OK, NONE]  # the skipped one has no bar
    goal_lines = list(root.iter(f"{SVG}line"))
    assert len(goal_lines) == 3  # one per readable goal of a measured figure
    assert "skipped: no S3 server" in texts
    assert any("missed" in t for t in texts)
    assert "2 met, 1 missed, 2 without a goal or skipped" in texts
    # The missed figure's bar ends left of its goal line; the met one's beyond (>=) or before (<=).
    verify_bar, verify_goal = float(bars[1].get("width", 0)), goal_lines[1]
    assert 260 + verify_bar < float(verify_goal.get("x1", 0))


def test_series_chart_draws_one_line_per_series_within_its_panel(tmp_path: Path) -> None:
    xs = [i * 0.25 for i in range(40)]
    rss = [80 + (i % 5) * 0.5 for i in range(40)]
    fds = [23 + (i > 20) for i in range(40)]
    svg = series_chart(
        "Long shift",
        "0.1 h on simulated time",
        "wall seconds",
        xs,
        [Series("RSS", "MB", rss), Series("open files", "count", fds, "#e08a00")],
    )
    root = ET.fromstring(svg)
    lines = root.findall(f".//{SVG}polyline")
    assert len(lines) == 2
    for line in lines:
        points = [tuple(map(float, p.split(","))) for p in line.get("points", "").split()]
        assert len(points) == 40
        assert points == sorted(points, key=lambda p: p[0])
        assert all(0 <= x <= 980 and y >= 0 for x, y in points)
    assert "RSS (MB): min 80, max 82" in svg


def test_bench_save_writes_results_and_their_chart_keeping_other_topics(tmp_path: Path) -> None:
    results = tmp_path / ".bench" / "results.json"
    save(RESULTS[:2], results, keep_previous=False)
    merged = save([dict(RESULTS[1], value=0.9), RESULTS[2]], results, keep_previous=True)
    assert [r["name"] for r in merged] == [r["name"] for r in RESULTS[:3]]
    assert json.loads(results.read_text()) == merged
    root = ET.parse(results.with_suffix(".svg")).getroot()
    bars = [r for r in root.iter(f"{SVG}rect") if r.find(f"{SVG}title") is not None]
    assert [b.get("fill") for b in bars] == [OK, OK, OK]  # 0.9 now meets ">= 0.8"
