"""Golden vectors: both stored stores verify and decrypt; sealing again reproduces the /2 one; a /2
unit's key derived by stock ``openssl kdf`` (the documented recipe) opens its payload.

The ``bwc-evidence/1`` store (``store``) is a fixed fixture: the sealer writes only /2 now, so it
cannot be sealed again, and it must keep verifying and decrypting unchanged.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from evidence.format import (
    FORMAT_V1,
    FORMAT_V2,
    derive_unit_key,
    expand_unit_key,
    secret_info,
    unit_aad,
    unit_key_prk,
)
from evidence.keys import load_agency_private
from evidence.opener import open_store
from evidence.store import DirectoryStoreReader
from evidence.verify import load_trusted_key, verify_store
from tests.vectors.evidence_store import VECTORS
from tests.vectors.regenerate_evidence import GOLDEN_PAYLOADS, STORE_V1, STORE_V2, generate

DOC = Path(__file__).resolve().parents[2] / "docs" / "evidence-format.md"
STORES = {FORMAT_V1: VECTORS / STORE_V1, FORMAT_V2: VECTORS / STORE_V2}
# HPKE randomises its encapsulation, so these blobs differ each run; ``prev`` hashes whole
# manifests, so it differs after the first unit. Everything else must match byte for byte.
_VARIABLE = re.compile(rb'"(enc_and_ct|prev)":"[^"]*"')


def _normalise(data: bytes) -> bytes:
    return _VARIABLE.sub(rb'"\1":""', data)


def _units(store: Path) -> list[tuple[str, dict]]:  # type: ignore[type-arg]
    out = []
    for p in sorted(store.glob("[0-9]*.json")):
        m = json.loads(p.read_bytes())
        if m["type"] == "unit":
            out.append((p.name[:10], m))
    return out


@pytest.mark.parametrize("fmt", sorted(STORES))
def test_stored_vectors_verify_pinned(fmt: str) -> None:
    trusted = [load_trusted_key(VECTORS / "device-pub.pem")]
    report = verify_store(DirectoryStoreReader(STORES[fmt]), trusted)
    assert report.intact, report.format_text()
    assert report.pinned
    assert report.entries == 8
    assert report.recordings[0].units == len(GOLDEN_PAYLOADS)
    assert {json.loads(p.read_bytes())["format"] for p in STORES[fmt].glob("*.json")} == {fmt}


@pytest.mark.parametrize("fmt", sorted(STORES))
def test_stored_vectors_decrypt_with_stored_agency_key(fmt: str) -> None:
    key = load_agency_private(VECTORS / "agency-key.pem")
    (rec,) = open_store(STORES[fmt], key, [load_trusted_key(VECTORS / "device-pub.pem")])
    plain = [b"".join(s.iter_plaintext()) for s in rec.segments]
    assert plain == [
        GOLDEN_PAYLOADS[0] + GOLDEN_PAYLOADS[1],
        GOLDEN_PAYLOADS[2] + GOLDEN_PAYLOADS[3],
    ]


def test_sealing_again_reproduces_the_v2_vectors(tmp_path: Path) -> None:
    generate(tmp_path)
    golden_store, fresh = STORES[FORMAT_V2], tmp_path / STORE_V2
    names = sorted(p.name for p in golden_store.iterdir())
    assert names == sorted(p.name for p in fresh.iterdir())
    first_unit_seq = 2
    for name in names:
        golden, again = (golden_store / name).read_bytes(), (fresh / name).read_bytes()
        seq = int(name[:10]) if name[:10].isdigit() else -1
        if name.endswith(".bin") or name == "device-pub.pem" or 0 <= seq < first_unit_seq:
            # Payload ciphertexts depend only on the segment secret, nonce, AAD and plaintext.
            assert golden == again, name
        elif name.endswith(".json"):
            assert _normalise(golden) == _normalise(again), name


def test_v2_units_of_a_segment_share_one_wrapped_secret_and_not_across_segments() -> None:
    units = [m for _seq, m in _units(STORES[FORMAT_V2])]
    by_segment: dict[int, set[tuple[str, str]]] = {}
    for m in units:
        wrapped = json.dumps(m["recipients"], sort_keys=True)
        by_segment.setdefault(m["segment"], set()).add((m["secret_id"], wrapped))
    assert [len(v) for v in by_segment.values()] == [1, 1]
    (a,), (b,) = by_segment.values()
    assert a[0] != b[0] and a[1] != b[1]


def _segment_secret(m: dict) -> bytes:  # type: ignore[type-arg]
    key = load_agency_private(VECTORS / "agency-key.pem")
    info = secret_info(
        device=m["device"],
        key=m["key"],
        recording=m["recording"],
        segment=m["segment"],
        secret_id=m["secret_id"],
    )
    return key.unwrap(base64.b64decode(m["recipients"][0]["enc_and_ct"]), info)


def hkdf_recipe() -> str:
    found = re.search(r"```sh hkdf-recipe\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    assert found is not None, "the hkdf-recipe block is missing from docs/evidence-format.md"
    return found.group(1)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_openssl_kdf_recipe_derives_each_v2_unit_key_independently() -> None:
    store = STORES[FORMAT_V2]
    units = _units(store)
    assert len(units) == len(GOLDEN_PAYLOADS)
    for (entry, m), plain in zip(units, GOLDEN_PAYLOADS, strict=True):
        secret = _segment_secret(m)
        got = subprocess.run(
            ["sh", "-c", hkdf_recipe()],
            cwd=store,
            env={"PATH": "/usr/bin:/bin", "E": entry, "SECRET": secret.hex()},
            capture_output=True,
            text=True,
            check=False,
        )
        assert got.returncode == 0, got.stderr
        stock_key = bytes.fromhex(got.stdout.strip())
        aad = unit_aad(
            device=m["device"],
            key=m["key"],
            seq=m["seq"],
            recording=m["recording"],
            segment=m["segment"],
            unit=m["unit"],
            fmt=FORMAT_V2,
        )
        assert stock_key == derive_unit_key(secret, aad), entry
        # The stock-tool key opens the payload with plain AES-256-GCM: nothing else is hidden.
        nonce = bytes.fromhex(m["payload"]["nonce"])
        assert AESGCM(stock_key).decrypt(nonce, (store / f"{entry}.bin").read_bytes(), aad) == plain


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_openssl_kdf_recipe_refuses_a_v1_unit() -> None:
    entry, _m = _units(STORES[FORMAT_V1])[0]
    got = subprocess.run(
        ["sh", "-c", hkdf_recipe()],
        cwd=STORES[FORMAT_V1],
        env={"PATH": "/usr/bin:/bin", "E": entry, "SECRET": "00" * 32},
        capture_output=True,
        text=True,
        check=False,
    )
    assert got.returncode != 0 and not got.stdout.strip()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
@pytest.mark.parametrize("fmt", sorted(STORES))
def test_stock_tool_recipe_checks_both_versions(fmt: str) -> None:
    found = re.search(
        r"```sh evidence-recipe\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL
    )
    assert found is not None
    store = STORES[fmt]
    fp = json.loads((store / "0000000000.json").read_bytes())["key"]
    got = subprocess.run(
        ["sh", "-c", found.group(1)],
        cwd=store,
        env={"PATH": "/usr/bin:/bin", "FP": fp},
        capture_output=True,
        text=True,
        check=False,
    )
    assert got.returncode == 0, got.stderr
    assert "chain of 8 entries checked" in got.stdout


@settings(max_examples=200)
@given(secret=st.binary(min_size=32, max_size=32), aad=st.binary(max_size=400))
def test_the_sealers_one_hmac_per_unit_is_hkdf(secret: bytes, aad: bytes) -> None:
    """The sealer derives unit keys as HKDF-Expand of a per-segment HKDF-Extract (one HMAC per
    unit); readers use the full HKDF of ``cryptography``. Two implementations, the same bytes."""
    assert expand_unit_key(unit_key_prk(bytearray(secret)), aad) == derive_unit_key(secret, aad)
