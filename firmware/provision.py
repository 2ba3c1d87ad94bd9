"""Provisioning: turn a blank unit (or one whose evidence is all offloaded) into an agency's unit.

Order of writes, so that a power cut at any point leaves either the old assignment or the new one:
every input is checked before anything is written; the device key is generated on the unit (kept
if the unit already has one: re-provisioning changes the assignment, not the identity); keys and
profile are written with temp file, fsync and rename; ``config/unit.json`` is written last and is
the commit point (``UnitLayout.is_provisioned``). The signed ``provisioned`` event then enters the
unit's chain. Refuses a unit holding evidence not yet confirmed offloaded.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from evidence.keys import load_agency_public
from firmware.backends import firmware_backends
from firmware.evidence_access import open_unit_sealer
from firmware.flash import init_slots
from firmware.identity import DEFAULT_PROFILE, Assignment, check_id, read_profile
from firmware.layout import UnitLayout
from hal.durable import fsync_dir, write_atomic
from hal.errors import UsageError
from hal.software_key import SoftwareDeviceKey, fingerprint_raw

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProvisionResult:
    device_pub: Path
    device_fingerprint: str
    key_generated: bool
    seq: int


def unoffloaded_evidence(layout: UnitLayout) -> list[str]:
    """Names of media payloads still on the unit, i.e. not yet confirmed offloaded and freed.

    Offload deletes a payload only after its receipt is confirmed and a signed ``offload_freed``
    event names it, so any payload still present is evidence the agency may not have.
    """
    store = layout.evidence
    if not store.is_dir():
        return []
    return sorted(p.name for p in store.glob("*.bin"))


def read_release_pub(path: Path) -> tuple[bytes, str]:
    """The firmware release public key (Ed25519 SubjectPublicKeyInfo PEM) and its fingerprint."""
    try:
        data = path.read_bytes()
        key = serialization.load_pem_public_key(data)
    except FileNotFoundError:
        raise UsageError(f"--release-pub {path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"--release-pub {path}: not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise UsageError(
            f"--release-pub {path}: not an Ed25519 public key; use the release-pub.pem written by "
            "`bwc fw keygen`"
        )
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return data, fingerprint_raw(raw)


def provision(
    layout: UnitLayout,
    *,
    agency_pub: Path,
    device_id: str,
    officer_id: str,
    profile_path: Path | None = None,
    release_pub: Path | None = None,
) -> ProvisionResult:
    check_id(device_id, "--device-id")
    check_id(officer_id, "--officer")
    agency = load_agency_public(agency_pub)
    profile_file = profile_path or DEFAULT_PROFILE
    profile = read_profile(profile_file)
    release = read_release_pub(release_pub) if release_pub is not None else None
    if layout.root.exists() and not layout.root.is_dir():
        raise UsageError(f"DEVICE {layout.root}: exists and is not a directory")
    pending = unoffloaded_evidence(layout)
    if pending:
        raise UsageError(
            f"DEVICE {layout.root}: holds {len(pending)} evidence payloads not yet offloaded "
            f"(e.g. {pending[0]}); run `bwc offload --device {layout.root}` first"
        )

    for d in (layout.root, layout.identity, layout.agency_dir, layout.config, layout.update):
        d.mkdir(parents=True, exist_ok=True)
    key_generated = not layout.device_key.exists()
    key = (
        SoftwareDeviceKey.generate(layout.device_key)
        if key_generated
        else SoftwareDeviceKey.load(layout.device_key)
    )
    write_atomic(layout.device_pub, key.public_pem())
    # The agency keys are replaced as a set: stale recipients must not keep receiving content keys.
    agency_name = "agency-" + agency.fingerprint[:16] + ".pem"
    write_atomic(layout.agency_dir / agency_name, agency_pub.read_bytes())
    for old in layout.agency_dir.glob("*.pem"):
        if old.name != agency_name:
            old.unlink()
    fsync_dir(layout.agency_dir)
    if release is not None:
        write_atomic(layout.release_pub, release[0])
    write_atomic(layout.profile, profile_file.read_bytes())
    fw = firmware_backends(layout, profile.unit, privileged=True)
    init_slots(layout, boot=fw.boot, slots=fw.slots, compatible=profile.unit.compatible)
    assignment = Assignment(device_id, officer_id, str(profile_file))
    unit = {
        "device_id": device_id,
        "officer_id": officer_id,
        "profile_source": str(profile_file),
        "profile_digest": profile.digest(),
    }
    write_atomic(layout.unit_json, json.dumps(unit, indent=2, sort_keys=True).encode() + b"\n")

    # The provisioning session is a short "boot" of its own in the chain: opened, one event, closed.
    sealer = open_unit_sealer(layout, profile, assignment, key, "unset")
    fields = {
        "device_id": device_id,
        "officer_id": officer_id,
        "profile_digest": profile.digest(),
        "profile": profile.to_dict(),
        "agency_fingerprints": [agency.fingerprint],
        "release_key_fingerprint": release[1] if release is not None else None,
        "device_key_generated": key_generated,
    }
    # The unit has no trusted clock while being provisioned; time fields say so (utc_source unset).
    seq = sealer.event("provisioned", fields, mono_us=0, utc_us=0)
    sealer.event("shutdown", {"reason": "provisioning complete"}, mono_us=0, utc_us=0)
    log.info("provisioned %s for officer %s (entry %d)", device_id, officer_id, seq)
    os.sync()
    return ProvisionResult(layout.device_pub, key.fingerprint(), key_generated, seq)
