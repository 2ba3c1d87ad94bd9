"""A sans-IO NMEA 0183 decoder: bytes from a GNSS receiver in, ``GnssFix`` values out.

It keeps partial lines until they complete, drops over-long lines, and counts (never raises on)
garbage, truncated sentences and checksum failures. GGA and RMC of one epoch (same time of day)
are merged into one fix. It does no IO and reads no clock: the caller passes the monotonic time
at which the bytes were received.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
from dataclasses import dataclass
from typing import Any

from pynmeagps import VALCKSUM, NMEAReader
from pynmeagps.exceptions import (
    NMEAMessageError,
    NMEAParseError,
    NMEAStreamError,
    NMEATypeError,
)

from hal.types import FixQuality, GnssFix

log = logging.getLogger(__name__)

MAX_LINE_BYTES = 120
"""NMEA allows 82 characters; some receivers run longer. Anything past this is noise."""

_SENTENCE = re.compile(rb"\$[A-Z0-9]{2,6},[\x20-\x7e]*\*[0-9A-Fa-f]{2}")
_PARSE_ERRORS = (
    NMEAMessageError,
    NMEAParseError,
    NMEAStreamError,
    NMEATypeError,
    ValueError,
    TypeError,
    IndexError,
    KeyError,
    AttributeError,
    OverflowError,
)
_HALF_DAY = dt.timedelta(hours=12)


@dataclass
class _Epoch:
    """The sentences seen so far for one time of day."""

    tod: dt.time | None
    gga: Any = None
    rmc: Any = None


class NmeaDecoder:
    """Feeds bytes, returns completed fixes. Not thread-safe: one reader owns it."""

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self._max_line_bytes = max_line_bytes
        self._buffer = bytearray()
        self._discarding = False  # inside an over-long line: drop bytes until its newline
        self._epoch: _Epoch | None = None
        self._last_date: dt.date | None = None
        self._last_date_tod: dt.time | None = None
        self.bad_sentences = 0

    def feed(self, data: bytes, received_mono_us: int) -> list[GnssFix]:
        fixes: list[GnssFix] = []
        self._buffer += data
        while True:
            newline = self._buffer.find(b"\n")
            if newline < 0:
                break
            line = bytes(self._buffer[:newline])
            del self._buffer[: newline + 1]
            if self._discarding:
                self._discarding = False
                continue
            self._line(line, received_mono_us, fixes)
        if len(self._buffer) > self._max_line_bytes:
            self._bad("line longer than %d bytes", self._max_line_bytes)
            self._buffer.clear()
            self._discarding = True
        return fixes

    def flush(self, received_mono_us: int) -> list[GnssFix]:
        """Emit the epoch still waiting for its partner sentence (e.g. at close)."""
        fixes: list[GnssFix] = []
        self._emit(received_mono_us, fixes)
        return fixes

    # -- internals ----------------------------------------------------------------------------

    def _bad(self, why: str, *args: object) -> None:
        self.bad_sentences += 1
        log.debug("ignored NMEA input: " + why, *args)

    def _line(self, line: bytes, received_mono_us: int, fixes: list[GnssFix]) -> None:
        line = line.strip()
        if not line:
            return
        if len(line) > self._max_line_bytes:
            self._bad("line longer than %d bytes", self._max_line_bytes)
            return
        start = line.rfind(b"$")
        if start < 0:
            self._bad("no sentence start")
            return
        if start > 0:
            self._bad("%d bytes of noise before a sentence", start)
            line = line[start:]
        if not _SENTENCE.fullmatch(line):
            self._bad("malformed sentence")
            return
        try:
            msg = NMEAReader.parse(line, validate=VALCKSUM)
        except _PARSE_ERRORS as exc:
            self._bad("%s", exc)
            return
        if msg is None or not getattr(msg, "msgID", ""):
            self._bad("unparsable sentence")
            return
        if msg.msgID not in ("GGA", "RMC"):
            return  # a valid sentence we do not use (GSV, VTG, GSA, ...)
        tod = _time_of_day(getattr(msg, "time", None))
        epoch = self._epoch
        if epoch is not None and (epoch.tod != tod or getattr(epoch, msg.msgID.lower())):
            self._emit(received_mono_us, fixes)
            epoch = None
        if epoch is None:
            epoch = self._epoch = _Epoch(tod)
        if msg.msgID == "GGA":
            epoch.gga = msg
        else:
            epoch.rmc = msg
            date = getattr(msg, "date", None)
            if isinstance(date, dt.date) and tod is not None:
                self._last_date, self._last_date_tod = date, tod
        if epoch.gga is not None and epoch.rmc is not None:
            self._emit(received_mono_us, fixes)

    def _emit(self, received_mono_us: int, fixes: list[GnssFix]) -> None:
        epoch, self._epoch = self._epoch, None
        if epoch is None:
            return
        gga, rmc = epoch.gga, epoch.rmc
        if gga is not None:
            quality = _quality(getattr(gga, "quality", None))
        else:
            quality = FixQuality.GPS if getattr(rmc, "status", "") == "A" else FixQuality.NONE
        has_gga_position = _float(getattr(gga, "lat", None)) is not None
        position = gga if has_gga_position else rmc
        fixes.append(
            GnssFix(
                utc_us=self._utc_us(epoch, rmc),
                lat_deg=_float(getattr(position, "lat", None)),
                lon_deg=_float(getattr(position, "lon", None)),
                alt_m=_float(getattr(gga, "alt", None)),
                quality=quality,
                satellites=_int(getattr(gga, "numSV", None)) or 0,
                hdop=_float(getattr(gga, "HDOP", None)),
                received_mono_us=received_mono_us,
            )
        )

    def _utc_us(self, epoch: _Epoch, rmc: Any) -> int | None:
        tod = epoch.tod
        if tod is None:
            return None
        date = getattr(rmc, "date", None)
        if not isinstance(date, dt.date):
            if self._last_date is None or self._last_date_tod is None:
                return None
            date = self._last_date
            # A GGA just past midnight after the day's last RMC belongs to the next day.
            before = dt.datetime.combine(date, self._last_date_tod)
            if dt.datetime.combine(date, tod) < before - _HALF_DAY:
                date = date + dt.timedelta(days=1)
        try:
            when = dt.datetime.combine(date, tod, tzinfo=dt.UTC)
        except (ValueError, OverflowError):
            return None
        return int(when.timestamp()) * 1_000_000 + when.microsecond


def _time_of_day(value: object) -> dt.time | None:
    return value.replace(tzinfo=None) if isinstance(value, dt.time) else None


def _quality(value: object) -> FixQuality:
    number = _int(value)
    try:
        return FixQuality(number) if number is not None else FixQuality.NONE
    except ValueError:
        return FixQuality.NONE


def _float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _int(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value) if math.isfinite(value) else None
