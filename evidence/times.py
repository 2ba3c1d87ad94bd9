"""Times for people: ISO 8601 UTC with milliseconds beside every raw microsecond time in a report.

The evidence keeps times as integer microseconds since the Unix epoch (``*_utc_us``): exact and
signed. People read ``2026-11-29T15:09:40.123Z``. ``with_iso_times`` adds, beside every
``X_utc_us`` (and ``utc_us``) key of a JSON-ready structure, an ``X_utc`` (``utc``) key with the
same instant in ISO form; it never changes or removes a key, so readers of the raw keys keep
working. Pure functions; no clock is read here.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

_SUFFIX = "_utc_us"


def iso_utc(utc_us: int | None) -> str | None:
    """``utc_us`` (µs since the epoch) as ISO 8601 UTC with milliseconds, e.g.
    ``2026-11-29T15:09:40.123Z``; None for None. Truncates to the millisecond (never rounds a
    time into the next second)."""
    if utc_us is None:
        return None
    stamp = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=utc_us)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def iso_key(key: str) -> str | None:
    """The ISO twin's key for a raw time key (``start_utc_us`` -> ``start_utc``), else None."""
    if key == "utc_us":
        return "utc"
    if key.endswith(_SUFFIX) and len(key) > len(_SUFFIX):
        return key[: -len("_us")]
    return None


def with_iso_times(value: Any) -> Any:
    """``value`` (dicts, lists, scalars) with an ISO twin beside every integer UTC time key."""
    if isinstance(value, list):
        return [with_iso_times(v) for v in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for k, v in value.items():
        out[k] = with_iso_times(v)
        twin = iso_key(k) if isinstance(k, str) else None
        if twin is not None and twin not in value and (v is None or _is_int(v)):
            out[twin] = iso_utc(v)
    return out


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)
