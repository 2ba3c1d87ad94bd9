"""Flash, commit, rollback and power cuts on a real SD-card image with the Pi boot control.

The card is built with sfdisk, mkfs.vfat/mcopy and mkfs.ext4 (tests/sd_image.py); the slot image
is a `make image`-style directory (boot.vfat, root.ext4, packages.txt) wrapped by build_bundle.
The Pi bootloader is the documented model in tests/pi_bootloader.py: it reads autoboot.txt from
p1 with mtype, honours [tryboot] only on a try-boot, and fills in /proc/cmdline from the chosen
boot partition's cmdline.txt. Nothing here mounts anything or needs a loop device.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from firmware.boot_control import FatAutoboot, PiBootControl, PiSystem, parse_autoboot
from firmware.bundle import build_bundle, load_signing_key
from firmware.fat import FatVolume
from firmware.flash import FLASH_PHASES, UnitFacts, flash, init_slots, preflight
from firmware.health import HealthResult, boot_decision, commit_or_rollback
from firmware.layout import UnitLayout
from firmware.sd_card import read_partition_table
from firmware.slot_writer import HEALTH_FAIL_KNOB, PartitionSlotWriter
from firmware.update_state import load_state
from hal.errors import IntegrityError, RefusedError
from tests.integration.test_fw_support import BUILD_UTC_S, CutAt, PowerCut, make_keys
from tests.pi_bootloader import PiBootloaderModel
from tests.sd_image import DISK_ID, SdImage, build_sd_image, build_slot_image

COMPATIBLE = "bwc-pi-test"
HEALTHY = HealthResult(True, True, True, True)
UNHEALTHY = HealthResult(True, True, True, False)


@dataclass
class PiUnit:
    card: SdImage
    layout: UnitLayout
    model: PiBootloaderModel
    boot: PiBootControl
    slots: PartitionSlotWriter

    def fw(self) -> dict[str, Any]:
        return {"boot": self.boot, "slots": self.slots}

    def power_on(self) -> int:
        """The bootloader runs, then the early-boot service decides; returns the partition."""
        booted = self.model.power_on()
        boot_decision(self.layout, self.boot, slots=self.slots)
        return booted.partition

    def region_digest(self, partition: int) -> str:
        start, size = self.card.partitions()[partition]
        with self.card.path.open("rb") as f:
            f.seek(start)
            return hashlib.sha256(f.read(size)).hexdigest()


def open_unit(root: Path, card: SdImage) -> PiUnit:
    layout = UnitLayout(root / "data")
    model = PiBootloaderModel(card, root / "proc")
    volume = FatVolume(card.path, read_partition_table(card.path).get(1).start)
    system = PiSystem(model.cmdline_path, model.device_tree, model.reboot)
    boot = PiBootControl(FatAutoboot(volume, layout.autoboot_txt), layout, system)
    slots = PartitionSlotWriter(
        card.path, layout, mounts=root / "mounts", cmdline=model.cmdline_path
    )
    return PiUnit(card, layout, model, boot, slots)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A provisioned card (factory 0.1.0 in slot A), and good and broken bundles for it."""
    root = tmp_path_factory.mktemp("pi")
    card = build_sd_image(root / "sd.img")
    (root / "mounts").write_text("proc /proc proc rw 0 0\n")
    unit = open_unit(root, card)
    unit.model.power_on()
    assert init_slots(
        unit.layout, "0.1.0", 0, compatible=COMPATIBLE, build_utc_s=BUILD_UTC_S, **unit.fw()
    )
    key, _pub = make_keys(root / "keys")
    bundles = {}
    for name in ("good", "extra", "knob"):
        src = build_slot_image(root / f"slot-{name}", "1.0.0")
        if name == "extra":
            (src / "padding").write_bytes(os.urandom(16))  # not part of a slot image
        if name == "knob":
            (src / HEALTH_FAIL_KNOB).write_bytes(b"")  # the test-only fault knob
        bundles[name] = root / f"{name}.bwc"
        build_bundle(
            src,
            bundles[name],
            version="1.0.0",
            security_version=2,
            compatible=COMPATIBLE,
            key=load_signing_key(key),
            build_utc_s=BUILD_UTC_S,
            min_battery_pct=30,
        )
    unit.layout.identity.mkdir(parents=True, exist_ok=True)
    shutil.copy(_pub, unit.layout.release_pub)
    return {"root": root, **bundles}


@pytest.fixture
def unit(template: dict[str, Path], tmp_path: Path) -> PiUnit:
    src = template["root"]
    shutil.copy(src / "sd.img", tmp_path / "sd.img")
    shutil.copytree(src / "data", tmp_path / "data")
    (tmp_path / "mounts").write_text((src / "mounts").read_text())
    pi = open_unit(tmp_path, SdImage(tmp_path / "sd.img"))
    pi.model.power_on()
    return pi


def facts() -> UnitFacts:
    return UnitFacts(compatible=COMPATIBLE, battery_pct=100.0, free_bytes=10**12)


def stage(unit: PiUnit, bundle: Path, **kwargs: Any) -> None:
    plan = preflight(unit.layout, bundle, facts(), **unit.fw())
    flash(unit.layout, plan, **unit.fw(), **kwargs)


def finish_boot(unit: PiUnit, health: HealthResult) -> str:
    outcome = commit_or_rollback(unit.layout, unit.boot, health, None, slots=unit.slots)
    return outcome.action


def test_flash_writes_the_inactive_partitions_and_commits(
    unit: PiUnit, template: dict[str, Path]
) -> None:
    a_boot, a_root = unit.region_digest(2), unit.region_digest(5)
    stage(unit, template["good"])
    assert unit.boot.armed_tryboot() == "B"
    # Slot B's boot partition now names slot B's root, on this card.
    cmdline = unit.card.mtype(3, "cmdline.txt").decode()
    assert f"root=PARTUUID={DISK_ID:08x}-06 " in cmdline
    assert unit.card.mtype(3, "config.txt").startswith(b"# bwc test boot partition 1.0.0")
    unit.card.fsck_fat(3)
    unit.slots.verify("B")
    # The try-boot: the root helper reboots with the one-shot flag; the model starts p3.
    unit.boot.reboot_into_tryboot()
    assert unit.power_on() == 3
    assert (unit.boot.get_current(), unit.boot.booted_by_tryboot()) == ("B", True)
    assert finish_boot(unit, HEALTHY) == "committed"
    assert parse_autoboot(unit.card.mtype(1, "autoboot.txt"), "p1").primary == "B"
    assert unit.power_on() == 3
    assert load_state(unit.layout).floor == 2
    # Slot A was never touched.
    assert (unit.region_digest(2), unit.region_digest(5)) == (a_boot, a_root)


def test_a_failed_health_check_rolls_back(unit: PiUnit, template: dict[str, Path]) -> None:
    stage(unit, template["good"])
    unit.boot.reboot_into_tryboot()
    assert unit.power_on() == 3
    assert finish_boot(unit, UNHEALTHY) == "rolled_back"
    assert unit.power_on() == 2
    assert (unit.boot.get_primary(), unit.boot.get_state("B")) == ("A", "bad")
    assert parse_autoboot(unit.card.mtype(1, "autoboot.txt"), "p1").primary == "A"


def test_a_slot_image_with_the_fault_knob_fails_its_health_check(
    unit: PiUnit, template: dict[str, Path]
) -> None:
    """The knob is named in the slot record and written nowhere: the partitions hold exactly
    what a good bundle writes, and the healthy try-boot still rolls back."""
    stage(unit, template["knob"])
    assert HEALTH_FAIL_KNOB in unit.slots.payload_names("B")
    unit.slots.verify("B")
    unit.boot.reboot_into_tryboot()
    assert unit.power_on() == 3
    outcome = commit_or_rollback(unit.layout, unit.boot, HEALTHY, None, slots=unit.slots)
    assert outcome.action == "rolled_back" and HEALTH_FAIL_KNOB in outcome.reason
    assert unit.power_on() == 2
    assert parse_autoboot(unit.card.mtype(1, "autoboot.txt"), "p1").primary == "A"


def test_refuses_the_running_root_and_a_mounted_target(
    unit: PiUnit, template: dict[str, Path], tmp_path: Path
) -> None:
    (tmp_path / "mounts").write_text(f"{unit.card.path}6 /mnt ext4 rw 0 0\n")
    with pytest.raises(RefusedError, match=r"partition 6 .* is mounted at /mnt"):
        stage(unit, template["good"])
    (tmp_path / "mounts").write_text("")
    # A card whose running root is slot B's: writing B must be refused whatever the boot
    # control says.
    unit.model.cmdline_path.write_text(f"root=PARTUUID={DISK_ID:08x}-06 ro\n")
    with pytest.raises(RefusedError, match="running root"):
        unit.slots.refuse_unsafe_target("B")
    unit.slots.refuse_unsafe_target("A")


def test_preflight_refuses_what_is_not_a_slot_image(
    unit: PiUnit, template: dict[str, Path]
) -> None:
    before = unit.card.path.read_bytes()
    with pytest.raises(RefusedError, match="unexpected padding"):
        preflight(unit.layout, template["extra"], facts(), **unit.fw())
    assert unit.card.path.read_bytes() == before


class CuttingDisk:
    """The card loses power after ``limit`` more bytes reach it."""

    def __init__(self, path: Path, limit: int) -> None:
        self._f = path.open("r+b", buffering=0)
        self._left = limit

    def seek(self, offset: int) -> int:
        return self._f.seek(offset)

    def write(self, data: bytes | memoryview) -> int:
        if len(data) > self._left:
            self._f.write(data[: self._left])
            self._left = 0
            raise PowerCut("power cut while writing the card")
        self._left -= len(data)
        return self._f.write(data) or 0

    def flush(self) -> None:
        self._f.flush()

    def fileno(self) -> int:
        return self._f.fileno()

    def __enter__(self) -> CuttingDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        self._f.close()


def settle(unit: PiUnit, a_digests: tuple[str, str], health: HealthResult = HEALTHY) -> str:
    """Boot (bootloader model, boot decision, healthy check) until nothing is pending."""
    for _ in range(8):
        partition = unit.power_on()
        slot = {2: "A", 3: "B"}[partition]
        assert unit.boot.get_state(slot) in ("good", "installed"), (slot, partition)
        unit.slots.verify(slot)
        assert (unit.region_digest(2), unit.region_digest(5)) == a_digests
        finish_boot(unit, health)
        if unit.boot.armed_tryboot() is not None:
            unit.boot.reboot_into_tryboot()
            continue
        if load_state(unit.layout).pending is None:
            return unit.boot.get_primary()
    raise AssertionError("the unit did not settle")


@pytest.mark.parametrize("offset", [0, 1, 4095, 1 << 20, (4 << 20) + 17, (6 << 20) - 1])
def test_power_cut_while_writing_the_card(
    unit: PiUnit, template: dict[str, Path], offset: int
) -> None:
    a = (unit.region_digest(2), unit.region_digest(5))
    slots = PartitionSlotWriter(
        unit.card.path,
        unit.layout,
        mounts=unit.layout.root.parent / "mounts",
        cmdline=unit.model.cmdline_path,
        open_disk=lambda p: CuttingDisk(p, offset),  # type: ignore[arg-type,return-value]
    )
    plan = preflight(unit.layout, template["good"], facts(), **unit.fw())
    with pytest.raises(PowerCut):
        flash(unit.layout, plan, boot=unit.boot, slots=slots)
    assert settle(unit, a) == "A"
    assert unit.boot.get_state("B") == "empty"
    stage(unit, template["good"])  # and the update can simply be run again
    unit.boot.reboot_into_tryboot()
    assert settle(unit, a) == "B"


RECORDED = {("mark", "done"), ("arm", "start"), ("arm", "done")}


@pytest.mark.parametrize(
    ("phase", "when"), [(p, w) for p in FLASH_PHASES[1:] for w in ("start", "done")]
)
def test_power_cut_between_flash_phases(
    unit: PiUnit, template: dict[str, Path], phase: str, when: str
) -> None:
    a = (unit.region_digest(2), unit.region_digest(5))
    plan = preflight(unit.layout, template["good"], facts(), **unit.fw())
    with pytest.raises(PowerCut):
        flash(unit.layout, plan, **unit.fw(), observer=CutAt(phase, when))
    assert settle(unit, a) == ("B" if (phase, when) in RECORDED else "A")


class CuttingBoot(PiBootControl):
    """The Pi boot control losing power at its ``cut_at``-th durable write."""

    cut_at = 0
    ticks = 0

    def _tick(self) -> None:
        self.ticks += 1
        if self.ticks == self.cut_at:
            raise PowerCut(f"tick {self.ticks}")

    def set_primary(self, slot: str) -> None:
        self._tick()
        super().set_primary(slot)
        self._tick()

    def set_state(self, slot: str, state: str) -> None:
        self._tick()
        super().set_state(slot, state)
        self._tick()

    def disarm_tryboot(self) -> None:
        self._tick()
        super().disarm_tryboot()
        self._tick()


@pytest.mark.parametrize("health", [HEALTHY, UNHEALTHY])
def test_power_cut_at_every_step_of_the_try_boot_and_commit(
    unit: PiUnit, template: dict[str, Path], health: HealthResult
) -> None:
    a = (unit.region_digest(2), unit.region_digest(5))
    stage(unit, template["good"])
    unit.boot.reboot_into_tryboot()
    snapshot = (unit.card.path.read_bytes(), unit.layout.root)
    saved = unit.layout.root.with_name("saved")
    shutil.copytree(unit.layout.root, saved)
    cut_at = 1
    while True:
        unit.card.path.write_bytes(snapshot[0])
        shutil.rmtree(unit.layout.root)
        shutil.copytree(saved, unit.layout.root)
        unit.model.tryboot_flag = True
        cutter = CuttingBoot(
            FatAutoboot(FatVolume(unit.card.path, unit.card.partitions()[1][0]),
                        unit.layout.autoboot_txt),
            unit.layout,
            PiSystem(unit.model.cmdline_path, unit.model.device_tree, unit.model.reboot),
        )  # fmt: skip
        cutter.cut_at = cut_at
        try:
            unit.model.power_on()
            boot_decision(unit.layout, cutter, slots=unit.slots)
            commit_or_rollback(unit.layout, cutter, health, None, slots=unit.slots)
        except PowerCut:
            final = settle(unit, a, health)
            assert final == ("A" if health is UNHEALTHY else "B"), cut_at
            cut_at += 1
            continue
        break
    assert cut_at > 3  # every write of the decision and the commit was cut once


def test_a_damaged_record_is_an_integrity_error(unit: PiUnit, template: dict[str, Path]) -> None:
    stage(unit, template["good"])
    start, _ = unit.card.partitions()[6]
    with unit.card.path.open("r+b") as f:
        f.seek(start + 4096)
        f.write(b"\xff" * 16)
    with pytest.raises(IntegrityError, match="partition 6"):
        unit.slots.verify("B")
