"""Fixed names and byte encodings of the evidence format, for sealer and verifier.

Two versions are read: ``bwc-evidence/1`` (a fresh content key per unit, HPKE-wrapped per unit)
and ``bwc-evidence/2`` (one HPKE-wrapped secret per segment, each unit's key derived from it by
HKDF over the unit's AAD), which is what the sealer writes. The version is decided per manifest.
Pure functions only: no IO, no randomness. A change here changes the format and its version marker.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

FORMAT_V1 = "bwc-evidence/1"
FORMAT_V2 = "bwc-evidence/2"
FORMAT = FORMAT_V2
"""The marker the sealer writes."""
FORMATS = (FORMAT_V1, FORMAT_V2)
"""Every marker a reader accepts."""
ZERO_HASH = "0" * 64
SEQ_DIGITS = 10
CIPHER = "AES-256-GCM"
AAD_NAME = "manifest-core"
DEVICE_PUB_NAME = "device-pub.pem"
ORPHANS_DIR = "orphans"
TMP_PREFIX = ".tmp-"
SIG_LEN = 64
NONCE_LEN = 12
CONTENT_KEY_LEN = 32
SEGMENT_SECRET_LEN = 32
SECRET_ID_LEN = 16

SUITE_P384 = "DHKEM(P-384,HKDF-SHA384)/HKDF-SHA384/AES-256-GCM"
SUITE_MLKEM1024_P384 = "MLKEM1024-P384/HKDF-SHA384/AES-256-GCM"

ENTRY_RE = re.compile(r"^(\d{10})\.(json|sig|bin)\Z")

HPKE_INFO_PREFIX = b"bwc-evidence/1 content-key\x00"
HPKE_SECRET_INFO_PREFIX = b"bwc-evidence/2 segment-secret\x00"
UNIT_KEY_SALT = b"bwc-evidence/2"
UNIT_KEY_INFO_PREFIX = b"bwc-evidence/2 unit-key\x00"


def canonical_json(obj: Mapping[str, Any]) -> bytes:
    """The one byte encoding of a manifest: sorted keys, no spaces, UTF-8, no trailing newline."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def entry_name(seq: int, ext: str) -> str:
    return f"{seq:0{SEQ_DIGITS}d}.{ext}"


def parse_entry_name(name: str) -> tuple[int, str] | None:
    """``(seq, ext)`` for ``NNNNNNNNNN.json|sig|bin``, else None."""
    m = ENTRY_RE.match(name)
    if m is None:
        return None
    return int(m.group(1)), m.group(2)


def unit_aad(
    *,
    device: str,
    key: str,
    seq: int,
    recording: str,
    segment: int,
    unit: int,
    fmt: str,
) -> bytes:
    """AES-GCM associated data of a unit: binds the ciphertext to its place in the chain.

    A ciphertext moved to another entry, recording or device fails to decrypt. ``fmt`` is the
    unit manifest's own format marker (a reader passes what the manifest says).
    """
    return canonical_json(
        {
            "device": device,
            "format": fmt,
            "key": key,
            "recording": recording,
            "segment": segment,
            "seq": seq,
            "unit": unit,
        }
    )


def hpke_info(aad: bytes) -> bytes:
    """``bwc-evidence/1``: HPKE ``info`` for wrapping a unit's content key (the AAD's binding)."""
    return HPKE_INFO_PREFIX + aad


def secret_info(*, device: str, key: str, recording: str, segment: int, secret_id: str) -> bytes:
    """``bwc-evidence/2``: HPKE ``info`` for wrapping a segment secret.

    Binds the wrapped secret to one segment of one recording of one device key, and to the secret
    id its manifests name: a wrapped secret copied into another segment's (or device's) manifest
    does not open there.
    """
    return HPKE_SECRET_INFO_PREFIX + canonical_json(
        {
            "device": device,
            "format": FORMAT_V2,
            "key": key,
            "recording": recording,
            "secret_id": secret_id,
            "segment": segment,
        }
    )


def unit_key_info(aad: bytes) -> bytes:
    """``bwc-evidence/2``: HKDF ``info`` of a unit's key: a fixed prefix, then the unit's AAD."""
    return UNIT_KEY_INFO_PREFIX + aad


def derive_unit_key(segment_secret: bytes | bytearray, aad: bytes) -> bytes:
    """``bwc-evidence/2``: a unit's AES-256-GCM key, HKDF-SHA256 (RFC 5869) of the segment secret.

    ``salt = UNIT_KEY_SALT``, ``info = unit_key_info(aad)``, 32 bytes. The AAD names the unit's
    seq, which no other entry of the chain shares, so no two units get the same key.
    """
    return HKDF(
        algorithm=hashes.SHA256(),
        length=CONTENT_KEY_LEN,
        salt=UNIT_KEY_SALT,
        info=unit_key_info(aad),
    ).derive(segment_secret)


def unit_key_prk(segment_secret: bytes | bytearray) -> bytes:
    """``bwc-evidence/2``, the sealer's fast path: HKDF-Extract (RFC 5869 §2.2) of the segment
    secret, ``HMAC-SHA256(key=UNIT_KEY_SALT, msg=secret)``, computed once per segment."""
    return hmac.digest(UNIT_KEY_SALT, segment_secret, "sha256")


def expand_unit_key(prk: bytes | bytearray, aad: bytes) -> bytes:
    """``bwc-evidence/2``, the sealer's fast path: HKDF-Expand (RFC 5869 §2.3) of ``prk`` for one
    unit. The key is 32 bytes, one SHA-256 block, so it is the first block alone:
    ``T(1) = HMAC-SHA256(key=prk, msg=info || 0x01)``. Equal to ``derive_unit_key`` (tested
    against it); one HMAC per unit instead of a full HKDF, whose Extract step depends only on the
    segment secret."""
    return hmac.digest(prk, unit_key_info(aad) + b"\x01", "sha256")
