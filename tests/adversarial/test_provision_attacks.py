"""Attacks on provisioning: key files that carry private key material, several keys or the wrong
type; re-provisioning while any chain entry (events too) is not offloaded; and a re-provision
under a new identity, which must archive the old chain (never deleting it) and start a new one
that names it, with both chains verifying."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from evidence.keys import generate_agency_keys, load_agency_public
from evidence.sealing import JsonValue
from evidence.store import DirectoryStoreReader
from evidence.verify import verify_store
from firmware.cli import main
from firmware.evidence_access import open_unit_sealer
from firmware.identity import load_assignment, read_profile
from firmware.layout import UnitLayout
from firmware.provision import archive_chain, previous_identity, unoffloaded_evidence
from hal.software_key import SoftwareDeviceKey
from tests.offload_store import StepClock, chain_events, provisioned, store_files

SPKI = serialization.PublicFormat.SubjectPublicKeyInfo
PEM = serialization.Encoding.PEM
PKCS8 = serialization.PrivateFormat.PKCS8
NOENC = serialization.NoEncryption()


def _provision(
    capsys: pytest.CaptureFixture[str], device: Path, agency: Path, *extra: str, dev_id: str = "X"
) -> tuple[int, str]:
    capsys.readouterr()
    code = main(
        [
            "provision",
            str(device),
            "--agency-pub",
            str(agency),
            "--device-id",
            dev_id,
            "--officer",
            "PC-1",
            *extra,
        ]
    )
    return code, capsys.readouterr().err


@pytest.fixture
def agency(tmp_path: Path) -> tuple[Path, Path]:
    """(agency-key.pem, agency-pub.pem)."""
    return generate_agency_keys(tmp_path / "agency")


def _release_pair() -> tuple[bytes, bytes]:
    k = ed25519.Ed25519PrivateKey.generate()
    return k.private_bytes(PEM, PKCS8, NOENC), k.public_key().public_bytes(PEM, SPKI)


AgencyCase = Callable[[bytes, bytes], bytes]

AGENCY_ATTACKS: dict[str, AgencyCase] = {
    "the agency private key itself": lambda priv, pub: priv,
    "public key followed by the private key": lambda priv, pub: pub + priv,
    "private key hidden before the public key": lambda priv, pub: priv + b"\n" + pub,
    "private block under an odd label": lambda priv, pub: (
        pub
        + priv.replace(b"BEGIN PRIVATE KEY", b"BEGIN X448 PRIVATE KEY").replace(
            b"END PRIVATE KEY", b"END X448 PRIVATE KEY"
        )
    ),
    "private key bytes appended raw": lambda priv, pub: (
        pub
        + serialization.load_pem_private_key(priv, None).private_bytes(
            serialization.Encoding.DER, PKCS8, NOENC
        )
    ),
    "private key relabelled as PUBLIC KEY": lambda priv, pub: priv.replace(b"PRIVATE", b"PUBLIC"),
    "two agency public keys": lambda priv, pub: pub + pub,
    "an Ed25519 (device or release) key": lambda priv, pub: _release_pair()[1],
    "a P-256 key": lambda priv, pub: (
        ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(PEM, SPKI)
    ),
    "a certificate-like block": lambda priv, pub: pub.replace(b"PUBLIC KEY", b"CERTIFICATE"),
}


@pytest.mark.parametrize("name", sorted(AGENCY_ATTACKS))
def test_agency_pub_that_is_not_exactly_one_public_key_is_refused(
    name: str, tmp_path: Path, agency: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "given.pem"
    bad.write_bytes(AGENCY_ATTACKS[name](agency[0].read_bytes(), agency[1].read_bytes()))
    code, err = _provision(capsys, tmp_path / "unit", bad)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "--agency-pub" in err
    assert not (tmp_path / "unit").exists()  # refused before anything was written


RELEASE_ATTACKS: dict[str, Callable[[bytes, bytes], bytes]] = {
    "the release private key": lambda priv, pub: priv,
    "public followed by private": lambda priv, pub: pub + priv,
    "two release keys": lambda priv, pub: pub + _release_pair()[1],
    "a P-384 key": lambda priv, pub: (
        ec.generate_private_key(ec.SECP384R1()).public_key().public_bytes(PEM, SPKI)
    ),
}


@pytest.mark.parametrize("name", sorted(RELEASE_ATTACKS))
def test_release_pub_that_is_not_exactly_one_ed25519_key_is_refused(
    name: str, tmp_path: Path, agency: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "release.pem"
    bad.write_bytes(RELEASE_ATTACKS[name](*_release_pair()))
    code, err = _provision(capsys, tmp_path / "unit", agency[1], "--release-pub", str(bad))
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "--release-pub" in err, err
    assert not (tmp_path / "unit").exists()


@pytest.mark.parametrize("kem", ["p384", "mlkem1024-p384"])
def test_unit_stores_reserialised_keys_never_the_given_bytes(
    kem: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, pub = generate_agency_keys(tmp_path / "agency", kem)
    _, release_pub = _release_pair()
    # Accepted variants of a good file: CRLF line ends and blank lines around the blocks.
    given = tmp_path / "given.pem"
    given.write_bytes(b"\r\n" + pub.read_bytes().replace(b"\n", b"\r\n") + b"\r\n\r\n")
    given_release = tmp_path / "release.pem"
    given_release.write_bytes(b"\n\n" + release_pub + b"\n")
    unit = tmp_path / "unit"
    code, err = _provision(capsys, unit, given, "--release-pub", str(given_release))
    assert code == 0, err
    layout = UnitLayout(unit)
    (installed,) = layout.agency_dir.glob("*.pem")
    assert installed.read_bytes() != given.read_bytes()
    assert installed.read_bytes() == load_agency_public(pub).spki_pem  # the parsed key, re-written
    assert load_agency_public(installed).fingerprint == load_agency_public(pub).fingerprint
    assert layout.release_pub.read_bytes() == release_pub
    for path in layout.identity.rglob("*.pem"):
        if path != layout.device_key:
            assert b"PRIVATE" not in path.read_bytes(), path


# ------------------------------------------------------------------ re-provisioning


def _session(layout: UnitLayout, *events: tuple[str, dict[str, JsonValue]]) -> None:
    """One short session of the unit writing ``events`` and a closing shutdown."""
    sealer = open_unit_sealer(
        layout,
        read_profile(layout.profile),
        load_assignment(layout),
        SoftwareDeviceKey.load(layout.device_key),
        "simulated",
    )
    clock = StepClock()
    for kind, fields in events:
        sealer.event(kind, fields, mono_us=clock.monotonic_us(), utc_us=clock.utc_us())
    sealer.event(
        "shutdown", {"reason": "test"}, mono_us=clock.monotonic_us(), utc_us=clock.utc_us()
    )


def _offload(layout: UnitLayout, share: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    code = main(
        ["offload", "--device", str(layout.root), "--set", f"offload.target={share.as_uri()}"]
    )
    assert code == 0, capsys.readouterr().err


def _raw_pub(path: Path) -> bytes:
    key = serialization.load_pem_public_key(path.read_bytes())
    assert isinstance(key, ed25519.Ed25519PublicKey)
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def test_event_not_yet_offloaded_blocks_reprovisioning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The session-note gap: every payload offloaded and freed, but a later signed event (here a
    stealth toggle) never reached the target. A .bin-only check let this through."""
    layout = provisioned(tmp_path)
    _offload(layout, tmp_path / "share", capsys)
    assert not list(layout.evidence.glob("*.bin"))
    _session(layout, ("stealth", {"on": True}))
    stealth_seq = max(int(p.stem) for p in layout.evidence.glob("*.json")) - 1
    before = store_files(layout.root)
    agency_pub = tmp_path / "agency" / "agency-pub.pem"
    code, err = _provision(capsys, layout.root, agency_pub, dev_id="unit-8")
    assert code == 2 and "not yet offloaded" in err, err
    # The stealth event and the shutdown before it (no longer the chain's close) are pending.
    pending = unoffloaded_evidence(layout)
    assert f"{stealth_seq:010d}.json" in pending and f"{stealth_seq - 1:010d}.json" in pending
    assert not any(n.endswith(".bin") for n in pending)
    assert len(err.strip().splitlines()) == 1
    assert store_files(layout.root) == before
    # Same identity: refused just the same (the chain would continue, but the agency lacks it).
    code, err = _provision(capsys, layout.root, agency_pub, dev_id="unit-7")
    assert code == 2 and "not yet offloaded" in err


def test_fresh_provisioning_record_counts_as_evidence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], agency: tuple[Path, Path]
) -> None:
    unit = tmp_path / "unit"
    assert _provision(capsys, unit, agency[1], dev_id="unit-1")[0] == 0
    code, err = _provision(capsys, unit, agency[1], dev_id="unit-2")
    assert code == 2 and "not yet offloaded" in err, err
    # The store's key and the signed `provisioned` event are evidence the agency lacks.
    assert unoffloaded_evidence(UnitLayout(unit)) == [
        "device-pub.pem",
        "0000000000.sig",
        "0000000000.json",
    ]


def test_new_identity_archives_the_old_chain_and_names_it_in_the_new_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = provisioned(tmp_path)  # unit-7, two recordings
    share = tmp_path / "share"
    _offload(layout, share, capsys)
    old_files = store_files(layout.evidence)
    old_pub = layout.device_pub.read_bytes()
    old_raw = _raw_pub(layout.device_pub)
    old_fp = SoftwareDeviceKey.load(layout.device_key).fingerprint()
    old_report = verify_store(
        DirectoryStoreReader(layout.evidence), trusted_keys=[old_raw], allow_freed=True
    )
    assert old_report.intact, old_report.all_findings

    agency_pub = tmp_path / "agency" / "agency-pub.pem"
    code, err = _provision(capsys, layout.root, agency_pub, dev_id="unit-8")
    assert code == 0, err
    archive = layout.root / "evidence-archive" / "unit-7-1"
    assert str(archive) in err
    # The archive is the old store, whole and byte for byte.
    assert store_files(archive) == old_files
    # A new identity: a new key, and a new chain starting at entry 0.
    assert layout.device_pub.read_bytes() != old_pub
    new_raw = _raw_pub(layout.device_pub)
    (prov,) = chain_events(layout.evidence, "provisioned")
    assert json.loads((layout.evidence / "0000000000.json").read_bytes())["kind"] == "provisioned"
    prev = prov["previous"]
    assert prev == {
        "device_id": "unit-7",
        "device_key_fingerprint": old_fp,
        "chain_head_seq": old_report.head_seq,
        "chain_head_sha256": old_report.head_hash,
        "archive": "evidence-archive/unit-7-1",
    }
    # Both chains verify, each pinned to its own key; the archive up to the head the new names.
    archived = verify_store(
        DirectoryStoreReader(archive),
        trusted_keys=[old_raw],
        expected_heads=[(prev["chain_head_seq"], prev["chain_head_sha256"])],
        allow_freed=True,  # the unit's own (archived) store: its payloads were offloaded
    )
    assert archived.intact, archived.all_findings
    new = verify_store(
        DirectoryStoreReader(layout.evidence), trusted_keys=[new_raw], allow_freed=True
    )
    assert new.intact, new.all_findings
    assert new.device == "unit-8"
    # verify explains the hand-over: the old identity, its key and where its chain went.
    (handover,) = new.handovers
    assert "unit-7" in handover and prev["device_key_fingerprint"] in handover
    # The new store is offloaded into the new identity's own folder beside the old one.
    _offload(layout, share, capsys)
    assert (share / "unit-8" / "0000000000.json").is_file()
    # Every file of the old chain reached the target, up to its closing shutdown (which
    # `bwc offload` sends, unreceipted, after writing it).
    assert set(old_files) <= set(store_files(share / "unit-7"))
    head_name = f"{old_report.head_seq:010d}.json"
    assert json.loads(old_files[head_name])["kind"] == "shutdown"
    old_pub_at_target = (share / "unit-7" / "device-pub.pem").read_bytes()
    assert old_pub_at_target == old_pub


def test_archives_are_never_overwritten(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    layout = provisioned(tmp_path)
    share = tmp_path / "share"
    agency_pub = tmp_path / "agency" / "agency-pub.pem"
    for new_id in ("unit-8", "unit-7", "unit-8"):
        _offload(layout, share, capsys)
        code, err = _provision(capsys, layout.root, agency_pub, dev_id=new_id)
        assert code == 0, err
    archives = sorted(p.name for p in (layout.root / "evidence-archive").iterdir())
    assert archives == ["unit-7-1", "unit-7-2", "unit-8-1"]
    for name in archives:
        raw = _raw_pub(layout.root / "evidence-archive" / name / "device-pub.pem")
        store = DirectoryStoreReader(layout.root / "evidence-archive" / name)
        assert verify_store(store, trusted_keys=[raw], allow_freed=True).intact, name


def test_reprovision_cut_after_the_archive_rename_names_that_archive_when_rerun(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A power cut right after the store was moved aside: unit.json still names the old id and
    the store is gone. The rerun must name the archive the cut run made, not a blank past."""
    layout = provisioned(tmp_path)
    _offload(layout, tmp_path / "share", capsys)
    old_fp = SoftwareDeviceKey.load(layout.device_key).fingerprint()
    assert previous_identity(layout, "unit-8") == "unit-7"
    archive = archive_chain(layout, "unit-7")  # what the cut run had done, and no more
    assert archive is not None and not layout.evidence.exists()
    head = verify_store(
        DirectoryStoreReader(archive), trusted_keys=[_raw_pub(layout.device_pub)], allow_freed=True
    )
    code, err = _provision(
        capsys, layout.root, tmp_path / "agency" / "agency-pub.pem", dev_id="unit-8"
    )
    assert code == 0, err
    (prov,) = chain_events(layout.evidence, "provisioned")
    prev = prov["previous"]
    assert prev["archive"] == "evidence-archive/unit-7-1"
    assert prev["device_key_fingerprint"] == old_fp
    assert (prev["chain_head_seq"], prev["chain_head_sha256"]) == (
        head.head_seq,
        head.head_hash,
    )
    assert sorted(p.name for p in (layout.root / "evidence-archive").iterdir()) == ["unit-7-1"]
