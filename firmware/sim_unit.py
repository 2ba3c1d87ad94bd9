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
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from evidence.sealer import Sealer
from firmware import __version__
from firmware.boot_control import SimBootControl
from firmware.daemon import Daemon
from firmware.evidence_access import open_unit_sealer, record_boot
from firmware.flash import read_slot_info
from firmware.health import (
    BootPlan,
    Outcome,
    boot_decision,
    check_health,
    commit_or_rollback,
    earliest_sane_utc_us,
)
from firmware.identity import Assignment, load_assignment, read_profile, require_provisioned
from firmware.layout import UnitLayout
from hal.durable import write_atomic
from hal.errors import BwcError
from hal.gnss_serial import SerialGnss
from hal.software_key import SoftwareDeviceKey
from hal.types import ClockSource, EncodedFrame
from recorder.config import Profile
from recorder.core import Recorder
from recorder.feedback import Feedback, FeedbackController
from recorder.state_machine import State
from simulator.battery import SimBattery
from simulator.camera import SimCamera
from simulator.clock import Handle, VirtualClock
from simulator.gnss import SimGnssReceiver
from simulator.gpio import SimButton, SimDock, SimIndicator, make_pin_factory
from simulator.microphone import SimMicrophone
from simulator.power import SimPower
from simulator.scenario import Scenario, ScenarioEvent

if TYPE_CHECKING:  # the dock's modules load when the unit is first docked, not at boot
    from evidence.timestamp import DockAnchor
    from offload.runner import OffloadProgress, OffloadResult

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

OFFLOAD_RETRY_US = 60_000_000
"""While docked, an offload round runs at once and then once a simulated minute."""

RTC_RESET_UTC_US = 946_684_800_000_000
"""2000-01-01T00:00:00Z: where an RTC that lost its backup battery restarts."""

GNSS_HOME = (51.5074, -0.1278)
"""Where the simulated officer's beat starts (lat, lon)."""


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
    outcome: Outcome | None = None
    last_offload: OffloadResult | None = None
    _offload_timer: Handle | None = field(default=None, repr=False)
    _anchor: DockAnchor | None = field(default=None, repr=False)  # this dock session's TSA anchor
    microphone: SimMicrophone | None = None
    on_status: Callable[[Mapping[str, Any]], None] | None = None
    offload_progress: OffloadProgress | None = None  # the current or last round's progress
    on_offload_progress: Callable[[OffloadProgress], None] | None = None
    _closed: bool = field(default=False, repr=False)

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
        if self.gnss is not None:
            self.gnss.close()
        if self.gnss_receiver is not None:
            self.gnss_receiver.close()
        for button in self.buttons.values():
            button.close()
        self.dock.close()

    # -- the dock ------------------------------------------------------------------------------

    def docked(self) -> None:
        """In the dock: charge, and offload on our own now and every ``OFFLOAD_RETRY_US``."""
        self.dock.set_docked(True)
        self.battery.set_charging(True)
        if self._offload_timer is None and self.profile.offload.target:
            self._offload_timer = self.clock.call_every(
                OFFLOAD_RETRY_US, self._offload_round, start_us=self.clock.monotonic_us()
            )

    def undocked(self) -> None:
        self.dock.set_docked(False)
        self.battery.set_charging(False)
        if self._offload_timer is not None:
            self._offload_timer.cancel()
            self._offload_timer = None
        self._anchor = None

    def _offload_round(self) -> None:
        """One offload round through this boot's sealer; a failure waits for the next round."""
        from firmware.commands.offload import build_target
        from offload.runner import Retention, offload

        off = self.profile.offload
        self.recorder.indicate(Feedback.OFFLOADING)
        if off.tsa_url:
            # Anchor the chain head before the round, so the token goes out in the same round.
            # Never fatal: a TSA failure is a warning (and one signed timestamp_failed event).
            from evidence.timestamp import DockAnchor

            self._anchor = self._anchor or DockAnchor(off.tsa_url)
            self._anchor.before_round(self.sealer, self.clock)
        try:
            target = build_target(
                self.profile, self.assignment.device_id, os.environ, self.layout.root
            )
            result = offload(
                self.layout.evidence,
                target,
                self.sealer,
                self.clock,
                self.dock.docked,
                retention=Retention(off.retention_days, off.marked_retention_days),
                progress=self._offload_progressed,
            )
        except BwcError as exc:
            # Nothing unconfirmed was freed; the next round resumes where this one stopped.
            log.warning("offload round failed: %s", exc)
            self.recorder.indicate(Feedback.FAULT)
            return
        self.last_offload = result
        if result.complete:
            self.recorder.indicate(Feedback.OFFLOAD_COMPLETE)

    def _offload_progressed(self, progress: OffloadProgress) -> None:
        self.offload_progress = progress
        if self.on_offload_progress is not None:
            self.on_offload_progress(progress)

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
    """Power on the simulated unit stored at ``layout``: one boot, up to the buffering state."""
    require_provisioned(layout)
    boot = SimBootControl(layout)
    plan = boot_decision(layout, boot)
    profile = read_profile(layout.profile, overrides)
    assignment = load_assignment(layout)
    layout.run.mkdir(parents=True, exist_ok=True)
    # Like systemd's TIME_EPOCH and fake-hwclock: never start before the running firmware's build.
    start_utc_us = max(_start_utc_us(layout), earliest_sane_utc_us(layout, plan.slot))
    clock = VirtualClock(start_utc_us, ClockSource.RTC, realtime)
    key = SoftwareDeviceKey.load(layout.device_key)
    slot_info = read_slot_info(layout, plan.slot)
    firmware_version = slot_info.version if slot_info else __version__
    sealer = open_unit_sealer(layout, profile, assignment, key, lambda: clock.source.value)

    record_boot(
        sealer,
        clock,
        profile,
        assignment,
        firmware_version=firmware_version,
        slot=plan.slot,
        tryboot=plan.tryboot,
        notes=plan.notes,
    )

    pins = make_pin_factory()
    gpio = profile.gpio
    buttons = {
        "event": SimButton("event", gpio.event_pin, clock, pins),
        "function": SimButton("function", gpio.function_pin, clock, pins),
        "trigger": SimButton("trigger", gpio.trigger_pin, clock, pins),
    }
    indicators = {
        "led": SimIndicator("led", gpio.led_pin, "led", clock, pins),
        "haptic": SimIndicator("haptic", gpio.haptic_pin, "haptic", clock, pins),
        "buzzer": SimIndicator("buzzer", gpio.buzzer_pin, "buzzer", clock, pins),
    }
    dock = SimDock(gpio.dock_pin, pins)
    cam = profile.camera
    camera = SimCamera(
        clock,
        cam.width,
        cam.height,
        cam.fps,
        cam.bitrate_bps,
        cam.keyframe_interval_s,
        assignment.device_id,
        cam.overlay,
        cam.replay_path or None,
    )
    gnss_receiver: SimGnssReceiver | None = None
    gnss: SerialGnss | None = None
    if profile.gnss.backend == "sim":
        gnss_receiver = SimGnssReceiver(clock, *GNSS_HOME)
        # Open the reader before the receiver's first epoch: opening a port flushes its input.
        gnss = SerialGnss(gnss_receiver.port, profile.gnss.baud, clock)
    battery = SimBattery(clock, profile.battery.initial_pct, profile.battery.drain_pct_per_h)
    feedback = FeedbackController(indicators["led"], indicators["haptic"], indicators["buzzer"])
    recorder = Recorder(
        clock,
        sealer,
        feedback,
        profile,
        {
            "device_id": assignment.device_id,
            "officer_id": assignment.officer_id,
            "firmware_version": firmware_version,
            "slot": plan.slot,
        },
        gnss,
        battery,
    )
    daemon = Daemon(recorder)
    # audio.backend "none": no microphone; any other backend is simulated on this unit (as the
    # camera is), sharing the monotonic timeline with the camera: both start at the same instant.
    microphone: SimMicrophone | None = None
    if profile.audio.backend != "none":
        microphone = SimMicrophone(clock, profile.audio.sample_rate_hz, profile.audio.channels)
    unit = SimulatedUnit(
        layout=layout,
        profile=profile,
        assignment=assignment,
        plan=plan,
        clock=clock,
        sealer=sealer,
        recorder=recorder,
        daemon=daemon,
        camera=camera,
        buttons=buttons,
        indicators=indicators,
        gnss_receiver=gnss_receiver,
        gnss=gnss,
        battery=battery,
        dock=dock,
        power=SimPower(clock),
        microphone=microphone,
    )
    for button in buttons.values():
        button.on_edge(daemon.edge_sink)
    recorder.start()
    camera.start(
        _traced(daemon.frame_sink) if frame_log.isEnabledFor(logging.DEBUG) else daemon.frame_sink
    )
    if microphone is not None:
        microphone.start(daemon.audio_sink)
    clock.call_every(TICK_US, lambda: recorder.tick(clock.monotonic_us()))
    clock.call_every(RTC_SAVE_US, unit._periodic)
    unit._save_battery()

    health = check_health(
        layout,
        reached_buffering=recorder.state is State.BUFFERING,
        device_key=key,
        utc_us=clock.utc_us(),
        slot=plan.slot,
    )
    unit.outcome = commit_or_rollback(
        layout, boot, health, sealer, mono_us=clock.monotonic_us(), utc_us=clock.utc_us()
    )
    if unit.outcome.action != "nothing_pending":
        # Commands print it as a first-class line (firmware.boot_outcome); the log keeps it too.
        log.info(
            "firmware: %s slot %s %s", unit.outcome.action, unit.outcome.slot, unit.outcome.reason
        )
    return unit
