"""A/B boot control: which root-filesystem slot boots, and the one-shot try-boot.

The verbs are RAUC's custom-backend verbs (get/set primary, get/set state, current) plus the
Raspberry Pi's one-shot ``tryboot``. ``PiBootControl`` drives the real bootloader through
``autoboot.txt`` on the boot-select FAT partition (p1, rewritten in place) and
``reboot "0 tryboot"`` (through the root helper); ``SimBootControl`` follows the same documented
rules over DEVICE/boot of a simulated unit (see docs/unit-layout.md).

Invariant kept by every implementation: the one-shot flag is cleared *before* the flagged slot
starts, so any crash, reset or power cut before a commit returns to the primary slot.
This module decides nothing about health or commits (``firmware.health`` does) and never writes
a slot's contents (``firmware.flash`` does).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from firmware.fat import FatVolume
from firmware.layout import UnitLayout
from firmware.sd_card import ROOT_SLOT, root_partuuid
from firmware.update_state import canonical_json, read_json_file
from hal.durable import remove_durably, write_atomic
from hal.errors import IntegrityError, RefusedError, UsageError

log = logging.getLogger(__name__)

SLOTS: tuple[str, str] = ("A", "B")
# MBR partition numbers of the slots' FAT boot partitions, the ones autoboot.txt names (p1 is the
# boot-select partition holding only autoboot.txt; firmware/sd_card.py names every partition).
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

    def is_initialised(self) -> bool:
        """Whether the unit has A/B boot slots set up."""
        ...

    def armed_tryboot(self) -> str | None:
        """The slot the next boot will try, if a try-boot is armed."""
        ...

    def disarm_tryboot(self) -> None:
        """Cancel an armed try-boot; the next boot starts the primary."""
        ...

    def consume_tryboot(self) -> None:
        """Called once per boot after the bootloader ran: a one-shot flag it used is spent."""
        ...

    def check_boot(self) -> list[str]:
        """Disagreements between what booted and what the boot selection says (none: [])."""
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

    def consume_tryboot(self) -> None:
        """Nothing to do: ``select_boot_slot`` (the simulated bootloader) cleared the flag."""

    def check_boot(self) -> list[str]:
        """The simulated bootloader cannot disagree with itself."""
        return []

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


class AutobootStore(Protocol):
    """Where ``autoboot.txt`` is read and rewritten: p1 itself, or a view of it."""

    def read(self) -> bytes: ...

    def rewrite(self, data: bytes) -> None:
        """Replace the file's bytes durably; ``data`` has the file's current size."""
        ...


class FatAutoboot:
    """``autoboot.txt`` on the boot-select FAT partition, rewritten in place (never renamed).

    ``mirror`` (on the ext4 data partition) gets a copy after every read and rewrite, so the
    unprivileged recorder can read the boot selection without access to the raw partition.
    """

    NAME = "autoboot.txt"

    def __init__(self, volume: FatVolume, mirror: Path | None = None) -> None:
        self.volume = volume
        self._mirror = mirror

    def read(self) -> bytes:
        try:
            data = self.volume.read_file(self.NAME)
        except FileNotFoundError:
            raise UsageError(
                f"{self.volume.path}: no {self.NAME} on the boot-select partition"
            ) from None
        self._refresh_mirror(data)
        return data

    def rewrite(self, data: bytes) -> None:
        self.volume.rewrite_file(self.NAME, data)
        if self.volume.read_file(self.NAME) != data:
            raise IntegrityError(f"{self.NAME}: read-back differs", path=str(self.volume.path))
        self._refresh_mirror(data)

    def _refresh_mirror(self, data: bytes) -> None:
        if self._mirror is not None:
            self._mirror.parent.mkdir(parents=True, exist_ok=True)
            try:
                current = self._mirror.read_bytes()
            except FileNotFoundError:
                current = None
            if current != data:
                write_atomic(self._mirror, data)


class MirroredAutoboot:
    """The recorder's view: it reads the copy the root helper keeps on the data partition, and
    asks the helper for a rewrite (docs/unit-layout.md, "The root helper").

    ``rewrite`` writes ``request`` (the wanted bytes, atomically, on the data partition), which a
    systemd path unit turns into one run of ``bwc bootctl sync`` as root, then waits up to
    ``wait_s`` for the mirror to show the new bytes. If the helper does not answer in time it
    raises ``RefusedError``; the request stays and the boot-time ``sync`` applies it.
    """

    def __init__(
        self,
        mirror: Path,
        request: Path,
        *,
        wait_s: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._mirror = mirror
        self._request = request
        self._wait_s = wait_s
        self._sleep = sleep

    def read(self) -> bytes:
        try:
            return self._mirror.read_bytes()
        except FileNotFoundError:
            raise UsageError(
                f"{self._mirror}: missing; the root helper (bwc bootctl sync) has not run"
            ) from None

    def rewrite(self, data: bytes) -> None:
        parse_autoboot(data, str(self._request))
        write_atomic(self._request, data)
        waited = 0.0
        step = 0.05
        while True:
            try:
                if self._mirror.read_bytes() == data:
                    return
            except FileNotFoundError:
                pass
            if waited >= self._wait_s:
                raise RefusedError(
                    f"the root helper did not apply {self._request.name} within "
                    f"{self._wait_s:.0f} s; it stays requested for the next boot"
                )
            self._sleep(step)
            waited += step


@dataclass(frozen=True)
class PiSystem:
    """What the running Linux tells about the boot; every path injectable for tests.

    ``cmdline``: the kernel command line (its ``root=PARTUUID=`` names the running root).
    ``device_tree``: the bootloader's node, with the ``tryboot`` and ``partition`` cells.
    ``reboot``: runs ``reboot "0 tryboot"`` (the root helper passes ``subprocess.run``).
    ``model``: the board's name, to refuse models without tryboot.
    """

    cmdline: Path = Path("/proc/cmdline")
    device_tree: Path = Path("/proc/device-tree/chosen/bootloader")
    reboot: CommandRunner | None = None
    model: Path = Path("/proc/device-tree/model")


class PiBootControl:
    """Boot control of a Raspberry Pi with ``tryboot_a_b`` (docs/unit-layout.md).

    ``autoboot`` is p1's ``autoboot.txt`` (``FatAutoboot`` in the root helper, ``MirroredAutoboot``
    in the recorder), ``layout`` the unit directory on the ext4 data partition, which holds the
    slot states (``boot/slot-state.json``) and the armed try-boot (``boot/tryboot``: which slot
    the next ``reboot "0 tryboot"`` tries). ``system`` is where Linux reports the boot.

    Power safety: autoboot.txt is never renamed or resized; a commit rewrites its 63 bytes in
    place, and the two versions differ only in the two partition digits, so any torn mix still
    names slot partitions. The running slot comes from the root on ``/proc/cmdline``, not from the
    device tree's ``partition`` cell (Pi 5 bootloaders report 0 there, rpi-eeprom #575).
    """

    def __init__(self, autoboot: AutobootStore, layout: UnitLayout, system: PiSystem) -> None:
        self._autoboot_store = autoboot
        self._layout = layout
        self._system = system
        self._states = _SlotStateFile(layout.slot_state_json)

    def _autoboot(self) -> Autoboot:
        return parse_autoboot(self._autoboot_store.read(), "autoboot.txt")

    def is_initialised(self) -> bool:
        return self._layout.slot_state_json.is_file()

    def get_primary(self) -> str:
        return self._autoboot().primary

    def set_primary(self, slot: str) -> None:
        """Rewrite autoboot.txt in place so ``slot`` boots normally and the other is tried."""
        data = render_autoboot(slot)
        self._autoboot_store.rewrite(data)

    def get_state(self, slot: str) -> str:
        return self._states.read()[check_slot(slot)]

    def set_state(self, slot: str, state: str) -> None:
        self._states.write(slot, state)

    def _dt_u32(self, name: str) -> int:
        path = self._system.device_tree / name
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
        """The running slot, from ``root=PARTUUID=<disk-id>-NN`` on the kernel command line."""
        path = self._system.cmdline
        try:
            cmdline = path.read_text(errors="replace")
        except OSError as exc:
            raise IntegrityError(f"cannot read ({exc.strerror})", path=str(path)) from None
        root = root_partuuid(cmdline)
        if root is None:
            raise IntegrityError("no root=PARTUUID= on the kernel command line", path=str(path))
        try:
            return ROOT_SLOT[root[1]]
        except KeyError:
            raise IntegrityError(
                f"the root is partition {root[1]}, which is no slot's root", path=str(path)
            ) from None

    def booted_by_tryboot(self) -> bool:
        """The device tree's ``tryboot`` cell; where there is no Pi bootloader node (a QEMU
        ``virt`` machine booted by the image test's bootloader model) ``bwc.tryboot=0|1`` on the
        kernel command line stands for it."""
        if not (self._system.device_tree / "tryboot").exists():
            try:
                words = self._system.cmdline.read_text(errors="replace").split()
            except OSError:
                words = []
            for word in words:
                if word in ("bwc.tryboot=0", "bwc.tryboot=1"):
                    return word.endswith("1")
        return self._dt_u32("tryboot") == 1

    def check_boot(self) -> list[str]:
        """Disagreements between what booted and what autoboot.txt says should have.

        Empty when the running root is the ``[tryboot]`` slot on a try-boot, or the primary
        otherwise, and the device tree's partition (when it names one) is that slot's.
        """
        problems: list[str] = []
        current = self.get_current()
        auto = self._autoboot()
        tryboot = self.booted_by_tryboot()
        expected = auto.try_slot if tryboot else auto.primary
        if current != expected:
            problems.append(
                f"running slot {current} but autoboot.txt selects {expected} for a "
                f"{'try-boot' if tryboot else 'normal boot'}"
            )
        try:
            partition = self._dt_u32("partition")
        except IntegrityError:
            partition = 0
        if partition not in (0, SLOT_PARTITION[current]):
            problems.append(f"device tree says partition {partition}, the root is slot {current}'s")
        return problems

    def arm_tryboot(self, slot: str) -> None:
        """Point ``[tryboot]`` at ``slot`` and record that the next reboot tries it.

        It does not reboot: ``reboot_into_tryboot`` (the root helper) does, at a safe moment.
        """
        if self._autoboot().try_slot != check_slot(slot):
            if self.get_primary() == slot:
                raise UsageError(f"slot {slot} is the primary; nothing to try")
            self.set_primary(other_slot(slot))
        write_atomic(self._layout.tryboot_flag, slot.encode() + b"\n")

    def armed_tryboot(self) -> str | None:
        try:
            text = self._layout.tryboot_flag.read_bytes()[:16].decode("ascii", "replace").strip()
        except FileNotFoundError:
            return None
        return text if text in SLOTS else None

    def disarm_tryboot(self) -> None:
        remove_durably(self._layout.tryboot_flag)

    def consume_tryboot(self) -> None:
        """On a try-boot the bootloader has cleared its one-shot flag: forget our request too."""
        if self.booted_by_tryboot() and self._layout.tryboot_flag.exists():
            self.disarm_tryboot()

    def reboot_into_tryboot(self) -> None:
        """``reboot "0 tryboot"`` if a try-boot is armed and its slot is installed (root only)."""
        slot = self.armed_tryboot()
        if slot is None:
            raise RefusedError("no try-boot is armed")
        if self.get_state(slot) != "installed" or self._autoboot().try_slot != slot:
            raise RefusedError(f"slot {slot} is not an installed slot selected by [tryboot]")
        if self._system.reboot is None:
            raise RefusedError("this boot control cannot reboot")
        self._system.reboot(["reboot", "0 tryboot"])
