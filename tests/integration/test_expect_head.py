"""`bwc verify --expect-head SEQ:SHA256`: the outside record that catches what a store alone
cannot, whole entries cut off the end of the chain at a clean boundary."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from firmware.cli import main
from tests.vectors.evidence_store import build_store, fixed_device_key, write_agency_pair


@pytest.fixture
def store(tmp_path: Path) -> Path:
    agency, _ = write_agency_pair(tmp_path / "agency", 0xE4EAD)
    path = tmp_path / "evidence"
    build_store(path, fixed_device_key(1), [agency], [b"a" * 100, b"b" * 100])
    return path


def verify_json(store: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    code = main(["verify", str(store), "--json", "--unpinned", *extra])
    return code, json.loads(capsys.readouterr().out)


def test_recorded_head_passes_and_a_clean_tail_cut_is_caught(
    store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = verify_json(store, capsys)
    assert code == 0
    head = f"{report['head_seq']}:{report['head_hash']}"
    assert verify_json(store, capsys, "--expect-head", head)[0] == 0
    # Cut the recording's stop and the shutdown off the end: without the outside record the
    # store alone may still pass (the remaining chain is consistent) ...
    seq = report["head_seq"]
    for ext in ("json", "sig"):
        (store / f"{seq:010d}.{ext}").unlink()
    assert verify_json(store, capsys)[0] == 0, "the store alone cannot see a clean tail cut"
    code, cut = verify_json(store, capsys, "--expect-head", head)
    assert code == 1
    assert any(
        "missing" in f["reason"] and "removed from the end" in f["reason"]
        for f in cut["all_findings"]
    )


def test_rewritten_entry_is_caught(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = store / "0000000000.json"
    digest = hashlib.sha256(first.read_bytes()).hexdigest()
    other = tmp_path / "other"
    agency, _ = write_agency_pair(tmp_path / "agency2", 0xBEEF)
    build_store(
        other,
        fixed_device_key(1),
        [agency],
        [b"c" * 100, b"d" * 100],
        boot_id="ffeeddccbbaa99887766554433221100",
    )
    shutil.rmtree(store)
    shutil.copytree(other, store)
    code, rewritten = verify_json(store, capsys, "--expect-head", f"0:{digest}")
    assert code == 1
    assert any("not the recorded" in f["reason"] for f in rewritten["all_findings"])


@pytest.mark.parametrize("bad", ["12", "x:" + "0" * 64, "3:abc", "3:" + "g" * 64])
def test_malformed_expect_head_is_a_usage_error(
    store: Path, bad: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", str(store), "--unpinned", "--expect-head", bad]) == 2
    err = capsys.readouterr().err
    assert "--expect-head" in err and err.count("\n") == 1
