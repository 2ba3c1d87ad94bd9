"""sd_notify over a real AF_UNIX datagram socket, the progress watchdog, and daemon restarts."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware.supervisor import (
    PreviousRun,
    RunMarker,
    Watchdog,
    daemon_restart_fields,
    notify,
    record_daemon_restart,
    status_text,
)
from tests.unit.fakes import FakeEvidence


@pytest.fixture
def abstract_socket() -> Iterator[tuple[socket.socket, str]]:
    name = f"bwc-test-{os.getpid()}-{id(object())}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    yield sock, "@" + name
    sock.close()


def test_notify_reaches_an_abstract_socket(abstract_socket: tuple[socket.socket, str]) -> None:
    sock, address = abstract_socket
    assert notify("READY=1", {"NOTIFY_SOCKET": address}) is True
    assert sock.recv(4096) == b"READY=1"
    assert notify("STATUS=buffering, not recording", {"NOTIFY_SOCKET": address})
    assert sock.recv(4096) == b"STATUS=buffering, not recording"


def test_notify_reaches_a_path_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(5)
        assert notify("WATCHDOG=1", {"NOTIFY_SOCKET": str(path)}) is True
        assert sock.recv(4096) == b"WATCHDOG=1"


@pytest.mark.parametrize("address", ["", "relative/path", "@bwc-nobody-listens-here-xyz"])
def test_notify_without_systemd_is_false_never_raises(address: str, tmp_path: Path) -> None:
    assert notify("READY=1", {"NOTIFY_SOCKET": address} if address else {}) is False
    assert notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "absent")}) is False


def test_status_text() -> None:
    text = status_text(
        {
            "state": "recording",
            "recording": "0123456789abcdef",
            "storage_blocked": True,
            "battery": {"level_pct": 41.6, "charging": False},
        }
    )
    assert text == "STATUS=recording, recording 01234567, STORAGE FULL, battery 42%"
    assert status_text({"state": "buffering"}) == "STATUS=buffering, not recording"


class Recorder:
    """A notifier that records what would have been sent."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def __call__(self, state: str) -> bool:
        self.sent.append(state)
        return True


class Clock:
    def __init__(self) -> None:
        self.t_us = 0

    def __call__(self) -> int:
        return self.t_us


def test_watchdog_pets_only_while_progress_is_made() -> None:
    clock = Clock()
    sent = Recorder()
    dog = Watchdog(10_000_000, clock, sent)
    assert dog.pet_if_progress(1)
    assert not dog.pet_if_progress(2)  # rate limit: half the interval has not passed
    clock.t_us = 5_000_000
    assert dog.pet_if_progress(3)
    clock.t_us = 20_000_000
    assert not dog.pet_if_progress(3)  # hung recorder: counter stuck, no pet, systemd restarts
    assert not dog.pet_if_progress(3)
    assert dog.pet_if_progress(4)
    assert sent.sent == ["WATCHDOG=1"] * 3
    assert dog.pets == 3


def test_watchdog_over_a_real_socket(abstract_socket: tuple[socket.socket, str]) -> None:
    sock, address = abstract_socket
    env = {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "4242"}
    clock = Clock()
    dog = Watchdog(None, clock, lambda s: notify(s, env), env=env, pid=4242)
    assert dog.enabled and dog.interval_us == 10_000_000
    assert dog.pet_if_progress(7)
    assert sock.recv(64) == b"WATCHDOG=1"


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"WATCHDOG_USEC": "0"},
        {"WATCHDOG_USEC": "x"},
        {"WATCHDOG_USEC": "5", "WATCHDOG_PID": "1"},
    ],
)
def test_watchdog_disabled_unless_asked_for_this_pid(env: dict[str, str]) -> None:
    sent = Recorder()
    dog = Watchdog(None, Clock(), sent, env=env, pid=4242)
    assert not dog.enabled
    assert not dog.pet_if_progress(1)
    assert sent.sent == []


def test_default_watchdog_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert Watchdog().interval_us == 4_000_000
    monkeypatch.delenv("WATCHDOG_USEC")
    assert not Watchdog().enabled


def test_run_marker_tells_a_daemon_restart_from_a_power_loss(tmp_path: Path) -> None:
    marker = RunMarker(tmp_path / "run" / "daemon.json")
    assert marker.begin("os-boot-1", 100, 1_000) is None  # first run ever
    marker.end()
    assert marker.begin("os-boot-1", 101, 2_000) is None  # previous run stopped cleanly
    # No end(): the process crashed or was killed by the watchdog; the OS kept running.
    previous = marker.begin("os-boot-1", 102, 3_000)
    assert previous == PreviousRun(101, "os-boot-1", 2_000)
    fields = daemon_restart_fields(previous, "os-boot-1")
    assert fields is not None and fields["previous_pid"] == 101
    # No end() again, but now the OS boot id differs: power loss, explained elsewhere.
    previous = marker.begin("os-boot-2", 103, 4_000)
    assert previous is not None and daemon_restart_fields(previous, "os-boot-2") is None


def test_torn_marker_is_an_unclean_end(tmp_path: Path) -> None:
    path = tmp_path / "daemon.json"
    path.write_bytes(b'{"pid": 1')
    previous = RunMarker(path).begin("b", 2, 0)
    assert previous == PreviousRun(None, None, None)
    assert daemon_restart_fields(previous, "b") is not None


def test_record_daemon_restart_seals_one_event() -> None:
    sink = FakeEvidence()
    assert record_daemon_restart(sink, None, "b", mono_us=0, utc_us=0) is None
    seq = record_daemon_restart(sink, PreviousRun(9, "b", 5), "b", mono_us=1, utc_us=2)
    assert seq == 0
    assert sink.kinds() == ["daemon_restart"]
    (fields,) = sink.events("daemon_restart")
    assert fields["previous_pid"] == 9
    assert "restarted" in str(fields["reason"])


def test_service_unit_is_notify_with_watchdog_and_restart() -> None:
    import configparser

    unit = Path(__file__).parents[2] / "firmware" / "systemd" / "bwc-recorder.service"
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(unit.read_text())
    service = parser["Service"]
    assert service["Type"] == "notify"
    assert service["WatchdogSec"] == "10"
    assert service["Restart"] == "on-failure"
    assert service["ExecStart"].split()[1:3] == ["run", "--device"]
    # Bounded restarts (issue 17 item 12): a crash storm stops instead of flooding the chain.
    assert int(parser["Unit"]["StartLimitIntervalSec"]) > 0
    assert int(parser["Unit"]["StartLimitBurst"]) > 0
