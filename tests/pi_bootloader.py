"""A model of the Raspberry Pi bootloader's partition choice, written from its documentation.

Sources (Raspberry Pi documentation): config_txt/autoboot.adoc (autoboot.txt on the first FAT
partition, at most 512 bytes, filters [all] [none] [tryboot], boot_partition, tryboot_a_b),
raspberry-pi/bootflow-2711.adoc "Fail-safe OS updates (TRYBOOT)" (the one-shot flag is cleared
before the firmware starts; ``reboot "0 tryboot"`` sets it), configuration/device-tree.adoc
(/proc/device-tree/chosen/bootloader/tryboot and .../partition, 32-bit big-endian cells).

It is independent of the firmware package on purpose: it reads the card with sfdisk and mtype,
parses autoboot.txt itself, and fills in what the unit reads after boot: the device-tree cells and
/proc/cmdline (the chosen partition's cmdline.txt). If autoboot.txt is missing, unreadable or
names a partition without firmware files, the bootloader falls back to partition 1, which holds
no firmware: the model reports that as a brick (``BootFailure``).
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.sd_image import SdImage


class BootFailure(Exception):
    """The bootloader found nothing to boot (the unit would be bricked)."""


@dataclass(frozen=True)
class Booted:
    partition: int
    tryboot: bool
    cmdline: str


class PiBootloaderModel:
    """One card, one one-shot flag, and the /proc and device-tree files of the booted system."""

    def __init__(self, image: SdImage, proc: Path) -> None:
        self.image = image
        self.proc = proc
        self.tryboot_flag = False
        self.boots: list[Booted] = []
        self.partitions = image.partitions()  # the table is not changed by updates

    @property
    def cmdline_path(self) -> Path:
        return self.proc / "cmdline"

    @property
    def device_tree(self) -> Path:
        return self.proc / "device-tree" / "chosen" / "bootloader"

    def reboot(self, argv: Sequence[str]) -> None:
        """The unit's ``reboot "0 tryboot"``: sets the one-shot flag for the next boot."""
        assert list(argv) == ["reboot", "0 tryboot"], argv
        self.tryboot_flag = True

    def _read(self, partition: int, name: str) -> bytes | None:
        try:
            start, _ = self.partitions[partition]
            return self.image.mtype_at(start, name)
        except (KeyError, subprocess.CalledProcessError):
            return None

    def _choose(self, tryboot: bool) -> int:
        text = self._read(1, "autoboot.txt")
        if text is None or len(text) > 512:
            return 1
        section_active = True
        chosen = 0
        for raw in text.decode("ascii", "replace").splitlines():
            line = raw.strip()
            if line.startswith("[") and line.endswith("]"):
                name = line[1:-1].strip()
                section_active = name == "all" or (name == "tryboot" and tryboot)
                continue
            if not section_active or "=" not in line:
                continue
            key, value = (part.strip() for part in line.split("=", 1))
            if key == "boot_partition":
                try:
                    chosen = int(value)
                except ValueError:
                    chosen = 0
        return chosen or 1

    def power_on(self) -> Booted:
        """Choose a partition, clear the flag, and fill in /proc for the system that starts."""
        tryboot = self.tryboot_flag
        self.tryboot_flag = False  # cleared before the firmware starts
        partition = self._choose(tryboot)
        if partition not in self.partitions or self._read(partition, "config.txt") is None:
            raise BootFailure(f"partition {partition} holds no firmware")
        cmdline = self._read(partition, "cmdline.txt")
        if cmdline is None:
            raise BootFailure(f"partition {partition} has no cmdline.txt")
        self.proc.mkdir(parents=True, exist_ok=True)
        self.cmdline_path.write_bytes(cmdline.strip() + b"\n")
        self.device_tree.mkdir(parents=True, exist_ok=True)
        (self.device_tree / "tryboot").write_bytes((1 if tryboot else 0).to_bytes(4, "big"))
        (self.device_tree / "partition").write_bytes(partition.to_bytes(4, "big"))
        booted = Booted(partition, tryboot, cmdline.decode().strip())
        self.boots.append(booted)
        return booted
