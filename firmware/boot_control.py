"""A/B boot control: which root-filesystem slot boots, and the one-shot try-boot.

The verbs are RAUC's custom-backend verbs (get/set primary, get/set state, current) plus the
Raspberry Pi's one-shot ``tryboot``. ``PiBootControl`` drives the real bootloader through
``autoboot.txt`` on the FAT boot partition and ``reboot "0 tryboot"``; ``SimBootControl`` follows
the same documented rules over DEVICE/boot of a simulated unit (see docs/unit-layout.md).

Invariant kept by every implementation: the one-shot flag is cleared *before* the flagged slot
starts, so any crash, reset or power cut before a commit returns to the primary slot.
This module decides nothing about health or commits (``firmware.health`` does) and never writes
a slot's contents (``firmware.flash`` does).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from firmware.layout import UnitLayout
from firmware.update_state import canonical_json, read_json_file
from hal.durable import remove_durably, write_atomic
from hal.errors import IntegrityError, UsageError

log = logging.getLogger(__name__)

SLOTS: tuple[str, str] = ("A", "B")
# MBR partition numbers of the slots on the SD card (1 is the FAT boot partition, 4 is data).
SLOT_PARTITION: dict[str, int] = {"A": 2, "B": 3}
PARTITION_SLOT: dict[int, str] = {v: k for k, v in SLOT_PARTITION.items()}

# good: committed, boots as primary. installed: written and verified, waiting for its try-boot.
# bad: failed its health check or is being overwritten. empty: holds nothing bootable.
SLOT_STATES: tuple[str, ...] = ("good", "bad", "installed", "empty")

AUTOBOOT_MAX_BYTES = 512  # the Pi bootloader's limit for autoboot.txt
SLOT_STATE_FORMAT = "bwc-slot-state/1"


def check_slot(slot: str) -> str:
    if slot not in SLOTS:
        raise UsageError(f"unknown slot {slot!r}: expected one of {', '.join(SLOTS)}")
    return slot


def other_slot(slot: str) -> str:
    return "B" if check_slot(slot) == "A" else "A"


def render_autoboot(primary: str) -> bytes:
    """autoboot.txt naming ``primary`` for a normal boot and the other slot for a try-boot."""
    return (
        "[all]\n"
        "tryboot_a_b=1\n"
        f"boot_partition={SLOT_PARTITION[check_slot(primary)]}\n"
        "[tryboot]\n"
        f"boot_partition={SLOT_PARTITION[other_slot(primary)]}\n"
    ).encode()


@dataclass(frozen=True)
class Autoboot:
    primary: str
    try_slot: str


def parse_autoboot(data: bytes, source: str) -> Autoboot:
    """Read the ``[all]`` and ``[tryboot]`` boot_partition of an autoboot.txt."""
    if len(data) > AUTOBOOT_MAX_BYTES:
        raise IntegrityError(f"longer than {AUTOBOOT_MAX_BYTES} bytes", path=source)
    section = "all"
    found: dict[str, int] = {}
    for raw_line in data.decode("ascii", errors="replace").splitlines():
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip().lower()
            continue
        key, _, value = line.partition("=")
        if key.strip() == "boot_partition" and section in ("all", "tryboot"):
            try:
                found[section] = int(value.strip())
            except ValueError:
                raise IntegrityError(f"bad boot_partition {value.strip()!r}", path=source) from None
    try:
        primary = PARTITION_SLOT[found["all"]]
        try_slot = PARTITION_SLOT[found.get("tryboot", SLOT_PARTITION[other_slot(primary)])]
    except KeyError:
        raise IntegrityError(
            f"boot_partition must name a slot partition {sorted(PARTITION_SLOT)}", path=source
        ) from None
    return Autoboot(primary=primary, try_slot=try_slot)


@runtime_checkable
class BootControl(Protocol):
    """RAUC-style boot control of the two slots. Every setter is durable when it returns."""

    def get_primary(self) -> str:
        """The slot a normal boot starts."""
        ...

    def set_primary(self, slot: str) -> None:
        """Make ``slot`` the normal boot slot: the commit point of an update."""
        ...

    def get_state(self, slot: str) -> str:
        """One of ``SLOT_STATES``."""
        ...

    def set_state(self, slot: str, state: str) -> None: ...

    def get_current(self) -> str:
        """The slot that is running now (or, on a powered-off simulated unit, ran last)."""
        ...

    def arm_tryboot(self, slot: str) -> None:
        """Make the next boot, and only the next, start ``slot``."""
        ...

    def booted_by_tryboot(self) -> bool:
        """Whether the running boot is a one-shot try-boot."""
        ...


class _SlotStateFile:
    """slot-state.json on the boot partition: the state of each slot, written atomically."""

    def __init__(self, path: Path) -> None:
        self._path = path

    def read(self) -> dict[str, str]:
        states = dict.fromkeys(SLOTS, "empty")
        if not self._path.exists():
            return states
        raw = read_json_file(self._path, max_bytes=4096)
        if not isinstance(raw, dict) or raw.get("format") != SLOT_STATE_FORMAT:
            raise IntegrityError(f"not a {SLOT_STATE_FORMAT} file", path=str(self._path))
        for slot in SLOTS:
            value = raw.get(slot, "empty")
            if value not in SLOT_STATES:
                raise IntegrityError(f"slot {slot}: unknown state {value!r}", path=str(self._path))
            states[slot] = value
        return states

    def write(self, slot: str, state: str) -> None:
        if state not in SLOT_STATES:
            raise UsageError(f"unknown slot state {state!r}: expected one of {SLOT_STATES}")
        states = self.read()
        states[check_slot(slot)] = state
        write_atomic(self._path, canonical_json({"format": SLOT_STATE_FORMAT, **states}) + b"\n")


class SimBootControl:
    """Boot control of a simulated unit: DEVICE/boot stands for the FAT boot partition.

    Files: ``autoboot.txt`` (same text as on a Pi; its ``[all]`` partition is the primary),
    ``tryboot`` (the one-shot flag, naming the slot to try) and ``slot-state.json``.
    ``select_boot_slot`` plays the bootloader; DEVICE/run/boot.json plays the device tree.
    """

    def __init__(self, layout: UnitLayout) -> None:
        self._layout = layout
        self._states = _SlotStateFile(layout.slot_state_json)

    @property
    def layout(self) -> UnitLayout:
        return self._layout

    def is_initialised(self) -> bool:
        return self._layout.autoboot_txt.is_file()

    def get_primary(self) -> str:
        path = self._layout.autoboot_txt
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise UsageError(
                f"{self._layout.root}: not a unit with boot slots (no {path})"
            ) from None
        return parse_autoboot(data, str(path)).primary

    def set_primary(self, slot: str) -> None:
        write_atomic(self._layout.autoboot_txt, render_autoboot(slot))

    def get_state(self, slot: str) -> str:
        return self._states.read()[check_slot(slot)]

    def set_state(self, slot: str, state: str) -> None:
        self._states.write(slot, state)

    def get_current(self) -> str:
        record = self.boot_record()
        return str(record["slot"]) if record else self.get_primary()

    def booted_by_tryboot(self) -> bool:
        record = self.boot_record()
        return bool(record and record.get("tryboot"))

    def arm_tryboot(self, slot: str) -> None:
        write_atomic(self._layout.tryboot_flag, check_slot(slot).encode() + b"\n")

    def disarm_tryboot(self) -> None:
        remove_durably(self._layout.tryboot_flag)

    def armed_tryboot(self) -> str | None:
        """The slot the one-shot flag names, if it is set."""
        try:
            text = self._layout.tryboot_flag.read_bytes()[:16].decode("ascii", "replace").strip()
        except FileNotFoundError:
            return None
        return text if text in SLOTS else None

    def boot_record(self) -> dict[str, object] | None:
        path = self._layout.boot_json
        if not path.exists():
            return None
        raw = read_json_file(path, max_bytes=4096)
        if not isinstance(raw, dict) or raw.get("slot") not in SLOTS:
            raise IntegrityError("malformed boot record", path=str(path))
        return raw

    def select_boot_slot(self) -> tuple[str, bool]:
        """The simulated bootloader: returns ``(slot, tryboot)`` for this power-on.

        If the one-shot flag is set it is cleared first, durably, and then the flagged slot boots;
        otherwise the primary boots. A power cut at any later point therefore lands on the primary.
        """
        flagged = self.armed_tryboot()
        if self._layout.tryboot_flag.exists():
            self.disarm_tryboot()
        slot, tryboot = (flagged, True) if flagged else (self.get_primary(), False)
        self._layout.run.mkdir(parents=True, exist_ok=True)
        write_atomic(
            self._layout.boot_json,
            json.dumps(
                {"slot": slot, "tryboot": tryboot, "partition": SLOT_PARTITION[slot]}
            ).encode(),
        )
        log.info("simulated bootloader: slot %s%s", slot, " (try-boot)" if tryboot else "")
        return slot, tryboot


CommandRunner = Callable[[Sequence[str]], None]


class PiBootControl:
    """Boot control of a Raspberry Pi with the tryboot A/B partition scheme.

    ``boot_dir`` is the mounted FAT boot partition (e.g. /boot/firmware), ``device_tree`` the
    bootloader's node (/proc/device-tree/chosen/bootloader) and ``runner`` runs a command
    (``subprocess.run(cmd, check=True)`` in production, a recorder in tests).
    A rename on FAT is not guaranteed atomic on power loss; autoboot.txt is at most 512 bytes
    and is rewritten whole, which is the scheme the Raspberry Pi documentation describes.
    """

    def __init__(
        self,
        boot_dir: Path,
        runner: CommandRunner,
        device_tree: Path = Path("/proc/device-tree/chosen/bootloader"),
    ) -> None:
        self._boot = boot_dir
        self._runner = runner
        self._dt = device_tree
        self._states = _SlotStateFile(boot_dir / "slot-state.json")

    def _autoboot(self) -> Autoboot:
        path = self._boot / "autoboot.txt"
        try:
            return parse_autoboot(path.read_bytes(), str(path))
        except FileNotFoundError:
            raise UsageError(f"{path}: missing; the SD card is not set up for A/B boot") from None

    def get_primary(self) -> str:
        return self._autoboot().primary

    def set_primary(self, slot: str) -> None:
        write_atomic(self._boot / "autoboot.txt", render_autoboot(slot))

    def get_state(self, slot: str) -> str:
        return self._states.read()[check_slot(slot)]

    def set_state(self, slot: str, state: str) -> None:
        self._states.write(slot, state)

    def _dt_u32(self, name: str) -> int:
        path = self._dt / name
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise IntegrityError(
                f"cannot read the device tree ({exc.strerror})", path=str(path)
            ) from None
        if len(data) != 4:
            raise IntegrityError(f"expected a 32-bit cell, got {len(data)} bytes", path=str(path))
        return int.from_bytes(data, "big")

    def get_current(self) -> str:
        partition = self._dt_u32("partition")
        try:
            return PARTITION_SLOT[partition]
        except KeyError:
            raise IntegrityError(f"booted from partition {partition}, which is no slot") from None

    def booted_by_tryboot(self) -> bool:
        return self._dt_u32("tryboot") == 1

    def arm_tryboot(self, slot: str) -> None:
        """Point ``[tryboot]`` at ``slot`` (if needed) and reboot with the one-shot flag."""
        if self._autoboot().try_slot != check_slot(slot):
            if self.get_primary() == slot:
                raise UsageError(f"slot {slot} is the primary; nothing to try")
            self.set_primary(other_slot(slot))
        self._runner(["reboot", "0 tryboot"])
