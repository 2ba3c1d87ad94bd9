"""Builders for small sealed evidence stores used by the evidence tests and golden vectors.

Test code only: fixed keys here are public and must never be used on a unit.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from evidence.format import FORMAT_V1, ZERO_HASH, canonical_json, entry_name, hpke_info, unit_aad
from evidence.keys import (
    AgencyPrivateKey,
    AgencyPublicKey,
    load_agency_private,
    load_agency_public,
)
from evidence.opener import decrypt_unit
from evidence.sealer import Sealer
from evidence.sealing import UnitMeta
from evidence.store import DirectoryStoreReader
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


Edit = Callable[[int, dict[str, Any]], dict[str, Any]]
"""Takes (seq, manifest as read) and returns the manifest to write (``prev`` is set after)."""


def rechain(store: Path, key: SoftwareDeviceKey, edit: Edit) -> None:
    """Rewrite every manifest of ``store`` in seq order through ``edit``, with ``prev`` set to the
    hash of the rewritten predecessor, canonical, and signed by ``key``: what a holder of the
    device key (a forger, or firmware that rewrites history) can do to a whole chain."""
    prev = ZERO_HASH
    seq = 0
    while (store / entry_name(seq, "json")).exists():
        m = edit(seq, json.loads((store / entry_name(seq, "json")).read_bytes()))
        m["prev"] = prev
        data = canonical_json(m)
        (store / entry_name(seq, "json")).write_bytes(data)
        (store / entry_name(seq, "sig")).write_bytes(key.sign(data))
        prev = hashlib.sha256(data).hexdigest()
        seq += 1


def rewrite_as_v1(
    store: Path,
    key: SoftwareDeviceKey,
    agency: tuple[AgencyPublicKey, AgencyPrivateKey],
    upto_seq: int,
) -> None:
    """Turn entries 0..``upto_seq`` of a sealed (``bwc-evidence/2``) store into ``bwc-evidence/1``
    exactly as the /1 sealer wrote them (a fresh content key per unit, HPKE-wrapped per unit with
    the /1 info), and re-chain the rest: a unit that ran /1 firmware, then /2. The sealer writes
    only /2, so this is the one /1 writer left, and it lives with the tests."""
    pub, priv = agency
    reader = DirectoryStoreReader(store)

    def edit(seq: int, m: dict[str, Any]) -> dict[str, Any]:
        if seq > upto_seq:
            return m
        if m["type"] == "unit":
            plain = decrypt_unit(reader, m, priv)
            m["format"] = FORMAT_V1
            del m["secret_id"]
            aad = unit_aad(
                device=m["device"],
                key=m["key"],
                seq=seq,
                recording=m["recording"],
                segment=m["segment"],
                unit=m["unit"],
                fmt=FORMAT_V1,
            )
            content_key, nonce = os.urandom(32), os.urandom(12)
            ciphertext = AESGCM(content_key).encrypt(nonce, plain, aad)
            (store / m["payload"]["file"]).write_bytes(ciphertext)
            m["payload"].update(
                size=len(ciphertext),
                sha256=hashlib.sha256(ciphertext).hexdigest(),
                nonce=nonce.hex(),
            )
            wrapped = pub.wrap(content_key, hpke_info(aad))
            m["recipients"] = [
                {
                    "fingerprint": pub.fingerprint,
                    "suite": pub.suite,
                    "enc_and_ct": base64.b64encode(wrapped).decode("ascii"),
                }
            ]
        m["format"] = FORMAT_V1
        return m

    rechain(store, key, edit)
