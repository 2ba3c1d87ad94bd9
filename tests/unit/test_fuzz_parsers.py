"""Fuzz the unit's input parsers: scenario files, profiles, ``--set`` values and the GNSS UART.

Every input either parses or raises the project's usage/config error (one line at the CLI);
NMEA bytes never raise at all, they are counted and dropped.
"""

from __future__ import annotations

import contextlib
import tomllib
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hal.errors import ConfigError, UsageError
from hal.nmea import NmeaDecoder
from recorder.config import load_profile_text, parse_override, parse_profile
from simulator.scenario import ACTIONS, parse_scenario

FUZZ = settings(max_examples=50, deadline=None)

TOML_SCALARS = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
KEYS = st.sampled_from(
    ["duration_s", "events", "at_s", "action", "button", "hold_s", "level_pct", "charging",
     "count", "width", "fps", "pre_event_s", "segment_s", "backend", "x"]
)  # fmt: skip
SECTIONS = st.sampled_from(
    ["camera", "recorder", "storage", "battery", "gnss", "gpio", "offload", "unit", "zzz"]
)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if v != v:
            return "nan"
        if v in (float("inf"), float("-inf")):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, int):
        return str(v)
    return '"' + "".join(c if c.isalnum() else "_" for c in str(v)) + '"'


@FUZZ
@given(text=st.text(max_size=300))
def test_scenario_any_text(text: str) -> None:
    with contextlib.suppress(UsageError):
        parse_scenario(text, "fuzz.toml")


@FUZZ
@given(
    duration=TOML_SCALARS,
    events=st.lists(
        st.dictionaries(
            KEYS,
            st.one_of(TOML_SCALARS, st.sampled_from(sorted(ACTIONS)), st.sampled_from(["event"])),
            max_size=6,
        ),
        max_size=5,
    ),
)
def test_scenario_structured(duration: Any, events: list[dict[str, Any]]) -> None:
    lines = [f"duration_s = {_toml_value(duration)}"]
    for ev in events:
        lines.append("[[events]]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in ev.items()]
    try:
        scenario = parse_scenario("\n".join(lines) + "\n", "fuzz.toml")
    except UsageError:
        return
    assert all(0 <= e.at_s <= scenario.duration_s for e in scenario.events)


@FUZZ
@given(text=st.text(max_size=300))
def test_profile_any_text(text: str) -> None:
    with contextlib.suppress(ConfigError, UsageError):
        load_profile_text(text, "fuzz.toml")


@FUZZ
@given(
    tables=st.dictionaries(
        SECTIONS, st.one_of(TOML_SCALARS, st.dictionaries(KEYS, TOML_SCALARS, max_size=4))
    )
)
def test_profile_structured(tables: dict[str, Any]) -> None:
    with contextlib.suppress(ConfigError, UsageError):
        parse_profile(tables)


@FUZZ
@given(
    key=st.one_of(
        st.text(max_size=30),
        st.sampled_from(["camera.width", "recorder.pre_event_s", "gnss.port", "camera.overlay"]),
    ),
    value=st.text(max_size=40),
)
def test_set_override_any_text(key: str, value: str) -> None:
    try:
        k, v = parse_override(f"{key}={value}")
        parse_profile({}, {k: v})
    except (ConfigError, UsageError):
        pass
    except tomllib.TOMLDecodeError as exc:  # pragma: no cover - the failure we guard against
        raise AssertionError(f"--set leaked a TOML error: {exc}") from exc


@FUZZ
@given(chunks=st.lists(st.binary(max_size=300), max_size=20))
def test_nmea_any_bytes_never_raise(chunks: list[bytes]) -> None:
    decoder = NmeaDecoder()
    t_us = 0
    for chunk in chunks:
        t_us += 100_000
        for fix in decoder.feed(chunk, t_us):
            assert fix.received_mono_us == t_us
    assert decoder.bad_sentences >= 0


@FUZZ
@given(
    fields=st.lists(
        st.one_of(
            st.text(alphabet="0123456789.-NSEW,", max_size=12), st.sampled_from(["", "9" * 40])
        ),
        min_size=1,
        max_size=16,
    ),
    talker=st.sampled_from(["GPGGA", "GNRMC", "GPRMC", "GNGGA", "GPGSA", "XXXXX"]),
)
def test_nmea_well_formed_sentences_with_hostile_fields(fields: list[str], talker: str) -> None:
    body = ",".join([talker, *fields])
    checksum = 0
    for b in body.encode():
        checksum ^= b
    line = f"${body}*{checksum:02X}\r\n".encode()
    decoder = NmeaDecoder()
    for fix in decoder.feed(line * 3, 1_000_000):
        assert fix.utc_us is None or isinstance(fix.utc_us, int)
