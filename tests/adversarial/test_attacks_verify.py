"""The catalogue of attacks on stored evidence, through `bwc verify` as an agency runs it.

Each attack asserts the stable finding code it must produce (or the one-line refusal), never a
traceback. Stores are real (the real Sealer), small, and built per test in a second or less.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from evidence.findings import Code
from tests.adversarial.stores import (
    Attackable,
    bwc,
    entry,
    first,
    make_store,
    resign,
    seal_more,
    verify,
)
from tests.vectors.evidence_store import fixed_device_key


@pytest.fixture
def unit(tmp_path: Path) -> Attackable:
    return make_store(tmp_path)


def _units(m: dict) -> bool:  # type: ignore[type-arg]
    return bool(m["type"] == "unit")


# ------------------------------------------------------------------ nothing to verify


def test_pristine_store_with_the_registry_is_intact(
    unit: Attackable, capsys: pytest.CaptureFixture[str]
) -> None:
    got = verify(capsys, unit.store, *unit.trust)
    assert got.code == 0 and got.report["origin"] == "pinned"


@pytest.mark.parametrize("what", ["empty folder", "folder of key files", "all files deleted"])
def test_nothing_to_verify_is_not_intact(
    unit: Attackable, tmp_path: Path, capsys: pytest.CaptureFixture[str], what: str
) -> None:
    if what == "empty folder":
        target = tmp_path / "empty"
        target.mkdir()
    elif what == "folder of key files":
        target = unit.registry
    else:
        target = unit.store
        for p in target.iterdir():
            if p.name != "device-pub.pem":
                p.unlink()
    got = verify(capsys, target, *unit.trust)
    assert got.code == 1
    assert Code.NO_EVIDENCE in got.codes


def test_a_path_that_does_not_exist_is_a_usage_error(
    unit: Attackable, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    got = verify(capsys, tmp_path / "nope", *unit.trust)
    assert got.code == 2 and "not found" in got.err


# ------------------------------------------------------------------ origin


def test_without_trust_origin_is_not_established(
    unit: Attackable, capsys: pytest.CaptureFixture[str]
) -> None:
    got = verify(capsys, unit.store)
    assert got.code == 1 and got.codes == {Code.ORIGIN_NOT_ESTABLISHED}
    text = verify(capsys, unit.store, "--unpinned")
    assert text.code == 0 and text.report["origin"] == "unpinned"


def test_no_line_says_intact_unless_origin_is_pinned(
    unit: Attackable, capsys: pytest.CaptureFixture[str]
) -> None:
    """A person skimming the text report must not read "INTACT" for an unpinned store."""
    for extra in ((), ("--unpinned",)):
        text = bwc(capsys, "verify", unit.store, *extra).out
        rec_lines = [ln for ln in text.splitlines() if ln.startswith("recording ")]
        assert rec_lines and all("ORIGIN NOT" in ln for ln in rec_lines), rec_lines
        assert "result: INTACT\n" not in text + "\n"
    pinned = bwc(capsys, "verify", unit.store, *unit.trust).out
    assert all(
        ln.split(":")[1].strip().startswith("INTACT;")
        for ln in pinned.splitlines()
        if ln.startswith("recording ")
    )


def test_store_resigned_by_a_forger_is_refused_by_the_registry(
    unit: Attackable, capsys: pytest.CaptureFixture[str]
) -> None:
    # The forger rebuilds the whole store under its own key: every signature is valid, the
    # store's own device-pub.pem matches, so only the pinned registry can tell.
    forged = make_store(unit.root / "forger", seed=9)
    got = verify(capsys, forged.store, *unit.trust)
    assert got.code == 1 and Code.KEY_NOT_TRUSTED in got.codes
    assert verify(capsys, forged.store).codes == {Code.ORIGIN_NOT_ESTABLISHED}


def test_trust_with_private_key_material_is_refused(
    unit: Attackable, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copy(unit.agency_key, unit.registry / "oops.pem")
    got = verify(capsys, unit.store, *unit.trust)
    assert got.code == 2 and "private key" in got.err


def test_one_entry_resigned_with_another_key(
    unit: Attackable, capsys: pytest.CaptureFixture[str]
) -> None:
    seq = first(unit.store, _units)
    data = (unit.store / entry(seq, "json")).read_bytes()
    resign(unit.store, seq, data, fixed_device_key(5))
    assert Code.SIGNATURE_INVALID in verify(capsys, unit.store, *unit.trust).codes


# ------------------------------------------------------------------ payloads


def test_payloads_deleted_at_the_offload_copy(
    unit: Attackable, capsys: pytest.CaptureFixture[str]
) -> None:
    bins = sorted(p.name for p in unit.store.glob("*.bin"))
    seal_more(unit, ("offload_receipt", {"files": _receipt_rows(unit.store, bins)}),
              ("offload_freed", {"files": bins}))  # fmt: skip
    for b in bins[:2]:
        (unit.store / b).unlink()
    got = verify(capsys, unit.store, *unit.trust)
    assert got.code == 1 and got.codes == {Code.PAYLOAD_FREED}
    # Only a unit's own store may say so, and then the flag is explicit.
    assert verify(capsys, unit.store, *unit.trust, "--allow-freed").code == 0


def _receipt_rows(
    store: Path, bins: list[str], sha256: str | None = None
) -> list[dict[str, object]]:
    """Receipt rows as the offload runner writes them, from the signed unit manifests."""
    rows: list[dict[str, object]] = []
    for mf in sorted(store.glob("*.json")):
        m = json.loads(mf.read_bytes())
        payload = m.get("payload")
        if isinstance(payload, dict) and payload.get("file") in bins:
            digest = sha256 or payload["sha256"]
            rows.append({"file": payload["file"], "sha256": digest, "size": payload["size"],
                         "receipt": {"kind": "directory"}})  # fmt: skip
    return rows


def test_freed_without_any_receipt_is_no_excuse(
    unit: Attackable, capsys: pytest.CaptureFixture[str]
) -> None:
    """A unit (or whoever holds its key) that frees payloads no target confirmed."""
    bins = sorted(p.name for p in unit.store.glob("*.bin"))
    seal_more(unit, ("offload_freed", {"files": bins}))
    (unit.store / bins[0]).unlink()
    got = verify(capsys, unit.store, *unit.trust, "--allow-freed")
    assert got.code == 1 and got.codes == {Code.FREED_UNRECEIPTED}


def test_freed_after_the_receipt_was_withdrawn_is_no_excuse(
    unit: Attackable, capsys: pytest.CaptureFixture[str]
) -> None:
    """The copy failed the check before freeing (offload_mismatch); freeing anyway is caught."""
    bins = sorted(p.name for p in unit.store.glob("*.bin"))
    seal_more(
        unit,
        ("offload_receipt", {"files": _receipt_rows(unit.store, bins)}),
        ("offload_mismatch", {"files": [{"file": bins[0], "reason": "differs"}]}),
        ("offload_freed", {"files": bins}),
    )
    for b in bins[:2]:
        (unit.store / b).unlink()
    got = verify(capsys, unit.store, *unit.trust, "--allow-freed")
    assert got.code == 1 and got.codes == {Code.FREED_UNRECEIPTED}
    flagged = {Path(f["file"]).name for f in got.report["all_findings"]}
    assert flagged == {bins[0]}  # bins[1] was freed under a standing receipt


def test_freed_after_a_receipt_for_other_bytes_is_no_excuse(
    unit: Attackable, capsys: pytest.CaptureFixture[str]
) -> None:
    bins = sorted(p.name for p in unit.store.glob("*.bin"))
    seal_more(
        unit,
        ("offload_receipt", {"files": _receipt_rows(unit.store, bins, sha256="0" * 64)}),
        ("offload_freed", {"files": bins}),
    )
    (unit.store / bins[0]).unlink()
    got = verify(capsys, unit.store, *unit.trust, "--allow-freed")
    assert got.code == 1 and got.codes == {Code.FREED_UNRECEIPTED}


def test_payload_deleted_without_any_excuse(
    unit: Attackable, capsys: pytest.CaptureFixture[str]
) -> None:
    next(unit.store.glob("*.bin")).unlink()
    assert verify(capsys, unit.store, *unit.trust, "--allow-freed").codes == {Code.PAYLOAD_MISSING}


def test_huge_sparse_payload_is_refused_by_size_before_hashing(
    unit: Attackable, capsys: pytest.CaptureFixture[str]
) -> None:
    victim = unit.store / entry(first(unit.store, _units), "bin")
    with victim.open("r+b") as f:
        f.truncate(32 << 30)  # 32 GiB, sparse: costs nothing unless someone reads it
    t0 = time.monotonic()
    got = verify(capsys, unit.store, *unit.trust)
    assert time.monotonic() - t0 < 5.0
    assert got.codes == {Code.PAYLOAD_SIZE}


def test_payload_altered_in_place(unit: Attackable, capsys: pytest.CaptureFixture[str]) -> None:
    victim = unit.store / entry(first(unit.store, _units), "bin")
    data = bytearray(victim.read_bytes())
    data[10] ^= 1
    victim.write_bytes(bytes(data))
    assert verify(capsys, unit.store, *unit.trust).codes == {Code.PAYLOAD_HASH}


def test_many_findings_of_one_code_are_summarised(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = make_store(tmp_path, [bytes([i]) * 50 for i in range(12)])
    for b in a.store.glob("*.bin"):
        b.write_bytes(b"x" * b.stat().st_size)
    got = verify(capsys, a.store, *a.trust)
    assert got.report["finding_counts"] == {Code.PAYLOAD_HASH: 12}
    assert len(got.report["all_findings"]) == 3
    text = bwc(capsys, "verify", a.store, *a.trust)
    assert text.code == 1 and "and 9 more payload-hash finding(s)" in text.out


# ------------------------------------------------------------------ hostile manifests


@pytest.mark.parametrize(
    ("old", "new", "code"),
    [
        (b'"pre_event_s":0', b'"pre_event_s":NaN', Code.MANIFEST_INVALID),
        (b'"pre_event_s":0', b'"pre_event_s":1e400', Code.MANIFEST_INVALID),
        (b'"pre_event_s":0', b'"pre_event_s":-Infinity', Code.MANIFEST_INVALID),
        (b'"trigger":"double_press"', b'"trigger":"\\ud800"', Code.MANIFEST_INVALID),
        (b'"trigger":"double_press"', b'"trigger":"a","trigger":"b"', Code.MANIFEST_INVALID),
        (b'"recording":"rec-0001"', b'"recording":"../x"', Code.RECORDING_ID_INVALID),
        # "$" in a pattern also matches before a final newline: ids are matched to the very end.
        (b'"recording":"rec-0001"', b'"recording":"rec-0001\\n"', Code.RECORDING_ID_INVALID),
        (b'"pre_event_s":0', b'"pre_event_s":"' + b"x" * 300_000 + b'"', Code.MANIFEST_TOO_LARGE),
    ],
    ids=[
        "NaN",
        "1e400",
        "-Infinity",
        "lone surrogate",
        "duplicate key",
        "id path",
        "id newline",
        "oversize",
    ],
)
def test_validly_signed_hostile_manifest_is_a_finding(
    unit: Attackable, capsys: pytest.CaptureFixture[str], old: bytes, new: bytes, code: Code
) -> None:
    seq = first(unit.store, lambda m: m.get("kind") == "record_start")
    data = (unit.store / entry(seq, "json")).read_bytes()
    assert old in data
    resign(unit.store, seq, data.replace(old, new), unit.key)
    got = verify(capsys, unit.store, *unit.trust)
    assert got.code == 1 and code in got.codes
    # --json encodes the report even when the hostile text is quoted in it.
    json.dumps(got.report)


def test_oversize_signature_file_is_not_read(
    unit: Attackable, capsys: pytest.CaptureFixture[str]
) -> None:
    sig = unit.store / entry(0, "sig")
    with sig.open("r+b") as f:
        f.truncate(8 << 30)
    assert Code.SIGNATURE_MISSING in verify(capsys, unit.store, *unit.trust).codes


# ------------------------------------------------------------------ orphans


def _with_orphan(a: Attackable) -> str:
    """A power cut after a unit's payload was written but before its manifest: the next boot
    moves the payload to orphans/ and names it, with its hash, in power_loss_discovered."""
    (a.store / entry(first(a.store, lambda m: m.get("kind") == "shutdown"), "json")).unlink()
    head = max(int(p.stem) for p in a.store.glob("[0-9]*.json"))
    (a.store / entry(head + 1, "sig")).unlink(missing_ok=True)
    (a.store / entry(head + 2, "bin")).write_bytes(b"half a unit")
    sealer = seal_more_after_cut(a)
    (name,) = sealer
    return name


def seal_more_after_cut(a: Attackable) -> list[str]:
    from evidence.sealer import Sealer

    sealer = Sealer.open(a.store, a.key, [a.agency], "bwc-test-0001", "cc" * 16, "simulated")
    assert sealer.recovery is not None
    sealer.event("boot", {}, mono_us=1, utc_us=1)
    sealer.event("power_loss_discovered", sealer.recovery.event_fields(), mono_us=1, utc_us=1)
    sealer.event("shutdown", {}, mono_us=2, utc_us=2)
    return list(sealer.recovery.orphans)


def test_orphan_named_by_a_signed_event_must_exist(
    unit: Attackable, capsys: pytest.CaptureFixture[str]
) -> None:
    name = _with_orphan(unit)
    # The first sig of the removed shutdown went too: the chain is otherwise consistent.
    assert verify(capsys, unit.store, *unit.trust).code == 0
    (unit.store / name).unlink()
    assert verify(capsys, unit.store, *unit.trust).codes == {Code.ORPHAN_MISSING}


def test_orphan_altered_after_it_was_named(
    unit: Attackable, capsys: pytest.CaptureFixture[str]
) -> None:
    name = _with_orphan(unit)
    (unit.store / name).write_bytes(b"something else")
    assert verify(capsys, unit.store, *unit.trust).codes == {Code.ORPHAN_ALTERED}


def test_planted_orphan_is_unexplained(
    unit: Attackable, capsys: pytest.CaptureFixture[str]
) -> None:
    (unit.store / "orphans").mkdir()
    (unit.store / "orphans" / "planted.bin").write_bytes(b"x")
    assert verify(capsys, unit.store, *unit.trust).codes == {Code.ORPHAN_UNEXPLAINED}


# ------------------------------------------------------------------ the dock share as a whole


def test_share_root_reports_each_unit_and_fails_if_one_is_broken(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = make_store(tmp_path, device_id="CAM-A", seed=1)
    b = make_store(tmp_path, device_id="CAM-B", seed=2)
    share = tmp_path  # holds CAM-A/, CAM-B/, agency/, registry/
    got = verify(capsys, share, *a.trust)
    assert got.code == 0 and [u["device"] for u in got.report["units"]] == ["CAM-A", "CAM-B"]
    next(b.store.glob("*.bin")).write_bytes(b"")
    got = verify(capsys, share, *a.trust)
    assert got.code == 1
    assert [u["intact"] for u in got.report["units"]] == [True, False]
    assert verify(capsys, share).codes == {Code.ORIGIN_NOT_ESTABLISHED, Code.PAYLOAD_SIZE}


def test_unit_not_in_the_registry_fails_at_the_share(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = make_store(tmp_path, device_id="CAM-A", seed=1)
    make_store(tmp_path, device_id="CAM-B", seed=2)
    (a.registry / "CAM-B.pem").unlink()
    got = verify(capsys, tmp_path, *a.trust)
    assert got.code == 1 and Code.KEY_NOT_TRUSTED in got.codes


# ------------------------------------------------------------------ hand-over


def test_new_chain_names_the_previous_identity(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from evidence.sealer import Sealer

    old = make_store(tmp_path, device_id="CAM-OLD", seed=1)
    new_key = fixed_device_key(3)
    store = tmp_path / "CAM-NEW"
    sealer = Sealer.open(store, new_key, [old.agency], "CAM-NEW", "dd" * 16, "simulated")
    sealer.event(
        "provisioned",
        {
            "device_id": "CAM-NEW",
            "previous": {
                "device_id": "CAM-OLD",
                "device_key_fingerprint": old.key.fingerprint(),
                "chain_head_seq": 7,
                "chain_head_sha256": "ab" * 32,
                "archive": "evidence-archive/CAM-OLD-1",
            },
        },
        mono_us=1,
        utc_us=1,
    )
    sealer.event("shutdown", {}, mono_us=2, utc_us=2)
    (old.registry / "CAM-NEW.pem").write_bytes(new_key.public_pem())
    got = bwc(capsys, "verify", store, *old.trust)
    assert got.code == 0
    out = got.out
    assert "hand-over" in out and "CAM-OLD" in out and old.key.fingerprint()[:16] in out


def test_symlinked_store_entries_do_not_escape(
    unit: Attackable, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"not evidence")
    victim = unit.store / entry(first(unit.store, _units), "bin")
    victim.unlink()
    os.symlink(outside, victim)
    got = verify(capsys, unit.store, *unit.trust)
    assert got.code == 1 and got.codes & {Code.PAYLOAD_SIZE, Code.PAYLOAD_HASH}


def test_gigabyte_manifest_is_refused_unread(
    unit: Attackable, capsys: pytest.CaptureFixture[str]
) -> None:
    victim = unit.store / entry(1, "json")
    with victim.open("r+b") as f:
        f.truncate(1 << 30)  # 1 GiB, sparse: reading it whole would cost a gigabyte or two
    t0 = time.monotonic()
    got = verify(capsys, unit.store, *unit.trust)
    assert time.monotonic() - t0 < 5.0
    assert Code.MANIFEST_TOO_LARGE in got.codes


@pytest.mark.parametrize("what", ["empty folder", "folder of key files"])
def test_export_of_nothing_is_not_success(
    unit: Attackable, tmp_path: Path, capsys: pytest.CaptureFixture[str], what: str
) -> None:
    target = unit.registry
    if what == "empty folder":
        target = tmp_path / "empty"
        target.mkdir()
    got = bwc(
        capsys, "export", target, "--key", unit.agency_key, "--out", tmp_path / "o", *unit.trust
    )
    assert got.code == 1 and Code.NO_EVIDENCE in got.err


def test_dangling_link_in_the_registry_is_one_line(
    unit: Attackable, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    os.symlink(tmp_path / "gone.pem", unit.registry / "gone.pem")
    got = verify(capsys, unit.store, *unit.trust)
    assert got.code == 2 and "gone.pem" in got.err
