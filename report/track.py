"""The GNSS track as SVG geometry: positions drawn to scale, north up, with a scale bar and times.

No map tiles and no network: a local flat projection (metres east and north of the track's centre)
is exact enough for the few kilometres a recording covers. Pure: no drawing library.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

from report.clock_text import clock_utc, iso_utc
from report.model import Fix, Marker

M_PER_DEG_LAT = 111_320.0
WIDTH = 640
HEIGHT = 400
MARGIN = 48
MIN_EXTENT_M = 20.0  # a person standing still should not fill the page with GNSS noise
_NICE = (1, 2, 5)


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    label: str
    title: str
    kind: str = "time"  # start, end, time, marker


@dataclass
class Track:
    path_d: str
    points: list[Point] = field(default_factory=list)
    scale_x: float = 0.0
    scale_y: float = 0.0
    scale_px: float = 0.0
    scale_label: str = ""
    distance_m: float = 0.0
    fixes: int = 0
    width: int = WIDTH
    height: int = HEIGHT
    start_iso: str = ""
    end_iso: str = ""
    centre: str = ""


def build_track(fixes: list[Fix], markers: list[Marker] | None = None) -> Track | None:
    """SVG geometry for ``fixes`` (time order), or None if there is no position at all."""
    if not fixes:
        return None
    lat0 = sum(f.lat_deg for f in fixes) / len(fixes)
    lon0 = sum(f.lon_deg for f in fixes) / len(fixes)
    m_per_deg_lon = M_PER_DEG_LAT * math.cos(math.radians(lat0))
    east = [(f.lon_deg - lon0) * m_per_deg_lon for f in fixes]
    north = [(f.lat_deg - lat0) * M_PER_DEG_LAT for f in fixes]
    extent = max(max(east) - min(east), max(north) - min(north), MIN_EXTENT_M)
    scale = min(WIDTH - 2 * MARGIN, HEIGHT - 2 * MARGIN) / extent  # px per metre
    cx = (max(east) + min(east)) / 2
    cy = (max(north) + min(north)) / 2

    def px(e: float, n: float) -> tuple[float, float]:
        return round(WIDTH / 2 + (e - cx) * scale, 1), round(HEIGHT / 2 - (n - cy) * scale, 1)

    coords = [px(e, n) for e, n in zip(east, north, strict=True)]
    path_d = "M " + " L ".join(f"{x},{y}" for x, y in coords)
    distance = sum(
        math.hypot(e2 - e1, n2 - n1)
        for e1, n1, e2, n2 in zip(east, north, east[1:], north[1:], strict=False)
    )
    track = Track(
        path_d=path_d,
        distance_m=distance,
        fixes=len(fixes),
        start_iso=iso_utc(fixes[0].utc_us),
        end_iso=iso_utc(fixes[-1].utc_us),
        centre=f"{lat0:.5f}, {lon0:.5f}",
    )
    # Time labels: start, end, and a few between, spaced so that they do not pile up.
    labelled = _spread(len(fixes), 6)
    for i in labelled:
        kind = "start" if i == 0 else "end" if i == len(fixes) - 1 else "time"
        x, y = coords[i]
        f = fixes[i]
        track.points.append(
            Point(
                x,
                y,
                clock_utc(f.utc_us),
                f"{iso_utc(f.utc_us)}: {f.lat_deg:.6f}, {f.lon_deg:.6f}",
                kind,
            )
        )
    for m in markers or []:
        at = _position_at(fixes, m.utc_us)
        if at is None:
            continue
        lat, lon = at
        x, y = px((lon - lon0) * m_per_deg_lon, (lat - lat0) * M_PER_DEG_LAT)
        track.points.append(
            Point(x, y, str(m.number), f"Marker {m.number} at {iso_utc(m.utc_us)}", "marker")
        )
    metres = _nice_length((WIDTH - 2 * MARGIN) / 4 / scale)
    track.scale_px = round(metres * scale, 1)
    track.scale_x = MARGIN
    track.scale_y = HEIGHT - 16
    track.scale_label = f"{metres / 1000:g} km" if metres >= 1000 else f"{metres:g} m"
    return track


def _spread(n: int, most: int) -> list[int]:
    if n <= most:
        return list(range(n))
    return sorted({round(i * (n - 1) / (most - 1)) for i in range(most)})


def _nice_length(metres: float) -> float:
    """The largest 1, 2 or 5 times a power of ten not above ``metres``."""
    power = 10.0 ** math.floor(math.log10(max(metres, 1e-3)))
    best = power
    for n in _NICE:
        if n * power <= metres:
            best = n * power
    return best


def _position_at(fixes: list[Fix], utc_us: int) -> tuple[float, float] | None:
    """Linear interpolation between the fixes around ``utc_us``; None outside the track."""
    if not fixes or utc_us < fixes[0].utc_us - 5_000_000 or utc_us > fixes[-1].utc_us + 5_000_000:
        return None
    if utc_us <= fixes[0].utc_us:
        return fixes[0].lat_deg, fixes[0].lon_deg
    for a, b in itertools.pairwise(fixes):
        if a.utc_us <= utc_us <= b.utc_us:
            t = (utc_us - a.utc_us) / max(1, b.utc_us - a.utc_us)
            return a.lat_deg + t * (b.lat_deg - a.lat_deg), a.lon_deg + t * (b.lon_deg - a.lon_deg)
    return fixes[-1].lat_deg, fixes[-1].lon_deg
