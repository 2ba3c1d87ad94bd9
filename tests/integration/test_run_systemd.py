"""`bwc run` on the simulated unit under a systemd-like supervisor: the firmware image's QEMU test
drives the unit this way (scenario from ``$BWC_SCENARIO``, sd_notify over ``$NOTIFY_SOCKET``)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

from tests.integration.conftest import SMALL, Bwc, ProvisionedUnit, ScenarioWriter


def test_scenario_run_reports_ready_pets_the_watchdog_and_records(
    bwc: Bwc, unit: ProvisionedUnit, scenario: ScenarioWriter, tmp_path: Path
) -> None:
    play = scenario(3.0, {"at_s": 0.5, "action": "double_press", "button": "event"})
    address = tmp_path / "notify.sock"
    messages: list[str] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(address))
        sock.settimeout(60)

        def listen() -> None:
            # Read as systemd does, all the time: an unread datagram queue blocks the sender.
            while not messages or messages[-1] != "STOPPING=1":
                try:
                    messages.append(sock.recv(4096).decode())
                except TimeoutError:
                    return

        listener = threading.Thread(target=listen)
        listener.start()
        env = dict(
            os.environ,
            PYTHONUNBUFFERED="1",
            NOTIFY_SOCKET=str(address),
            WATCHDOG_USEC="200000",
            BWC_SCENARIO=str(play),
        )
        proc = subprocess.run(
            [sys.executable, "-m", "firmware.cli", "run", "--device", str(unit.device), *SMALL],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        listener.join(timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert messages[0].startswith("READY=1\nSTATUS=buffering"), messages[:3]
    pets = messages.count("WATCHDOG=1")
    assert pets >= 3, messages
    assert messages[-1] == "STOPPING=1"
    assert "playing a scenario of 1 event" in proc.stdout
    assert f"1 recording this boot; {pets} watchdog pings" in proc.stdout
    report = bwc.json("verify", *unit.trust, unit.device / "evidence", "--json")
    assert report["intact"] is True


def test_scenario_needs_the_simulated_backends(bwc: Bwc, tmp_path: Path) -> None:
    proc = bwc("run", "--device", tmp_path / "nothing", "--scenario", tmp_path / "s.toml", check=2)
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_sigterm_stops_the_unit_cleanly(bwc: Bwc, unit: ProvisionedUnit) -> None:
    """systemd's stop (KillSignal=SIGTERM, and every reboot) seals the shutdown: the next boot
    finds a clean end, not a power loss."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "firmware.cli", "run", "--device", str(unit.device), *SMALL],
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if "keys disabled" in line:
            break
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "bwc run: powered off; 0 recordings this boot" in out
    report = bwc.json("verify", *unit.trust, unit.device / "evidence", "--json")
    assert report["intact"] is True and report["boots"][-1]["clean"] is True, report["boots"]
