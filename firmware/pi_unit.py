"""The Raspberry Pi unit: the real backends composed with the recorder, run under systemd.

Composition root for real hardware. It boots through ``firmware.boot.boot_unit``, exactly as the
simulated unit does, with the system clock, the backends the profile names (``firmware.backends``
imports picamera2, gpiozero and pyserial only when chosen) and the Pi's boot control, read-only:
privileged steps go through the root helper (``bwc bootctl``, docs/unit-layout.md).

Then the daemon loop: the only thread that calls the recorder (backend callbacks enqueue, see
``firmware.daemon``). It tells systemd ``READY=1`` as soon as the daemon is up, whatever state the
unit is in (``STATUS=`` says which), pets the watchdog while the loop makes progress, retries a
camera that would not start with backoff, and offloads while docked. Nothing here relies on a
``finally`` for recovery: a watchdog kill is SIGABRT, and the next start reads the run marker.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Mapping
from typing import Any

from firmware.backends import firmware_backends, unit_hardware
from firmware.boot import BootedUnit, DockOffload, Supervision, boot_unit
from firmware.identity import load_assignment, read_profile
from firmware.layout import UnitLayout
from firmware.supervisor import Watchdog, notify, status_text
from hal.errors import ConfigError
from hal.system_clock import SystemClock

log = logging.getLogger(__name__)

LOOP_TIMEOUT_S = 0.05
"""How long the daemon loop waits for a frame or edge before running its timers anyway."""

STATUS_INTERVAL_US = 5_000_000
"""How often ``STATUS=`` is refreshed for ``systemctl status``."""


def boot_pi_unit(layout: UnitLayout, overrides: Mapping[str, Any]) -> BootedUnit:
    """Boot the real unit (through the one boot path) up to buffering or a signed fault."""
    profile = read_profile(layout.profile, overrides)
    if profile.unit.boot != "pi":
        raise ConfigError("unit.boot must be 'pi' on a Raspberry Pi unit (A/B tryboot card)")
    return boot_unit(
        layout,
        profile=profile,
        assignment=load_assignment(layout),
        firmware=firmware_backends(layout, profile.unit),
        make_clock=lambda _earliest_utc_us: SystemClock(),
        make_hardware=unit_hardware,
        supervision=Supervision.for_unit(layout),
    )


def _status(unit: BootedUnit) -> str:
    status = unit.status()
    text = status_text(status)
    if "camera_fault" in status:
        text += f", CAMERA FAULT ({str(status['camera_fault'])[:60]})"
    if unit.faults:
        text += f", {len(unit.faults)} boot fault(s)"
    return text


def run_pi_unit(layout: UnitLayout, overrides: Mapping[str, Any], duration_s: float | None) -> int:
    """Boot and run the real unit until SIGTERM/SIGINT (or ``duration_s``); returns an exit code."""
    unit = boot_pi_unit(layout, overrides)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return serve(unit, stop, duration_s)


def serve(
    unit: BootedUnit,
    stop: threading.Event,
    duration_s: float | None = None,
    *,
    notifier: Callable[[str], bool] = notify,
    watchdog: Watchdog | None = None,
) -> int:
    """The daemon loop of a booted unit until ``stop`` is set (or ``duration_s``), then a clean
    stop. Reports to systemd through ``notifier``."""
    clock, daemon, recorder = unit.clock, unit.daemon, unit.recorder
    camera = unit.camera
    assert camera is not None
    dock = DockOffload(unit, unit.hardware.dock) if unit.hardware.dock is not None else None
    watchdog = watchdog or Watchdog(send=notifier)
    # Ready as soon as the daemon is up, in whatever state: systemd must not kill a unit in FAULT
    # at its start timeout and restart it in a loop (each restart sealing events).
    notifier("READY=1\n" + _status(unit))
    end_us = None if duration_s is None else clock.monotonic_us() + round(duration_s * 1e6)
    turns = 0
    next_status_us = clock.monotonic_us() + STATUS_INTERVAL_US
    while not stop.is_set() and (end_us is None or clock.monotonic_us() < end_us):
        daemon.wait_and_drain(LOOP_TIMEOUT_S)
        now_us = clock.monotonic_us()
        recorder.tick(now_us)
        camera.poll(now_us)
        if dock is not None:
            dock.poll(now_us)
        turns += 1
        # Progress is frames while the camera runs; while it is in a signed fault (retrying with
        # backoff) the loop itself is the progress, so the watchdog does not restart us for it.
        watchdog.pet_if_progress(daemon.frames_in if camera.running else turns)
        if now_us >= next_status_us:
            notifier(_status(unit))
            next_status_us = now_us + STATUS_INTERVAL_US
    notifier("STOPPING=1")
    if camera.running:
        unit.hardware.camera.stop()
    if unit.hardware.microphone is not None:
        unit.hardware.microphone.stop()
    daemon.drain()
    recorder.shutdown("service stop")
    if unit.supervision is not None:
        unit.supervision.marker.end()
    unit.hardware.close()
    return 0
