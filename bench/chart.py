"""Charts for the benchmarks, written as plain SVG (no plotting library, opens in any browser).

``goal_chart``: every figure of ``.bench/results.json`` against its goal, one row each, on its own
scale (the units differ), green when the goal is met, red when not, grey when there is no goal.
``series_chart``: values sampled over a run (the long shift's RSS and open files), one panel each.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

_GOAL = re.compile(r"^\s*(>=|<=|>|<|==)\s*(-?[0-9.]+(?:e-?[0-9]+)?)\s*$")
_FONT = "font-family='DejaVu Sans, Helvetica, Arial, sans-serif'"

NAME_W = 250
BAR_X0 = 260
BAR_X1 = 640
WIDTH = 980
ROW_H = 34
_SYMBOL = {">=": "≥", "<=": "≤", ">": ">", "<": "<", "==": "="}
OK, MISS, NONE = "#2e7d32", "#c62828", "#78909c"


def parse_goal(goal: object) -> tuple[str, float] | None:
    """``">= 0.8"`` -> (">=", 0.8); None for no goal or one this chart cannot read."""
    if not isinstance(goal, str):
        return None
    m = _GOAL.match(goal)
    return (m.group(1), float(m.group(2))) if m else None


def meets(value: float, goal: tuple[str, float]) -> bool:
    op, limit = goal
    return {
        ">=": value >= limit,
        "<=": value <= limit,
        ">": value > limit,
        "<": value < limit,
        "==": value == limit,
    }[op]


def goal_chart(
    rows: Sequence[dict[str, Any]], title: str = "Benchmarks against their goals"
) -> str:
    """The SVG text of one chart with a row per benchmark figure."""
    top = 64
    height = top + ROW_H * len(rows) + 40
    out = [
        f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {WIDTH} {height}' "
        f"width='{WIDTH}' height='{height}' {_FONT} font-size='13'>",
        f"<rect width='{WIDTH}' height='{height}' fill='#ffffff'/>",
        _title(title, 28),
        "<text x='16' y='48' fill='#5b6577'>each bar on its own scale; the black line is the "
        "goal; green: met, red: missed, grey: no goal</text>",
    ]
    met = missed = 0
    for i, row in enumerate(rows):
        y = top + i * ROW_H
        value = row.get("value")
        goal = parse_goal(row.get("goal"))
        if i % 2 == 0:
            out.append(
                f"<rect x='8' y='{y}' width='{WIDTH - 16}' height='{ROW_H}' fill='#f5f7fa'/>"
            )
        out.append(
            f"<text x='{NAME_W}' y='{y + 21}' text-anchor='end' fill='#1d2330'>"
            f"{escape(str(row.get('name', '?')))}</text>"
        )
        unit = escape(str(row.get("unit") or ""))
        if not isinstance(value, int | float) or isinstance(value, bool):
            note = str(row.get("note") or "")
            note = note if note.startswith("skipped") else f"skipped: {note}" if note else "skipped"
            out.append(
                f"<text x='{BAR_X0}' y='{y + 21}' fill='#78909c' font-style='italic'>"
                f"{escape(note[:100])}</text>"
            )
            continue
        ok = meets(float(value), goal) if goal else None
        colour = NONE if ok is None else OK if ok else MISS
        met += ok is True
        missed += ok is False
        top_value = max(abs(float(value)), abs(goal[1]) if goal else 0.0) * 1.25 or 1.0
        scale = (BAR_X1 - BAR_X0) / top_value
        bar_w = max(1.5, abs(float(value)) * scale)
        out.append(
            f"<rect x='{BAR_X0}' y='{y + 8}' width='{bar_w:.1f}' height='{ROW_H - 16}' "
            f"rx='2' fill='{colour}'><title>{escape(str(row.get('note') or ''))}</title></rect>"
        )
        if goal:
            gx = BAR_X0 + abs(goal[1]) * scale
            out.append(
                f"<line x1='{gx:.1f}' x2='{gx:.1f}' y1='{y + 4}' y2='{y + ROW_H - 4}' "
                "stroke='#000' stroke-width='2.5'/>"
            )
        verdict = "" if ok is None else " ✔" if ok else " ✖ missed"
        goal_text = f"goal {_SYMBOL[goal[0]]} {_number(goal[1])}" if goal else "no goal"
        out.append(
            f"<text x='{BAR_X1 + 12}' y='{y + 16}' fill='{colour}' font-weight='bold'>"
            f"{_number(float(value))} {unit}{verdict}</text>"
            f"<text x='{BAR_X1 + 12}' y='{y + 29}' fill='#5b6577' font-size='11'>{goal_text}</text>"
        )
    out.append(
        f"<text x='16' y='{height - 14}' fill='#5b6577'>{met} met, {missed} missed, "
        f"{len(rows) - met - missed} without a goal or skipped</text>"
    )
    out.append("</svg>")
    return "\n".join(out) + "\n"


@dataclass(frozen=True)
class Series:
    name: str
    unit: str
    values: Sequence[float]
    colour: str = "#1565c0"


def series_chart(
    title: str, subtitle: str, x_label: str, xs: Sequence[float], series: Sequence[Series]
) -> str:
    """One panel per series over the same x values (e.g. seconds into a run)."""
    panel_h, top, left, right = 170, 60, 80, WIDTH - 30
    height = top + panel_h * len(series) + 20
    x_max = max(xs, default=1.0) or 1.0
    out = [
        f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {WIDTH} {height}' "
        f"width='{WIDTH}' height='{height}' {_FONT} font-size='12'>",
        f"<rect width='{WIDTH}' height='{height}' fill='#ffffff'/>",
        _title(title, 26),
        f"<text x='16' y='46' fill='#5b6577'>{escape(subtitle)}</text>",
    ]
    for i, s in enumerate(series):
        y0 = top + i * panel_h + 10
        y1 = y0 + panel_h - 40
        lo, hi = min(s.values, default=0.0), max(s.values, default=1.0)
        lo = min(0.0, lo)
        hi = _ceil_nice(hi * 1.1 if hi > 0 else 1.0)

        def px(
            x: float, v: float, y0: float = y0, y1: float = y1, lo: float = lo, hi: float = hi
        ) -> str:
            sx = left + x / x_max * (right - left)
            return f"{sx:.1f},{y1 - (v - lo) / (hi - lo) * (y1 - y0):.1f}"

        out.append(
            f"<rect x='{left}' y='{y0}' width='{right - left}' height='{y1 - y0}' fill='#f5f7fa'/>"
        )
        for k in range(5):
            v = lo + (hi - lo) * k / 4
            gy = y1 - (y1 - y0) * k / 4
            out.append(
                f"<line x1='{left}' x2='{right}' y1='{gy:.1f}' y2='{gy:.1f}' stroke='#dde2ea'/>"
                f"<text x='{left - 6}' y='{gy + 4:.1f}' text-anchor='end' fill='#5b6577'>"
                f"{_number(v)}</text>"
            )
        points = " ".join(px(x, v) for x, v in zip(xs, s.values, strict=False))
        out.append(
            f"<polyline class='series' points='{points}' fill='none' stroke='{s.colour}' "
            "stroke-width='2' stroke-linejoin='round'/>"
        )
        label = f"{s.name} ({s.unit}): min {_number(min(s.values, default=0))}, max " + _number(
            max(s.values, default=0)
        )
        out.append(
            f"<text x='{left}' y='{y0 - 4}' font-weight='bold' fill='{s.colour}'>"
            f"{escape(label)}</text>"
        )
    axis_y = top + panel_h * len(series) - 22
    step = _ceil_nice(x_max / 6)
    for k in range(int(x_max / step) + 1):
        x = k * step
        out.append(
            f"<text x='{left + (right - left) * x / x_max:.1f}' y='{axis_y}' text-anchor='middle' "
            f"fill='#5b6577'>{_number(x)}</text>"
        )
    out.append(
        f"<text x='{(left + right) / 2}' y='{axis_y + 20}' text-anchor='middle' fill='#1d2330'>"
        f"{escape(x_label)}</text></svg>"
    )
    return "\n".join(out) + "\n"


def write_svg(path: Path, svg: str) -> Path:
    """Write ``svg`` to ``path`` whole (temp name, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(svg, encoding="utf-8")
    tmp.replace(path)
    return path


def _title(text: str, y: int) -> str:
    return (
        f"<text x='16' y='{y}' font-size='18' font-weight='bold' fill='#1d2330'>"
        f"{escape(text)}</text>"
    )


def _number(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 1:
        return f"{v:.2f}".rstrip("0").rstrip(".")
    return f"{v:.3g}"


def _ceil_nice(v: float) -> float:
    power = 10.0 ** math.floor(math.log10(v))
    for n in (1, 2, 2.5, 5, 10):
        if n * power >= v:
            return n * power
    return 10 * power
