"""Attacks on `bwc-evidence/2`'s key material: wrapped segment secrets moved between segments,
manifests that claim another place than the one sealed, a secret id reused across segments, and a
chain that changes format version mid-life (/1 then /2), which must verify and export.

Every alteration is re-signed and re-chained with the device key (``rechain``), so the signature
and chain checks pass and only the format's own bindings can catch it.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import av
import pytest

from evidence.findings import Code
from evidence.format import FORMAT_V1, FORMAT_V2
from evidence.keys import load_agency_private
from evidence.opener import decrypt_unit
from evidence.store import DirectoryStoreReader
from hal.errors import IntegrityError
from tests.adversarial.stores import BOOT_B, Attackable, bwc, make_store, verify
from tests.unit.test_evidence_export import make_ts
from tests.vectors.evidence_store import (
    VECTORS,
    build_store,
    fixed_device_key,
    rechain,
    rewrite_as_v1,
    write_agency_pair,
)


@pytest.fixture(scope="module")
def video() -> list[bytes]:
    """Two segments' worth of real H.264 MPEG-TS, each split into two units."""
    out = []
    for start in (0, 50):
        ts = make_ts(50, start)
        cut = len(ts) // 2 // 188 * 188
        out += [ts[:cut], ts[cut:]]
    return out


@pytest.fixture
def unit(tmp_path: Path, video: list[bytes]) -> Attackable:
    return make_store(tmp_path, video)


def manifests(store: Path) -> dict[int, dict[str, Any]]:
    return {int(p.name[:10]): json.loads(p.read_bytes()) for p in sorted(store.glob("[0-9]*.json"))}


def units_of(store: Path, segment: int) -> list[int]:
    return [
        seq
        for seq, m in manifests(store).items()
        if m["type"] == "unit" and m["segment"] == segment
    ]


def export(capsys: pytest.CaptureFixture[str], a: Attackable, out: Path) -> tuple[int, str]:
    got = bwc(capsys, "export", a.store, "--key", a.agency_key, "--out", out, *a.trust)
    return got.code, got.out + got.err


def test_pristine_v2_store_verifies_and_exports(
    unit: Attackable, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert {m["format"] for m in manifests(unit.store).values()} == {FORMAT_V2}
    assert verify(capsys, unit.store, *unit.trust).code == 0
    code, text = export(capsys, unit, tmp_path / "out")
    assert code == 0, text


def test_secret_wrapped_for_another_segment_does_not_open(
    unit: Attackable, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Segment 1's units all carry segment 0's wrapped secret under their own secret id: nothing
    is inconsistent without the agency key, but the HPKE info names segment 1 and its id, so the
    blob does not open, and export refuses with a finding naming it."""
    all_m = manifests(unit.store)
    donor = all_m[units_of(unit.store, 0)[0]]["recipients"]
    victims = set(units_of(unit.store, 1))

    def swap(seq: int, m: dict[str, Any]) -> dict[str, Any]:
        if seq in victims:
            m["recipients"] = copy.deepcopy(donor)
        return m

    rechain(unit.store, unit.key, swap)
    assert verify(capsys, unit.store, *unit.trust).code == 0  # not checkable without the key
    code, text = export(capsys, unit, tmp_path / "out")
    assert code == 1 and Code.KEY_UNDECRYPTABLE in text, text
    assert not list((tmp_path / "out").glob("*.mp4")) if (tmp_path / "out").exists() else True


def test_secret_wrapped_for_another_segment_in_one_unit_is_a_verify_finding(
    unit: Attackable, capsys: pytest.CaptureFixture[str]
) -> None:
    all_m = manifests(unit.store)
    donor = all_m[units_of(unit.store, 0)[0]]["recipients"]
    victim = units_of(unit.store, 1)[1]

    def swap(seq: int, m: dict[str, Any]) -> dict[str, Any]:
        if seq == victim:
            m["recipients"] = copy.deepcopy(donor)
        return m

    rechain(unit.store, unit.key, swap)
    got = verify(capsys, unit.store, *unit.trust)
    assert got.code == 1 and got.codes == {Code.SECRET_RECIPIENTS_DIFFER}, got.out


def test_secret_id_reused_across_segments_is_a_finding(
    unit: Attackable, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Segment 1 takes segment 0's whole key material (secret id and wrapped secret): the
    verifier sees one secret named by two segments; export could not open it either."""
    all_m = manifests(unit.store)
    donor = all_m[units_of(unit.store, 0)[0]]
    victims = set(units_of(unit.store, 1))

    def reuse(seq: int, m: dict[str, Any]) -> dict[str, Any]:
        if seq in victims:
            m["recipients"] = copy.deepcopy(donor["recipients"])
            m["secret_id"] = donor["secret_id"]
        return m

    rechain(unit.store, unit.key, reuse)
    got = verify(capsys, unit.store, *unit.trust)
    assert got.code == 1 and got.codes == {Code.SECRET_REUSED}, got.out
    m = manifests(unit.store)[min(victims)]
    with pytest.raises(IntegrityError) as err:
        decrypt_unit(DirectoryStoreReader(unit.store), m, load_agency_private(unit.agency_key))
    assert err.value.code == Code.KEY_UNDECRYPTABLE


@pytest.mark.parametrize(
    ("field", "code"),
    [
        ("segment", Code.KEY_UNDECRYPTABLE),  # the secret's HPKE info names the segment
        ("unit", Code.PAYLOAD_UNDECRYPTABLE),  # the unit key and the AAD name the unit
        ("recording", Code.KEY_UNDECRYPTABLE),
        ("device", Code.KEY_UNDECRYPTABLE),  # another device's manifest
        ("key", Code.KEY_UNDECRYPTABLE),  # another device key's manifest
        ("secret_id", Code.KEY_UNDECRYPTABLE),
    ],
)
def test_manifest_claiming_another_place_than_sealed_does_not_decrypt(
    unit: Attackable, field: str, code: Code
) -> None:
    """The crypto binding alone, below the verifier's order and key checks: a manifest whose
    segment, unit, recording, device, device key or secret id differs from what its unit was
    sealed under does not open."""
    seq = units_of(unit.store, 1)[1]
    m = manifests(unit.store)[seq]
    m[field] = {
        "segment": 0,
        "unit": 0,
        "recording": "rec-9999",
        "device": "bwc-test-0002",
        "key": "ab" * 32,
        "secret_id": "cd" * 16,
    }[field]
    with pytest.raises(IntegrityError) as err:
        decrypt_unit(DirectoryStoreReader(unit.store), m, load_agency_private(unit.agency_key))
    assert err.value.code == code


def test_one_lost_manifest_leaves_the_rest_of_its_segment_readable(unit: Attackable) -> None:
    seqs = units_of(unit.store, 0)
    (unit.store / f"{seqs[0]:010d}.json").unlink()
    m = manifests(unit.store)[seqs[1]]
    key = load_agency_private(unit.agency_key)
    assert decrypt_unit(DirectoryStoreReader(unit.store), m, key)


def test_mixed_v1_then_v2_chain_verifies_and_exports(
    tmp_path: Path, video: list[bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    """A unit that recorded under /1 firmware, then was updated to /2: one chain, both formats,
    decided per manifest."""
    a = make_store(tmp_path, video[:2])
    agency = write_agency_pair(tmp_path / "agency", 0xAD7E)
    head = max(manifests(a.store))
    rewrite_as_v1(a.store, a.key, agency, head)
    build_store(a.store, a.key, [a.agency], video[2:], boot_id=BOOT_B, recording="rec-0002")
    formats = [m["format"] for _seq, m in sorted(manifests(a.store).items())]
    assert formats == [FORMAT_V1] * (head + 1) + [FORMAT_V2] * (len(formats) - head - 1)
    got = verify(capsys, a.store, *a.trust)
    assert got.code == 0, got.out
    assert len(got.report["recordings"]) == 2
    assert got.report["formats"] == [
        {"format": FORMAT_V1, "first_seq": 0, "last_seq": head},
        {"format": FORMAT_V2, "first_seq": head + 1, "last_seq": len(formats) - 1},
    ]
    text = bwc(capsys, "verify", a.store, *a.trust).out
    assert f"{FORMAT_V1}: entries 0-{head}" in text
    code, text = export(capsys, a, tmp_path / "out")
    assert code == 0, text
    for rid in ("rec-0001", "rec-0002"):
        with av.open(str(tmp_path / "out" / f"{rid}.mp4")) as container:
            assert sum(1 for _ in container.demux(video=0) if _.size) == 50
    # The evidence report decrypts through the same opener: one page per recording.
    rep = bwc(
        capsys, "report", a.store, "--key", a.agency_key, *a.trust, "--out", tmp_path / "pages"
    )
    assert rep.code == 0, rep.err
    assert len(list((tmp_path / "pages").glob("*.html"))) == 2


def test_v1_content_key_moved_to_another_unit_is_named_as_such(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """/1 reads unchanged, and a /1 wrapped content key that does not open is reported as
    `key-undecryptable` (it used to fall through to `media-undecodable`)."""
    store = tmp_path / "store"
    shutil.copytree(VECTORS / "store", store)
    all_m = manifests(store)
    donor, victim = [seq for seq, m in all_m.items() if m["type"] == "unit"][:2]

    def swap(seq: int, m: dict[str, Any]) -> dict[str, Any]:
        if seq == victim:
            m["recipients"] = all_m[donor]["recipients"]
        return m

    rechain(store, fixed_device_key(1), swap)
    got = bwc(
        capsys,
        "export",
        store,
        "--key",
        VECTORS / "agency-key.pem",
        "--out",
        tmp_path / "out",
        "--trust",
        VECTORS / "device-pub.pem",
    )
    assert got.code == 1 and Code.KEY_UNDECRYPTABLE in got.err, got.err
