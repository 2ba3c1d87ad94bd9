"""The post-boot health check: each of its four checks can fail on its own."""

from __future__ import annotations

from pathlib import Path

from firmware.flash import init_slots
from firmware.health import check_health
from firmware.layout import UnitLayout
from firmware.slot_writer import DirectorySlotWriter
from hal.software_key import SoftwareDeviceKey
from tests.integration.test_fw_support import fw

BUILD_UTC_S = 1_700_000_000


class LyingKey:
    """A device key whose signatures do not match its public key (a broken secure element)."""

    def __init__(self, real: SoftwareDeviceKey) -> None:
        self._real = real

    def public_key_raw(self) -> bytes:
        return self._real.public_key_raw()

    def sign(self, data: bytes) -> bytes:
        return self._real.sign(data + b"!")


def _unit(tmp_path: Path) -> tuple[UnitLayout, SoftwareDeviceKey]:
    layout = UnitLayout(tmp_path / "unit")
    init_slots(layout, "0.1.0", 0, build_utc_s=BUILD_UTC_S, **fw(layout))
    layout.identity.mkdir()
    return layout, SoftwareDeviceKey.generate(layout.device_key)


def test_a_healthy_unit_passes(tmp_path: Path) -> None:
    layout, key = _unit(tmp_path)
    result = check_health(
        layout,
        reached_buffering=True,
        device_key=key,
        utc_us=(BUILD_UTC_S + 1) * 10**6,
        slot="A",
        slots=DirectorySlotWriter(layout),
    )
    assert result.passed and result.failures() == []
    assert not (layout.update / ".health-probe").exists()


def test_each_check_fails_on_its_own(tmp_path: Path) -> None:
    layout, key = _unit(tmp_path)
    now_us = (BUILD_UTC_S + 1) * 10**6
    assert check_health(
        layout,
        reached_buffering=False,
        device_key=key,
        utc_us=now_us,
        slot="A",
        slots=DirectorySlotWriter(layout),
    ).failures() == ["reached_buffering"]
    assert check_health(
        layout,
        reached_buffering=True,
        device_key=LyingKey(key),
        utc_us=now_us,
        slot="A",
        slots=DirectorySlotWriter(layout),
    ).failures() == ["identity_ok"]
    assert check_health(
        layout,
        reached_buffering=True,
        device_key=None,
        utc_us=now_us,
        slot="A",
        slots=DirectorySlotWriter(layout),
    ).failures() == ["identity_ok"]
    assert check_health(
        layout,
        reached_buffering=True,
        device_key=key,
        utc_us=(BUILD_UTC_S - 1) * 10**6,
        slot="A",
        slots=DirectorySlotWriter(layout),
    ).failures() == ["clock_ok"]


def test_unwritable_storage_fails(tmp_path: Path) -> None:
    layout, key = _unit(tmp_path)
    # A file where the update directory should be makes every write under it fail.
    for child in layout.update.iterdir():
        child.unlink()
    layout.update.rmdir()
    layout.update.write_bytes(b"")
    result = check_health(
        layout,
        reached_buffering=True,
        device_key=key,
        utc_us=BUILD_UTC_S * 10**6,
        slot="A",
        slots=DirectorySlotWriter(layout),
    )
    assert result.failures() == ["storage_writable"]
