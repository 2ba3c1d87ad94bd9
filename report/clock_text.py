"""Times and durations as a person reads them: ISO 8601 UTC with milliseconds, seconds with units.

Pure functions on integers (microseconds since the Unix epoch); no clock is read here.
"""

from __future__ import annotations

import datetime as dt

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def iso_utc(utc_us: int) -> str:
    """``2026-11-29T15:10:02.123Z``: ISO 8601, UTC, milliseconds (truncated, never rounded up)."""
    moment = _EPOCH + dt.timedelta(microseconds=utc_us - utc_us % 1000)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def clock_utc(utc_us: int, *, millis: bool = False) -> str:
    """``15:10:02`` (or ``15:10:02.123``): the time of day in UTC, for axis labels."""
    moment = _EPOCH + dt.timedelta(microseconds=utc_us - utc_us % 1000)
    return moment.strftime("%H:%M:%S") + (f".{moment.microsecond // 1000:03d}" if millis else "")


def date_utc(utc_us: int) -> str:
    """``Sunday 29 November 2026``."""
    moment = _EPOCH + dt.timedelta(microseconds=utc_us)
    return f"{moment:%A} {moment.day} {moment:%B %Y}"


def duration_text(seconds: float) -> str:
    """``2.0 s``, ``1 min 05.3 s``, ``2 h 03 min 10 s``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h} h {m:02d} min {s:02d} s"
    return f"{m} min {seconds - 60 * m:04.1f} s"


def offset_text(seconds: float) -> str:
    """Signed offset from the button press: ``-2.0 s``, ``+12.5 s``, ``+1 min 05.3 s``."""
    sign = "-" if seconds < 0 else "+"
    return sign + duration_text(abs(seconds))


def parse_iso_us(text: str | None) -> int | None:
    """Microseconds since the epoch of an ISO 8601 time (UTC if it names no zone), or None."""
    if not text:
        return None
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    delta = moment - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def iso_text(text: str | None) -> str:
    """An ISO time from elsewhere (a TSA token) in this report's form, or "unknown"."""
    us = parse_iso_us(text)
    return iso_utc(us) if us is not None else (text or "unknown")


def clock_offset_text(seconds: float | None) -> str:
    """How far the unit's clock was from a trusted one: ``2.3 s ahead``, ``within 1 s``."""
    if seconds is None:
        return "unknown"
    if abs(seconds) < 1:
        return "within 1 s"
    return f"{duration_text(abs(seconds))} {'ahead' if seconds > 0 else 'behind'}"
