"""A GNSS receiver on a serial line: pyserial for the transport, ``hal.nmea`` for the sentences.

The port is one pyserial URL (``/dev/serial0``, a pty path from the simulator, ``loop://``).
On a Raspberry Pi ``/dev/serial0`` is the header UART (``ttyAMA0`` is the Bluetooth UART on a
Pi 3 or Zero 2 W); docs/hardware.md gives the config.txt lines it needs, per model.
Opening it flushes pending input, so open it before the other end starts writing. This is the only
module of ``hal`` that imports pyserial, and only when constructed.

Threading: ``poll`` reads without blocking on the caller's thread; one thread owns the object.
"""

from __future__ import annotations

import logging
from typing import Any

from hal.errors import HardwareError
from hal.nmea import MAX_LINE_BYTES, NmeaDecoder
from hal.protocols import Clock
from hal.types import GnssFix

log = logging.getLogger(__name__)

_READ_CHUNK_BYTES = 4096


class SerialGnss:
    """A ``Gnss`` reading NMEA 0183 (GGA + RMC) from a pyserial URL."""

    def __init__(
        self, url: str, baud: int, clock: Clock, *, max_line_bytes: int = MAX_LINE_BYTES
    ) -> None:
        import serial

        self._serial_error: type[Exception] = serial.SerialException
        self._clock = clock
        self._decoder = NmeaDecoder(max_line_bytes)
        try:
            self._port: Any = serial.serial_for_url(url, baudrate=baud, timeout=0)
        except (serial.SerialException, ValueError, OSError) as exc:
            raise HardwareError(f"GNSS port {url}: {exc}") from exc
        self._url = url

    @property
    def port(self) -> Any:
        """The pyserial port (``loop://`` tests write to it)."""
        return self._port

    @property
    def bad_sentences(self) -> int:
        return self._decoder.bad_sentences

    def poll(self) -> list[GnssFix]:
        """Fixes completed by the bytes waiting now; never blocks.

        Raises ``HardwareError`` only when the port itself fails (unplugged receiver); bad input
        is counted in ``bad_sentences``, never raised.
        """
        fixes: list[GnssFix] = []
        while True:
            try:
                chunk = self._port.read(_READ_CHUNK_BYTES)
            except (self._serial_error, OSError) as exc:
                raise HardwareError(f"GNSS port {self._url}: {exc}") from exc
            if not chunk:
                return fixes
            fixes += self._decoder.feed(bytes(chunk), self._clock.monotonic_us())

    def close(self) -> None:
        self._port.close()
