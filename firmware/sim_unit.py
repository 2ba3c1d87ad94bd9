"""The simulated unit: simulator backends, the evidence sealer and the recorder composed into one
unit that boots from its directory and plays a scenario on simulated time.

This is a composition root: it reads the unit's files, picks backends and wires callbacks. It holds
no recording logic. Every boot follows the same order as a real unit: bootloader and update state,
identity, evidence store (with power-loss discovery), the signed boot event, backends, recorder,
health check and firmware commit. Nothing here reads the wall clock except the virtual clock's
optional real-time pacing.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from evidence.sealer import Sealer
from firmware.backends import firmware_backends, unit_hardware
from firmware.boot import OFFLOAD_RETRY_US, BootedUnit, DockOffload, boot_unit
from firmware.daemon import Daemon
from firmware.health import BootPlan, Outcome
from firmware.identity import Assignment, load_assignment, read_profile, require_provisioned
from firmware.layout import UnitLayout
from hal.durable import write_atomic
from hal.errors import ConfigError
from hal.gnss_serial import SerialGnss
from hal.protocols import Microphone
from hal.types import ClockSource, EncodedFrame
from recorder.config import Profile
from recorder.core import Recorder
from simulator.battery import SimBattery
from simulator.camera import SimCamera
from simulator.clock import Handle, VirtualClock
from simulator.gnss import SimGnssReceiver
from simulator.gpio import SimButton, SimDock, SimIndicator
from simulator.power import SimPower
from simulator.scenario import Scenario, ScenarioEvent

if TYPE_CHECKING:
    from offload.runner import OffloadResult

log = logging.getLogger(__name__)
frame_log = logging.getLogger("firmware.sim_unit.frames")
"""At DEBUG (``bwc -vv sim``) one line per captured frame: the fault-injection harness reads it to
know the last frame the unit had captured when it was killed from outside."""

FIRST_BOOT_UTC_US = 1_767_258_000_000_000
"""2026-01-01T09:00:00Z: the simulated RTC's time at a unit's very first power-on."""

TICK_US = 50_000
"""Recorder timer resolution on simulated time (gesture holds, reminders, GNSS, battery)."""

RTC_SAVE_US = 5_000_000
"""How often the simulated RTC is persisted so the next boot continues from it."""

RTC_RESET_UTC_US = 946_684_800_000_000
"""2000-01-01T00:00:00Z: where an RTC that lost its backup battery restarts."""


@dataclass
class SimulatedUnit:
    """A booted simulated unit. Build with ``boot_simulated_unit``; drive with ``play``."""

    layout: UnitLayout
    profile: Profile
    assignment: Assignment
    plan: BootPlan
    clock: VirtualClock
    sealer: Sealer
    recorder: Recorder
    daemon: Daemon
    camera: SimCamera
    buttons: dict[str, SimButton]
    indicators: dict[str, SimIndicator]
    gnss_receiver: SimGnssReceiver | None
    gnss: SerialGnss | None
    battery: SimBattery
    dock: SimDock
    power: SimPower
    booted: BootedUnit
    dock_offload: DockOffload
    outcome: Outcome | None = None
    _offload_timer: Handle | None = field(default=None, repr=False)
    microphone: Microphone | None = None
    on_status: Callable[[Mapping[str, Any]], None] | None = None
    _closed: bool = field(default=False, repr=False)

    @property
    def last_offload(self) -> OffloadResult | None:
        return self.dock_offload.last_result

    # -- running -------------------------------------------------------------------------------

    def play(self, scenario: Scenario) -> None:
        """Schedule every scenario event, run to ``duration_s`` and power off cleanly."""
        for event in scenario.events:
            self.schedule(event)
        self.run_until(round(scenario.duration_s * 1_000_000))
        self.power_off("scenario_end")

    def run_until(self, t_us: int) -> None:
        self.clock.run_until(t_us, after_each=self._drain)

    def _drain(self) -> None:
        self.daemon.drain()

    def schedule(self, ev: ScenarioEvent) -> None:
        """Turn one scenario event into pin edges and backend changes at its simulated time."""
        at_us = round(ev.at_s * 1_000_000)
        action = ev.action
        if action == "press":
            self.buttons[ev.button].schedule_press(at_us)
        elif action == "double_press":
            self.buttons[ev.button].schedule_double_press(at_us)
        elif action == "hold":
            self.buttons[ev.button].schedule_hold(at_us, ev.hold_s)
        elif action == "bounce":
            self.buttons[ev.button].schedule_bounce(at_us)
        elif action == "trigger":
            self.buttons["trigger"].schedule_hold(at_us, ev.hold_s)
        elif action == "power_cut":
            self.clock.call_at(at_us, self.power_cut)
        elif action == "dock":
            self.clock.call_at(at_us, self.docked)
        elif action == "undock":
            self.clock.call_at(at_us, self.undocked)
        elif action == "battery":
            self.clock.call_at(at_us, lambda: self._set_battery(ev.level_pct, ev.charging))
        elif action == "gnss_loss":
            self.clock.call_at(at_us, lambda: self._set_gnss_fix(False))
        elif action == "gnss_restore":
            self.clock.call_at(at_us, lambda: self._set_gnss_fix(True))
        elif action == "gnss_garbage":
            self.clock.call_at(at_us, lambda: self._gnss_garbage(ev.count))
        elif action == "rtc_reset":
            self.clock.call_at(at_us, self._rtc_reset)
        else:  # parse_scenario only lets known actions through
            raise AssertionError(action)

    def power_cut(self) -> None:
        """The battery is pulled: the process ends now, no cleanup code of any kind runs."""
        sys.stderr.write(f"bwc sim: power cut at t={self.clock.monotonic_us() / 1e6:.3f}s\n")
        sys.stderr.flush()
        self.power.cut()

    def power_off(self, reason: str) -> None:
        """An orderly power-off: stop and seal any recording, write ``shutdown``, free devices."""
        if self._closed:
            return
        self._closed = True
        self.camera.stop()
        if self.microphone is not None:
            self.microphone.stop()
        self.daemon.drain()
        self.recorder.shutdown(reason)
        self._save_rtc()
        self.booted.hardware.close()

    # -- the dock ------------------------------------------------------------------------------

    def docked(self) -> None:
        """In the dock: charge, and offload on our own now and every ``OFFLOAD_RETRY_US``."""
        self.dock.set_docked(True)
        self.battery.set_charging(True)
        if self._offload_timer is None and self.profile.offload.target:
            self._offload_timer = self.clock.call_every(
                OFFLOAD_RETRY_US, self.dock_offload.round, start_us=self.clock.monotonic_us()
            )

    def undocked(self) -> None:
        self.dock.set_docked(False)
        self.battery.set_charging(False)
        if self._offload_timer is not None:
            self._offload_timer.cancel()
            self._offload_timer = None
        self.dock_offload.undocked()

    # -- scenario helpers ----------------------------------------------------------------------

    def _set_battery(self, level_pct: float, charging: bool) -> None:
        self.battery.set_level(level_pct)
        self.battery.set_charging(charging)
        self._save_battery()

    def _set_gnss_fix(self, fix: bool) -> None:
        if self.gnss_receiver is not None:
            self.gnss_receiver.fix = fix

    def _gnss_garbage(self, count: int) -> None:
        if self.gnss_receiver is not None:
            # Deterministic noise: bytes that look like broken NMEA, bad checksums and binary.
            noise = (b"$GPGGA,12\xff\x00*ZZ\r\n" + bytes(range(256))) * (1 + count // 64)
            self.gnss_receiver.inject_garbage(noise[: count * 16])

    def _rtc_reset(self) -> None:
        old = self.clock.utc_us()
        self.clock.set_utc(RTC_RESET_UTC_US, ClockSource.UNSET)
        self.sealer.event(
            "clock_step",
            {"old_utc_us": old, "new_utc_us": RTC_RESET_UTC_US, "source": "rtc_reset"},
            mono_us=self.clock.monotonic_us(),
            utc_us=self.clock.utc_us(),
        )

    def _periodic(self) -> None:
        self._save_rtc()
        self._save_battery()
        if self.battery.status().level_pct <= self.profile.battery.cutoff_pct:
            log.warning("battery at cut-off: the unit loses power")
            self.power_cut()

    def _save_rtc(self) -> None:
        rtc = {"utc_us": self.clock.utc_us(), "source": self.clock.source.value}
        write_atomic(self.layout.run / "rtc.json", json.dumps(rtc).encode())

    def _save_battery(self) -> None:
        status = self.battery.status()
        data = {"level_pct": round(status.level_pct, 3), "charging": status.charging}
        write_atomic(self.layout.battery_json, json.dumps(data).encode())


def _traced(sink: Callable[[EncodedFrame], None]) -> Callable[[EncodedFrame], None]:
    """Wrap a frame sink so each frame is logged (with a flush) before the recorder sees it."""

    def traced(frame: EncodedFrame) -> None:
        frame_log.debug("captured frame %d pts_us %d", frame.frame_index, frame.pts_us)
        sink(frame)

    return traced


def _start_utc_us(layout: UnitLayout) -> int:
    """The simulated RTC keeps time while the unit is off: continue from the last saved value."""
    try:
        saved = json.loads((layout.run / "rtc.json").read_text())
        return int(saved["utc_us"]) + 1_000_000
    except (OSError, ValueError, KeyError, TypeError):
        return FIRST_BOOT_UTC_US


def boot_simulated_unit(
    layout: UnitLayout,
    overrides: Mapping[str, Any] | None = None,
    *,
    realtime: bool = False,
) -> SimulatedUnit:
    """Power on the simulated unit stored at ``layout``: one boot, up to the buffering state,
    through the same ``boot_unit`` as the Pi unit with the simulator's backends."""
    require_provisioned(layout)
    profile = read_profile(layout.profile, overrides)
    assignment = load_assignment(layout)
    clocks: list[VirtualClock] = []

    def make_clock(earliest_utc_us: int) -> VirtualClock:
        # Like systemd's TIME_EPOCH and fake-hwclock: never start before the running build.
        start_utc_us = max(_start_utc_us(layout), earliest_utc_us)
        clocks.append(VirtualClock(start_utc_us, ClockSource.RTC, realtime))
        return clocks[-1]

    booted = boot_unit(
        layout,
        profile=profile,
        assignment=assignment,
        firmware=firmware_backends(layout, profile.unit),
        make_clock=make_clock,
        make_hardware=unit_hardware,
        frame_sink=_traced if frame_log.isEnabledFor(logging.DEBUG) else None,
    )
    clock = clocks[0]
    hw = booted.hardware
    battery = hw.battery
    dock = hw.dock
    if not isinstance(battery, SimBattery) or not isinstance(dock, SimDock):
        raise ConfigError("the simulated unit needs battery.backend and gpio.backend 'sim'")
    camera = hw.camera
    if not isinstance(camera, SimCamera):
        raise ConfigError("the simulated unit needs camera.backend 'sim'")
    buttons = {name: _sim(b, SimButton) for name, b in hw.buttons.items()}
    indicators = {name: _sim(i, SimIndicator) for name, i in hw.indicators.items()}
    unit = SimulatedUnit(
        layout=layout,
        profile=profile,
        assignment=assignment,
        plan=booted.plan,
        clock=clock,
        sealer=booted.sealer,
        recorder=booted.recorder,
        daemon=booted.daemon,
        camera=camera,
        buttons=buttons,
        indicators=indicators,
        gnss_receiver=hw.extras.get("gnss_receiver"),
        gnss=hw.gnss if isinstance(hw.gnss, SerialGnss) else None,
        battery=battery,
        dock=dock,
        power=SimPower(clock),
        booted=booted,
        dock_offload=DockOffload(booted, dock),
        outcome=booted.outcome,
        microphone=hw.microphone,
    )
    clock.call_every(TICK_US, lambda: unit.recorder.tick(clock.monotonic_us()))
    clock.call_every(RTC_SAVE_US, unit._periodic)
    unit._save_battery()
    return unit


_T = TypeVar("_T")


def _sim(backend: object, kind: type[_T]) -> _T:
    if not isinstance(backend, kind):
        raise ConfigError(f"the simulated unit needs simulated backends, not {backend!r}")
    return backend
