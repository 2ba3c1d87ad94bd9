"""The one boot path of a unit, simulated or real: ``boot_unit`` and the dock's offload rounds.

``boot_unit`` powers a unit on from its layout, its firmware backends (boot control and slot
writer), a clock factory and a hardware factory (``firmware.backends``), in this order:

    boot decision   recovery of an interrupted update, then try-boot or primary
                    (``firmware.health.boot_decision``); the boot control's own cross-checks
    evidence        the sealer, the signed ``boot`` event and power-loss recovery; a boot-state
                    error is one signed ``fault`` here and never stops recording
    supervision     the run marker, and a signed ``daemon_restart`` after an unclean run
    backends        camera, buttons, indicators, dock, GNSS, battery, microphone
    recorder        started, buffering; a camera that does not start is one signed
                    ``fault``, retried with backoff by ``CameraGuard`` (never once a
                    second); backends' contained faults are sealed the same way
    health          storage, identity, clock, reached buffering with frames; then commit or
                    roll back a try-boot and seal the owed firmware events

The simulated unit (``firmware.sim_unit``) and the Pi unit (``firmware.pi_unit``) call it with
their own clock and backends and then run their own loop (simulated time, or the systemd daemon
loop). This module holds no recording logic and reads no files besides the unit's own.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from evidence.sealer import Sealer
from firmware import __version__
from firmware.backends import FirmwareBackends, UnitHardware
from firmware.boot_control import SLOTS
from firmware.daemon import Daemon
from firmware.evidence_access import open_unit_sealer, record_boot
from firmware.health import (
    BootPlan,
    Outcome,
    boot_decision,
    check_health,
    commit_or_rollback,
    earliest_sane_utc_us,
)
from firmware.identity import Assignment
from firmware.layout import UnitLayout
from firmware.supervisor import RunMarker, read_os_boot_id, record_daemon_restart
from hal.errors import BwcError, HardwareError
from hal.protocols import Clock, Dock
from hal.software_key import SoftwareDeviceKey
from hal.types import EncodedFrame
from recorder.config import Profile
from recorder.core import Recorder
from recorder.feedback import Feedback, FeedbackController
from recorder.state_machine import State

if TYPE_CHECKING:  # the dock's modules load when the unit is first docked, not at boot
    from evidence.timestamp import DockAnchor
    from offload.runner import OffloadProgress, OffloadResult

log = logging.getLogger(__name__)

FrameSink = Callable[[EncodedFrame], None]

CAMERA_RETRY_FIRST_US = 5_000_000
CAMERA_RETRY_MAX_US = 300_000_000
"""A camera that fails to start is retried after 5 s, doubling up to every 5 minutes."""

CAMERA_FAULT_CODE = "start_failed"

OFFLOAD_RETRY_US = 60_000_000
"""While docked, an offload round runs at once and then once a minute."""


def seal_fault(sealer: Sealer, clock: Clock, component: str, reason: str, **extra: Any) -> None:
    """One signed ``fault`` event; it may use the storage reserve (it explains a gap)."""
    fields: dict[str, Any] = {"component": component, "reason": reason, **extra}
    sealer.event(
        "fault", fields, mono_us=clock.monotonic_us(), utc_us=clock.utc_us(), reserve_ok=True
    )


@dataclass
class Supervision:
    """The service's run marker (``DEVICE/run/daemon.json``) and the OS boot id: a run that did
    not end cleanly in the same OS boot was a crash or a watchdog kill (SIGABRT, so no ``finally``
    ran); the next start seals ``daemon_restart``. Recovery reads the marker at start and never
    depends on cleanup code having run."""

    marker: RunMarker
    os_boot_id: str | None

    @staticmethod
    def for_unit(layout: UnitLayout) -> Supervision:
        return Supervision(RunMarker(layout.run / "daemon.json"), read_os_boot_id())


class CameraGuard:
    """Starts the camera; if it fails, seals one ``fault`` and retries with backoff.

    ``poll`` is called by the unit's loop. Only the first failure and the recovery are sealed,
    so a unit without a camera does not flood its chain; the recorder stays in buffering (RAM
    only) and the status says ``camera fault``.
    """

    def __init__(self, unit: BootedUnit, sink: FrameSink) -> None:
        self._unit = unit
        self._sink = sink
        self.running = False
        self.failures = 0
        self.next_try_us: int | None = None
        self.last_error = ""

    def start(self) -> bool:
        unit = self._unit
        try:
            unit.hardware.camera.start(self._sink)
        except HardwareError as exc:
            self.failures += 1
            self.last_error = str(exc)
            delay = min(CAMERA_RETRY_FIRST_US << (self.failures - 1), CAMERA_RETRY_MAX_US)
            self.next_try_us = unit.clock.monotonic_us() + delay
            if self.failures == 1:
                log.error("camera did not start: %s; retrying with backoff", exc)
                # One signed fault (kept in the recorder's status), not one per retry.
                unit.recorder.record_fault("camera", CAMERA_FAULT_CODE, str(exc))
                unit.recorder.indicate(Feedback.FAULT)
            return False
        if self.failures:
            unit.recorder.hardware_faults.pop(f"camera/{CAMERA_FAULT_CODE}", None)
            unit.sealer.event(
                "fault_cleared",
                {"component": "camera", "code": CAMERA_FAULT_CODE, "attempts": self.failures + 1},
                mono_us=unit.clock.monotonic_us(),
                utc_us=unit.clock.utc_us(),
            )
        self.running = True
        self.next_try_us = None
        return True

    def poll(self, now_us: int) -> None:
        if not self.running and self.next_try_us is not None and now_us >= self.next_try_us:
            self.start()


@dataclass
class BootedUnit:
    """A unit that has booted: buffering (or in a signed fault), health checked."""

    layout: UnitLayout
    profile: Profile
    assignment: Assignment
    firmware: FirmwareBackends
    plan: BootPlan
    clock: Clock
    sealer: Sealer
    recorder: Recorder
    daemon: Daemon
    hardware: UnitHardware
    firmware_version: str
    faults: list[str] = field(default_factory=list)
    outcome: Outcome | None = None
    camera: CameraGuard | None = None
    supervision: Supervision | None = None

    def status(self) -> dict[str, Any]:
        status = dict(self.recorder.status())
        if self.camera is not None and not self.camera.running:
            status["camera_fault"] = self.camera.last_error or "not started"
        return status


def _decide(layout: UnitLayout, fw: FirmwareBackends) -> tuple[BootPlan, list[str]]:
    """The boot decision; a boot-state error becomes a fault to seal, never a stopped unit."""
    faults: list[str] = []
    # OSError too: a boot-state file the service may not read (wrong owner after a repair) must
    # not stop the camera either.
    try:
        faults.extend(fw.boot.check_boot())  # before the decision, which may re-arm [tryboot]
    except (BwcError, OSError) as exc:
        faults.append(f"boot state unreadable: {exc}")
    try:
        return boot_decision(layout, fw.boot, slots=fw.slots), faults
    except (BwcError, OSError) as exc:
        if not faults or not faults[-1].endswith(str(exc)):
            faults.append(f"boot decision failed: {exc}")
        log.error("boot: %s; recording anyway", faults[-1])
    return BootPlan(slot="unknown", tryboot=False, primary="unknown", version="unknown",
                    security_version=-1, notes=tuple(faults)), faults  # fmt: skip


def boot_unit(
    layout: UnitLayout,
    *,
    profile: Profile,
    assignment: Assignment,
    firmware: FirmwareBackends,
    make_clock: Callable[[int], Clock],
    make_hardware: Callable[[Profile, Assignment, Clock], UnitHardware],
    supervision: Supervision | None = None,
    frame_sink: Callable[[FrameSink], FrameSink] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> BootedUnit:
    """Power the unit on: see the module docstring for the order. ``make_clock`` gets the
    earliest sane UTC (the running firmware's build time) in microseconds."""
    plan, faults = _decide(layout, firmware)
    known_slot = plan.slot in SLOTS
    layout.run.mkdir(parents=True, exist_ok=True)
    clock = make_clock(earliest_sane_utc_us(firmware.slots, plan.slot) if known_slot else 0)
    key = SoftwareDeviceKey.load(layout.device_key)
    try:
        slot_info = firmware.slots.read_info(plan.slot) if known_slot else None
    except (BwcError, OSError) as exc:
        faults.append(f"slot record unreadable: {exc}")
        slot_info = None
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
    for fault in faults:
        seal_fault(sealer, clock, "boot_control", fault)
    if supervision is not None:
        previous = supervision.marker.begin(supervision.os_boot_id, os.getpid(), clock.utc_us())
        record_daemon_restart(
            sealer,
            previous,
            supervision.os_boot_id,
            mono_us=clock.monotonic_us(),
            utc_us=clock.utc_us(),
        )
    hardware = make_hardware(profile, assignment, clock)
    ind = hardware.indicators
    recorder = Recorder(
        clock,
        sealer,
        FeedbackController(ind["led"], ind["haptic"], ind["buzzer"]),
        profile,
        {
            "device_id": assignment.device_id,
            "officer_id": assignment.officer_id,
            "firmware_version": firmware_version,
            "slot": plan.slot,
            **(metadata or {}),
        },
        hardware.gnss,
        hardware.battery,
    )
    daemon = Daemon(recorder)
    unit = BootedUnit(
        layout=layout,
        profile=profile,
        assignment=assignment,
        firmware=firmware,
        plan=plan,
        clock=clock,
        sealer=sealer,
        recorder=recorder,
        daemon=daemon,
        hardware=hardware,
        firmware_version=firmware_version,
        faults=faults,
        supervision=supervision,
    )
    for button in hardware.buttons.values():
        button.on_edge(daemon.edge_sink)
    daemon.hear_faults(hardware.camera, hardware.microphone)  # overlay, capture thread
    recorder.start()
    sink = frame_sink(daemon.frame_sink) if frame_sink is not None else daemon.frame_sink
    unit.camera = CameraGuard(unit, sink)
    unit.camera.start()
    if hardware.microphone is not None and not daemon.start_microphone(hardware.microphone):
        hardware.microphone = None  # sealed as a fault; the video goes on
    daemon.drain()  # seal the faults the backends reported while starting
    if known_slot:
        _health_and_commit(unit, key)
    return unit


def _health_and_commit(unit: BootedUnit, key: SoftwareDeviceKey) -> None:
    fw, clock = unit.firmware, unit.clock
    camera_ok = unit.camera is not None and unit.camera.running
    try:
        health = check_health(
            unit.layout,
            reached_buffering=unit.recorder.state is State.BUFFERING and camera_ok,
            device_key=key,
            utc_us=clock.utc_us(),
            slot=unit.plan.slot,
            slots=fw.slots,
        )
        unit.outcome = commit_or_rollback(
            unit.layout,
            fw.boot,
            health,
            unit.sealer,
            slots=fw.slots,
            mono_us=clock.monotonic_us(),
            utc_us=clock.utc_us(),
        )
    except (BwcError, OSError) as exc:
        # Recording goes on; the pending try-boot stays and the next boot decides again.
        unit.faults.append(f"commit or rollback failed: {exc}")
        seal_fault(unit.sealer, clock, "boot_control", unit.faults[-1])
        return
    if unit.outcome.action != "nothing_pending":
        # Commands print it as a first-class line (firmware.boot_outcome); the log keeps it too.
        log.info(
            "firmware: %s slot %s %s", unit.outcome.action, unit.outcome.slot, unit.outcome.reason
        )


class DockOffload:
    """Offload while docked: a round at once, then every ``retry_us`` until undocked.

    The simulated unit drives ``round`` from its timer; the Pi unit's loop calls ``poll``. A
    failed round frees nothing unconfirmed and waits for the next one.
    """

    def __init__(self, unit: BootedUnit, dock: Dock, retry_us: int = OFFLOAD_RETRY_US) -> None:
        self._unit = unit
        self._dock = dock
        self._retry_us = retry_us
        self._next_us: int | None = None
        self._anchor: DockAnchor | None = None  # this dock session's TSA anchor
        self.last_result: OffloadResult | None = None
        self.progress: OffloadProgress | None = None  # the current or last round's progress
        self.on_progress: Callable[[OffloadProgress], None] | None = None

    def poll(self, now_us: int) -> None:
        if not self._dock.docked():
            if self._next_us is not None:
                self.undocked()
            return
        if self._next_us is None or now_us >= self._next_us:
            self._next_us = now_us + self._retry_us
            if self._unit.profile.offload.target:
                self.round()

    def undocked(self) -> None:
        self._next_us = None
        self._anchor = None

    def round(self) -> None:
        """One offload round through this boot's sealer."""
        from firmware.offload_target import build_target
        from offload.runner import Retention, offload

        unit = self._unit
        off = unit.profile.offload
        unit.recorder.indicate(Feedback.OFFLOADING)
        if off.tsa_url:
            # Anchor the chain head before the round, so the token goes out in the same round.
            # Never fatal: a TSA failure is a warning (and one signed timestamp_failed event).
            from evidence.timestamp import DockAnchor

            self._anchor = self._anchor or DockAnchor(off.tsa_url)
            self._anchor.before_round(unit.sealer, unit.clock)
        try:
            target = build_target(
                unit.profile, unit.assignment.device_id, os.environ, unit.layout.root
            )
            result = offload(
                unit.layout.evidence,
                target,
                unit.sealer,
                unit.clock,
                self._dock.docked,
                retention=Retention(off.retention_days, off.marked_retention_days),
                progress=self._progressed,
            )
        except BwcError as exc:
            # Nothing unconfirmed was freed; the next round resumes where this one stopped.
            log.warning("offload round failed: %s", exc)
            unit.recorder.indicate(Feedback.FAULT)
            return
        self.last_result = result
        if result.complete:
            unit.recorder.indicate(Feedback.OFFLOAD_COMPLETE)

    def _progressed(self, progress: OffloadProgress) -> None:
        self.progress = progress
        if self.on_progress is not None:
            self.on_progress(progress)
