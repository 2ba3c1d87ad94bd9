"""Attacks on `bwc export`: its output directory, recording ids, and media that decrypts but is
not video. Export writes only inside --out, never follows a planted link, never overwrites."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from evidence.findings import Code
from tests.adversarial.stores import Attackable, bwc, entry, first, junk_ts, make_store, resign
from tests.unit.test_evidence_export import make_ts


@pytest.fixture
def unit(tmp_path: Path) -> Attackable:
    ts = make_ts(50, 0)
    cut = len(ts) // 2 // 188 * 188
    return make_store(tmp_path, [ts[:cut], ts[cut:]])


def export(
    capsys: pytest.CaptureFixture[str], a: Attackable, out: Path, *extra: str
) -> tuple[int, str]:
    got = bwc(capsys, "export", a.store, "--key", a.agency_key, "--out", out, *a.trust, *extra)
    return got.code, got.out + got.err


def test_export_pins_and_writes_one_pair(
    unit: Attackable, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, text = export(capsys, unit, tmp_path / "out")
    assert code == 0, text
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["rec-0001.json", "rec-0001.mp4"]


def test_export_without_trust_is_refused(
    unit: Attackable, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    got = bwc(capsys, "export", unit.store, "--key", unit.agency_key, "--out", tmp_path / "o")
    assert got.code == 1 and Code.ORIGIN_NOT_ESTABLISHED in got.err
    assert not list((tmp_path / "o").glob("*")) if (tmp_path / "o").exists() else True


@pytest.mark.parametrize("planted", ["rec-0001.mp4", "rec-0001.json"])
def test_planted_symlink_in_out_is_not_followed(
    unit: Attackable, tmp_path: Path, capsys: pytest.CaptureFixture[str], planted: str
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    os.symlink(victim, out / planted)
    code, text = export(capsys, unit, out)
    assert code == 1 and "never overwrites" in text
    assert victim.read_text() == "precious"
    assert os.path.islink(out / planted)


def test_existing_output_is_never_overwritten(
    unit: Attackable, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert export(capsys, unit, out)[0] == 0
    before = (out / "rec-0001.mp4").read_bytes()
    code, text = export(capsys, unit, out)
    assert code == 1 and "already exists" in text
    assert (out / "rec-0001.mp4").read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["rec-0001.json", "rec-0001.mp4"]


def test_predictable_temp_names_are_not_used(
    unit: Attackable, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    for name in (".tmp-rec-0001.mp4", ".tmp-rec-0001.json"):
        os.symlink(victim, out / name)
    assert export(capsys, unit, out)[0] == 0
    assert victim.read_text() == "precious"


@pytest.mark.parametrize("forged", ["a/b", "..", ".hidden", "a b", "x" * 200])
def test_forged_recording_ids_are_refused(
    unit: Attackable, tmp_path: Path, capsys: pytest.CaptureFixture[str], forged: str
) -> None:
    # A forger holding the unit key (a stolen unit) re-signs every entry with another id.
    for path in sorted(unit.store.glob("[0-9]*.json")):
        data = path.read_bytes()
        if b'"rec-0001"' in data:
            resign(
                unit.store,
                int(path.stem),
                data.replace(b'"rec-0001"', f'"{forged}"'.encode()),
                unit.key,
            )
    code, text = export(capsys, unit, tmp_path / "out")
    assert code == 1 and Code.RECORDING_ID_INVALID in text
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_media_that_decrypts_but_is_not_video_is_a_finding(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = make_store(tmp_path, [junk_ts(), junk_ts()])
    code, text = export(capsys, a, tmp_path / "out")
    assert code == 1 and Code.MEDIA_UNDECODABLE in text
    assert not list((tmp_path / "out").glob("*.mp4"))
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]


def test_share_export_refuses_before_writing_if_any_unit_is_broken(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ts = make_ts(50, 0)
    a = make_store(tmp_path, [ts], device_id="CAM-A", seed=1)
    b = make_store(tmp_path, [ts], device_id="CAM-B", seed=2)
    victim = b.store / entry(first(b.store, lambda m: m["type"] == "unit"), "bin")
    victim.write_bytes(b"\0" * victim.stat().st_size)
    got = bwc(
        capsys, "export", tmp_path, "--key", a.agency_key, "--out", tmp_path / "out", *a.trust
    )
    assert got.code == 1 and Code.PAYLOAD_HASH in got.err
    assert not (tmp_path / "out").exists()
