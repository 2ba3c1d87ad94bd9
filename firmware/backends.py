"""The one place that turns a profile's backend strings into backends: boot control and slot
writer (``unit.boot``), camera, GPIO, GNSS, microphone and battery.

Like gpiozero's pin factories: registries keyed by the profile's strings, the simulator's backends
and the Pi's side by side. Commands and the boot path (``firmware.boot``) take whatever this
returns and never name an implementation; hardware modules are imported only when chosen.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from firmware.boot_control import BootControl
from firmware.identity import Assignment
from firmware.layout import UnitLayout
from firmware.slot_writer import SlotWriter
from hal.errors import ConfigError
from hal.protocols import (
    Battery,
    Button,
    Camera,
    Clock,
    Dock,
    Gnss,
    Indicator,
    Microphone,
)
from recorder.config import Profile, UnitConfig

if TYPE_CHECKING:
    from hal.gpio import IndicatorKind
    from simulator.clock import VirtualClock

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FirmwareBackends:
    boot: BootControl
    slots: SlotWriter


Factory = Callable[[UnitLayout, UnitConfig, bool], FirmwareBackends]
"""(unit directory, the profile's [unit] section, privileged) -> backends. ``privileged``: the
caller may write the boot-select partition (the root helper, or a technician's root shell)."""


def _sim(layout: UnitLayout, unit: UnitConfig, privileged: bool) -> FirmwareBackends:
    from firmware.boot_control import SimBootControl
    from firmware.slot_writer import DirectorySlotWriter

    return FirmwareBackends(SimBootControl(layout), DirectorySlotWriter(layout))


def _pi(layout: UnitLayout, unit: UnitConfig, privileged: bool) -> FirmwareBackends:
    from firmware.boot_control import (
        AutobootStore,
        FatAutoboot,
        MirroredAutoboot,
        PiBootControl,
        PiSystem,
    )
    from firmware.fat import FatVolume
    from firmware.sd_card import BOOTSEL_PARTITION, check_tryboot_model, read_partition_table
    from firmware.slot_writer import PartitionSlotWriter

    disk = Path(unit.disk)
    autoboot: AutobootStore
    if privileged:
        # Provisioning and flashing stop here on a Pi without tryboot (Pi 3, Zero 2 W).
        model = PiSystem().model
        if model.is_file():
            check_tryboot_model(model.read_text(errors="replace"))
        start = read_partition_table(disk).get(BOOTSEL_PARTITION, str(disk)).start
        autoboot = FatAutoboot(FatVolume(disk, start), layout.autoboot_txt)
        system = PiSystem(reboot=_run)
    else:
        autoboot = MirroredAutoboot(
            layout.autoboot_txt, layout.autoboot_request, wait_s=unit.helper_wait_s
        )
        system = PiSystem()
    return FirmwareBackends(
        PiBootControl(autoboot, layout, system), PartitionSlotWriter(disk, layout)
    )


def _run(cmd: Sequence[str]) -> None:
    import subprocess

    subprocess.run(list(cmd), check=True)


BOOT_BACKENDS: dict[str, Factory] = {"sim": _sim, "pi": _pi}


def firmware_backends(
    layout: UnitLayout, unit: UnitConfig, *, privileged: bool = False
) -> FirmwareBackends:
    """Boot control and slot writer for the unit at ``layout`` as its profile says."""
    try:
        factory = BOOT_BACKENDS[unit.boot]
    except KeyError:
        raise ConfigError(f"unit.boot: unknown backend {unit.boot!r}") from None
    return factory(layout, unit, privileged)


# ---------------------------------------------------------------------------------------------
# The unit's hardware: one factory per profile backend string


@dataclass
class UnitHardware:
    """Every hardware-facing collaborator of one boot, built from the profile in one place.

    ``extras`` holds what only one backend family has (the simulator's GNSS receiver and pin
    factory) for the composition root that chose it; the boot path never looks there.
    """

    camera: Camera
    buttons: dict[str, Button]
    indicators: dict[str, Indicator]  # "led", "haptic", "buzzer"
    dock: Dock | None
    gnss: Gnss | None
    battery: Battery | None
    microphone: Microphone | None
    extras: dict[str, Any] = field(default_factory=dict)
    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        """Release every device, in order; each closer runs even if an earlier one raised."""
        with ExitStack() as stack:
            for close in reversed(self.closers):
                stack.callback(close)


def _virtual(clock: Clock, what: str) -> VirtualClock:
    from simulator.clock import VirtualClock

    if not isinstance(clock, VirtualClock):
        raise ConfigError(f"{what} = 'sim' runs on simulated time only (use the simulated unit)")
    return clock


def _sim_gpio(profile: Profile, clock: Clock, hw: UnitHardware) -> None:
    from simulator.gpio import SimButton, SimDock, SimIndicator, make_pin_factory

    vclock = _virtual(clock, "gpio.backend")
    pins = make_pin_factory(vclock)
    gpio = profile.gpio
    hw.extras["pin_factory"] = pins
    for name, pin in (("event", gpio.event_pin), ("function", gpio.function_pin),
                      ("trigger", gpio.trigger_pin)):  # fmt: skip
        button = SimButton(name, pin, vclock, pins)
        hw.buttons[name] = button
        hw.closers.append(button.close)
    kinds: tuple[tuple[str, Any, IndicatorKind], ...] = (
        ("led", gpio.led_pin, "led"),
        ("haptic", gpio.haptic_pin, "haptic"),
        ("buzzer", gpio.buzzer_pin, "buzzer"),
    )
    for name, pin, kind in kinds:
        hw.indicators[name] = SimIndicator(name, pin, kind, vclock, pins)
    dock = SimDock(gpio.dock_pin, pins)
    hw.dock = dock
    hw.closers.append(dock.close)


def _gpiozero(profile: Profile, clock: Clock, hw: UnitHardware) -> None:
    from hal.gpio import GpiozeroButton, GpiozeroDock, GpiozeroIndicator, make_pin_factory

    gpio = profile.gpio
    pins = make_pin_factory(gpio.pin_factory)  # named, not gpiozero's fallback chain (#17.10)
    for name, pin in (("event", gpio.event_pin), ("function", gpio.function_pin),
                      ("trigger", gpio.trigger_pin)):  # fmt: skip
        button = GpiozeroButton(name, pin, clock, pins, bounce_ms=gpio.bounce_ms)
        hw.buttons[name] = button
        hw.closers.append(button.close)
    kinds: tuple[tuple[str, Any, IndicatorKind], ...] = (
        ("led", gpio.led_pin, "led"),
        ("haptic", gpio.haptic_pin, "haptic"),
        ("buzzer", gpio.buzzer_pin, "buzzer"),
    )
    for name, pin, kind in kinds:
        indicator = GpiozeroIndicator(name, pin, kind, pins)
        hw.indicators[name] = indicator
        hw.closers.append(indicator.close)
    dock = GpiozeroDock(gpio.dock_pin, pins)  # the dock-sense line: docking and offload (#17.11)
    hw.dock = dock
    hw.closers += [dock.close, pins.close]


def _sim_camera(profile: Profile, assignment: Assignment, clock: Clock) -> Camera:
    from simulator.camera import SimCamera

    cam = profile.camera
    return SimCamera(
        _virtual(clock, "camera.backend"),
        cam.width,
        cam.height,
        cam.fps,
        cam.bitrate_bps,
        cam.keyframe_interval_s,
        assignment.device_id,
        cam.overlay,
        cam.replay_path or None,
    )


def _picamera2(profile: Profile, assignment: Assignment, clock: Clock) -> Camera:
    from hal.picamera import Picamera2Camera

    cam = profile.camera
    return Picamera2Camera(
        cam.width,
        cam.height,
        cam.fps,
        cam.bitrate_bps,
        cam.keyframe_interval_s,
        assignment.device_id,
        clock,
        cam.overlay,
    )


def _sim_gnss(profile: Profile, clock: Clock, hw: UnitHardware) -> None:
    from hal.gnss_serial import SerialGnss
    from simulator.gnss import SimGnssReceiver

    receiver = SimGnssReceiver(_virtual(clock, "gnss.backend"), *GNSS_HOME)
    # Open the reader before the receiver's first epoch: opening a port flushes its input.
    gnss = SerialGnss(receiver.port, profile.gnss.baud, clock)
    hw.gnss = gnss
    hw.extras["gnss_receiver"] = receiver
    hw.closers += [gnss.close, receiver.close]


def _serial_gnss(profile: Profile, clock: Clock, hw: UnitHardware) -> None:
    from hal.gnss_serial import SerialGnss

    gnss = SerialGnss(profile.gnss.port, profile.gnss.baud, clock)
    hw.gnss = gnss
    hw.closers.append(gnss.close)


def _sim_microphone(profile: Profile, clock: Clock) -> Microphone:
    from simulator.microphone import SimMicrophone

    audio = profile.audio
    return SimMicrophone(_virtual(clock, "audio.backend"), audio.sample_rate_hz, audio.channels)


def _alsa(profile: Profile, clock: Clock) -> Microphone:
    from hal.alsa import AlsaMicrophone

    a = profile.audio
    return AlsaMicrophone(a.device, a.sample_rate_hz, a.channels, clock)


def _sim_battery(profile: Profile, clock: Clock) -> Battery:
    from simulator.battery import SimBattery

    b = profile.battery
    return SimBattery(_virtual(clock, "battery.backend"), b.initial_pct, b.drain_pct_per_h)


GNSS_HOME = (51.5074, -0.1278)
"""Where the simulated officer's beat starts (lat, lon)."""

CAMERAS: dict[str, Callable[[Profile, Assignment, Clock], Camera]] = {
    "sim": _sim_camera,
    "picamera2": _picamera2,
}
GPIO: dict[str, Callable[[Profile, Clock, UnitHardware], None]] = {
    "sim": _sim_gpio,
    "gpiozero": _gpiozero,
}
GNSS: dict[str, Callable[[Profile, Clock, UnitHardware], None] | None] = {
    "sim": _sim_gnss,
    "serial": _serial_gnss,
    "none": None,
}
MICROPHONES: dict[str, Callable[[Profile, Clock], Microphone] | None] = {
    # audio.backend "sim" is the simulated microphone; on a real unit "alsa".
    "sim": _sim_microphone,
    "alsa": _alsa,
    "none": None,
}
BATTERIES: dict[str, Callable[[Profile, Clock], Battery] | None] = {
    "sim": _sim_battery,
    "none": None,  # no fuel gauge on the reference build: see README
}


def _pick(table: dict[str, Any], key: str, value: str) -> Any:
    try:
        return table[value]
    except KeyError:
        raise ConfigError(f"{key}: unknown backend {value!r}") from None


def unit_hardware(profile: Profile, assignment: Assignment, clock: Clock) -> UnitHardware:
    """Build every backend the profile names; on a failure, close what was already opened."""
    camera = _pick(CAMERAS, "camera.backend", profile.camera.backend)(profile, assignment, clock)
    hw = UnitHardware(camera, {}, {}, None, None, None, None)
    try:
        _pick(GPIO, "gpio.backend", profile.gpio.backend)(profile, clock, hw)
        gnss = _pick(GNSS, "gnss.backend", profile.gnss.backend)
        if gnss is not None:
            gnss(profile, clock, hw)
        battery = _pick(BATTERIES, "battery.backend", profile.battery.backend)
        hw.battery = battery(profile, clock) if battery is not None else None
        microphone = _pick(MICROPHONES, "audio.backend", profile.audio.backend)
        hw.microphone = microphone(profile, clock) if microphone is not None else None
    except BaseException:
        hw.close()
        raise
    return hw
