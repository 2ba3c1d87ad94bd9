"""evidence.times: ISO 8601 UTC twins beside every raw microsecond time, never replacing one."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from evidence.times import iso_key, iso_utc, with_iso_times


def test_iso_utc_has_milliseconds_and_truncates() -> None:
    assert iso_utc(0) == "1970-01-01T00:00:00.000Z"
    assert iso_utc(1_767_225_599_999_999) == "2025-12-31T23:59:59.999Z"  # not 2026-01-01
    assert iso_utc(1_764_428_980_123_456) == "2025-11-29T15:09:40.123Z"
    assert iso_utc(None) is None


@given(st.integers(min_value=0, max_value=4_102_444_800_000_000))
def test_iso_utc_round_trips_to_the_millisecond(utc_us: int) -> None:
    import datetime as dt

    text = iso_utc(utc_us)
    assert text is not None and text.endswith("Z") and len(text) == 24
    back = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert round(back.timestamp() * 1000) == utc_us // 1000


def test_twins_are_added_beside_raw_keys_in_nested_structures() -> None:
    raw = {
        "start_utc_us": 1_000,
        "end_utc_us": None,
        "utc_source": "gnss",
        "markers": [{"at_utc_us": 2_000_000, "frame": 3}],
        "gnss_track": [{"utc_us": 5_000, "lat_deg": 1.0}],
        "count_us": 7,
        "flag_utc_us": True,
    }
    out = with_iso_times(raw)
    assert out["start_utc"] == "1970-01-01T00:00:00.001Z"
    assert out["end_utc"] is None
    assert out["markers"][0]["at_utc"] == "1970-01-01T00:00:02.000Z"
    assert out["gnss_track"][0]["utc"] == "1970-01-01T00:00:00.005Z"
    assert "count" not in out and "flag_utc" not in out
    for k, v in raw.items():  # every raw key is kept as it was
        if not isinstance(v, list):
            assert out[k] == v
    assert out["markers"][0]["at_utc_us"] == 2_000_000
    assert iso_key("utc_source") is None and iso_key("_utc_us") is None


def test_verify_text_and_json_carry_iso_times() -> None:
    from evidence.verify_report import RecordingReport, Report

    rec = RecordingReport(
        "rec-1",
        start_utc_us=1_764_428_980_423_000,
        end_utc_us=1_764_429_000_000_000,
        press_utc_us=1_764_428_980_123_000,
        utc_source="gnss",
        markers=[{"at_mono_us": 5, "at_utc_us": 1_764_428_990_000_000, "frame": 30}],
        mute=[{"from_utc_us": 1_764_428_991_000_000, "to_utc_us": None}],
    )
    report = Report("store", recordings=[rec])
    text = report.format_text()
    assert (
        "press 2025-11-29T15:09:40.123Z, record_start 2025-11-29T15:09:40.423Z, "
        "record_stop 2025-11-29T15:10:00.000Z (UTC, gnss clock)" in text
    )
    assert "marker at frame 30 (2025-11-29T15:09:50.000Z, utc_us 1764428990000000)" in text
    assert "mute 2025-11-29T15:09:51.000Z - None" in text
    (out,) = report.to_json()["recordings"]
    assert out["press_utc"] == "2025-11-29T15:09:40.123Z"
    assert out["start_utc_us"] == 1_764_428_980_423_000
    assert out["markers"][0]["at_utc"] == "2025-11-29T15:09:50.000Z"
    assert out["mute"][0]["to_utc"] is None
