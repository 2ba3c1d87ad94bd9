"""The recorder's state machine: pure data in, pure data out.

``transition(state, event)`` looks the pair up in one explicit table and returns the new state and
the actions the owner must carry out. It performs no IO, reads no clock and never raises for an
event that is not allowed in a state: such events are ignored and reported in the result, so a
stray button press can never crash the recorder.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class State(enum.StrEnum):
    OFF = "off"
    BOOTING = "booting"
    BUFFERING = "buffering"
    RECORDING = "recording"
    STOPPING = "stopping"
    FAULT = "fault"


class Action(enum.StrEnum):
    """What the owner does after a transition, in the order listed in the table."""

    START_BUFFERING = "start_buffering"
    START_RECORDING = "start_recording"
    BEGIN_STOP = "begin_stop"
    FINISH_STOP = "finish_stop"
    ENTER_FAULT = "enter_fault"
    POWER_OFF = "power_off"


@dataclass(frozen=True, slots=True)
class PoweredOn:
    """Power was applied; the unit starts booting."""

    t_us: int


@dataclass(frozen=True, slots=True)
class Booted:
    """The unit finished booting and the camera runs."""

    t_us: int


@dataclass(frozen=True, slots=True)
class StartRequested:
    """A double press of ``event`` or the auto-activation trigger."""

    t_us: int
    trigger: str


@dataclass(frozen=True, slots=True)
class StopRequested:
    """A 3 s hold of ``event``, low battery, storage full or shutdown."""

    t_us: int
    trigger: str


@dataclass(frozen=True, slots=True)
class Stopped:
    """The last unit was sealed and ``record_stop`` written."""

    t_us: int


@dataclass(frozen=True, slots=True)
class Faulted:
    """Something that stops recording from working (storage full, camera lost)."""

    t_us: int
    reason: str


@dataclass(frozen=True, slots=True)
class Recovered:
    """The fault's cause went away (space freed, camera back)."""

    t_us: int


@dataclass(frozen=True, slots=True)
class PowerOff:
    t_us: int
    reason: str


Event = (
    PoweredOn | Booted | StartRequested | StopRequested | Stopped | Faulted | Recovered | PowerOff
)


@dataclass(frozen=True, slots=True)
class Result:
    state: State
    actions: tuple[Action, ...]
    ignored: bool = False
    """True when the event is not allowed in the state; ``state`` is then unchanged."""


# One row per allowed (state, event type). Anything not here is ignored and reported.
TABLE: dict[tuple[State, type], tuple[State, tuple[Action, ...]]] = {
    (State.OFF, PoweredOn): (State.BOOTING, ()),
    (State.BOOTING, Booted): (State.BUFFERING, (Action.START_BUFFERING,)),
    (State.BOOTING, Faulted): (State.FAULT, (Action.ENTER_FAULT,)),
    (State.BOOTING, PowerOff): (State.OFF, (Action.POWER_OFF,)),
    (State.BUFFERING, StartRequested): (State.RECORDING, (Action.START_RECORDING,)),
    (State.BUFFERING, Faulted): (State.FAULT, (Action.ENTER_FAULT,)),
    (State.BUFFERING, PowerOff): (State.OFF, (Action.POWER_OFF,)),
    (State.RECORDING, StopRequested): (State.STOPPING, (Action.BEGIN_STOP,)),
    (State.RECORDING, Faulted): (State.STOPPING, (Action.BEGIN_STOP, Action.ENTER_FAULT)),
    (State.RECORDING, PowerOff): (State.STOPPING, (Action.BEGIN_STOP, Action.POWER_OFF)),
    (State.STOPPING, Stopped): (State.BUFFERING, (Action.FINISH_STOP,)),
    (State.STOPPING, Faulted): (State.FAULT, (Action.ENTER_FAULT,)),
    (State.STOPPING, PowerOff): (State.OFF, (Action.POWER_OFF,)),
    (State.FAULT, Recovered): (State.BUFFERING, (Action.START_BUFFERING,)),
    (State.FAULT, PowerOff): (State.OFF, (Action.POWER_OFF,)),
}


def transition(state: State, event: Event) -> Result:
    """The state after ``event`` and the actions to perform; unknown pairs are ignored."""
    row = TABLE.get((state, type(event)))
    if row is None:
        return Result(state, (), ignored=True)
    new_state, actions = row
    return Result(new_state, actions)
