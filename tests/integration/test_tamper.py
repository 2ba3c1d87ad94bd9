"""Every kind of tampering with a sealed store makes `bwc verify` exit 1 naming the file."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from evidence.keys import AgencyPublicKey
from evidence.sealer import Sealer
from evidence.sealing import UnitMeta
from firmware.cli import main
from tests.vectors.evidence_store import build_store, fixed_device_key, write_agency_pair

PAYLOADS = [os.urandom(3000 + i) for i in range(4)]
# Store layout built by build_store: 0 boot, 1 record_start, 2-5 units, 6 record_stop, 7 shutdown.
UNITS = [2, 3, 4, 5]
BOOT = "00112233445566778899aabbccddeeff"


@pytest.fixture(scope="module")
def agency(tmp_path_factory: pytest.TempPathFactory) -> AgencyPublicKey:
    pub, _ = write_agency_pair(tmp_path_factory.mktemp("agency"), 0xA6E1C7)
    return pub


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory, agency: AgencyPublicKey) -> Path:
    path = tmp_path_factory.mktemp("pristine") / "evidence"
    build_store(path, fixed_device_key(1), [agency], PAYLOADS)
    return path


@pytest.fixture
def store(pristine: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "evidence"
    shutil.copytree(pristine, copy)
    return copy


def verify(store: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    if "--trust" not in extra and "--unpinned" not in extra:
        # Pin the unit's real key, kept outside the store (as an agency's registry would).
        pinned = store.parent / "registered-device-pub.pem"
        pinned.write_bytes(fixed_device_key(1).public_pem())
        extra = (*extra, "--trust", str(pinned))
    code = main(["verify", str(store), *extra])
    return code, capsys.readouterr().out


def assert_finding(store: Path, name: str, capsys: pytest.CaptureFixture[str]) -> str:
    code, out = verify(store, capsys)
    assert code == 1, out
    finding_lines = [line for line in out.splitlines() if "FINDING" in line]
    assert any(str(store / name) in line for line in finding_lines), out
    return out


def names(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if p.is_file())


def entry(seq: int, ext: str) -> str:
    return f"{seq:010d}.{ext}"


def test_pristine_store_verifies(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = verify(store, capsys)
    assert code == 0 and "(pinned by --trust)" in out, out
    # Without a trust anchor origin is not established: not intact, unless --unpinned says so.
    code = main(["verify", str(store)])
    out = capsys.readouterr().out
    assert code == 1 and "[origin-not-established]" in out
    code, out = verify(store, capsys, "--unpinned")
    assert code == 0 and "ORIGIN NOT CHECKED" in out


def test_pinning_a_different_key_fails(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other-pub.pem"
    other.write_bytes(fixed_device_key(2).public_pem())
    code, out = verify(store, capsys, "--trust", str(other))
    assert code == 1
    assert "not a trusted" in out


@pytest.mark.parametrize("where", ["start", "middle", "end"])
def test_one_flipped_byte_in_any_file(
    pristine: Path, tmp_path: Path, where: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in names(pristine):
        store = tmp_path / f"{where}-{name}"
        shutil.copytree(pristine, store)
        data = bytearray((store / name).read_bytes())
        i = {"start": 0, "middle": len(data) // 2, "end": len(data) - 1}[where]
        data[i] ^= 0x01
        (store / name).write_bytes(bytes(data))
        assert_finding(store, name, capsys)


@pytest.mark.parametrize("ext", ["json", "sig", "bin"])
def test_truncated_file(store: Path, ext: str, capsys: pytest.CaptureFixture[str]) -> None:
    name = entry(3, ext)
    data = (store / name).read_bytes()
    (store / name).write_bytes(data[: len(data) - 7])
    assert_finding(store, name, capsys)


def test_unit_deleted_from_the_middle(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for ext in ("json", "sig", "bin"):
        (store / entry(3, ext)).unlink()
    out = assert_finding(store, entry(3, "json"), capsys)
    assert "missing" in out


def test_two_units_swapped(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for ext in ("json", "sig", "bin"):
        a, b = store / entry(3, ext), store / entry(4, ext)
        tmp = store / "swap"
        a.rename(tmp)
        b.rename(a)
        tmp.rename(b)
    assert_finding(store, entry(3, "json"), capsys)
    assert_finding(store, entry(4, "json"), capsys)


def test_unit_spliced_from_another_units_store(
    store: Path, tmp_path: Path, agency: AgencyPublicKey, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other"
    build_store(other, fixed_device_key(3), [agency], PAYLOADS, device_id="bwc-test-0002")
    for ext in ("json", "sig", "bin"):
        shutil.copyfile(other / entry(3, ext), store / entry(3, ext))
    assert_finding(store, entry(3, "json"), capsys)


def test_old_unit_replayed_in_place_of_a_later_one(
    store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for ext in ("json", "sig", "bin"):
        shutil.copyfile(store / entry(2, ext), store / entry(4, ext))
    assert_finding(store, entry(4, "json"), capsys)


def test_old_unit_replayed_at_the_end(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for ext in ("json", "sig", "bin"):
        shutil.copyfile(store / entry(2, ext), store / entry(8, ext))
    assert_finding(store, entry(8, "json"), capsys)


def test_manifest_resigned_with_another_key(
    store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    forger = fixed_device_key(4)
    name = entry(3, "json")
    data = (store / name).read_bytes().replace(b'"frame_count":25', b'"frame_count":24')
    (store / name).write_bytes(data)
    (store / entry(3, "sig")).write_bytes(forger.sign(data))
    assert_finding(store, entry(3, "sig"), capsys)


def test_manifest_resigned_with_another_key_naming_it(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The forger also rewrites the key field and swaps device-pub.pem: pinning catches it.
    forger = fixed_device_key(4)
    trusted = tmp_path / "trusted.pem"
    trusted.write_bytes((store / "device-pub.pem").read_bytes())
    name = entry(3, "json")
    data = (
        (store / name)
        .read_bytes()
        .replace(fixed_device_key(1).fingerprint().encode(), forger.fingerprint().encode())
    )
    (store / name).write_bytes(data)
    (store / entry(3, "sig")).write_bytes(forger.sign(data))
    (store / "device-pub.pem").write_bytes(forger.public_pem())
    code, out = verify(store, capsys, "--trust", str(trusted))
    assert code == 1
    assert f"] {store / name}:" in out


def test_tail_of_recording_removed(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for seq in (5, 6, 7):
        for ext in ("json", "sig", "bin"):
            (store / entry(seq, ext)).unlink(missing_ok=True)
    out = assert_finding(store, entry(4, "json"), capsys)
    assert "recording not closed" in out


def test_unexplained_frame_gap_is_a_finding(
    tmp_path: Path, agency: AgencyPublicKey, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "gap"
    key = fixed_device_key(1)
    build_store(store, key, [agency], PAYLOADS[:1], close=False)
    sealer = Sealer.open(
        store, key, [agency], "bwc-test-0001", "00112233445566778899aabbccddeeff", "simulated"
    )
    meta = UnitMeta("rec-0001", 0, 1, 30, 25, 2_000_000, 3_000_000, 0, "simulated")
    sealer.seal_unit(b"x" * 100, meta, mono_us=3_000_000, utc_us=0)
    sealer.event("record_stop", {"recording": "rec-0001"}, mono_us=1, utc_us=1)
    out = assert_finding(store, entry(3, "json"), capsys)
    assert "frames 25-29 missing" in out


def test_explained_frame_gap_is_intact(
    tmp_path: Path, agency: AgencyPublicKey, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "gap"
    key = fixed_device_key(1)
    build_store(store, key, [agency], PAYLOADS[:1], close=False)
    sealer = Sealer.open(
        store, key, [agency], "bwc-test-0001", "00112233445566778899aabbccddeeff", "simulated"
    )
    sealer.event(
        "frame_gap",
        {"recording": "rec-0001", "from_frame": 25, "to_frame": 30, "reason": "encoder"},
        mono_us=1,
        utc_us=1,
    )
    meta = UnitMeta("rec-0001", 0, 1, 30, 25, 2_000_000, 3_000_000, 0, "simulated")
    sealer.seal_unit(b"x" * 100, meta, mono_us=3_000_000, utc_us=0)
    sealer.event("record_stop", {"recording": "rec-0001"}, mono_us=1, utc_us=1)
    sealer.event("shutdown", {}, mono_us=1, utc_us=1)
    code, out = verify(store, capsys)
    assert code == 0, out
    assert "frame gap 25-29: explained" in out
