"""Installing a bundle into the inactive slot: preflight, plan, write, read back, swap, arm.

Phases, in order (``FLASH_PHASES``); each leaves the unit in a state from which the next boot
starts a good slot:

    preflight  read-only: trusted key, signature, payload hash, compatible id, security floor,
               battery, free space, not the running slot. A refusal changes nothing on the unit.
    invalidate disarm any earlier try-boot of the target slot; mark the target ``empty``
    write      stream the payload into a temp dir within slots/, hashing as it goes; fsync
    verify     read the temp image back and compare size and SHA-256 with the signed manifest
    swap       rename the verified temp dir into place; fsync slots/
    mark       target ``installed``; the pending try-boot and the owed ``firmware_install`` event
               are written to the update state in one atomic write
    arm        re-check the installed image, then arm the one-shot try-boot

It never writes the primary or the running slot, and never arms a slot that is empty, partial or
unverified. Slot records (``slot.json``) and the factory image (``init_slots``) live here too.
"""

from __future__ import annotations

import logging
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from firmware.boot_control import BootControl, check_slot, other_slot
from firmware.bundle import (
    BundleFormatError,
    BundleHeader,
    Manifest,
    iter_payload,
    load_trusted_key,
    open_bundle,
    read_header,
    verify_payload,
    verify_signature,
)
from firmware.layout import UnitLayout
from firmware.slot_writer import SlotInfo, SlotWriter
from firmware.update_state import (
    DEFAULT_MAX_ATTEMPTS,
    EventSink,
    PendingTry,
    UpdateState,
    drain_events,
    load_state,
    owe_event,
    read_json_file,
    save_state,
)
from hal.errors import IntegrityError, RefusedError, UsageError

log = logging.getLogger(__name__)

FLASH_PHASES = ("preflight", "invalidate", "write", "verify", "swap", "mark", "arm")
METADATA_BYTES = 64 * 1024  # slot.json + manifest + signature, with room to spare
FACTORY_VERSION = "0.1.0"


# ---------------------------------------------------------------------------------------------
# The factory image


def init_slots(
    layout: UnitLayout,
    version: str = FACTORY_VERSION,
    security_version: int = 0,
    *,
    boot: BootControl,
    slots: SlotWriter,
    compatible: str = "bwc-sim",
    build_utc_s: int = 0,
) -> bool:
    """Record a fresh unit's factory firmware in slot A; returns False if it already has slots.

    Slot A is good and primary, slot B empty, and the security_version floor starts at
    ``security_version``. The slot writer records what slot A holds (a simulated unit gets a tiny
    tar describing ``version``; a Pi unit's slot A was written by the image build).
    """
    if boot.is_initialised():
        return False
    slots.install_factory(
        SlotInfo(
            slot="A",
            version=version,
            security_version=security_version,
            sha256="",
            size=0,
            kind="tar",
            compatible=compatible,
            channel="release",
            build_utc_s=build_utc_s,
            source="factory",
        )
    )
    boot.set_state("A", "good")
    boot.set_state("B", "empty")
    save_state(layout, UpdateState(floor=security_version))
    try:
        primary: str | None = boot.get_primary()
    except UsageError:
        primary = None
    if primary != "A":
        # On a simulated unit autoboot.txt is written last: its presence marks the unit as set up.
        boot.set_primary("A")
    return True


# ---------------------------------------------------------------------------------------------
# Preflight and plan


@dataclass(frozen=True)
class UnitFacts:
    """What the preflight needs to know about the unit besides its storage."""

    compatible: str
    battery_pct: float
    free_bytes: int  # on the filesystem holding the unit directory (and directory slots)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class FlashPlan:
    bundle: Path
    manifest: Manifest
    target: str
    primary: str
    current: str
    floor: int
    checks: tuple[Check, ...]
    steps: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "bundle": str(self.bundle),
            "manifest": self.manifest.to_dict(),
            "target_slot": self.target,
            "primary": self.primary,
            "current": self.current,
            "floor": self.floor,
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks],
            "steps": list(self.steps),
        }


def read_battery_pct(layout: UnitLayout, default_pct: float) -> float:
    """The running unit's battery level from DEVICE/run/battery.json (``{"level_pct": N}``).

    Without that file the unit is powered off and ``default_pct`` (the simulated battery's
    level at power-on, from the profile) stands for it.
    """
    path = layout.battery_json
    if not path.is_file():
        return default_pct
    raw = read_json_file(path, max_bytes=4096)
    value = raw.get("level_pct") if isinstance(raw, dict) else None
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 100:
        raise IntegrityError("no level_pct between 0 and 100", path=str(path))
    return float(value)


def _refuse(checks: list[Check], name: str, reason: str) -> RefusedError:
    checks.append(Check(name, False, reason))
    return RefusedError(reason)


def preflight(
    layout: UnitLayout,
    bundle_path: Path,
    facts: UnitFacts,
    *,
    boot: BootControl,
    slots: SlotWriter,
) -> FlashPlan:
    """Every check before anything is written; raises ``RefusedError`` with the first reason.

    Reads the unit and the whole bundle, writes nothing.
    """
    checks: list[Check] = []
    if not boot.is_initialised():
        raise RefusedError(f"{layout.root}: not a unit with boot slots (provision it first)")
    if not layout.release_pub.is_file():
        raise RefusedError(f"{layout.release_pub}: the unit trusts no firmware signing key")
    try:
        trusted = load_trusted_key(layout.release_pub)
    except UsageError as exc:
        raise RefusedError(f"the unit's trusted key is unusable: {exc}") from None
    try:
        with open_bundle(bundle_path) as f:
            header = read_header(f)
            checks.append(Check("format", True, "bwc-bundle/1"))
            try:
                verify_signature(header, trusted)
            except IntegrityError as exc:
                raise _refuse(checks, "signature", f"signature: {exc.reason}") from None
            checks.append(Check("signature", True, f"signed by {trusted.fingerprint[:16]}…"))
            try:
                verify_payload(f, header)
            except IntegrityError as exc:
                raise _refuse(checks, "payload", f"payload: {exc.reason}") from None
            checks.append(Check("payload", True, f"sha256 {header.manifest.payload_sha256}"))
            members = _tar_members(f, header)
    except BundleFormatError as exc:
        raise RefusedError(f"{bundle_path}: {exc}") from None
    return _plan(
        layout, bundle_path, header, facts=facts, checks=checks, boot=boot, slots=slots,
        members=members,
    )  # fmt: skip


def _tar_members(f: BinaryIO, header: BundleHeader) -> dict[str, int]:
    """Name -> size of each regular file in a tar payload (empty for a ``file`` payload)."""
    if header.manifest.payload_kind != "tar":
        return {}
    f.seek(header.payload_offset)
    try:
        with tarfile.open(fileobj=f, mode="r|") as tar:
            return {m.name: m.size for m in tar if m.isfile()}
    except tarfile.TarError as exc:
        raise RefusedError(f"payload: not a readable tar ({exc})") from None


def _plan(
    layout: UnitLayout,
    bundle_path: Path,
    header: BundleHeader,
    *,
    facts: UnitFacts,
    checks: list[Check],
    boot: BootControl,
    slots: SlotWriter,
    members: dict[str, int],
) -> FlashPlan:
    m = header.manifest
    if m.compatible != facts.compatible:
        raise _refuse(
            checks, "compatible", f"bundle is for {m.compatible!r}, unit is {facts.compatible!r}"
        )
    checks.append(Check("compatible", True, m.compatible))
    state = load_state(layout)
    if m.security_version < state.floor:
        raise _refuse(
            checks,
            "security_version",
            f"security_version {m.security_version} is below the unit's floor {state.floor}",
        )
    checks.append(Check("security_version", True, f"{m.security_version} >= {state.floor}"))
    if facts.battery_pct < m.min_battery_pct:
        raise _refuse(
            checks,
            "battery",
            f"battery {facts.battery_pct:.0f}% is below the bundle's minimum {m.min_battery_pct}%",
        )
    checks.append(Check("battery", True, f"{facts.battery_pct:.0f}% >= {m.min_battery_pct}%"))
    primary = boot.get_primary()
    current = boot.get_current()
    target = other_slot(primary)
    if target == current:
        reason = (
            f"slot {target} ran last and was rolled back; boot the unit once (it returns to "
            f"slot {primary}), then flash"
            if boot.get_state(target) == "bad"
            else f"slot {target} is running an uncommitted try-boot; let it commit or roll back"
        )
        raise _refuse(checks, "slot", reason)
    checks.append(Check("slot", True, f"write {target}; {primary} is primary, {current} booted"))
    try:
        slots.check_fits(target, members)
    except RefusedError as exc:
        raise _refuse(checks, "slot_image", str(exc)) from None
    checks.append(Check("slot_image", True, f"fits slot {target}"))
    needed = slots.bytes_needed(m.payload_size) + METADATA_BYTES
    if facts.free_bytes < needed:
        raise _refuse(
            checks, "space", f"needs {needed} bytes free for the slot, {facts.free_bytes} free"
        )
    checks.append(Check("space", True, f"{needed} of {facts.free_bytes} bytes"))
    steps = (
        f"disarm any pending try-boot and mark slot {target} empty",
        f"write {m.payload_size} bytes ({m.payload_kind}) into a temp dir, hashing as it goes",
        "read the image back and compare with the signed SHA-256",
        f"swap it into slots/{target}",
        f"mark slot {target} installed; record firmware_install {m.version}",
        f"arm a one-shot try-boot of slot {target}; primary stays {primary}",
    )
    return FlashPlan(
        bundle=bundle_path,
        manifest=m,
        target=target,
        primary=primary,
        current=current,
        floor=state.floor,
        checks=tuple(checks),
        steps=steps,
    )


# ---------------------------------------------------------------------------------------------
# Install


class FlashObserver(Protocol):
    """Told about progress; may raise (tests inject a power cut between phases this way)."""

    def phase_started(self, phase: str) -> None: ...

    def progress(self, phase: str, done_bytes: int, total_bytes: int) -> None: ...

    def phase_done(self, phase: str) -> None: ...


class QuietObserver:
    def phase_started(self, phase: str) -> None:
        pass

    def progress(self, phase: str, done_bytes: int, total_bytes: int) -> None:
        pass

    def phase_done(self, phase: str) -> None:
        pass


@dataclass(frozen=True)
class FlashResult:
    slot: str
    version: str
    security_version: int
    sha256: str
    events_sealed: int


def flash(
    layout: UnitLayout,
    plan: FlashPlan,
    *,
    boot: BootControl,
    slots: SlotWriter,
    observer: FlashObserver | None = None,
    evidence: EventSink | None = None,
    mono_us: int = 0,
    utc_us: int = 0,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
) -> FlashResult:
    """Carry out ``plan`` (from ``preflight``). Raises ``IntegrityError`` if the bundle changed
    since the preflight or the read-back differs; the target then stays ``empty``.

    The ``firmware_install`` event is owed in the update state and sealed through ``evidence``
    when one is given; otherwise the next boot's ``drain_events`` seals it.
    """
    obs: FlashObserver = observer or QuietObserver()
    target = check_slot(plan.target)
    m = plan.manifest
    if target in (boot.get_primary(), boot.get_current()):
        raise RefusedError(f"slot {target} is primary or running; the plan is stale")

    def run_phase(name: str, action: Callable[[], None]) -> None:
        obs.phase_started(name)
        action()
        obs.phase_done(name)

    def invalidate() -> None:
        slots.discard_leftovers()
        state = load_state(layout)
        if boot.armed_tryboot() == target:
            boot.disarm_tryboot()
        if state.pending is not None:
            save_state(layout, replace(state, pending=None))
        boot.set_state(target, "empty")
        slots.invalidate(target)

    def write() -> None:
        with open_bundle(plan.bundle) as src:
            header = read_header(src)
            if header.manifest != m:
                raise IntegrityError("bundle changed since the preflight", path=str(plan.bundle))
            slots.write(
                target,
                header,
                iter_payload(src, header),
                lambda done: obs.progress("write", done, m.payload_size),
            )

    def verify() -> None:
        slots.read_back(target, m, lambda done: obs.progress("verify", done, m.payload_size))

    def swap() -> None:
        slots.install(target, SlotInfo.from_manifest(target, m))

    def mark() -> None:
        boot.set_state(target, "installed")
        state = load_state(layout)
        pending = PendingTry(
            slot=target,
            version=m.version,
            security_version=m.security_version,
            sha256=m.payload_sha256,
            install_id=state.installs + 1,
            max_attempts=max_attempts,
        )
        state = replace(state, installs=pending.install_id, pending=pending)
        save_state(layout, owe_event(state, "firmware_install", pending))

    def arm() -> None:
        # Never arm what is not installed and intact, whatever happened before.
        if boot.get_state(target) != "installed":
            raise IntegrityError(f"slot {target} is not installed; refusing to arm it")
        slots.verify(target)
        boot.arm_tryboot(target)

    for name, action in (
        ("invalidate", invalidate),
        ("write", write),
        ("verify", verify),
        ("swap", swap),
        ("mark", mark),
        ("arm", arm),
    ):
        run_phase(name, action)
    sealed = 0
    if evidence is not None:
        sealed = drain_events(layout, evidence, mono_us=mono_us, utc_us=utc_us)
    log.info("slot %s staged with %s; try-boot armed", target, m.version)
    return FlashResult(target, m.version, m.security_version, m.payload_sha256, sealed)


# ---------------------------------------------------------------------------------------------
# Downgrade policy


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def check_downgrade(plan: FlashPlan, installed: SlotInfo | None, *, allow: bool) -> FlashPlan:
    """Refuse a lower version at the same ``security_version`` unless ``allow`` (as fwupd does).

    ``installed`` is the primary slot's record: the firmware the unit runs when no try-boot is
    pending. A lower security_version never gets here (the floor refuses it); a higher one is a
    security update whatever its version number. Returns the plan with a ``version`` check.
    """
    m = plan.manifest
    checks = list(plan.checks)
    if installed is None or m.security_version != installed.security_version:
        detail = (
            "no version installed to compare"
            if installed is None
            else (f"security_version {installed.security_version} -> {m.security_version}")
        )
        checks.append(Check("version", True, detail))
    elif _version_key(m.version) >= _version_key(installed.version):
        checks.append(Check("version", True, f"{installed.version} -> {m.version}"))
    elif allow:
        checks.append(
            Check("version", True, f"downgrade {installed.version} -> {m.version} (allowed)")
        )
    else:
        raise _refuse(
            checks,
            "version",
            f"{m.version} is older than the installed {installed.version} at the same "
            f"security_version {m.security_version}: give --allow-downgrade to install it",
        )
    return replace(plan, checks=tuple(checks))
