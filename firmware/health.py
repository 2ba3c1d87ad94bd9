"""Each boot's firmware decisions: which slot boots, and whether a tried slot commits or rolls back.

The composition root calls ``boot_decision`` at power-on (before the recorder starts) and, once
the recorder has reached buffering, ``check_health`` then ``commit_or_rollback``. Rules:

- The bootloader (the Pi's, or the simulated one in ``select_boot_slot``) clears the one-shot
  flag before the tried slot starts, so a crash or power cut during a try-boot lands on the
  primary next time.
- A lost try-boot does not by itself fail the update: while attempts remain (``max_attempts``,
  counted in the update state *before* the tried slot starts) the try-boot is re-armed for the
  boot after; the boot that re-arms runs the old, primary slot. Once attempts are used up the
  slot is marked bad and a ``firmware_rollback`` event is owed.
- The commit point is the primary switch in autoboot.txt. Commit order: set primary, mark good,
  then (one atomic write) raise the floor, clear the pending try and owe ``firmware_commit``.
  Rollback order: mark bad, then clear the pending try and owe ``firmware_rollback``.
  ``boot_decision`` finishes either sequence if a power cut interrupted it.

It must not write slot contents (``firmware.flash``) nor seal anything itself: owed events go
through ``update_state.drain_events`` and the injected evidence sink.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from typing import Any, Protocol, runtime_checkable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from firmware.boot_control import BootControl, check_slot
from firmware.layout import UnitLayout
from firmware.slot_writer import HEALTH_FAIL_KNOB, SlotWriter
from firmware.update_state import (
    EventSink,
    PendingTry,
    UpdateState,
    drain_events,
    load_state,
    owe_event,
    save_state,
)
from hal.durable import remove_durably, write_atomic
from hal.errors import IntegrityError
from hal.protocols import DeviceKey

log = logging.getLogger(__name__)


@runtime_checkable
class SimulatedBootloader(BootControl, Protocol):
    """Boot control that also plays the bootloader at power-on (the simulated unit's)."""

    def select_boot_slot(self) -> tuple[str, bool]: ...


@dataclass(frozen=True)
class BootPlan:
    """What this power-on boots and why."""

    slot: str
    tryboot: bool
    primary: str
    version: str
    security_version: int
    attempts: int = 0
    max_attempts: int = 0
    retry_armed: bool = False
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "slot": self.slot,
            "tryboot": self.tryboot,
            "primary": self.primary,
            "version": self.version,
            "security_version": self.security_version,
            "attempts": self.attempts,
            "max_attempts": self.max_attempts,
            "retry_armed": self.retry_armed,
            "notes": list(self.notes),
        }


def _finish_commit(boot: BootControl, layout: UnitLayout, state: UpdateState) -> UpdateState:
    pending = state.pending
    assert pending is not None
    boot.set_state(pending.slot, "good")
    floor = max(state.floor, pending.security_version)
    new = owe_event(
        replace(state, floor=floor, pending=None), "firmware_commit", pending, floor=floor
    )
    save_state(layout, new)
    return new


def _finish_rollback(
    boot: BootControl, layout: UnitLayout, state: UpdateState, reason: str
) -> UpdateState:
    pending = state.pending
    assert pending is not None
    boot.set_state(pending.slot, "bad")
    new = owe_event(replace(state, pending=None), "firmware_rollback", pending, reason=reason)
    save_state(layout, new)
    return new


def boot_decision(layout: UnitLayout, boot: BootControl, *, slots: SlotWriter) -> BootPlan:
    """One power-on: the (simulated) bootloader, then the early-boot update service.

    With a ``SimulatedBootloader`` this plays the bootloader too; on a Pi the bootloader has
    already chosen and the kernel command line tells which slot runs. Re-arming a lost try-boot
    never reboots here: the root helper reboots into it later, at a safe moment.
    """
    if isinstance(boot, SimulatedBootloader):
        slot, tryboot = boot.select_boot_slot()
    else:
        slot, tryboot = boot.get_current(), boot.booted_by_tryboot()
    boot.consume_tryboot()
    primary = boot.get_primary()
    state = load_state(layout)
    pending = state.pending
    notes: list[str] = []
    retry_armed = False
    if pending is not None:
        slot_state = boot.get_state(pending.slot)
        if primary == pending.slot:
            state = _finish_commit(boot, layout, state)
            notes.append(f"finished the interrupted commit of slot {pending.slot}")
        elif slot_state == "bad":
            state = _finish_rollback(boot, layout, state, "health check failed")
            notes.append(f"finished the interrupted rollback of slot {pending.slot}")
        elif slot_state != "installed":
            # Only an interrupted flash leaves this; the slot was never armed.
            save_state(layout, replace(state, pending=None))
            notes.append(f"dropped a stale pending try-boot of slot {pending.slot}")
        elif tryboot and slot == pending.slot:
            # Count the attempt before the tried slot runs anything.
            pending = replace(pending, attempts=pending.attempts + 1)
            state = replace(state, pending=pending)
            save_state(layout, state)
            notes.append(f"try-boot of slot {slot}, attempt {pending.attempts}")
        elif pending.attempts >= pending.max_attempts:
            reason = f"power lost before the health check in all {pending.attempts} try-boots"
            state = _finish_rollback(boot, layout, state, reason)
            notes.append(f"rolled back slot {pending.slot}: {reason}")
        else:
            try:
                slots.verify(pending.slot)
            except IntegrityError as exc:
                state = _finish_rollback(boot, layout, state, f"image damaged: {exc.reason}")
                notes.append(f"rolled back slot {pending.slot}: image damaged")
            else:
                boot.arm_tryboot(pending.slot)
                retry_armed = True
                notes.append(
                    f"try-boot of slot {pending.slot} did not finish; re-armed for the next boot "
                    f"({pending.attempts} of {pending.max_attempts} attempts used)"
                )
    info = slots.read_info(slot)
    current = state.pending
    for note in notes:
        log.info("boot: %s", note)
    return BootPlan(
        slot=slot,
        tryboot=tryboot,
        primary=boot.get_primary(),
        version=info.version if info else "unknown",
        security_version=info.security_version if info else -1,
        attempts=current.attempts if current else 0,
        max_attempts=current.max_attempts if current else 0,
        retry_armed=retry_armed,
        notes=tuple(notes),
    )


# ---------------------------------------------------------------------------------------------
# Health


@dataclass(frozen=True)
class HealthResult:
    reached_buffering: bool
    storage_writable: bool
    identity_ok: bool
    clock_ok: bool
    details: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return (
            self.reached_buffering and self.storage_writable and self.identity_ok and self.clock_ok
        )

    def failures(self) -> list[str]:
        names = ("reached_buffering", "storage_writable", "identity_ok", "clock_ok")
        return [name for name in names if not getattr(self, name)]


def _storage_writable(layout: UnitLayout) -> tuple[bool, str]:
    probe = layout.update / ".health-probe"
    try:
        write_atomic(probe, os.urandom(16))
        remove_durably(probe)
    except OSError as exc:
        return False, f"storage: {exc.strerror}"
    return True, "storage writable"


def _identity_ok(key: DeviceKey | None) -> tuple[bool, str]:
    if key is None:
        return False, "identity: no device key"
    challenge = os.urandom(32)
    try:
        Ed25519PublicKey.from_public_bytes(key.public_key_raw()).verify(
            key.sign(challenge), challenge
        )
    except (InvalidSignature, ValueError) as exc:
        return False, f"identity: sign/verify failed ({type(exc).__name__})"
    return True, "identity key signs and verifies"


def check_health(
    layout: UnitLayout,
    *,
    reached_buffering: bool,
    device_key: DeviceKey | None,
    utc_us: int,
    slot: str,
    slots: SlotWriter,
) -> HealthResult:
    """The post-boot health check of ``slot`` (the one running). ``utc_us`` from the unit's Clock.

    Clock sane means UTC is not before the running firmware's build time.
    """
    storage, storage_note = _storage_writable(layout)
    identity, identity_note = _identity_ok(device_key)
    earliest_us = earliest_sane_utc_us(slots, slot)
    clock = utc_us >= earliest_us
    clock_note = "clock after build time" if clock else f"clock before build time {earliest_us}"
    return HealthResult(
        reached_buffering=reached_buffering,
        storage_writable=storage,
        identity_ok=identity,
        clock_ok=clock,
        details=(storage_note, identity_note, clock_note),
    )


def earliest_sane_utc_us(slots: SlotWriter, slot: str) -> int:
    """The running firmware's build time: a clock earlier than this fails the health check.

    A unit without a trustworthy RTC should start its clock no earlier than this (as systemd's
    TIME_EPOCH and fake-hwclock do), then step it from GNSS or NTP.
    """
    info = slots.read_info(check_slot(slot))
    return (info.build_utc_s if info else 0) * 1_000_000


@dataclass(frozen=True)
class Outcome:
    """``committed``, ``rolled_back`` or ``nothing_pending``; events sealed by this call."""

    action: str
    slot: str
    reason: str = ""
    events_sealed: int = 0
    reboot_required: bool = False


def commit_or_rollback(
    layout: UnitLayout,
    boot: BootControl,
    health: HealthResult,
    evidence: EventSink | None,
    *,
    slots: SlotWriter,
    mono_us: int = 0,
    utc_us: int = 0,
) -> Outcome:
    """After the recorder reached buffering: commit a tried slot that is healthy, else roll back.

    On every boot it also seals the firmware events owed (install, commit, rollback) through
    ``evidence`` when one is given. A rolled-back unit is still running the bad slot: the
    caller should reboot (``reboot_required``); the next boot starts the old primary.
    """
    state = load_state(layout)
    pending = state.pending
    current = boot.get_current()
    outcome = Outcome("nothing_pending", current)
    if pending is not None and boot.booted_by_tryboot() and current == pending.slot:
        failures = health.failures()
        if HEALTH_FAIL_KNOB in slots.payload_names(current):
            failures.append(f"test fault knob {HEALTH_FAIL_KNOB}")
        if failures:
            reason = "health check failed: " + ", ".join(failures)
            _finish_rollback(boot, layout, state, reason)
            outcome = Outcome("rolled_back", current, reason, reboot_required=True)
        else:
            boot.set_primary(current)  # the commit point
            _finish_commit(boot, layout, state)
            outcome = Outcome("committed", current)
        log.info("firmware %s: slot %s %s", outcome.action, current, outcome.reason)
    if evidence is not None:
        sealed = drain_events(layout, evidence, mono_us=mono_us, utc_us=utc_us)
        outcome = replace(outcome, events_sealed=sealed)
    return outcome


def pending_try(layout: UnitLayout) -> PendingTry | None:
    return load_state(layout).pending
