"""Sealer, device key and agency key behaviour: space reserve, power-loss discovery, key files."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from pathlib import Path

import pytest

from evidence.keys import (
    KEM_MLKEM1024_P384,
    AgencyPrivateKey,
    generate_agency_keys,
    load_agency_private,
    load_agency_public,
)
from evidence.opener import decrypt_unit, open_store
from evidence.sealer import Sealer
from evidence.sealing import UnitMeta
from evidence.store import DirectoryStoreReader
from evidence.verify import verify_store
from hal.errors import IntegrityError, StorageFullError, UsageError
from hal.software_key import SoftwareDeviceKey
from tests.vectors.evidence_store import build_store, fixed_device_key, write_agency_pair

BOOT_A = "a" * 32
BOOT_B = "b" * 32


def meta(unit: int, first_frame: int = 0) -> UnitMeta:
    return UnitMeta("rec-1", 0, unit, first_frame, 10, 0, 1, 0, "simulated")


def test_device_key_generate_load_and_refusals(tmp_path: Path) -> None:
    path = tmp_path / "device-key.pem"
    key = SoftwareDeviceKey.generate(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = SoftwareDeviceKey.load(path)
    assert loaded.public_key_raw() == key.public_key_raw()
    assert len(loaded.sign(b"x")) == 64
    assert loaded.fingerprint() == key.fingerprint()
    with pytest.raises(UsageError, match="already exists"):
        SoftwareDeviceKey.generate(path)
    path.chmod(0o644)
    with pytest.raises(UsageError, match="readable by group or others"):
        SoftwareDeviceKey.load(path)
    with pytest.raises(UsageError, match="not found"):
        SoftwareDeviceKey.load(tmp_path / "missing.pem")
    generate_agency_keys(tmp_path / "ag")
    with pytest.raises(UsageError, match="not an Ed25519 private key"):
        SoftwareDeviceKey.load(tmp_path / "ag" / "agency-key.pem")


def test_agency_key_files_are_told_apart(tmp_path: Path) -> None:
    priv, pub = generate_agency_keys(tmp_path / "ag")
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600
    assert load_agency_public(pub).fingerprint == load_agency_private(priv).fingerprint
    device = tmp_path / "device-key.pem"
    dkey = SoftwareDeviceKey.generate(device)
    (tmp_path / "device-pub.pem").write_bytes(dkey.public_pem())
    with pytest.raises(UsageError, match="Ed25519"):
        load_agency_private(device)
    with pytest.raises(UsageError, match="Ed25519"):
        load_agency_private(tmp_path / "device-pub.pem")
    with pytest.raises(UsageError, match="Ed25519"):
        load_agency_public(tmp_path / "device-pub.pem")
    with pytest.raises(UsageError, match="public key"):
        load_agency_private(pub)
    with pytest.raises(UsageError, match="private key"):
        load_agency_public(priv)
    with pytest.raises(UsageError, match="not found"):
        load_agency_private(tmp_path / "nope.pem")
    with pytest.raises(UsageError, match="already exists"):
        generate_agency_keys(tmp_path / "ag")
    with pytest.raises(UsageError, match="--kem"):
        generate_agency_keys(tmp_path / "ag2", "rsa")


@pytest.mark.parametrize("kem", ["p384", KEM_MLKEM1024_P384])
def test_seal_and_decrypt_for_two_recipients(tmp_path: Path, kem: str) -> None:
    generate_agency_keys(tmp_path / "ag1", kem)
    generate_agency_keys(tmp_path / "ag2")
    pubs = [load_agency_public(tmp_path / d / "agency-pub.pem") for d in ("ag1", "ag2")]
    store = tmp_path / "ev"
    build_store(store, fixed_device_key(1), pubs, [b"payload-one", b"payload-two"])
    reader = DirectoryStoreReader(store)
    manifest = json.loads((store / "0000000003.json").read_bytes())
    for d in ("ag1", "ag2"):
        key = load_agency_private(tmp_path / d / "agency-key.pem")
        assert decrypt_unit(reader, manifest, key) == b"payload-two"
    assert verify_store(reader, unpinned=True).intact


def test_ciphertext_moved_to_another_entry_does_not_decrypt(tmp_path: Path) -> None:
    pub, priv = write_agency_pair(tmp_path / "ag", 7)
    store = tmp_path / "ev"
    build_store(store, fixed_device_key(1), [pub], [b"one", b"two"])
    m2 = json.loads((store / "0000000002.json").read_bytes())
    m3 = json.loads((store / "0000000003.json").read_bytes())
    m3["recipients"] = m2["recipients"]
    m3["payload"]["nonce"] = m2["payload"]["nonce"]
    (store / "0000000003.bin").write_bytes((store / "0000000002.bin").read_bytes())
    with pytest.raises(IntegrityError):
        decrypt_unit(DirectoryStoreReader(store), m3, priv)


def test_one_segment_secret_per_segment_held_until_the_segment_ends(tmp_path: Path) -> None:
    """bwc-evidence/2: the units of a segment share one secret (one HPKE wrap: HPKE randomises,
    so identical blobs mean one encapsulation); a new segment, recording, a final or
    segment_final unit, or a record_stop ends it, and the next unit gets a fresh one."""
    pub, priv = write_agency_pair(tmp_path / "ag", 7)
    store = tmp_path / "ev"
    sealer = Sealer.open(store, fixed_device_key(1), [pub], "dev-1", BOOT_A, "rtc")

    def seal(rec: str, segment: int, unit: int, **kw: object) -> dict[str, object]:
        m = UnitMeta(rec, segment, unit, 0, 1, 0, 1, 0, "rtc", **kw)  # type: ignore[arg-type]
        seq = sealer.seal_unit(f"{rec}/{segment}/{unit}".encode(), m, mono_us=1, utc_us=1)
        manifest: dict[str, object] = json.loads((store / f"{seq:010d}.json").read_bytes())
        assert manifest["format"] == "bwc-evidence/2"
        got = decrypt_unit(DirectoryStoreReader(store), manifest, priv)
        assert got == f"{rec}/{segment}/{unit}".encode()
        return manifest

    a0, a1 = seal("r1", 0, 0), seal("r1", 0, 1)
    assert a0["secret_id"] == a1["secret_id"] and a0["recipients"] == a1["recipients"]
    b0 = seal("r1", 1, 0)  # next segment
    b1 = seal("r1", 1, 1, extra={"segment_final": True})
    assert b0["secret_id"] == b1["secret_id"] != a0["secret_id"]
    assert b0["recipients"] != a0["recipients"]
    after_segment_final = seal("r1", 1, 2)
    c0 = seal("r1", 1, 3, final=True)
    assert after_segment_final["secret_id"] == c0["secret_id"] != b0["secret_id"]
    after_final = seal("r1", 1, 4)
    assert after_final["secret_id"] != c0["secret_id"]
    other_recording = seal("r2", 1, 5)
    assert other_recording["secret_id"] != after_final["secret_id"]
    sealer.event("record_stop", {"recording": "r2"}, mono_us=1, utc_us=1)
    assert seal("r2", 1, 6)["secret_id"] != other_recording["secret_id"]


@dataclasses.dataclass(frozen=True)
class _CountingKey(AgencyPrivateKey):
    """The real agency key, noting every HPKE open it is asked for."""

    opened: list[bytes] = dataclasses.field(default_factory=list)

    def unwrap(self, enc_and_ct: bytes, info: bytes) -> bytes:
        self.opened.append(info)
        return super().unwrap(enc_and_ct, info)


def test_export_opens_each_wrapped_segment_secret_once(tmp_path: Path) -> None:
    _pub, priv = write_agency_pair(tmp_path / "ag", 7)
    store = tmp_path / "ev"
    payloads = [b"u%d" % i for i in range(6)]  # three segments of two units
    build_store(store, fixed_device_key(1), [_pub], payloads)
    key = _CountingKey(priv.suite, priv.fingerprint, priv.key)
    (rec,) = open_store(store, key, unpinned=True)
    for _ in range(2):  # export reads each segment twice (a probe, then the remux)
        assert [s.plaintext() for s in rec.segments] == [b"u0u1", b"u2u3", b"u4u5"]
    assert len(key.opened) == len(set(key.opened)) == 3


def test_units_stop_at_the_reserve_but_events_may_use_it(tmp_path: Path) -> None:
    pub, _ = write_agency_pair(tmp_path / "ag", 7)
    store = tmp_path / "ev"
    sealer = Sealer.open(
        store, fixed_device_key(1), [pub], "d", BOOT_A, "rtc", 20_000, capacity_bytes=60_000
    )
    sealer.event("record_start", {"recording": "rec-1"}, mono_us=0, utc_us=0)
    sealer.seal_unit(os.urandom(30_000), meta(0), mono_us=0, utc_us=0)
    assert 0 < sealer.free_bytes() < 10_000
    before = sorted(os.listdir(store))
    with pytest.raises(StorageFullError):
        sealer.seal_unit(os.urandom(15_000), meta(1, 10), mono_us=0, utc_us=0)
    assert sorted(os.listdir(store)) == before  # nothing written
    big_event = {"pad": "x" * 12_000}
    with pytest.raises(StorageFullError):
        sealer.event("storage_full", big_event, mono_us=0, utc_us=0)
    seq = sealer.event("storage_full", big_event, mono_us=0, utc_us=0, reserve_ok=True)
    assert seq == sealer.head_seq == 2
    assert sealer.free_bytes() == 0


def test_power_loss_discovery_moves_leftovers_and_names_open_recording(tmp_path: Path) -> None:
    pub, _ = write_agency_pair(tmp_path / "ag", 7)
    store = tmp_path / "ev"
    key = fixed_device_key(1)
    build_store(store, key, [pub], [b"a", b"b", b"c"], boot_id=BOOT_A, close=False)
    # A cut while writing entry 5: its payload and signature exist, its manifest does not.
    (store / "0000000005.bin").write_bytes(b"partial")
    (store / ".tmp-0000000005.sig").write_bytes(b"partial")
    sealer = Sealer.open(store, key, [pub], "bwc-test-0001", BOOT_B, "rtc")
    rec = sealer.recovery
    assert rec is not None
    assert rec.previous_boot == BOOT_A
    assert rec.last_seq == 4
    assert rec.open_recording == "rec-0001"
    assert rec.open_recording_units == 3 and rec.open_recording_segments == 2
    assert rec.last_frame == 74
    assert sorted(rec.orphans) == [
        f"orphans/{BOOT_B}-.tmp-0000000005.sig",
        f"orphans/{BOOT_B}-0000000005.bin",
    ]
    assert (store / "orphans" / f"{BOOT_B}-0000000005.bin").read_bytes() == b"partial"
    reader = DirectoryStoreReader(store)
    assert not verify_store(reader, unpinned=True).intact  # not closed and orphans unexplained, yet
    sealer.event("power_loss_discovered", rec.event_fields(), mono_us=0, utc_us=0)
    stop = rec.stop_fields()
    assert stop is not None
    sealer.event("record_stop", stop, mono_us=0, utc_us=0)
    sealer.event("shutdown", {}, mono_us=0, utc_us=0)
    report = verify_store(reader, unpinned=True)
    assert report.intact, report.format_text()
    assert report.recordings[0].power_losses == 1
    assert report.recordings[0].stop_trigger == "power_loss_recovery"
    again = Sealer.open(store, key, [pub], "bwc-test-0001", "c" * 32, "rtc")
    assert again.recovery is None


def test_new_boot_after_unclean_end_needs_power_loss_event(tmp_path: Path) -> None:
    pub, _ = write_agency_pair(tmp_path / "ag", 7)
    store = tmp_path / "ev"
    key = fixed_device_key(1)
    sealer = Sealer.open(store, key, [pub], "d", BOOT_A, "rtc")
    sealer.event("boot", {}, mono_us=0, utc_us=0)
    sealer = Sealer.open(store, key, [pub], "d", BOOT_B, "rtc")
    assert sealer.recovery is not None and sealer.recovery.open_recording is None
    sealer.event("boot", {}, mono_us=0, utc_us=0)
    sealer.event("shutdown", {}, mono_us=0, utc_us=0)
    report = verify_store(DirectoryStoreReader(store), unpinned=True)
    assert [f.reason for f in report.all_findings] == [
        f"boot {BOOT_B} follows an unclean end of boot {BOOT_A} without a "
        "power_loss_discovered event (entries removed?)"
    ]


def test_refuses_to_extend_another_devices_chain(tmp_path: Path) -> None:
    pub, _ = write_agency_pair(tmp_path / "ag", 7)
    store = tmp_path / "ev"
    Sealer.open(store, fixed_device_key(1), [pub], "d", BOOT_A, "rtc").event(
        "boot", {}, mono_us=0, utc_us=0
    )
    with pytest.raises(IntegrityError, match="another device"):
        Sealer.open(store, fixed_device_key(2), [pub], "d", BOOT_B, "rtc")


def test_offloaded_payloads_are_explained(tmp_path: Path) -> None:
    pub, _ = write_agency_pair(tmp_path / "ag", 7)
    store = tmp_path / "ev"
    key = fixed_device_key(1)
    build_store(store, key, [pub], [b"a", b"b"], boot_id=BOOT_A)
    (store / "0000000002.bin").unlink()
    assert not verify_store(DirectoryStoreReader(store), unpinned=True).intact
    sealer = Sealer.open(store, key, [pub], "bwc-test-0001", BOOT_B, "rtc")
    sealer.event("boot", {}, mono_us=0, utc_us=0)
    payload = json.loads((store / "0000000002.json").read_bytes())["payload"]
    receipt = {"file": "0000000002.bin", "sha256": payload["sha256"], "size": payload["size"]}
    sealer.event("offload_receipt", {"files": [receipt]}, mono_us=0, utc_us=0)
    sealer.event("offload_freed", {"files": ["0000000002.bin"]}, mono_us=0, utc_us=0)
    sealer.event("shutdown", {}, mono_us=0, utc_us=0)
    strict = verify_store(DirectoryStoreReader(store), unpinned=True)
    assert [f.code for f in strict.all_findings] == ["payload-freed"]
    report = verify_store(DirectoryStoreReader(store), unpinned=True, allow_freed=True)
    assert report.intact, report.format_text()
    assert report.offloaded == ["0000000002.bin"]
