"""Gnss contract: SerialGnss over the simulator's pty, and over pyserial's loop:// transport."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from hal.gnss_serial import SerialGnss
from hal.protocols import Gnss
from hal.types import FixQuality, GnssFix
from simulator.clock import VirtualClock
from simulator.gnss import SimGnssReceiver, nmea_sentence

START_UTC_US = 1_764_000_000_000_000  # 2025-11-24 16:00:00 UTC, a whole second
GGA = "GPGGA,160001.00,5130.00000,N,00007.20000,W,1,09,0.9,35.0,M,46.9,M,,"
RMC = "GPRMC,160001.00,A,5130.00000,N,00007.20000,W,2.72,45.0,241125,,,A,V"

Write = Callable[[bytes], None]
Epoch = Callable[[], None]


class Rig:
    def __init__(self, gnss: SerialGnss, write: Write, epoch: Epoch, close: Callable[[], None]):
        self.gnss, self.write, self.epoch, self.close = gnss, write, epoch, close


def _pty() -> Rig:
    # Half a second past: the receiver's epochs fall on whole seconds, the first at +0.5 s.
    clock = VirtualClock(START_UTC_US + 500_000)
    receiver = SimGnssReceiver(clock, 51.5, -0.12)
    gnss = SerialGnss(receiver.port, 9600, clock)  # open before the first epoch is written

    def close() -> None:
        gnss.close()
        receiver.close()

    return Rig(gnss, receiver.inject_garbage, lambda: clock.advance(1_000_000), close)


def _loop() -> Rig:
    clock = VirtualClock(START_UTC_US)
    gnss = SerialGnss("loop://", 9600, clock)

    def epoch() -> None:
        clock.advance(1_000_000)
        gnss.port.write(nmea_sentence(GGA) + nmea_sentence(RMC))

    return Rig(gnss, gnss.port.write, epoch, gnss.close)


@pytest.fixture(params=[_pty, _loop], ids=["sim-pty", "loop"])
def rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    r = request.param()
    yield r
    r.close()


def _poll_some(gnss: Gnss) -> list[GnssFix]:
    # The pty hands bytes over asynchronously; SimGnssReceiver waits for that, so one poll
    # normally suffices. A few more cost nothing and keep a loaded machine from flaking.
    fixes: list[GnssFix] = []
    for _ in range(5):
        fixes += gnss.poll()
        if fixes:
            break
    return fixes


def test_is_a_gnss(rig: Rig) -> None:
    assert isinstance(rig.gnss, Gnss)
    assert rig.gnss.poll() == []
    assert rig.gnss.bad_sentences == 0


def test_one_fix_per_epoch_with_position_and_time(rig: Rig) -> None:
    rig.epoch()
    fixes = _poll_some(rig.gnss)
    assert len(fixes) == 1
    fix = fixes[0]
    assert fix.has_position
    assert fix.quality is FixQuality.GPS
    assert fix.satellites == 9
    assert fix.lat_deg == pytest.approx(51.5, abs=1e-3)
    assert fix.lon_deg == pytest.approx(-0.12, abs=1e-3)
    assert fix.utc_us is not None
    assert fix.utc_us % 1_000_000 == 0
    assert fix.utc_us == START_UTC_US + 1_000_000
    assert rig.gnss.bad_sentences == 0


def test_garbage_and_bad_checksums_are_counted_not_raised(rig: Rig) -> None:
    rig.write(b"\x00\xff\xfe noise\r\n")
    rig.write(nmea_sentence(GGA)[:-5] + b"00\r\n")  # checksum replaced
    rig.write(b"$GPGGA,1600")  # truncated
    rig.write(b"\r\n")
    assert rig.gnss.poll() == []
    rig.epoch()
    fixes = _poll_some(rig.gnss)
    assert len(fixes) == 1 and fixes[0].has_position
    assert rig.gnss.bad_sentences == 3


def test_a_sentence_split_across_reads_is_reassembled(rig: Rig) -> None:
    whole = nmea_sentence(GGA) + nmea_sentence(RMC)
    rig.write(whole[:30])
    assert rig.gnss.poll() == []
    rig.write(whole[30:])
    fixes = _poll_some(rig.gnss)
    assert len(fixes) == 1
    assert fixes[0].utc_us == START_UTC_US + 1_000_000
    assert rig.gnss.bad_sentences == 0
