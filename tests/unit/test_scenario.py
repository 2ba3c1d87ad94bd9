"""Scenario files: strict parsing, errors that name the event and key."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hal.errors import UsageError
from simulator.scenario import parse_scenario

GOOD = """
duration_s = 120.0
[[events]]
at_s = 90.0
action = "hold"
button = "event"
hold_s = 3.5
[[events]]
at_s = 45.0
action = "double_press"
button = "event"
[[events]]
at_s = 100.0
action = "power_cut"
"""


def test_contract_example_parses_in_time_order() -> None:
    s = parse_scenario(GOOD, "s.toml")
    assert s.duration_s == 120.0
    assert [e.action for e in s.events] == ["double_press", "hold", "power_cut"]
    assert s.events[1].hold_s == 3.5


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "missing duration_s"),
        ("duration_s = 'long'", "duration_s must be a number"),
        ("duration_s = 10\n[[events]]\nat_s = 1\naction = 'jump'", "events[0].action"),
        ("duration_s = 10\n[[events]]\nat_s = 11\naction = 'press'", "events[0].at_s"),
        ("duration_s = 10\n[[events]]\naction = 'press'", "missing at_s"),
        ("duration_s = 10\n[[events]]\nat_s = 1\naction = 'press'\nbutton='side'", ".button"),
        ("duration_s = 10\n[[events]]\nat_s = 1\naction = 'power_cut'\nhold_s=2", "'hold_s'"),
        ("duration_s = 10\n[[events]]\nat_s = 1\naction = 'battery'", "'level_pct'"),
        ("duration_s = 10\nextra = 1", "'extra'"),
        ("duration_s = 10\n[[events]\n", "line 2"),
    ],
)
def test_bad_scenarios_name_the_problem(text: str, needle: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_scenario(text, "s.toml")
    assert needle in str(info.value)
    assert "s.toml" in str(info.value)


@given(st.text(max_size=300))
def test_any_text_parses_or_raises_usage_error(text: str) -> None:
    with contextlib.suppress(UsageError):
        parse_scenario(text, "fuzz.toml")
