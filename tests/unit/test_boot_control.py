"""Boot control: autoboot.txt as the Pi documents it, the simulated bootloader, the Pi backend."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from firmware.boot_control import (
    BootControl,
    PiBootControl,
    SimBootControl,
    parse_autoboot,
    render_autoboot,
)
from firmware.layout import UnitLayout
from hal.errors import IntegrityError, UsageError

# The example in the Raspberry Pi documentation (config_txt/autoboot.adoc, A/B booting).
PI_DOC_AUTOBOOT = b"[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=3\n"


def test_autoboot_matches_the_raspberry_pi_example() -> None:
    assert render_autoboot("A") == PI_DOC_AUTOBOOT
    parsed = parse_autoboot(PI_DOC_AUTOBOOT, "autoboot.txt")
    assert (parsed.primary, parsed.try_slot) == ("A", "B")
    swapped = parse_autoboot(render_autoboot("B"), "autoboot.txt")
    assert (swapped.primary, swapped.try_slot) == ("B", "A")


@pytest.mark.parametrize(
    "text",
    [b"[all]\nboot_partition=7\n", b"[all]\nboot_partition=x\n", b"# nothing\n", b"x" * 513],
)
def test_bad_autoboot_is_an_integrity_error(text: bytes) -> None:
    with pytest.raises(IntegrityError):
        parse_autoboot(text, "autoboot.txt")


def _sim(tmp_path: Path) -> SimBootControl:
    boot = SimBootControl(UnitLayout(tmp_path))
    boot.set_primary("A")
    boot.set_state("A", "good")
    return boot


def test_sim_implements_the_protocol(tmp_path: Path) -> None:
    assert isinstance(_sim(tmp_path), BootControl)


def test_flag_is_cleared_before_the_tried_slot_boots(tmp_path: Path) -> None:
    boot = _sim(tmp_path)
    boot.arm_tryboot("B")
    assert boot.armed_tryboot() == "B"
    assert boot.select_boot_slot() == ("B", True)
    assert not (tmp_path / "boot" / "tryboot").exists()
    assert (boot.get_current(), boot.booted_by_tryboot()) == ("B", True)
    # Whatever happens during the try, the next power-on starts the primary.
    assert boot.select_boot_slot() == ("A", False)
    assert (boot.get_current(), boot.booted_by_tryboot()) == ("A", False)


def test_sim_states_and_primary_persist(tmp_path: Path) -> None:
    boot = _sim(tmp_path)
    boot.set_state("B", "installed")
    boot.set_primary("B")
    again = SimBootControl(UnitLayout(tmp_path))
    assert again.get_primary() == "B"
    assert (again.get_state("A"), again.get_state("B")) == ("good", "installed")
    assert (tmp_path / "boot" / "autoboot.txt").read_bytes() == render_autoboot("B")
    with pytest.raises(UsageError):
        again.set_state("B", "great")
    with pytest.raises(UsageError):
        again.set_state("C", "good")


def test_uninitialised_unit_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not a unit"):
        SimBootControl(UnitLayout(tmp_path)).get_primary()


class Runner:
    def __init__(self) -> None:
        self.commands: list[list[str]] = []

    def __call__(self, cmd: Sequence[str]) -> None:
        self.commands.append(list(cmd))


def _pi(tmp_path: Path, *, partition: int, tryboot: int) -> tuple[PiBootControl, Runner]:
    boot_dir = tmp_path / "bootfs"
    boot_dir.mkdir()
    (boot_dir / "autoboot.txt").write_bytes(PI_DOC_AUTOBOOT)
    dt = tmp_path / "dt"
    dt.mkdir()
    (dt / "partition").write_bytes(partition.to_bytes(4, "big"))
    (dt / "tryboot").write_bytes(tryboot.to_bytes(4, "big"))
    runner = Runner()
    return PiBootControl(boot_dir, runner, device_tree=dt), runner


def test_pi_reads_the_device_tree(tmp_path: Path) -> None:
    pi, _ = _pi(tmp_path, partition=3, tryboot=1)
    assert isinstance(pi, BootControl)
    assert (pi.get_primary(), pi.get_current(), pi.booted_by_tryboot()) == ("A", "B", True)


def test_pi_arms_tryboot_with_the_documented_reboot(tmp_path: Path) -> None:
    pi, runner = _pi(tmp_path, partition=2, tryboot=0)
    pi.arm_tryboot("B")
    assert runner.commands == [["reboot", "0 tryboot"]]
    assert (tmp_path / "bootfs" / "autoboot.txt").read_bytes() == PI_DOC_AUTOBOOT
    with pytest.raises(UsageError, match="primary"):
        pi.arm_tryboot("A")


def test_pi_commit_swaps_autoboot(tmp_path: Path) -> None:
    pi, _ = _pi(tmp_path, partition=3, tryboot=1)
    pi.set_primary("B")
    pi.set_state("B", "good")
    text = (tmp_path / "bootfs" / "autoboot.txt").read_bytes()
    assert text == b"[all]\ntryboot_a_b=1\nboot_partition=3\n[tryboot]\nboot_partition=2\n"
    assert pi.get_state("B") == "good"


def test_pi_refuses_a_malformed_device_tree_cell(tmp_path: Path) -> None:
    pi, _ = _pi(tmp_path, partition=2, tryboot=0)
    (tmp_path / "dt" / "partition").write_bytes(b"\x02")
    with pytest.raises(IntegrityError, match="32-bit"):
        pi.get_current()


def test_pi_boot_decision_and_commit_use_the_device_tree(tmp_path: Path) -> None:
    from firmware.health import HealthResult, boot_decision, commit_or_rollback
    from firmware.update_state import PendingTry, UpdateState, save_state

    pi, runner = _pi(tmp_path, partition=3, tryboot=1)
    layout = UnitLayout(tmp_path / "data")
    pending = PendingTry(slot="B", version="1.0.0", security_version=2, sha256="0" * 64)
    save_state(layout, UpdateState(pending=pending))
    pi.set_state("A", "good")
    pi.set_state("B", "installed")
    plan = boot_decision(layout, pi)
    assert (plan.slot, plan.tryboot, plan.attempts) == ("B", True, 1)
    outcome = commit_or_rollback(layout, pi, HealthResult(True, True, True, True), None)
    assert outcome.action == "committed"
    assert pi.get_primary() == "B" and pi.get_state("B") == "good"
    assert runner.commands == []
