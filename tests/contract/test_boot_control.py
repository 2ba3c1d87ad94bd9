"""One contract suite over every boot control: the simulated unit's (a directory) and the Pi's
(a real SD-card image, driven by the model of the Pi bootloader in tests/pi_bootloader.py).

Each rig offers ``power_on()`` (the bootloader runs, then the early-boot service consumes a spent
one-shot flag) and ``reboot_into_tryboot()`` (what the root helper does on a Pi after arming).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest

from firmware.boot_control import (
    BootControl,
    FatAutoboot,
    PiBootControl,
    PiSystem,
    SimBootControl,
)
from firmware.fat import FatVolume
from firmware.health import HealthResult, boot_decision, commit_or_rollback
from firmware.layout import UnitLayout
from firmware.sd_card import read_partition_table
from firmware.slot_writer import DirectorySlotWriter, PartitionSlotWriter, SlotWriter
from firmware.update_state import PendingTry, UpdateState, save_state
from tests.pi_bootloader import PiBootloaderModel
from tests.sd_image import SdImage, build_two_slot_card


class Rig(Protocol):
    boot: BootControl
    layout: UnitLayout
    slots: SlotWriter

    def power_on(self) -> tuple[str, bool]: ...

    def reboot_into_tryboot(self) -> None: ...


class SimRig:
    def __init__(self, root: Path) -> None:
        self.layout = UnitLayout(root)
        self.sim = SimBootControl(self.layout)
        self.sim.set_primary("A")
        self.boot: BootControl = self.sim
        self.slots: SlotWriter = DirectorySlotWriter(self.layout)

    def power_on(self) -> tuple[str, bool]:
        result = self.sim.select_boot_slot()
        self.sim.consume_tryboot()
        return result

    def reboot_into_tryboot(self) -> None:
        pass  # the simulated flag file is the armed request itself


class PiRig:
    def __init__(self, root: Path, card: SdImage) -> None:
        self.layout = UnitLayout(root / "data")
        self.model = PiBootloaderModel(card, root / "proc")
        volume = FatVolume(card.path, read_partition_table(card.path).get(1).start)
        system = PiSystem(self.model.cmdline_path, self.model.device_tree, self.model.reboot)
        self.pi = PiBootControl(FatAutoboot(volume, self.layout.autoboot_txt), self.layout, system)
        self.boot: BootControl = self.pi
        self.slots: SlotWriter = PartitionSlotWriter(card.path, self.layout)
        self.model.power_on()

    def power_on(self) -> tuple[str, bool]:
        self.model.power_on()
        result = self.pi.get_current(), self.pi.booted_by_tryboot()
        assert self.pi.check_boot() == []
        self.pi.consume_tryboot()
        return result

    def reboot_into_tryboot(self) -> None:
        self.pi.reboot_into_tryboot()


@pytest.fixture(scope="module")
def card_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_two_slot_card(tmp_path_factory.mktemp("card") / "sd.img").path


@pytest.fixture(params=["sim", "pi"])
def rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Rig]:
    if request.param == "sim":
        yield SimRig(tmp_path / "unit")
        return
    template: Path = request.getfixturevalue("card_template")
    shutil.copy(template, tmp_path / "sd.img")
    yield PiRig(tmp_path, SdImage(tmp_path / "sd.img"))


def _install_b(rig: Rig) -> None:
    rig.boot.set_state("A", "good")
    rig.boot.set_state("B", "installed")


def test_implements_the_protocol(rig: Rig) -> None:
    assert isinstance(rig.boot, BootControl)
    assert rig.power_on() == ("A", False)
    assert rig.boot.get_primary() == "A"
    assert rig.boot.armed_tryboot() is None


def test_a_try_boot_happens_once(rig: Rig) -> None:
    _install_b(rig)
    assert rig.boot.is_initialised()
    rig.boot.arm_tryboot("B")
    assert rig.boot.armed_tryboot() == "B"
    rig.reboot_into_tryboot()
    assert rig.power_on() == ("B", True)
    assert rig.boot.get_current() == "B"
    assert rig.boot.armed_tryboot() is None
    assert rig.power_on() == ("A", False)  # whatever happened during the try


def test_disarm_cancels(rig: Rig) -> None:
    _install_b(rig)
    rig.boot.arm_tryboot("B")
    rig.boot.disarm_tryboot()
    assert rig.boot.armed_tryboot() is None
    assert rig.power_on() == ("A", False)


def test_commit_makes_the_slot_primary(rig: Rig) -> None:
    _install_b(rig)
    rig.boot.set_primary("B")
    assert rig.power_on() == ("B", False)
    assert (rig.boot.get_primary(), rig.boot.get_state("A")) == ("B", "good")


def test_boot_decision_and_commit(rig: Rig) -> None:
    _install_b(rig)
    pending = PendingTry(slot="B", version="1.0.0", security_version=2, sha256="0" * 64)
    save_state(rig.layout, UpdateState(pending=pending))
    rig.boot.arm_tryboot("B")
    rig.reboot_into_tryboot()
    if isinstance(rig, PiRig):
        rig.model.power_on()  # on a Pi the bootloader ran before Linux; boot_decision reads it
    plan = boot_decision(rig.layout, rig.boot, slots=rig.slots)
    assert (plan.slot, plan.tryboot, plan.attempts) == ("B", True, 1)
    healthy = HealthResult(True, True, True, True)
    outcome = commit_or_rollback(rig.layout, rig.boot, healthy, None, slots=rig.slots)
    assert outcome.action == "committed"
    assert rig.boot.get_primary() == "B" and rig.boot.get_state("B") == "good"
    assert rig.power_on() == ("B", False)
