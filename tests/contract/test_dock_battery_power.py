"""Dock, Battery and Power contracts over the backends that load here."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import pytest
from gpiozero.pins.mock import MockFactory

from hal.gpio import GpiozeroDock
from hal.protocols import Battery, Dock, Power
from simulator.battery import SimBattery
from simulator.clock import VirtualClock
from simulator.gpio import SimDock
from simulator.power import POWER_CUT_EXIT_STATUS, SimPower

HOUR_US = 3_600_000_000


def test_gpiozero_dock_reads_sense_line_and_operstate(tmp_path: Path) -> None:
    factory = MockFactory()
    (tmp_path / "eth1").mkdir()
    operstate = tmp_path / "eth1" / "operstate"
    operstate.write_text("up\n")
    dock = GpiozeroDock(6, factory, iface="eth1", sysfs_net=tmp_path)
    assert isinstance(dock, Dock)
    assert not dock.docked()
    assert not dock.link_up()  # the link counts only while docked
    factory.pin(6).drive_low()
    assert dock.docked()
    assert dock.link_up()
    operstate.write_text("down\n")
    assert not dock.link_up()
    operstate.unlink()
    assert not dock.link_up()
    dock.close()


def test_sim_dock_follows_its_knobs() -> None:
    dock = SimDock(6, MockFactory())
    assert isinstance(dock, Dock)
    assert (dock.docked(), dock.link_up()) == (False, False)
    dock.set_docked(True)
    assert (dock.docked(), dock.link_up()) == (True, True)
    dock.set_link(False)
    assert (dock.docked(), dock.link_up()) == (True, False)
    dock.set_docked(False)
    dock.set_link(True)
    assert (dock.docked(), dock.link_up()) == (False, False)
    dock.close()


@pytest.mark.parametrize("backend", ["sim"])
def test_battery_status_is_in_range(backend: str) -> None:
    clock = VirtualClock(0)
    battery: Battery = SimBattery(clock, 80.0, 10.0)
    assert isinstance(battery, Battery)
    status = battery.status()
    assert 0.0 <= status.level_pct <= 100.0
    assert status.voltage_v is None or 2.5 < status.voltage_v < 4.5


def test_sim_battery_drains_charges_and_clamps() -> None:
    clock = VirtualClock(0)
    battery = SimBattery(clock, 80.0, 10.0)
    clock.advance(HOUR_US)
    assert battery.status().level_pct == pytest.approx(70.0)
    battery.set_charging(True)
    clock.advance(HOUR_US // 2)
    status = battery.status()
    assert status.charging
    assert status.level_pct == pytest.approx(100.0)  # 70 + 30 (60 %/h), clamped at 100
    battery.set_charging(False)
    battery.set_level(5.0)
    clock.advance(HOUR_US)
    assert battery.status().level_pct == 0.0
    assert battery.status().voltage_v == pytest.approx(3.3)


class _Exited(Exception):
    pass


def _fake_exit(status: int) -> NoReturn:
    raise _Exited(status)


def test_sim_power_records_requests_in_order() -> None:
    clock = VirtualClock(0)
    power = SimPower(clock, exit_now=_fake_exit)
    assert isinstance(power, Power)
    power.shutdown()
    clock.advance(5)
    power.reboot(tryboot=True)
    power.reboot()
    assert power.requests == [(0, "shutdown"), (5, "tryboot"), (5, "reboot")]
    assert power.last_request == "reboot"
    with pytest.raises(_Exited) as exc:
        power.cut()
    assert exc.value.args == (POWER_CUT_EXIT_STATUS,)
