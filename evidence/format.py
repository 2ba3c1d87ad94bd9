"""Fixed names and byte encodings of the evidence format (bwc-evidence/1), for sealer and verifier.

Pure functions only: no IO, no randomness. A change here changes the format and its version marker.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

FORMAT = "bwc-evidence/1"
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

SUITE_P384 = "DHKEM(P-384,HKDF-SHA384)/HKDF-SHA384/AES-256-GCM"
SUITE_MLKEM1024_P384 = "MLKEM1024-P384/HKDF-SHA384/AES-256-GCM"

ENTRY_RE = re.compile(r"^(\d{10})\.(json|sig|bin)$")

HPKE_INFO_PREFIX = b"bwc-evidence/1 content-key\x00"


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


def unit_aad(*, device: str, key: str, seq: int, recording: str, segment: int, unit: int) -> bytes:
    """AES-GCM associated data of a unit: binds the ciphertext to its place in the chain.

    A ciphertext moved to another entry, recording or device fails to decrypt.
    """
    return canonical_json(
        {
            "device": device,
            "format": FORMAT,
            "key": key,
            "recording": recording,
            "segment": segment,
            "seq": seq,
            "unit": unit,
        }
    )


def hpke_info(aad: bytes) -> bytes:
    """HPKE ``info`` for wrapping a unit's content key: the same binding as the AAD."""
    return HPKE_INFO_PREFIX + aad
