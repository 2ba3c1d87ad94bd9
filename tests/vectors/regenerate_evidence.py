"""Regenerate the golden evidence vectors in tests/vectors/evidence/ (only when the format changes).

Writes ``store-v2`` (``bwc-evidence/2``, what the sealer writes). The ``bwc-evidence/1`` store
(``store``) is a fixed fixture: the sealer no longer writes /1, so it cannot be sealed again; it
must still verify and decrypt. Both use the same fixed device and agency keys.

Run: .venv/bin/python -m tests.vectors.regenerate_evidence
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from tests.vectors.evidence_store import (
    VECTORS,
    BuiltStore,
    CountingRng,
    build_store,
    fixed_device_key,
    write_agency_pair,
)

GOLDEN_SEED = b"bwc-evidence/2 golden vectors"
STORE_V1 = "store"
STORE_V2 = "store-v2"
AGENCY_SECRET = 0x0123456789ABCDEF
GOLDEN_PAYLOADS = [b"unit zero: " + bytes(range(64)), b"unit one", b"", b"unit three " * 20]


def generate(directory: Path) -> BuiltStore:
    """Seal the golden /2 store into ``directory``/store-v2 with fixed keys and randomness."""
    directory.mkdir(parents=True, exist_ok=True)
    pub, _ = write_agency_pair(directory, AGENCY_SECRET)
    key = fixed_device_key(1)
    (directory / "device-pub.pem").write_bytes(key.public_pem())
    return build_store(
        directory / STORE_V2, key, [pub], GOLDEN_PAYLOADS, rng=CountingRng(GOLDEN_SEED)
    )


def main() -> int:
    if (VECTORS / STORE_V2).exists():
        shutil.rmtree(VECTORS / STORE_V2)
    generate(VECTORS)
    print(f"golden vectors written to {VECTORS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
