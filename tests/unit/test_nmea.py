"""The NMEA decoder and SerialGnss: fixes from GGA+RMC, and never a crash on bad input."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hal.gnss_serial import SerialGnss
from hal.nmea import NmeaDecoder
from hal.types import FixQuality
from simulator.clock import VirtualClock
from simulator.gnss import nmea_sentence

GGA = nmea_sentence("GNGGA,123519.00,4807.03800,N,01131.00000,W,1,08,0.9,545.4,M,46.9,M,,")
RMC = nmea_sentence("GNRMC,123519.00,A,4807.03800,N,01131.00000,W,0.5,84.4,230394,,,A,V")
T0_US = int(dt.datetime(1994, 3, 23, 12, 35, 19, tzinfo=dt.UTC).timestamp()) * 1_000_000


def test_gga_and_rmc_of_one_epoch_make_one_fix() -> None:
    decoder = NmeaDecoder()
    assert decoder.feed(GGA, 10) == []  # waits for the epoch's RMC
    (fix,) = decoder.feed(RMC, 20)
    assert fix.utc_us == T0_US
    assert fix.lat_deg == pytest.approx(48.1173)
    assert fix.lon_deg == pytest.approx(-11.516667)
    assert fix.alt_m == pytest.approx(545.4)
    assert (fix.quality, fix.satellites, fix.hdop) == (FixQuality.GPS, 8, 0.9)
    assert fix.received_mono_us == 20
    assert decoder.bad_sentences == 0


def test_rmc_first_works_the_same() -> None:
    (fix,) = NmeaDecoder().feed(RMC + GGA, 5)
    assert fix.utc_us == T0_US and fix.alt_m == pytest.approx(545.4)


def test_gga_only_epochs_use_the_last_rmc_date_and_roll_over_midnight() -> None:
    decoder = NmeaDecoder()
    decoder.feed(RMC + GGA, 0)
    late = nmea_sentence("GPGGA,235959.00,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,")
    early = nmea_sentence("GPGGA,000001.00,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,")
    fixes = decoder.feed(late + early, 0) + decoder.flush(0)
    day = dt.datetime(1994, 3, 23, tzinfo=dt.UTC)
    assert [f.utc_us for f in fixes] == [
        int((day + dt.timedelta(hours=23, minutes=59, seconds=59)).timestamp()) * 1_000_000,
        int((day + dt.timedelta(days=1, seconds=1)).timestamp()) * 1_000_000,
    ]


def test_gga_without_any_date_has_no_utc() -> None:
    decoder = NmeaDecoder()
    decoder.feed(GGA, 0)
    (fix,) = decoder.flush(0)
    assert fix.utc_us is None and fix.has_position


def test_no_fix_sentences_give_a_fix_without_position() -> None:
    gga = nmea_sentence("GPGGA,123519.00,,,,,0,00,99.99,,M,,M,,")
    rmc = nmea_sentence("GPRMC,123519.00,V,,,,,,,230394,,,N,V")
    (fix,) = NmeaDecoder().feed(gga + rmc, 0)
    assert not fix.has_position
    assert fix.quality is FixQuality.NONE
    assert fix.lat_deg is None and fix.alt_m is None
    assert fix.utc_us == T0_US


def test_bad_input_is_counted_and_good_input_still_decodes() -> None:
    decoder = NmeaDecoder()
    bad_checksum = GGA[:-4] + b"00\r\n"
    junk = b"\x00\x01\xff\xfe binary noise\n"
    unknown_but_valid = nmea_sentence("GPGSV,1,1,00")
    noisy_prefix = b"\xaa\xbb" + GGA
    fixes = decoder.feed(bad_checksum + junk + unknown_but_valid + noisy_prefix + RMC, 0)
    assert len(fixes) == 1 and fixes[0].has_position
    assert decoder.bad_sentences == 3  # bad checksum, junk line, noise before a sentence


def test_partial_lines_are_kept_until_completed() -> None:
    decoder = NmeaDecoder()
    data = GGA + RMC
    fixes = []
    for i in range(len(data)):
        fixes += decoder.feed(data[i : i + 1], i)
    assert len(fixes) == 1
    assert decoder.bad_sentences == 0


def test_overlong_lines_are_dropped_whole_and_the_stream_recovers() -> None:
    decoder = NmeaDecoder(max_line_bytes=120)
    assert decoder.feed(b"$GPGGA," + b"9" * 200, 0) == []
    assert decoder.bad_sentences == 1
    assert decoder.feed(b"9" * 500 + b"*00\r\n", 0) == []  # the rest of the same line
    assert decoder.bad_sentences == 1
    assert len(decoder.feed(GGA + RMC, 0)) == 1


def test_serial_gnss_over_loop_transport() -> None:
    clock = VirtualClock(0)
    gnss = SerialGnss("loop://", 9600, clock)
    gnss.port.write(GGA[:20])
    assert gnss.poll() == []
    clock.advance(123)
    gnss.port.write(GGA[20:] + RMC)
    (fix,) = gnss.poll()
    assert fix.received_mono_us == 123
    gnss.close()


def test_serial_gnss_refuses_a_port_that_does_not_exist() -> None:
    from hal.errors import HardwareError

    with pytest.raises(HardwareError, match="GNSS port"):
        SerialGnss("/dev/does-not-exist-bwc", 9600, VirtualClock(0))


_FRAGMENTS = st.sampled_from(
    [GGA, RMC, GGA[:17], RMC[9:], b"\r\n", b"\n", b"$", b"*", b"*FF", b",,,,", b"$GPGGA,"]
)
_CHUNKS = st.lists(st.one_of(st.binary(max_size=150), _FRAGMENTS), max_size=40)


@given(_CHUNKS)
@settings(max_examples=300, deadline=None)
def test_decoder_never_raises_and_fixes_are_well_formed(chunks: list[bytes]) -> None:
    decoder = NmeaDecoder()
    for i, chunk in enumerate(chunks):
        for fix in decoder.feed(chunk, i):
            assert fix.received_mono_us == i
            assert fix.satellites >= 0
            if fix.lat_deg is not None:
                assert -90.0 <= fix.lat_deg <= 90.0
    decoder.flush(len(chunks))
    assert decoder.bad_sentences >= 0


@given(st.lists(st.binary(min_size=1, max_size=100), max_size=10))
@settings(max_examples=50, deadline=None)
def test_serial_gnss_never_raises_on_garbage_then_still_decodes(chunks: list[bytes]) -> None:
    gnss = SerialGnss("loop://", 9600, VirtualClock(0))
    for chunk in chunks:
        gnss.port.write(chunk)
        gnss.poll()
    gnss.port.write(b"\r\n" + GGA + RMC)
    fixes = gnss.poll()
    gnss.close()
    assert any(f.has_position and f.utc_us == T0_US for f in fixes)


@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80))
@settings(max_examples=300, deadline=None)
def test_any_checksummed_body_is_handled(body: str) -> None:
    decoder = NmeaDecoder()
    decoder.feed(nmea_sentence(body.replace("*", "").replace("$", "")), 0)
    decoder.feed(nmea_sentence("GPGGA," + body.replace("*", "").replace("$", "")), 0)
    decoder.feed(nmea_sentence("GPRMC," + body.replace("*", "").replace("$", "")), 0)
    decoder.flush(0)
