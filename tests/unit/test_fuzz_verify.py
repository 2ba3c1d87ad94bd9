"""Fuzz the verifier and the opener with hostile manifests: any field of any entry replaced by
any JSON value (huge integers, deep nesting, wrong types, NaN), files swapped for random bytes,
names far out of range. The only outcomes allowed are a report with findings, or
``IntegrityError`` from the opener; never another exception, never a hang, never "intact"."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evidence.format import ZERO_HASH, canonical_json
from evidence.keys import AgencyPrivateKey, AgencyPublicKey
from evidence.opener import open_store
from evidence.store import DirectoryStoreReader
from evidence.verify import verify_store
from hal.errors import IntegrityError, RefusedError
from tests.vectors.evidence_store import build_store, fixed_device_key, write_agency_pair

FUZZ = settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

HUGE = st.sampled_from([10**30, -(10**30), 2**63, -(2**63) - 1, 10**4000, 0, -1])
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    HUGE,
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["", "0" * 64, "../../etc/passwd", "\u202e", "x" * 5000]),
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def agency(tmp_path_factory: pytest.TempPathFactory) -> tuple[AgencyPublicKey, AgencyPrivateKey]:
    return write_agency_pair(tmp_path_factory.mktemp("agency"), 0xF00D)


@pytest.fixture(scope="module")
def pristine(
    tmp_path_factory: pytest.TempPathFactory, agency: tuple[AgencyPublicKey, AgencyPrivateKey]
) -> Path:
    path = tmp_path_factory.mktemp("pristine") / "ev"
    build_store(path, fixed_device_key(3), [agency[0]], [b"\x47" * 376, b"\x47" * 188, b"\x47"])
    return path


def _paths(manifest: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path in a manifest (dict keys and list indexes), the root's fields first."""
    out: list[tuple[Any, ...]] = []
    if isinstance(manifest, dict):
        for k, v in manifest.items():
            out.append((*prefix, k))
            out += _paths(v, (*prefix, k))
    elif isinstance(manifest, list):
        for i, v in enumerate(manifest):
            out.append((*prefix, i))
            out += _paths(v, (*prefix, i))
    return out


def _set(obj: Any, path: tuple[Any, ...], value: Any) -> None:
    for step in path[:-1]:
        obj = obj[step]
    obj[path[-1]] = value


def _dump(obj: Any) -> bytes:
    # allow_nan: a hostile writer is not bound by strict JSON; Python's reader accepts NaN.
    return json.dumps(obj, allow_nan=True).encode()


def _check(store: Path, agency_key: AgencyPrivateKey) -> None:
    report = verify_store(DirectoryStoreReader(store), unpinned=True)
    assert not report.intact
    assert report.all_findings
    with pytest.raises(IntegrityError):
        for rec in open_store(store, agency_key, unpinned=True):
            for seg in rec.segments:
                seg.plaintext()


@FUZZ
@given(data=st.data())
def test_any_field_any_value_gives_findings(
    data: st.DataObject, pristine: Path, agency: tuple[AgencyPublicKey, AgencyPrivateKey]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "ev"
        shutil.copytree(pristine, store)
        victim = data.draw(st.sampled_from(sorted(store.glob("[0-9]*.json"))), label="entry")
        manifest = json.loads(victim.read_bytes())
        path = data.draw(st.sampled_from(_paths(manifest)), label="field")
        value = data.draw(JSON_VALUES, label="value")
        _set(manifest, path, value)
        mutated = _dump(manifest)
        if mutated == victim.read_bytes():
            return
        victim.write_bytes(mutated)
        _check(store, agency[1])


@FUZZ
@given(data=st.data())
def test_signed_hostile_manifests_never_crash_the_verifier(
    data: st.DataObject, pristine: Path, agency: tuple[AgencyPublicKey, AgencyPrivateKey]
) -> None:
    """A holder of the device key (or buggy firmware) signs and chains hostile values: the
    signature checks pass, so the semantic checks must cope with every type and size."""
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "ev"
        shutil.copytree(pristine, store)
        entries = sorted(store.glob("[0-9]*.json"))
        victim = data.draw(st.sampled_from(entries), label="entry")
        manifest = json.loads(victim.read_bytes())
        path = data.draw(
            st.sampled_from([p for p in _paths(manifest) if p[0] not in ("prev", "key")]),
            label="field",
        )
        value = data.draw(JSON_VALUES, label="value")
        _set(manifest, path, value)
        try:
            victim.write_bytes(canonical_json(manifest))
        except ValueError:
            return  # NaN/inf: the sealer cannot sign it either (covered unsigned above)
        _rechain(store, entries)
        report = verify_store(DirectoryStoreReader(store), unpinned=True)
        assert report.intact == (not report.all_findings)
        try:
            for rec in open_store(store, agency[1], unpinned=True):
                for seg in rec.segments:
                    seg.plaintext()
        except (IntegrityError, RefusedError):
            pass  # both are one clean line and exit 1 at the CLI


def _rechain(store: Path, entries: list[Path]) -> None:
    """Re-link ``prev`` hashes and re-sign every entry with the device key."""
    key = fixed_device_key(3)
    prev = ZERO_HASH
    for path in entries:
        m = json.loads(path.read_bytes())
        m["prev"] = prev
        data = canonical_json(m)
        path.write_bytes(data)
        path.with_suffix(".sig").write_bytes(key.sign(data))
        prev = hashlib.sha256(data).hexdigest()


@FUZZ
@given(
    data=st.data(),
    junk=st.one_of(
        st.binary(max_size=2048),
        st.sampled_from(
            [b"[" * 100_000, b'{"a":' * 50_000, b"9" * 100_000, b"{}", b"null", b"\xff\xfe"]
        ),
    ),
)
def test_any_file_replaced_by_junk_gives_findings(
    data: st.DataObject,
    junk: bytes,
    pristine: Path,
    agency: tuple[AgencyPublicKey, AgencyPrivateKey],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "ev"
        shutil.copytree(pristine, store)
        victim = data.draw(st.sampled_from(sorted(store.glob("[0-9]*.*"))), label="file")
        if victim.read_bytes() == junk:
            return
        victim.write_bytes(junk)
        _check(store, agency[1])


@FUZZ
@given(seq=st.integers(min_value=6, max_value=9_999_999_999), body=st.binary(max_size=64))
def test_an_entry_far_beyond_the_head_is_one_finding_not_a_hang(
    seq: int, body: bytes, pristine: Path, agency: tuple[AgencyPublicKey, AgencyPrivateKey]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "ev"
        shutil.copytree(pristine, store)
        (store / f"{seq:010d}.json").write_bytes(body)
        _check(store, agency[1])
