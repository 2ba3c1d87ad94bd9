"""Boot control: autoboot.txt as the Pi documents it and the simulated bootloader. The Pi backend
and the shared behaviour are in tests/contract/test_boot_control.py, over a real SD-card image."""

from __future__ import annotations

from pathlib import Path

import pytest

from firmware.boot_control import (
    BootControl,
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


@pytest.mark.parametrize(
    ("model", "refused"),
    [
        ("Raspberry Pi 5 Model B Rev 1.0\x00", False),
        ("Raspberry Pi 4 Model B Rev 1.5\x00", False),
        ("Raspberry Pi Compute Module 4 Rev 1.1\x00", False),
        ("Raspberry Pi 3 Model B Plus Rev 1.3\x00", True),
        ("Raspberry Pi Zero 2 W Rev 1.0\x00", True),
        ("linux,dummy-virt\x00", False),  # QEMU's virt machine (the image test)
    ],
)
def test_models_without_tryboot_are_refused(model: str, refused: bool) -> None:
    from firmware.sd_card import check_tryboot_model
    from hal.errors import RefusedError

    if refused:
        with pytest.raises(RefusedError, match="re-imaging"):
            check_tryboot_model(model)
    else:
        check_tryboot_model(model)
