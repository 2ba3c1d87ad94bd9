"""Provisioning: turn a blank unit (or one whose evidence is all offloaded) into an agency's unit.

Order of writes, so that a power cut at any point leaves either the old assignment or the new one:
every input is checked before anything is written; the device key is generated on the unit (kept
if the unit already has one: re-provisioning changes the assignment, not the identity); keys and
profile are written with temp file, fsync and rename; ``config/unit.json`` is written last and is
the commit point (``UnitLayout.is_provisioned``). The signed ``provisioned`` event then enters the
unit's chain. Refuses a unit holding evidence not yet confirmed offloaded: any file of any chain
entry (events too) that no signed receipt names, except the offload's own bookkeeping events and
the ``shutdown`` events closing the chain.

Keys are installed, never files: ``--agency-pub`` and ``--release-pub`` must parse as exactly one
public key of the expected type, with no private key material anywhere in the file, and the unit
stores the key re-serialised from the parsed object.

A new device id is a new identity: the old chain (all offloaded) is moved aside whole, durably and
never deleted, to ``evidence-archive/<old-device-id>-<n>/``; a new device key is generated; and the
new chain's signed ``provisioned`` event names the previous device id, key fingerprint, chain head
and archive. Both chains verify on their own.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from evidence.keys import AgencyPublicKey, parse_agency_public, public_key_blocks
from evidence.records import MAX_MANIFEST_BYTES, EventKind, read_record
from evidence.sealing import JsonValue
from firmware.backends import firmware_backends
from firmware.bundle import CHANNEL_LABEL, CHANNELS
from firmware.evidence_access import open_unit_sealer
from firmware.flash import init_slots
from firmware.identity import (
    DEFAULT_PROFILE,
    Assignment,
    check_id,
    load_assignment,
    read_profile,
)
from firmware.layout import UnitLayout
from hal.durable import fsync_dir, write_atomic
from hal.errors import IntegrityError, UsageError
from hal.software_key import SoftwareDeviceKey, fingerprint_raw
from offload.plan import ChainState
from offload.runner import scan_store
from offload.targets import hash_file

ARCHIVE_DIR = "evidence-archive"
CLOSING_KINDS = frozenset({EventKind.SHUTDOWN.value})
"""Events that may close the chain unreceipted: ``bwc offload`` writes one after its round."""

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProvisionResult:
    device_pub: Path
    device_fingerprint: str
    key_generated: bool
    seq: int
    archive: Path | None = None  # where the previous identity's chain went, if it changed


def unoffloaded_evidence(layout: UnitLayout) -> list[str]:
    """Files of the unit's store that no signed ``offload_receipt`` names, in chain order.

    Every entry counts, events as much as payloads, and so do the store's key and orphans; not
    the offload's own bookkeeping events (never receipted by design), the ``shutdown`` events
    that close the chain (``bwc offload`` writes one after its round), payloads no longer on the
    unit, or a confirmation a signed ``offload_mismatch`` event withdrew (that one counts again).
    Leftover payloads of an unfinished write count too: the next boot makes them orphans.
    """
    store = layout.evidence
    if not store.is_dir():
        return []
    scan = scan_store(store)
    state = ChainState.from_entries(scan.entries)
    confirmed = {name for files in state.confirmed.values() for name in files}
    closing: set[int] = set()
    for entry in reversed(scan.entries):
        if entry.bookkeeping:
            continue
        if entry.kind not in CLOSING_KINDS or entry.payload:
            break
        closing.add(entry.seq)
    pending = [n for n in scan.extra_files if n not in confirmed]
    for entry in scan.entries:
        if entry.bookkeeping or entry.seq in closing:
            continue
        for name in entry.files():
            if name == entry.payload and name not in scan.present_payloads:
                continue
            if name not in confirmed:
                pending.append(name)
    pending += sorted(p.name for p in store.glob("*.bin") if p.name not in scan.present_payloads)
    return pending


def read_agency_pub(path: Path) -> AgencyPublicKey:
    """The agency public key, strictly (see ``evidence.keys.public_key_blocks``)."""
    return parse_agency_public(_read(path, "--agency-pub"), f"--agency-pub {path}")


def read_release_pub(path: Path) -> tuple[bytes, str]:
    """The firmware release key re-serialised (Ed25519 SubjectPublicKeyInfo PEM), fingerprint."""
    source = f"--release-pub {path}"
    data = _read(path, "--release-pub")
    # `bwc fw keygen` labels the key with its channel on one line before the PEM block (RFC 7468
    # explanatory text). That one line is allowed and kept; other text outside the block is not.
    channel = "release"
    first, sep, rest = data.partition(b"\n")
    if sep and first.startswith(CHANNEL_LABEL.encode()):
        channel = first[len(CHANNEL_LABEL) :].decode("ascii", "replace").strip()
        if channel not in CHANNELS:
            raise UsageError(f"{source}: unknown firmware channel {channel!r}")
        data = rest
    keys = public_key_blocks(data, source, "release public key")
    if len(keys) != 1:
        raise UsageError(f"{source}: holds {len(keys)} keys; expected one Ed25519 public key")
    (key,) = keys
    if not isinstance(key, Ed25519PublicKey):
        raise UsageError(
            f"{source}: not an Ed25519 public key; use the release-pub.pem written by "
            "`bwc fw keygen`"
        )
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # An unlabelled key is a release key to the bundle checker; a development key keeps its label.
    label = b"" if channel == "release" else f"{CHANNEL_LABEL} {channel}\n".encode()
    return label + pem, fingerprint_raw(raw)


def _read(path: Path, option: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{option} {path}: no such file") from None
    except OSError as exc:
        raise UsageError(f"{option} {path}: cannot be read ({exc.strerror})") from None


@dataclass(frozen=True)
class Previous:
    """The identity a re-provision replaces, and where its (offloaded) chain was archived."""

    device_id: str
    key_fingerprint: str
    head_seq: int
    head_hash: str
    archive: Path | None

    def to_json(self, root: Path) -> dict[str, JsonValue]:
        """The ``previous`` field of the new chain's ``provisioned`` event (verify's hand-over)."""
        return {
            "device_id": self.device_id,
            "device_key_fingerprint": self.key_fingerprint,
            "chain_head_seq": self.head_seq,
            "chain_head_sha256": self.head_hash,
            "archive": self.archive.relative_to(root).as_posix() if self.archive else None,
        }


def _chain_head(store: Path) -> tuple[int, str, str | None]:
    """``(seq, manifest SHA-256, device id)`` of a store's last committed entry; seq -1 if none."""
    scan = scan_store(store) if store.is_dir() else None
    if scan is None or not scan.entries:
        return -1, "0" * 64, None
    path = store / scan.entries[-1].manifest
    data = path.read_bytes() if path.stat().st_size <= MAX_MANIFEST_BYTES else b""
    try:
        device: str | None = read_record(data, str(path)).header.device
    except IntegrityError:
        device = None
    return (
        scan.entries[-1].seq,
        hash_file(path)[1],  # the file's bytes, in chunks, whatever their size
        device if isinstance(device, str) else None,
    )


def _store_key_fingerprint(store: Path) -> str | None:
    """Fingerprint of the device key a store names (its ``device-pub.pem``), if readable."""
    try:
        key = serialization.load_pem_public_key((store / "device-pub.pem").read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(key, Ed25519PublicKey):
        return None
    return fingerprint_raw(
        key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )


def archive_chain(layout: UnitLayout, old_device_id: str) -> Path | None:
    """Move the whole store to ``evidence-archive/<old id>-<n>/`` (one rename, then fsyncs).

    With no chain to move, the newest archive of ``old_device_id`` (a re-provision cut after
    its rename), or None. Never replaces or deletes anything.
    """
    store = layout.evidence
    archive_root = layout.root / ARCHIVE_DIR
    n = 1
    while (archive_root / f"{old_device_id}-{n}").exists():
        n += 1
    if _chain_head(store)[0] < 0:
        return archive_root / f"{old_device_id}-{n - 1}" if n > 1 else None
    archive_root.mkdir(exist_ok=True)
    dest = archive_root / f"{old_device_id}-{n}"
    os.rename(store, dest)  # never replaces: dest does not exist; same file system
    fsync_dir(archive_root)
    fsync_dir(layout.root)
    log.info("archived the chain of %s in %s", old_device_id, dest)
    return dest


def previous_identity(layout: UnitLayout, device_id: str) -> str | None:
    """The device id the unit had if ``device_id`` differs from it: the chain's own signed
    ``device`` field first, then ``config/unit.json``; None for a blank unit or the same id."""
    old = _chain_head(layout.evidence)[2]
    if old is None and layout.is_provisioned():
        with contextlib.suppress(UsageError):
            old = load_assignment(layout).device_id
    return old if old is not None and old != device_id else None


def _replace_device_key(layout: UnitLayout) -> SoftwareDeviceKey:
    """A new device key in place of the old one: a new identity never reuses the old key."""
    tmp = layout.device_key.with_name(".new-" + layout.device_key.name)
    tmp.unlink(missing_ok=True)  # a leftover of a cut re-provision: never used, never published
    key = SoftwareDeviceKey.generate(tmp)
    os.replace(tmp, layout.device_key)
    fsync_dir(layout.identity)
    return key


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
    agency = read_agency_pub(agency_pub)
    profile_file = profile_path or DEFAULT_PROFILE
    profile = read_profile(profile_file)
    release = read_release_pub(release_pub) if release_pub is not None else None
    if layout.root.exists() and not layout.root.is_dir():
        raise UsageError(f"DEVICE {layout.root}: exists and is not a directory")
    pending = unoffloaded_evidence(layout)
    if pending:
        raise UsageError(
            f"DEVICE {layout.root}: holds {len(pending)} evidence files not yet offloaded "
            f"(e.g. {pending[0]}); run `bwc offload --device {layout.root}` first"
        )
    old_id = previous_identity(layout, device_id)

    for d in (layout.root, layout.identity, layout.agency_dir, layout.config, layout.update):
        d.mkdir(parents=True, exist_ok=True)
    previous = None
    key_generated = not layout.device_key.exists()
    if old_id is not None and not key_generated:
        archive = archive_chain(layout, old_id)
        head_seq, head_hash, _ = _chain_head(archive) if archive else (-1, "0" * 64, None)
        old_fp = (_store_key_fingerprint(archive) if archive else None) or SoftwareDeviceKey.load(
            layout.device_key
        ).fingerprint()
        previous = Previous(old_id, old_fp, head_seq, head_hash, archive)
        key = _replace_device_key(layout)
        key_generated = True
    elif key_generated:
        key = SoftwareDeviceKey.generate(layout.device_key)
    else:
        key = SoftwareDeviceKey.load(layout.device_key)
    write_atomic(layout.device_pub, key.public_pem())
    # The agency keys are replaced as a set: stale recipients must not keep receiving content keys.
    agency_name = "agency-" + agency.fingerprint[:16] + ".pem"
    write_atomic(layout.agency_dir / agency_name, agency.spki_pem)
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
    if previous is not None:
        fields["previous"] = previous.to_json(layout.root)
    # The unit has no trusted clock while being provisioned; time fields say so (utc_source unset).
    seq = sealer.event("provisioned", fields, mono_us=0, utc_us=0)
    sealer.event("shutdown", {"reason": "provisioning complete"}, mono_us=0, utc_us=0)
    log.info("provisioned %s for officer %s (entry %d)", device_id, officer_id, seq)
    os.sync()
    return ProvisionResult(
        layout.device_pub,
        key.fingerprint(),
        key_generated,
        seq,
        previous.archive if previous is not None else None,
    )
