"""The Raspberry Pi unit: the real backends composed with the recorder, run under systemd.

Composition root for real hardware. It imports the hardware backends (picamera2, gpiozero,
pyserial) only here and only when the profile selects them, so nothing on x86 pretends to be
them. The daemon loop is the only thread that calls the recorder; backend callbacks enqueue
(see ``firmware.daemon``). Boot order matches ``firmware.sim_unit`` exactly; firmware commit and
rollback go through ``PiBootControl`` (autoboot.txt ``[tryboot]``).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from firmware import __version__
from firmware.daemon import Daemon
from firmware.evidence_access import open_unit_sealer, record_boot
from firmware.identity import load_assignment, read_profile
from firmware.layout import UnitLayout
from firmware.supervisor import (
    RunMarker,
    Watchdog,
    notify,
    read_os_boot_id,
    record_daemon_restart,
)
from hal.errors import ConfigError
from hal.protocols import Battery, Camera, FaultSink, Gnss, Indicator, Microphone
from hal.software_key import SoftwareDeviceKey
from hal.system_clock import SystemClock
from recorder.core import Recorder
from recorder.feedback import FeedbackController
from recorder.state_machine import State

log = logging.getLogger(__name__)

BOOT_PARTITION = "/boot/firmware"
"""Where Raspberry Pi OS mounts the FAT boot partition that holds autoboot.txt."""

LOOP_TIMEOUT_S = 0.05
"""How long the daemon loop waits for a frame or edge before running its timers anyway."""


def _run_command(cmd: Sequence[str]) -> None:
    subprocess.run(list(cmd), check=True)


def _camera(
    profile: Any, device_id: str, clock: SystemClock, on_fault: FaultSink | None = None
) -> Camera:
    cam = profile.camera
    if cam.backend != "picamera2":
        raise ConfigError(f"camera.backend {cam.backend!r} cannot run on a Raspberry Pi unit")
    from hal.picamera import Picamera2Camera

    return Picamera2Camera(
        cam.width,
        cam.height,
        cam.fps,
        cam.bitrate_bps,
        cam.keyframe_interval_s,
        device_id,
        clock,
        cam.overlay,
        on_fault=on_fault,
    )


def run_pi_unit(layout: UnitLayout, overrides: Mapping[str, Any], duration_s: float | None) -> int:
    """Boot and run the real unit until SIGTERM/SIGINT (or ``duration_s``); returns an exit code."""
    from firmware.boot_control import MirroredAutoboot, PiBootControl, PiSystem
    from hal.gnss_serial import SerialGnss
    from hal.gpio import GpiozeroButton, GpiozeroIndicator, make_pin_factory

    profile = read_profile(layout.profile, overrides)
    if profile.gpio.backend != "gpiozero":
        raise ConfigError("gpio.backend must be 'gpiozero' on a Raspberry Pi unit")
    assignment = load_assignment(layout)
    clock = SystemClock()
    key = SoftwareDeviceKey.load(layout.device_key)
    # The recorder runs unprivileged: it reads the boot selection from the copy the root helper
    # keeps on the data partition (docs/unit-layout.md, "The root helper").
    boot = PiBootControl(
        MirroredAutoboot(layout.autoboot_txt, layout.autoboot_request), layout, PiSystem()
    )
    slot = boot.get_current()
    sealer = open_unit_sealer(layout, profile, assignment, key, lambda: clock.source.value)
    record_boot(
        sealer,
        clock,
        profile,
        assignment,
        firmware_version=__version__,
        slot=slot,
        tryboot=boot.booted_by_tryboot(),
    )
    # A run that ended without its clean stop in this same OS boot was killed (by the watchdog
    # or a crash) and restarted by systemd: that restart is itself signed evidence.
    os_boot_id = read_os_boot_id()
    marker = RunMarker(layout.run / "daemon.json")
    previous = marker.begin(os_boot_id, os.getpid(), clock.utc_us())
    record_daemon_restart(
        sealer, previous, os_boot_id, mono_us=clock.monotonic_us(), utc_us=clock.utc_us()
    )
    gpio = profile.gpio
    pins = make_pin_factory(gpio.pin_factory)
    buttons = [
        GpiozeroButton(name, pin, clock, pins, bounce_ms=gpio.bounce_ms)
        for name, pin in (
            ("event", gpio.event_pin),
            ("function", gpio.function_pin),
            ("trigger", gpio.trigger_pin),
        )
    ]
    led: Indicator = GpiozeroIndicator("led", gpio.led_pin, "led", pins)
    haptic: Indicator = GpiozeroIndicator("haptic", gpio.haptic_pin, "haptic", pins)
    buzzer: Indicator = GpiozeroIndicator("buzzer", gpio.buzzer_pin, "buzzer", pins)
    gnss: Gnss | None = None
    if profile.gnss.backend == "serial":
        gnss = SerialGnss(profile.gnss.port, profile.gnss.baud, clock)
    battery: Battery | None = None  # no fuel gauge on the reference build: see README
    recorder = Recorder(
        clock,
        sealer,
        FeedbackController(led, haptic, buzzer),
        profile,
        {
            "device_id": assignment.device_id,
            "officer_id": assignment.officer_id,
            "firmware_version": __version__,
            "slot": slot,
        },
        gnss,
        battery,
    )
    daemon = Daemon(recorder)
    microphone: Microphone | None = None
    if profile.audio.backend == "alsa":
        from hal.alsa import AlsaMicrophone

        a = profile.audio
        microphone = AlsaMicrophone(
            a.device, a.sample_rate_hz, a.channels, clock, on_fault=daemon.fault_sink
        )
    elif profile.audio.backend != "none":
        raise ConfigError(
            f"audio.backend {profile.audio.backend!r} cannot run on a Raspberry Pi unit"
        )
    camera = _camera(profile, assignment.device_id, clock, daemon.fault_sink)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    for button in buttons:
        button.on_edge(daemon.edge_sink)
    recorder.start()
    camera.start(daemon.frame_sink)
    if microphone is not None and not daemon.start_microphone(microphone):
        microphone = None  # sealed as a fault; the video goes on
    watchdog = Watchdog()
    if recorder.state is State.BUFFERING:
        notify("READY=1\nSTATUS=buffering")
    end_us = None if duration_s is None else clock.monotonic_us() + round(duration_s * 1e6)
    try:
        while not stop.is_set() and (end_us is None or clock.monotonic_us() < end_us):
            daemon.wait_and_drain(LOOP_TIMEOUT_S)
            recorder.tick(clock.monotonic_us())
            watchdog.pet_if_progress(daemon.frames_in)
    finally:
        notify("STOPPING=1")
        camera.stop()
        if microphone is not None:
            microphone.stop()
        daemon.drain()
        recorder.shutdown("service stop")
        marker.end()
        for button in buttons:
            button.close()
        if gnss is not None:
            gnss.close()
    return 0
