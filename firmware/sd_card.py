"""The Pi unit's SD card: partition numbers of the agreed layout, and its MBR partition table.

One place names every partition (docs/unit-layout.md): p1 boot-select FAT (``autoboot.txt``),
p2/p3 the FAT boot partitions of slots A/B, p4 extended, p5/p6 the ext4 roots of A/B, p7 data.
The table is read here in Python (MBR plus the extended partition's EBR chain, as the kernel and
the Pi boot ROM read it), so a disk image file and ``/dev/mmcblk0`` are handled alike.
This module reads only; it never writes a partition table.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from hal.errors import IntegrityError, RefusedError

BOOTSEL_PARTITION = 1
BOOT_PARTITION: dict[str, int] = {"A": 2, "B": 3}
EXTENDED_PARTITION = 4
ROOT_PARTITION: dict[str, int] = {"A": 5, "B": 6}
DATA_PARTITION = 7
ROOT_SLOT: dict[int, str] = {v: k for k, v in ROOT_PARTITION.items()}

SECTOR_BYTES = 512
_EXTENDED_TYPES = (0x05, 0x0F, 0x85)


@dataclass(frozen=True)
class Partition:
    number: int
    type_id: int
    start: int  # bytes from the start of the disk
    size: int  # bytes


@dataclass(frozen=True)
class PartitionTable:
    disk_id: int  # the MBR disk signature (sfdisk's label-id)
    partitions: dict[int, Partition]

    def get(self, number: int, source: str = "") -> Partition:
        try:
            return self.partitions[number]
        except KeyError:
            raise IntegrityError(f"no partition {number} on the card", path=source) from None

    def partuuid(self, number: int) -> str:
        return partuuid(self.disk_id, number)


def partuuid(disk_id: int, number: int) -> str:
    """The kernel's PARTUUID of MBR partition ``number``: ``<disk-id>-<NN>`` in lower-case hex."""
    return f"{disk_id:08x}-{number:02x}"


def _entries(sector: bytes) -> list[tuple[int, int, int]]:
    """(type, first LBA, sectors) of the four slots of an MBR or EBR sector."""
    if sector[510:512] != b"\x55\xaa":
        raise IntegrityError("no MBR signature")
    out = []
    for i in range(4):
        raw = sector[446 + 16 * i : 462 + 16 * i]
        out.append(
            (
                raw[4],
                int.from_bytes(raw[8:12], "little"),
                int.from_bytes(raw[12:16], "little"),
            )
        )
    return out


def read_partition_table(path: Path) -> PartitionTable:
    """The MBR partition table of ``path`` (a disk image or a whole-disk block device)."""
    fd = os.open(path, os.O_RDONLY)
    try:

        def sector(lba: int) -> bytes:
            data = os.pread(fd, SECTOR_BYTES, lba * SECTOR_BYTES)
            if len(data) != SECTOR_BYTES:
                raise IntegrityError(f"truncated at sector {lba}", path=str(path))
            return data

        mbr = sector(0)
        try:
            primaries = _entries(mbr)
        except IntegrityError:
            raise IntegrityError("no MBR partition table", path=str(path)) from None
        disk_id = int.from_bytes(mbr[440:444], "little")
        parts: dict[int, Partition] = {}
        extended: tuple[int, int] | None = None
        for i, (kind, lba, count) in enumerate(primaries, start=1):
            if kind == 0 or count == 0:
                continue
            parts[i] = Partition(i, kind, lba * SECTOR_BYTES, count * SECTOR_BYTES)
            if kind in _EXTENDED_TYPES:
                extended = (lba, count)
        if extended is not None:
            base = extended[0]
            ebr = base
            number = 5
            while number < 64:
                entries = _entries(sector(ebr))
                kind, rel, count = entries[0]
                if kind and count:
                    parts[number] = Partition(
                        number, kind, (ebr + rel) * SECTOR_BYTES, count * SECTOR_BYTES
                    )
                    number += 1
                next_kind, next_rel, _ = entries[1]
                if next_kind not in _EXTENDED_TYPES or next_rel == 0:
                    break
                ebr = base + next_rel
        return PartitionTable(disk_id, parts)
    finally:
        os.close(fd)


def partition_device(disk: Path, number: int) -> Path:
    """The kernel's name of partition ``number`` of ``disk``: mmcblk0 -> mmcblk0p5, sda -> sda5."""
    name = str(disk)
    return Path(f"{name}p{number}" if name[-1:].isdigit() else f"{name}{number}")


def is_block_device(path: Path) -> bool:
    try:
        return stat.S_ISBLK(path.stat().st_mode)
    except OSError:
        return False


_ROOT_RE = re.compile(r"(?:^|\s)root=PARTUUID=([0-9a-fA-F]{8})-([0-9a-fA-F]{2})(?:\s|$)")


def root_partuuid(cmdline: str) -> tuple[int, int] | None:
    """(disk id, partition number) of ``root=PARTUUID=...`` on a kernel command line."""
    match = _ROOT_RE.search(cmdline)
    if match is None:
        return None
    return int(match.group(1), 16), int(match.group(2), 16)


# Raspberry Pi models and the A/B boot control (docs/unit-layout.md, "Pi models").
TRYBOOT_MODELS = (
    "Raspberry Pi 5",
    "Raspberry Pi 4",
    "Raspberry Pi 400",
    "Raspberry Pi 500",
    "Raspberry Pi Compute Module 4",
    "Raspberry Pi Compute Module 5",
)
"""Models whose EEPROM bootloader reads autoboot.txt and honours ``[tryboot]`` and
``tryboot_a_b``."""


def check_tryboot_model(model: str) -> None:
    """``RefusedError`` if ``model`` (/proc/device-tree/model) is a Raspberry Pi without tryboot.

    Pi 3, Pi 3+, Zero 2 W and older boot through bootcode.bin, which does not read autoboot.txt:
    a unit there would never switch slots, so it is refused (at provisioning and flashing) rather
    than left to believe it can update safely. Boards that are not Raspberry Pis (QEMU's ``virt``
    machine in the image test) are not refused: there the bootloader is whatever the test models.
    """
    name = model.rstrip("\x00").strip()
    if name.startswith("Raspberry Pi") and not name.startswith(TRYBOOT_MODELS):
        raise RefusedError(
            f"{name}: A/B updates need the tryboot bootloader of a Raspberry Pi 4, 400, 5 or "
            "Compute Module 4/5 (autoboot.txt); this model has none: update it by re-imaging "
            "the card (docs/unit-layout.md, Pi models)"
        )
