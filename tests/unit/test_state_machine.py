"""Every (state, event) pair: the allowed ones do what the table says, the rest are ignored."""

from __future__ import annotations

import itertools

import pytest

from recorder.state_machine import (
    TABLE,
    Action,
    Booted,
    Event,
    Faulted,
    PoweredOn,
    PowerOff,
    Recovered,
    StartRequested,
    State,
    Stopped,
    StopRequested,
    transition,
)

S, A = State, Action

EXPECTED = [
    (S.OFF, PoweredOn(0), S.BOOTING, ()),
    (S.BOOTING, Booted(1), S.BUFFERING, (A.START_BUFFERING,)),
    (S.BOOTING, Faulted(1, "camera"), S.FAULT, (A.ENTER_FAULT,)),
    (S.BOOTING, PowerOff(1, "x"), S.OFF, (A.POWER_OFF,)),
    (S.BUFFERING, StartRequested(2, "double_press"), S.RECORDING, (A.START_RECORDING,)),
    (S.BUFFERING, Faulted(2, "storage_full"), S.FAULT, (A.ENTER_FAULT,)),
    (S.BUFFERING, PowerOff(2, "x"), S.OFF, (A.POWER_OFF,)),
    (S.RECORDING, StopRequested(3, "hold"), S.STOPPING, (A.BEGIN_STOP,)),
    (S.RECORDING, Faulted(3, "camera"), S.STOPPING, (A.BEGIN_STOP, A.ENTER_FAULT)),
    (S.RECORDING, PowerOff(3, "x"), S.STOPPING, (A.BEGIN_STOP, A.POWER_OFF)),
    (S.STOPPING, Stopped(4), S.BUFFERING, (A.FINISH_STOP,)),
    (S.STOPPING, Faulted(4, "storage_full"), S.FAULT, (A.ENTER_FAULT,)),
    (S.STOPPING, PowerOff(4, "x"), S.OFF, (A.POWER_OFF,)),
    (S.FAULT, Recovered(5), S.BUFFERING, (A.START_BUFFERING,)),
    (S.FAULT, PowerOff(5, "x"), S.OFF, (A.POWER_OFF,)),
]

ALL_EVENTS: list[Event] = [
    PoweredOn(0),
    Booted(0),
    StartRequested(0, "double_press"),
    StopRequested(0, "hold"),
    Stopped(0),
    Faulted(0, "x"),
    Recovered(0),
    PowerOff(0, "x"),
]


@pytest.mark.parametrize(("state", "event", "new_state", "actions"), EXPECTED)
def test_allowed_transition(
    state: State, event: Event, new_state: State, actions: tuple[Action, ...]
) -> None:
    result = transition(state, event)
    assert not result.ignored
    assert result.state is new_state
    assert result.actions == actions


def test_table_is_exactly_the_expected_rows() -> None:
    assert set(TABLE) == {(s, type(e)) for s, e, _, _ in EXPECTED}


@pytest.mark.parametrize(
    ("state", "event"),
    [
        (s, e)
        for s, e in itertools.product(State, ALL_EVENTS)
        if (s, type(e)) not in {(x, type(y)) for x, y, _, _ in EXPECTED}
    ],
)
def test_other_pairs_are_ignored_not_raised(state: State, event: Event) -> None:
    result = transition(state, event)
    assert result.ignored
    assert result.state is state
    assert result.actions == ()


def test_double_start_while_recording_is_ignored() -> None:
    assert transition(S.RECORDING, StartRequested(0, "trigger")).ignored
