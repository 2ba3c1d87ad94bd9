"""Regenerate the golden evidence vectors in tests/vectors/evidence/ (only when the format changes).

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

GOLDEN_SEED = b"bwc-evidence/1 golden vectors"
AGENCY_SECRET = 0x0123456789ABCDEF
GOLDEN_PAYLOADS = [b"unit zero: " + bytes(range(64)), b"unit one", b"", b"unit three " * 20]


def generate(directory: Path) -> BuiltStore:
    """Seal the golden store into ``directory``/store with fixed keys and randomness."""
    directory.mkdir(parents=True, exist_ok=True)
    pub, _ = write_agency_pair(directory, AGENCY_SECRET)
    key = fixed_device_key(1)
    (directory / "device-pub.pem").write_bytes(key.public_pem())
    return build_store(
        directory / "store", key, [pub], GOLDEN_PAYLOADS, rng=CountingRng(GOLDEN_SEED)
    )


def main() -> int:
    if (VECTORS / "store").exists():
        shutil.rmtree(VECTORS / "store")
    generate(VECTORS)
    print(f"golden vectors written to {VECTORS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
