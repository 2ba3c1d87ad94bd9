"""The recorder daemon under systemd: ``sd_notify`` (READY, WATCHDOG, STATUS, STOPPING), a watchdog
that pets only while the recorder makes progress, and the signed ``daemon_restart`` event.

Stdlib only (a few lines of the sd_notify protocol, no libsystemd). This module reports liveness
and restarts; it must not decide anything about recording, and it never raises from ``notify``:
a missing or broken notification socket must not stop a camera that is recording evidence.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evidence.sealing import EvidenceSink, JsonValue
from hal.durable import write_atomic

log = logging.getLogger(__name__)

OS_BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")
"""The kernel's random id of this OS boot: tells a daemon restart from a power loss."""

Notifier = Callable[[str], bool]


def notify(state: str, env: Mapping[str, str] | None = None) -> bool:
    """Send ``state`` (e.g. ``"READY=1"``, ``"WATCHDOG=1"``, ``"STATUS=buffering"``) to systemd.

    Returns False when not run by systemd (no ``$NOTIFY_SOCKET``) or when the send fails; never
    raises. ``env`` defaults to ``os.environ`` (injectable for tests).
    """
    address = (os.environ if env is None else env).get("NOTIFY_SOCKET", "")
    if not address or address[0] not in "@/":
        return False
    # An address starting with '@' is in the Linux abstract namespace: a leading NUL byte.
    target = "\0" + address[1:] if address[0] == "@" else address
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(target)
            sock.sendall(state.encode("utf-8"))
    except OSError as exc:
        log.warning("sd_notify to %s failed: %s", address, exc)
        return False
    return True


def status_text(status: Mapping[str, Any]) -> str:
    """A one-line ``STATUS=`` for ``systemctl status``, from ``Recorder.status()``."""
    rec = status.get("recording")
    parts = [str(status.get("state", "?"))]
    parts.append(f"recording {str(rec)[:8]}" if rec else "not recording")
    if status.get("storage_blocked"):
        parts.append("STORAGE FULL")
    battery = status.get("battery")
    if isinstance(battery, Mapping) and "level_pct" in battery:
        parts.append(f"battery {float(battery['level_pct']):.0f}%")
    return "STATUS=" + ", ".join(parts)


class Watchdog:
    """Pets systemd's watchdog only while a progress counter moves.

    The daemon loop calls ``pet_if_progress(counter)`` every turn with a number the recorder loop
    advances (frames handled plus ticks, say). A loop that still spins but whose recorder is stuck
    (no frames, a blocked write) stops petting, and systemd restarts the service after
    ``WatchdogSec``. Pets are rate-limited to half the interval, as sd_watchdog_enabled(3) advises.
    Not thread-safe: the daemon loop owns it.
    """

    def __init__(
        self,
        interval_us: int | None = None,
        now_us: Callable[[], int] | None = None,
        send: Notifier = notify,
        *,
        env: Mapping[str, str] | None = None,
        pid: int | None = None,
    ) -> None:
        """``interval_us`` None: what systemd asked for (``$WATCHDOG_USEC``, for this process if
        ``$WATCHDOG_PID`` is set), else disabled. ``now_us`` defaults to CLOCK_MONOTONIC."""
        self.interval_us = interval_us if interval_us is not None else _interval_from(env, pid)
        self._now_us = now_us if now_us is not None else _monotonic_us
        self._send = send
        self._last_counter: int | None = None
        self._last_pet_us: int | None = None
        self.pets = 0

    @property
    def enabled(self) -> bool:
        return self.interval_us is not None

    def pet_if_progress(self, progress_counter: int) -> bool:
        """Send ``WATCHDOG=1`` if the counter moved since the last pet and half the interval has
        passed; returns whether a pet was sent."""
        if self.interval_us is None or progress_counter == self._last_counter:
            return False
        now = self._now_us()
        if self._last_pet_us is not None and now - self._last_pet_us < self.interval_us // 2:
            return False
        if not self._send("WATCHDOG=1"):
            return False
        self._last_counter = progress_counter
        self._last_pet_us = now
        self.pets += 1
        return True


def _monotonic_us() -> int:
    return time.monotonic_ns() // 1000


def _interval_from(env: Mapping[str, str] | None, pid: int | None) -> int | None:
    env = os.environ if env is None else env
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
        owner = env.get("WATCHDOG_PID")
        if usec > 0 and (owner is None or int(owner) == (os.getpid() if pid is None else pid)):
            return usec
    except ValueError:
        pass
    return None


# ---------------------------------------------------------------------- daemon restarts


@dataclass(frozen=True)
class PreviousRun:
    """What the run marker said about the service run before this one (it did not end cleanly)."""

    pid: int | None
    os_boot_id: str | None
    started_utc_us: int | None


def read_os_boot_id(path: Path = OS_BOOT_ID_PATH) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


class RunMarker:
    """``DEVICE/run/daemon.json``: present while the service runs, removed on a clean stop.

    Found at start, it means the previous run ended without ``end()``: a crash, a watchdog kill or
    a power loss. Same OS boot id: the daemon was restarted (the OS kept running); another: the
    whole unit lost power or rebooted, which the sealer's power-loss discovery already explains.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def begin(self, os_boot_id: str | None, pid: int, utc_us: int) -> PreviousRun | None:
        """Read what an unclean previous run left, then mark this run as running (durably)."""
        previous: PreviousRun | None = None
        try:
            data = json.loads(self.path.read_bytes())
            if isinstance(data, dict):
                previous = PreviousRun(
                    _opt_int(data.get("pid")),
                    data.get("os_boot_id") if isinstance(data.get("os_boot_id"), str) else None,
                    _opt_int(data.get("started_utc_us")),
                )
            else:
                previous = PreviousRun(None, None, None)
        except FileNotFoundError:
            previous = None
        except (OSError, ValueError):
            previous = PreviousRun(None, None, None)  # a torn marker is still an unclean end
        self.path.parent.mkdir(parents=True, exist_ok=True)
        marker = {"pid": pid, "os_boot_id": os_boot_id, "started_utc_us": utc_us}
        write_atomic(self.path, json.dumps(marker).encode())
        return previous

    def end(self) -> None:
        """A clean stop: the next start is not a restart."""
        self.path.unlink(missing_ok=True)


def _opt_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def daemon_restart_fields(
    previous: PreviousRun | None, os_boot_id: str | None
) -> dict[str, JsonValue] | None:
    """Fields of the ``daemon_restart`` event, or None when the previous run ended cleanly or the
    OS itself restarted (a power loss: ``power_loss_discovered`` covers that)."""
    if previous is None:
        return None
    same_os_boot = previous.os_boot_id is not None and previous.os_boot_id == os_boot_id
    if previous.os_boot_id is not None and not same_os_boot:
        return None
    return {
        "previous_pid": previous.pid,
        "previous_started_utc_us": previous.started_utc_us,
        "os_boot_id": os_boot_id,
        "reason": (
            "the previous recorder process ended without a clean shutdown while the OS kept "
            "running (crash, watchdog timeout or kill); systemd restarted it"
            if same_os_boot
            else "the previous recorder run left an unreadable run marker"
        ),
    }


def record_daemon_restart(
    sink: EvidenceSink,
    previous: PreviousRun | None,
    os_boot_id: str | None,
    *,
    mono_us: int,
    utc_us: int,
) -> int | None:
    """Seal ``daemon_restart`` if the previous run of the service ended uncleanly in this OS boot;
    returns its sequence number. Call right after the boot/recovery events."""
    fields = daemon_restart_fields(previous, os_boot_id)
    if fields is None:
        return None
    log.warning(
        "previous recorder run (pid %s) ended uncleanly; recording the restart",
        fields["previous_pid"],
    )
    return sink.event("daemon_restart", fields, mono_us=mono_us, utc_us=utc_us, reserve_ok=True)
