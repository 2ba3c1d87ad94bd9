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

import hashlib
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from firmware.boot_control import SLOTS, SimBootControl, check_slot, other_slot
from firmware.bundle import (
    CHUNK_BYTES,
    BundleFormatError,
    BundleHeader,
    Manifest,
    iter_payload,
    load_trusted_key,
    open_bundle,
    payload_bytes_tar,
    read_header,
    tar_member_names,
    verify_payload,
    verify_signature,
)
from firmware.layout import UnitLayout
from firmware.update_state import (
    DEFAULT_MAX_ATTEMPTS,
    EventSink,
    PendingTry,
    UpdateState,
    canonical_json,
    drain_events,
    load_state,
    owe_event,
    read_json_file,
    save_state,
)
from hal.durable import fsync_dir, write_atomic
from hal.errors import IntegrityError, RefusedError, UsageError

log = logging.getLogger(__name__)

SLOT_FORMAT = "bwc-slot/1"
FLASH_PHASES = ("preflight", "invalidate", "write", "verify", "swap", "mark", "arm")
METADATA_BYTES = 64 * 1024  # slot.json + manifest + signature, with room to spare
FACTORY_VERSION = "0.1.0"


# ---------------------------------------------------------------------------------------------
# Slot records


@dataclass(frozen=True)
class SlotInfo:
    """What a slot holds, from its ``slot.json``."""

    slot: str
    version: str
    security_version: int
    sha256: str
    size: int
    kind: str
    compatible: str
    channel: str
    build_utc_s: int
    source: str  # "factory" or "bundle"

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": SLOT_FORMAT,
            "slot": self.slot,
            "version": self.version,
            "security_version": self.security_version,
            "sha256": self.sha256,
            "size": self.size,
            "kind": self.kind,
            "compatible": self.compatible,
            "channel": self.channel,
            "build_utc_s": self.build_utc_s,
            "source": self.source,
        }


def read_slot_info(layout: UnitLayout, slot: str) -> SlotInfo | None:
    """The slot's record, or None if the slot holds no complete install."""
    path = layout.slot(check_slot(slot)) / "slot.json"
    if not path.is_file():
        return None
    raw = read_json_file(path, max_bytes=16 * 1024)
    try:
        if raw["format"] != SLOT_FORMAT:
            raise KeyError("format")
        return SlotInfo(
            slot=str(raw["slot"]),
            version=str(raw["version"]),
            security_version=int(raw["security_version"]),
            sha256=str(raw["sha256"]),
            size=int(raw["size"]),
            kind=str(raw["kind"]),
            compatible=str(raw["compatible"]),
            channel=str(raw["channel"]),
            build_utc_s=int(raw["build_utc_s"]),
            source=str(raw["source"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise IntegrityError(f"malformed slot record ({exc})", path=str(path)) from None


def hash_file(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def verify_slot(layout: UnitLayout, slot: str) -> SlotInfo:
    """Re-hash the slot's image against its record; ``IntegrityError`` if it is not intact."""
    info = read_slot_info(layout, slot)
    if info is None:
        raise IntegrityError(f"slot {slot} holds no complete install")
    image = layout.slot(slot) / "image"
    try:
        size, sha256 = hash_file(image)
    except OSError as exc:
        raise IntegrityError(f"cannot read the image ({exc.strerror})", path=str(image)) from None
    if (size, sha256) != (info.size, info.sha256):
        raise IntegrityError(f"slot {slot} image does not match its record", path=str(image))
    return info


def slot_payload_names(layout: UnitLayout, slot: str) -> list[str]:
    """Member names of a tar image (for simulator fault knobs such as ``HEALTH_FAIL``)."""
    image = layout.slot(check_slot(slot)) / "image"
    try:
        with image.open("rb") as f:
            return tar_member_names(f)
    except OSError:
        return []


def _write_file(path: Path, data: bytes) -> None:
    with path.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def init_slots(
    layout: UnitLayout,
    version: str = FACTORY_VERSION,
    security_version: int = 0,
    *,
    compatible: str = "bwc-sim",
    build_utc_s: int = 0,
) -> bool:
    """Give a fresh simulated unit its factory firmware; returns False if it already has slots.

    Slot A holds a tiny payload describing ``version`` (state good, primary), slot B is empty,
    and the security_version floor starts at ``security_version``.
    """
    boot = SimBootControl(layout)
    if boot.is_initialised():
        return False
    image = payload_bytes_tar(
        {
            "VERSION": f"{version}\n".encode(),
            "README": b"Factory firmware of the simulated body-worn camera.\n",
        }
    )
    slot_dir = layout.slot("A")
    slot_dir.mkdir(parents=True, exist_ok=True)
    layout.slot("B").mkdir(parents=True, exist_ok=True)
    _write_file(slot_dir / "image", image)
    info = SlotInfo(
        slot="A",
        version=version,
        security_version=security_version,
        sha256=hashlib.sha256(image).hexdigest(),
        size=len(image),
        kind="tar",
        compatible=compatible,
        channel="release",
        build_utc_s=build_utc_s,
        source="factory",
    )
    write_atomic(slot_dir / "slot.json", canonical_json(info.to_dict()) + b"\n")
    fsync_dir(layout.slots)
    boot.set_state("A", "good")
    boot.set_state("B", "empty")
    save_state(layout, UpdateState(floor=security_version))
    # autoboot.txt last: its presence is what marks the unit as having boot slots.
    boot.set_primary("A")
    return True


# ---------------------------------------------------------------------------------------------
# Preflight and plan


@dataclass(frozen=True)
class UnitFacts:
    """What the preflight needs to know about the unit besides its storage."""

    compatible: str
    battery_pct: float
    free_bytes: int


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


def preflight(layout: UnitLayout, bundle_path: Path, facts: UnitFacts) -> FlashPlan:
    """Every check before anything is written; raises ``RefusedError`` with the first reason.

    Reads the unit and the whole bundle, writes nothing.
    """
    boot = SimBootControl(layout)
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
    except BundleFormatError as exc:
        raise RefusedError(f"{bundle_path}: {exc}") from None
    return _plan(layout, bundle_path, header, facts=facts, checks=checks)


def _plan(
    layout: UnitLayout,
    bundle_path: Path,
    header: BundleHeader,
    *,
    facts: UnitFacts,
    checks: list[Check],
) -> FlashPlan:
    boot = SimBootControl(layout)
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
    needed = m.payload_size + METADATA_BYTES
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


SlotFileOpener = Callable[[Path], BinaryIO]
"""Opens the slot image for writing; tests inject one that loses power after N bytes."""


def _open_for_write(path: Path) -> BinaryIO:
    return path.open("wb")


@dataclass(frozen=True)
class FlashResult:
    slot: str
    version: str
    security_version: int
    sha256: str
    events_sealed: int


def _incoming(layout: UnitLayout, slot: str) -> Path:
    return layout.slots / f".incoming-{slot}"


def _outgoing(layout: UnitLayout, slot: str) -> Path:
    return layout.slots / f".outgoing-{slot}"


def discard_leftovers(layout: UnitLayout) -> None:
    """Remove temp dirs an interrupted install left in slots/ (never a slot itself)."""
    for slot in SLOTS:
        for path in (_incoming(layout, slot), _outgoing(layout, slot)):
            if path.exists():
                shutil.rmtree(path)
    if layout.slots.exists():
        fsync_dir(layout.slots)


def flash(
    layout: UnitLayout,
    plan: FlashPlan,
    *,
    observer: FlashObserver | None = None,
    open_slot_file: SlotFileOpener = _open_for_write,
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
    boot = SimBootControl(layout)
    target = check_slot(plan.target)
    m = plan.manifest
    if target in (boot.get_primary(), boot.get_current()):
        raise RefusedError(f"slot {target} is primary or running; the plan is stale")

    def run_phase(name: str, action: Callable[[], None]) -> None:
        obs.phase_started(name)
        action()
        obs.phase_done(name)

    def invalidate() -> None:
        discard_leftovers(layout)
        state = load_state(layout)
        if boot.armed_tryboot() == target:
            boot.disarm_tryboot()
        if state.pending is not None:
            save_state(layout, replace(state, pending=None))
        boot.set_state(target, "empty")

    incoming = _incoming(layout, target)

    def write() -> None:
        incoming.mkdir(parents=True)
        done = 0
        digest = hashlib.sha256()
        with open_bundle(plan.bundle) as src, open_slot_file(incoming / "image") as out:
            header = read_header(src)
            if header.manifest != m:
                raise IntegrityError("bundle changed since the preflight", path=str(plan.bundle))
            for chunk in iter_payload(src, header):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                obs.progress("write", done, m.payload_size)
            out.flush()
            os.fsync(out.fileno())
            _write_file(incoming / "manifest.json", header.manifest_bytes)
            _write_file(incoming / "manifest.sig", header.signature)
        if digest.hexdigest() != m.payload_sha256:
            raise IntegrityError("written bytes do not match the manifest")
        info = SlotInfo(
            slot=target,
            version=m.version,
            security_version=m.security_version,
            sha256=m.payload_sha256,
            size=m.payload_size,
            kind=m.payload_kind,
            compatible=m.compatible,
            channel=m.channel,
            build_utc_s=m.build_utc_s,
            source="bundle",
        )
        _write_file(incoming / "slot.json", canonical_json(info.to_dict()) + b"\n")
        fsync_dir(incoming)

    def verify() -> None:
        size, sha256 = hash_file(incoming / "image")
        obs.progress("verify", size, m.payload_size)
        if (size, sha256) != (m.payload_size, m.payload_sha256):
            raise IntegrityError("read-back differs from the signed manifest", path=str(incoming))

    def swap() -> None:
        final = layout.slot(target)
        outgoing = _outgoing(layout, target)
        if final.exists():
            final.rename(outgoing)
        incoming.rename(final)
        fsync_dir(layout.slots)
        if outgoing.exists():
            shutil.rmtree(outgoing)

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
        verify_slot(layout, target)
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
