"""Golden vectors: the stored store still verifies and decrypts; sealing again reproduces it."""

from __future__ import annotations

import re
from pathlib import Path

from evidence.keys import load_agency_private
from evidence.opener import open_store
from evidence.store import DirectoryStoreReader
from evidence.verify import load_trusted_key, verify_store
from tests.vectors.evidence_store import VECTORS
from tests.vectors.regenerate_evidence import GOLDEN_PAYLOADS, generate

STORE = VECTORS / "store"
# HPKE randomises its encapsulation, so these blobs differ each run; ``prev`` hashes whole
# manifests, so it differs after the first unit. Everything else must match byte for byte.
_VARIABLE = re.compile(rb'"(enc_and_ct|prev)":"[^"]*"')


def _normalise(data: bytes) -> bytes:
    return _VARIABLE.sub(rb'"\1":""', data)


def test_stored_vectors_verify_pinned() -> None:
    trusted = [load_trusted_key(VECTORS / "device-pub.pem")]
    report = verify_store(DirectoryStoreReader(STORE), trusted)
    assert report.intact, report.format_text()
    assert report.pinned
    assert report.entries == 8
    assert report.recordings[0].units == len(GOLDEN_PAYLOADS)


def test_stored_vectors_decrypt_with_stored_agency_key() -> None:
    key = load_agency_private(VECTORS / "agency-key.pem")
    (rec,) = open_store(STORE, key, [load_trusted_key(VECTORS / "device-pub.pem")])
    plain = [b"".join(s.iter_plaintext()) for s in rec.segments]
    assert plain == [
        GOLDEN_PAYLOADS[0] + GOLDEN_PAYLOADS[1],
        GOLDEN_PAYLOADS[2] + GOLDEN_PAYLOADS[3],
    ]


def test_sealing_again_reproduces_the_vectors(tmp_path: Path) -> None:
    generate(tmp_path)
    fresh = tmp_path / "store"
    names = sorted(p.name for p in STORE.iterdir())
    assert names == sorted(p.name for p in fresh.iterdir())
    first_unit_seq = 2
    for name in names:
        golden, again = (STORE / name).read_bytes(), (fresh / name).read_bytes()
        seq = int(name[:10]) if name[:10].isdigit() else -1
        if name.endswith(".bin") or name == "device-pub.pem" or 0 <= seq < first_unit_seq:
            # Payload ciphertexts depend only on key, nonce, AAD and plaintext: deterministic.
            assert golden == again, name
        elif name.endswith(".json"):
            assert _normalise(golden) == _normalise(again), name
