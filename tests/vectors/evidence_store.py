"""Builders for small sealed evidence stores used by the evidence tests and golden vectors.

Test code only: fixed keys here are public and must never be used on a unit.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from evidence.keys import (
    AgencyPrivateKey,
    AgencyPublicKey,
    load_agency_private,
    load_agency_public,
)
from evidence.sealer import Sealer
from evidence.sealing import UnitMeta
from hal.software_key import SoftwareDeviceKey

VECTORS = Path(__file__).parent / "evidence"


class CountingRng:
    """Deterministic byte source: SHA-256(seed || counter) blocks. For golden vectors only."""

    def __init__(self, seed: bytes) -> None:
        self.seed = seed
        self.counter = 0

    def __call__(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            out += hashlib.sha256(self.seed + self.counter.to_bytes(8, "big")).digest()
            self.counter += 1
        return out[:n]


def fixed_device_key(seed: int = 1) -> SoftwareDeviceKey:
    return SoftwareDeviceKey(Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32))


def write_agency_pair(directory: Path, secret: int) -> tuple[AgencyPublicKey, AgencyPrivateKey]:
    """A P-384 agency key pair with a fixed private scalar, written as PEM files."""
    directory.mkdir(parents=True, exist_ok=True)
    k = ec.derive_private_key(secret, ec.SECP384R1())
    (directory / "agency-key.pem").write_bytes(
        k.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (directory / "agency-pub.pem").write_bytes(
        k.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return (
        load_agency_public(directory / "agency-pub.pem"),
        load_agency_private(directory / "agency-key.pem"),
    )


@dataclass
class BuiltStore:
    path: Path
    key: SoftwareDeviceKey
    payloads: list[bytes]


def build_store(
    path: Path,
    key: SoftwareDeviceKey,
    recipients: Sequence[AgencyPublicKey],
    payloads: Sequence[bytes],
    *,
    device_id: str = "bwc-test-0001",
    boot_id: str = "00112233445566778899aabbccddeeff",
    recording: str = "rec-0001",
    rng: CountingRng | None = None,
    frames_per_unit: int = 25,
    close: bool = True,
) -> BuiltStore:
    """boot, record_start, one unit per payload (2 per segment), record_stop, shutdown."""
    sealer = Sealer.open(
        path,
        key,
        recipients,
        device_id,
        boot_id,
        "simulated",
        device_pub_pem=key.public_pem(),
        rng=rng if rng is not None else os.urandom,
    )
    t = 1_000_000
    sealer.event(
        "boot",
        {"firmware_version": "0.1.0", "device_id": device_id, "officer_id": "officer-7"},
        mono_us=t,
        utc_us=1_700_000_000_000_000 + t,
    )
    sealer.event(
        "record_start",
        {"recording": recording, "trigger": "double_press", "pre_event_s": 0},
        mono_us=t,
        utc_us=1_700_000_000_000_000 + t,
    )
    for i, payload in enumerate(payloads):
        start = t + i * 1_000_000
        meta = UnitMeta(
            recording_id=recording,
            segment=i // 2,
            unit=i % 2,
            first_frame=i * frames_per_unit,
            frame_count=frames_per_unit,
            start_pts_us=start,
            end_pts_us=start + 1_000_000,
            start_utc_us=1_700_000_000_000_000 + start,
            utc_source="simulated",
            gnss={"lat_deg": 51.5, "lon_deg": -0.12, "utc_us": 1_700_000_000_000_000 + start},
        )
        sealer.seal_unit(payload, meta, mono_us=start + 1_000_000, utc_us=meta.start_utc_us)
    if close:
        end = t + len(payloads) * 1_000_000
        sealer.event(
            "record_stop",
            {"recording": recording, "trigger": "hold", "units": len(payloads)},
            mono_us=end,
            utc_us=1_700_000_000_000_000 + end,
        )
        sealer.event("shutdown", {"reason": "power_off"}, mono_us=end, utc_us=end)
    return BuiltStore(path, key, list(payloads))
