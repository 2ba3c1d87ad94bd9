"""Opening a unit's evidence store for writing: the one place that knows where the device key,
the agency recipients and the storage limits of a unit come from.

Used by the booting unit and by the technician's commands that add signed events to the chain
(provisioning, firmware, offload). Never decrypts anything: the unit holds public keys only.
"""

from __future__ import annotations

from collections.abc import Callable

from firmware.identity import Assignment
from firmware.layout import UnitLayout
from hal.errors import UsageError
from hal.protocols import DeviceKey
from hal.software_key import SoftwareDeviceKey
from recorder.config import Profile
from recorder.evidence.keys import AgencyPublicKey, load_agency_public
from recorder.evidence.sealer import Sealer, new_boot_id


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
