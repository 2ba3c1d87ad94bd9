"""The one place that turns a profile's backend strings into boot control and slot writer.

Like gpiozero's pin factories: a registry keyed by the profile's ``unit.boot`` string. The
simulated unit's directory slots and the Pi's tryboot A/B card are equals here; commands and the
boot path take whatever this returns and never name an implementation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from firmware.boot_control import BootControl
from firmware.layout import UnitLayout
from firmware.slot_writer import SlotWriter
from hal.errors import ConfigError
from recorder.config import UnitConfig


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
    from firmware.sd_card import BOOTSEL_PARTITION, read_partition_table
    from firmware.slot_writer import PartitionSlotWriter

    disk = Path(unit.disk)
    autoboot: AutobootStore
    if privileged:
        start = read_partition_table(disk).get(BOOTSEL_PARTITION, str(disk)).start
        autoboot = FatAutoboot(FatVolume(disk, start), layout.autoboot_txt)
        system = PiSystem(reboot=_run)
    else:
        autoboot = MirroredAutoboot(layout.autoboot_txt, layout.autoboot_request)
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
