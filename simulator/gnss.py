"""A simulated GNSS receiver: real NMEA 0183 (GGA + RMC, once a second of simulated time) written
to a pty, so the unit reads it through the same ``SerialGnss`` backend as a Pi's UART.

Knobs: no fix, garbage injection, and a GNSS time that differs from the unit's RTC. It must not
read the wall clock; sentence times come from the ``VirtualClock``.

Threading: runs on the thread that advances the virtual clock.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import logging
import math
import os
import select
import termios
import tty
from functools import reduce

from simulator.clock import Handle, VirtualClock

log = logging.getLogger(__name__)

_EPOCH_US = 1_000_000
_M_PER_DEG_LAT = 111_320.0
_SETTLE_POLLS = 200
_SETTLE_POLL_S = 0.001
_PTY_INQ_MAX = 4095
"""The most a pty's line discipline holds for its reader (N_TTY_BUF_SIZE less one)."""


def nmea_sentence(body: str) -> bytes:
    """``$body*CS\\r\\n`` with the NMEA checksum (XOR of the body's bytes)."""
    checksum = reduce(lambda acc, byte: acc ^ byte, body.encode("ascii"), 0)
    return f"${body}*{checksum:02X}\r\n".encode("ascii")


def _lat_field(lat_deg: float) -> str:
    deg = int(abs(lat_deg))
    return f"{deg:02d}{(abs(lat_deg) - deg) * 60:08.5f},{'N' if lat_deg >= 0 else 'S'}"


def _lon_field(lon_deg: float) -> str:
    deg = int(abs(lon_deg))
    return f"{deg:03d}{(abs(lon_deg) - deg) * 60:08.5f},{'E' if lon_deg >= 0 else 'W'}"


class SimGnssReceiver:
    """Writes one GGA and one RMC per simulated second to a pty; ``port`` is the reader's end.

    Open the reader (``SerialGnss(receiver.port, ...)``) before the first epoch: opening a serial
    port flushes its input. GNSS time is the unit's UTC at construction plus ``utc_offset_us``,
    advancing with monotonic time, so it stays true when the unit later steps its own clock.
    """

    def __init__(
        self,
        clock: VirtualClock,
        lat: float,
        lon: float,
        *,
        alt_m: float = 35.0,
        speed_mps: float = 1.4,
        heading_deg: float = 45.0,
        satellites: int = 9,
        hdop: float = 0.9,
        fix: bool = True,
        utc_offset_us: int = 0,
        talker: str = "GN",
    ) -> None:
        self._clock = clock
        self._lat0, self._lon0, self._alt_m = lat, lon, alt_m
        self._speed_mps = speed_mps
        self._heading_rad = math.radians(heading_deg)
        self._satellites = satellites
        self._hdop = hdop
        self._talker = talker
        self.fix = fix
        self.dropped_bytes = 0
        self.epochs_written = 0
        # True GNSS time = monotonic + this offset (fixed now, independent of later clock steps).
        self._gnss_minus_mono_us = clock.utc_us() - clock.monotonic_us() + utc_offset_us
        self._start_mono_us = clock.monotonic_us()
        self._master, self._slave = os.openpty()
        # Raw mode: no echo back to the master, no line editing, bytes pass unchanged.
        tty.setraw(self._slave)
        tty.setraw(self._master)
        flags = fcntl.fcntl(self._master, fcntl.F_GETFL)
        fcntl.fcntl(self._master, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        self._port = os.ttyname(self._slave)
        self._closed = False
        # Epochs fall on whole GNSS seconds, as a receiver's do.
        gnss_now_us = clock.monotonic_us() + self._gnss_minus_mono_us
        first_us = clock.monotonic_us() + (-gnss_now_us) % _EPOCH_US
        self._timer: Handle = clock.call_every(_EPOCH_US, self._write_epoch, start_us=first_us)

    @property
    def port(self) -> str:
        """The pty device path for the unit's ``SerialGnss``."""
        return self._port

    def gnss_utc_us(self) -> int:
        return self._clock.monotonic_us() + self._gnss_minus_mono_us

    def position(self) -> tuple[float, float]:
        """Where the simulated wearer is now: a straight walk from the start point."""
        dist_m = self._speed_mps * (self._clock.monotonic_us() - self._start_mono_us) / 1e6
        lat = self._lat0 + dist_m * math.cos(self._heading_rad) / _M_PER_DEG_LAT
        lon_scale = _M_PER_DEG_LAT * max(0.01, math.cos(math.radians(self._lat0)))
        lon = self._lon0 + dist_m * math.sin(self._heading_rad) / lon_scale
        return lat, lon

    def sentences(self) -> bytes:
        """This instant's GGA and RMC, as the receiver would send them."""
        when = dt.datetime.fromtimestamp(self.gnss_utc_us() / 1e6, tz=dt.UTC)
        hms = f"{when:%H%M%S}.{when.microsecond // 10_000:02d}"
        talker = self._talker
        if not self.fix:
            # A receiver without a fix still knows the time from its RTC, but reports no position.
            gga = f"{talker}GGA,{hms},,,,,0,00,99.99,,M,,M,,"
            rmc = f"{talker}RMC,{hms},V,,,,,,,{when:%d%m%y},,,N,V"
            return nmea_sentence(gga) + nmea_sentence(rmc)
        lat, lon = self.position()
        course = math.degrees(self._heading_rad) % 360
        knots = self._speed_mps * 3600 / 1852
        gga = (
            f"{talker}GGA,{hms},{_lat_field(lat)},{_lon_field(lon)},1,{self._satellites:02d},"
            f"{self._hdop:.1f},{self._alt_m:.1f},M,46.9,M,,"
        )
        rmc = (
            f"{talker}RMC,{hms},A,{_lat_field(lat)},{_lon_field(lon)},{knots:.2f},{course:.1f},"
            f"{when:%d%m%y},,,A,V"
        )
        return nmea_sentence(gga) + nmea_sentence(rmc)

    def inject_garbage(self, data: bytes) -> None:
        """Write ``data`` as it is (line noise, a truncated sentence, a bad checksum)."""
        self._write(data)

    def set_fix(self, fix: bool) -> None:
        self.fix = fix

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._timer.cancel()
        os.close(self._master)
        os.close(self._slave)

    def _write_epoch(self) -> None:
        if self._closed:
            return
        self._write(self.sentences())
        self.epochs_written += 1

    def _write(self, data: bytes) -> None:
        if self._closed:
            return
        before = self._waiting()
        try:
            written = os.write(self._master, data)
        except BlockingIOError:
            written = 0
        # A real UART drops what the reader does not take in time; so do we, and count it.
        self.dropped_bytes += len(data) - written
        self._settle(before + written)

    def _waiting(self) -> int:
        buf = bytearray(4)
        fcntl.ioctl(self._slave, termios.TIOCINQ, buf)
        return int.from_bytes(buf, "little")

    def _settle(self, expected: int) -> None:
        """Wait (briefly, bounded) until the kernel has moved the bytes to the reader's side.

        The pty hands written bytes over on a kernel work queue; waiting here makes a reader that
        polls right after this event see them, which keeps simulated runs deterministic.
        """
        # A reader that is not reading leaves the buffer full; then there is nothing to wait for.
        target = min(expected, _PTY_INQ_MAX)
        for _ in range(_SETTLE_POLLS):
            if self._waiting() >= target:
                return
            select.select([], [], [], _SETTLE_POLL_S)
        log.debug("pty did not deliver %d bytes in time", expected)
