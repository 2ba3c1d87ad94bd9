"""The Pi boot control over a real SD-card image: autoboot.txt on a real FAT p1, rewritten in place,
read by a model of the Pi bootloader (tests/pi_bootloader.py) that fills in /proc for the unit."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from firmware.boot_control import (
    FatAutoboot,
    MirroredAutoboot,
    PiBootControl,
    PiSystem,
    parse_autoboot,
    render_autoboot,
)
from firmware.fat import FatVolume
from firmware.layout import UnitLayout
from firmware.sd_card import read_partition_table
from hal.errors import IntegrityError, RefusedError
from tests.pi_bootloader import BootFailure, PiBootloaderModel
from tests.sd_image import SdImage, build_two_slot_card


@pytest.fixture(scope="module")
def card_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_two_slot_card(tmp_path_factory.mktemp("card") / "sd.img").path


@pytest.fixture
def card(card_template: Path, tmp_path: Path) -> SdImage:
    shutil.copy(card_template, tmp_path / "sd.img")
    return SdImage(tmp_path / "sd.img")


def bootsel(card: SdImage) -> FatVolume:
    return FatVolume(card.path, read_partition_table(card.path).get(1).start)


def pi_boot(card: SdImage, unit: Path, model: PiBootloaderModel) -> PiBootControl:
    layout = UnitLayout(unit)
    autoboot = FatAutoboot(bootsel(card), layout.autoboot_txt)
    system = PiSystem(model.cmdline_path, model.device_tree, model.reboot)
    return PiBootControl(autoboot, layout, system)


def test_fat_reader_agrees_with_mtools_and_rewrite_keeps_the_volume_clean(card: SdImage) -> None:
    volume = bootsel(card)
    assert volume.read_file("autoboot.txt") == card.mtype(1, "autoboot.txt") == render_autoboot("A")
    before = card.path.read_bytes()
    volume.rewrite_file("autoboot.txt", render_autoboot("B"))
    assert card.mtype(1, "autoboot.txt") == render_autoboot("B")
    card.fsck_fat(1)
    after = card.path.read_bytes()
    blocks = [i for i in range(0, len(before), 4096) if before[i : i + 4096] != after[i : i + 4096]]
    changed = [i for b in blocks for i in range(b, b + 4096) if before[i] != after[i]]
    # Exactly the two partition digits changed: no directory entry, no FAT, no free count.
    assert len(changed) == 2
    with pytest.raises(IntegrityError, match="keep the size"):
        volume.rewrite_file("autoboot.txt", render_autoboot("A") + b"\n")


def test_commit_and_tryboot_through_the_bootloader_model(card: SdImage, tmp_path: Path) -> None:
    model = PiBootloaderModel(card, tmp_path / "proc")
    assert model.power_on().partition == 2
    boot = pi_boot(card, tmp_path / "unit", model)
    assert (boot.get_current(), boot.booted_by_tryboot(), boot.check_boot()) == ("A", False, [])
    boot.set_state("A", "good")
    boot.set_state("B", "installed")
    boot.arm_tryboot("B")
    assert boot.armed_tryboot() == "B"
    boot.reboot_into_tryboot()
    assert model.power_on().partition == 3
    assert (boot.get_current(), boot.booted_by_tryboot(), boot.check_boot()) == ("B", True, [])
    boot.consume_tryboot()
    assert boot.armed_tryboot() is None
    # A reset before the commit: the flag is gone, the primary boots.
    assert model.power_on().partition == 2
    assert boot.get_current() == "A"
    # Commit: rewrite autoboot.txt in place; from now on B boots normally.
    boot.set_primary("B")
    assert parse_autoboot(card.mtype(1, "autoboot.txt"), "p1").primary == "B"
    assert model.power_on().partition == 3
    assert (boot.get_current(), boot.booted_by_tryboot(), boot.check_boot()) == ("B", False, [])
    # The recorder's view reads the mirror the helper keeps; a change is only a request.
    layout = UnitLayout(tmp_path / "unit")
    view = PiBootControl(
        MirroredAutoboot(layout.autoboot_txt, layout.autoboot_request, wait_s=0.1,
                         sleep=lambda _s: None),
        layout,
        PiSystem(model.cmdline_path, model.device_tree),
    )  # fmt: skip
    assert view.get_primary() == "B"
    with pytest.raises(RefusedError, match="did not apply"):
        view.set_primary("A")
    assert layout.autoboot_request.read_bytes() == render_autoboot("A")
    assert card.mtype(1, "autoboot.txt") == render_autoboot("B")


def test_a_torn_commit_at_any_byte_still_boots_a_slot(card: SdImage, tmp_path: Path) -> None:
    """Power cut part-way through the in-place rewrite: every prefix of the new bytes written."""
    volume = bootsel(card)
    (extent,) = volume.extents("autoboot.txt")
    new = render_autoboot("B")
    model = PiBootloaderModel(card, tmp_path / "proc")
    for cut in range(len(new) + 1):
        fd = os.open(card.path, os.O_RDWR)
        try:
            os.pwrite(fd, render_autoboot("A"), extent.offset)
            os.pwrite(fd, new[:cut], extent.offset)
        finally:
            os.close(fd)
        for tryboot in (False, True):
            model.tryboot_flag = tryboot
            assert model.power_on().partition in (2, 3)


def test_boot_state_disagreement_is_reported_not_raised(card: SdImage, tmp_path: Path) -> None:
    model = PiBootloaderModel(card, tmp_path / "proc")
    model.power_on()
    boot = pi_boot(card, tmp_path / "unit", model)
    # Someone rewrote autoboot.txt behind the unit's back after it booted.
    bootsel(card).rewrite_file("autoboot.txt", render_autoboot("B"))
    assert boot.check_boot() == ["running slot A but autoboot.txt selects B for a normal boot"]
    model.cmdline_path.write_text("console=tty1 root=/dev/mmcblk0p2\n")
    with pytest.raises(IntegrityError, match="root=PARTUUID"):
        boot.get_current()


def test_without_a_bootloader_node_the_command_line_says_tryboot(
    card: SdImage, tmp_path: Path
) -> None:
    """A QEMU virt machine has no /proc/device-tree/chosen/bootloader: the image test's bootloader
    model passes bwc.tryboot= on the kernel command line instead."""
    model = PiBootloaderModel(card, tmp_path / "proc")
    model.tryboot_flag = True
    model.power_on()
    boot = pi_boot(card, tmp_path / "unit", model)
    shutil.rmtree(model.device_tree)
    with pytest.raises(IntegrityError, match="device tree"):
        boot.booted_by_tryboot()
    cmdline = model.cmdline_path.read_text().strip()
    model.cmdline_path.write_text(cmdline + " bwc.tryboot=1\n")
    assert (boot.get_current(), boot.booted_by_tryboot(), boot.check_boot()) == ("B", True, [])
    model.cmdline_path.write_text(cmdline.replace("-06", "-05") + " bwc.tryboot=0\n")
    assert (boot.get_current(), boot.booted_by_tryboot(), boot.check_boot()) == ("A", False, [])


def test_the_old_layout_cannot_boot(card: SdImage, tmp_path: Path) -> None:
    """Issue 17 item 4: autoboot.txt naming ext4 root partitions (the old docs/unit-layout.md)
    sends the bootloader to a partition with no firmware files: the model refuses to boot it."""
    old = b"[all]\ntryboot_a_b=1\nboot_partition=5\n[tryboot]\nboot_partition=6\n"
    bootsel(card).rewrite_file("autoboot.txt", old[: len(render_autoboot("A"))])
    model = PiBootloaderModel(card, tmp_path / "proc")
    with pytest.raises(BootFailure, match="partition 5 holds no firmware"):
        model.power_on()
