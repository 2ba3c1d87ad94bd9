"""Opening a unit's evidence store for writing: the one place that knows where the device key,
the agency recipients and the storage limits of a unit come from.

Used by the booting unit and by the technician's commands that add signed events to the chain
(provisioning, firmware, offload). Never decrypts anything: the unit holds public keys only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from evidence.keys import AgencyPublicKey, load_agency_public
from evidence.sealer import Sealer, new_boot_id
from firmware import __version__
from firmware.identity import Assignment
from firmware.layout import UnitLayout
from hal.errors import UsageError
from hal.protocols import Clock, DeviceKey
from hal.software_key import SoftwareDeviceKey
from recorder.config import Profile


def load_recipients(layout: UnitLayout) -> list[AgencyPublicKey]:
    """Every agency public key installed on the unit (identity/agency/*.pem), in name order."""
    paths = sorted(layout.agency_dir.glob("*.pem")) if layout.agency_dir.is_dir() else []
    if not paths:
        raise UsageError(
            f"{layout.agency_dir}: no agency public key installed; re-run `bwc provision`"
        )
    return [load_agency_public(p) for p in paths]


def open_unit_sealer(
    layout: UnitLayout,
    profile: Profile,
    assignment: Assignment,
    key: DeviceKey,
    utc_source: Callable[[], str] | str,
    boot_id: str | None = None,
) -> Sealer:
    """Open the unit's store with its storage limits from the profile."""
    capacity_mb = profile.storage.capacity_mb
    device_pub_pem = key.public_pem() if isinstance(key, SoftwareDeviceKey) else None
    return Sealer.open(
        layout.evidence,
        key,
        load_recipients(layout),
        assignment.device_id,
        boot_id or new_boot_id(),
        utc_source,
        reserve_bytes=round(profile.storage.reserve_mb * 1_000_000),
        capacity_bytes=round(capacity_mb * 1_000_000) if capacity_mb > 0 else None,
        device_pub_pem=device_pub_pem,
    )


def record_boot(
    sealer: Sealer,
    clock: Clock,
    profile: Profile,
    assignment: Assignment,
    *,
    firmware_version: str,
    slot: str,
    tryboot: bool,
    notes: Sequence[str] = (),
) -> None:
    """Seal the ``boot`` event, then how the previous boot ended (``record_recovery``)."""

    def event(kind: str, fields: dict[str, object]) -> None:
        sealer.event(kind, fields, mono_us=clock.monotonic_us(), utc_us=clock.utc_us())

    event(
        "boot",
        {
            "firmware_version": firmware_version,
            "software_version": __version__,
            "slot": slot,
            "tryboot": tryboot,
            "boot_notes": list(notes),
            "profile_digest": profile.digest(),
            "profile": profile.to_dict(),
            "device_id": assignment.device_id,
            "officer_id": assignment.officer_id,
            "clock_source": clock.source.value,
        },
    )
    record_recovery(sealer, clock)


def record_recovery(sealer: Sealer, clock: Clock) -> None:
    """Seal what the store says about how the previous session ended, if anything.

    An unclean end (power cut, crash, watchdog kill) becomes ``power_loss_discovered`` naming what
    was lost, and a recording left open is closed by a ``record_stop`` with trigger
    ``power_loss_recovery``, so the gap in the record is explained by signed evidence. These may
    use the storage reserve: explaining a loss matters more than anything recorded after it.
    """
    recovery = sealer.recovery
    if recovery is None:
        return
    mono_us, utc_us = clock.monotonic_us(), clock.utc_us()
    fields = recovery.event_fields()
    if recovery.clean_shutdown:
        sealer.event("leftovers_moved", fields, mono_us=mono_us, utc_us=utc_us, reserve_ok=True)
        return
    sealer.event("power_loss_discovered", fields, mono_us=mono_us, utc_us=utc_us, reserve_ok=True)
    stop = recovery.stop_fields()
    if stop is not None:
        sealer.event("record_stop", stop, mono_us=mono_us, utc_us=utc_us, reserve_ok=True)
