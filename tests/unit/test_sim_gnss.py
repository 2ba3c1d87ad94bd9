"""SimGnssReceiver: real NMEA on a pty, knobs for no fix, garbage and GNSS-vs-RTC time offset."""

from __future__ import annotations

import os

import pytest
from pynmeagps import VALCKSUM, NMEAReader

from hal.gnss_serial import SerialGnss
from hal.types import ClockSource, FixQuality, GnssFix
from simulator.clock import VirtualClock
from simulator.gnss import SimGnssReceiver

START_UTC_US = 1_764_000_000_250_000


def _poll(gnss: SerialGnss) -> list[GnssFix]:
    fixes: list[GnssFix] = []
    for _ in range(5):
        fixes += gnss.poll()
        if fixes:
            break
    return fixes


def test_sentences_are_valid_nmea_with_checksums() -> None:
    receiver = SimGnssReceiver(VirtualClock(START_UTC_US), 48.1, 11.5)
    lines = receiver.sentences().split(b"\r\n")
    gga, rmc = (NMEAReader.parse(line + b"\r\n", validate=VALCKSUM) for line in lines[:2])
    assert gga.msgID == "GGA" and rmc.msgID == "RMC"
    assert gga.lat == pytest.approx(48.1) and rmc.lon == pytest.approx(11.5)
    receiver.close()


def test_epochs_on_whole_seconds_walking_track_and_offset_time() -> None:
    clock = VirtualClock(START_UTC_US)
    receiver = SimGnssReceiver(clock, 51.5, -0.12, utc_offset_us=-90_000_000, speed_mps=10.0)
    gnss = SerialGnss(receiver.port, 9600, clock)
    fixes: list[GnssFix] = []
    clock.run_until(5_000_000, after_each=lambda: fixes.extend(_poll(gnss)))
    assert len(fixes) == 5
    # GNSS runs 90 s behind the unit's RTC; its epochs fall on whole GNSS seconds.
    for fix in fixes:
        assert fix.utc_us is not None
        assert fix.utc_us % 1_000_000 == 0
        assert fix.utc_us == clock.utc_us() - 90_000_000 - (
            clock.monotonic_us() - fix.received_mono_us
        )
    lats = [f.lat_deg or 0.0 for f in fixes]
    assert lats == sorted(lats) and lats[0] != lats[-1]  # walking north-east
    # After the unit steps to GNSS time, the receiver keeps true time (no repeated step).
    last_utc_us = fixes[-1].utc_us
    assert last_utc_us is not None
    clock.set_utc(
        last_utc_us + (clock.monotonic_us() - fixes[-1].received_mono_us), ClockSource.GNSS
    )
    more: list[GnssFix] = []
    clock.run_until(7_000_000, after_each=lambda: more.extend(_poll(gnss)))
    assert len(more) == 2
    for fix in more:
        assert fix.utc_us == clock.utc_us() - (clock.monotonic_us() - fix.received_mono_us)
    gnss.close()
    receiver.close()


def test_fix_can_be_lost_and_garbage_injected() -> None:
    clock = VirtualClock(START_UTC_US)
    receiver = SimGnssReceiver(clock, 51.5, -0.12)
    gnss = SerialGnss(receiver.port, 9600, clock)
    receiver.set_fix(False)
    clock.advance(1_000_000)
    (no_fix,) = _poll(gnss)
    assert no_fix.quality is FixQuality.NONE and not no_fix.has_position
    assert no_fix.utc_us is not None
    receiver.inject_garbage(b"\x00garbage\r\n$GPRMC,bad*01\r\n")  # checksum is 00
    receiver.set_fix(True)
    clock.advance(1_000_000)
    (fix,) = _poll(gnss)
    assert fix.has_position
    assert gnss.bad_sentences == 2
    gnss.close()
    receiver.close()


def test_close_releases_the_pty() -> None:
    receiver = SimGnssReceiver(VirtualClock(START_UTC_US), 0.0, 0.0)
    port = receiver.port
    assert os.path.exists(port)
    receiver.close()
    receiver.close()  # idempotent
    assert not os.path.exists(port)


def test_an_absent_reader_loses_old_sentences_like_a_uart_then_reads_cleanly() -> None:
    clock = VirtualClock(START_UTC_US)
    receiver = SimGnssReceiver(clock, 51.5, -0.12)
    clock.run_until(1_000_000_000)  # nobody reads for 1000 s: the pty fills up
    assert receiver.epochs_written == 1000
    assert receiver.dropped_bytes > 0
    gnss = SerialGnss(receiver.port, 9600, clock)  # opening flushes the stale input
    fixes: list[GnssFix] = []
    clock.run_until(1_003_000_000, after_each=lambda: fixes.extend(_poll(gnss)))
    assert len(fixes) == 3 and all(f.has_position for f in fixes)
    assert gnss.bad_sentences == 0
    gnss.close()
    receiver.close()
