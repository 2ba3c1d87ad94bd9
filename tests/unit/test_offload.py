"""Offload to a directory target with the real Sealer: receipts, freeing, order, and every fault
the dock can throw at it (undock mid-file, target full, corrupted copy, lying receipt, power cut
at any step). The S3 side of the same runner is in tests/integration/test_offload_s3.py."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from evidence.sealer import Sealer
from evidence.store import DirectoryStoreReader
from evidence.verify import verify_store
from hal.errors import IntegrityError, StorageFullError
from offload.plan import ChainState, Entry, build_plan, parse_entry
from offload.runner import OffloadResult, ReceiptSink, Retention, offload, scan_store
from offload.targets import (
    DirectoryTarget,
    OffloadTarget,
    Receipt,
    S3Settings,
    open_target,
    target_for_device,
)
from tests.offload_store import (
    CuttingSink,
    PowerCut,
    StepClock,
    TargetProbe,
    Unit,
    always,
    chain_events,
    freed,
    make_unit,
    receipted,
    record,
    run_round,
    store_files,
)


@pytest.fixture
def unit(tmp_path: Path) -> Unit:
    u = make_unit(tmp_path / "unit")
    sealer = u.open_sealer()
    clock = StepClock()
    record(sealer, clock, "rec-a", units=3)
    record(sealer, clock, "rec-b", units=2, marked=True, first_frame=90)
    u.shutdown(sealer)
    return u


def run(
    unit: Unit,
    target: OffloadTarget,
    *,
    wrap: Callable[[Sealer], ReceiptSink] | None = None,
    should_continue: Callable[[], bool] = always,
) -> OffloadResult:
    return run_round(unit, target, wrap=wrap, should_continue=should_continue)


def test_offload_sends_every_file_then_frees_confirmed_payloads(unit: Unit, tmp_path: Path) -> None:
    before = store_files(unit.store)
    target = DirectoryTarget(tmp_path / "dock")
    result = run(unit, target)

    assert result.complete and result.stopped == ""
    at_target = store_files(target.root)
    for name, data in before.items():
        assert at_target[name] == data, name
    # Payloads left the unit; manifests and signatures stayed.
    bins = {n for n in before if n.endswith(".bin")}
    assert len(bins) == 5
    assert not list(unit.store.glob("*.bin"))
    assert freed(unit.store) == bins
    assert receipted(unit.store) >= set(before)
    assert result.freed_files and sorted(result.freed_files) == sorted(bins)
    # The chain still verifies on the unit (payloads explained as offloaded) and at the target.
    on_unit = verify_store(DirectoryStoreReader(unit.store), unpinned=True, allow_freed=True)
    assert on_unit.intact, on_unit.all_findings
    assert sorted(on_unit.offloaded) == sorted(bins)
    at_dock = verify_store(DirectoryStoreReader(target.root), unpinned=True)
    assert at_dock.intact, at_dock.all_findings
    # The round also sent its own receipt/freed events, so the target holds the whole chain
    # up to the shutdown event written after the round (the next round takes that one).
    shutdown_seq = scan_store(unit.store).entries[-1].seq
    later = {f"{shutdown_seq:010d}.json", f"{shutdown_seq:010d}.sig"}
    assert set(store_files(unit.store)) - set(at_target) == later


def test_receipt_event_names_target_hash_size_and_retention(unit: Unit, tmp_path: Path) -> None:
    target = DirectoryTarget(tmp_path / "dock")
    clock = StepClock()
    offload(unit.store, target, unit.open_sealer(), clock, always, retention=Retention(10, 20))
    rows = {f["file"]: f for e in chain_events(unit.store, "offload_receipt") for f in e["files"]}
    assert all(e["target"] == target.url for e in chain_events(unit.store, "offload_receipt"))
    marked_bin = next(
        json.loads(p.read_bytes())["payload"]["file"]
        for p in sorted(unit.store.glob("*.json"))
        if json.loads(p.read_bytes()).get("recording") == "rec-b"
    )
    plain = rows["0000000002.bin"]
    assert plain["size"] == len((target.root / "0000000002.bin").read_bytes())
    days = 86_400_000_000
    assert 10 * days < plain["receipt"]["retain_until_utc_us"] - clock.offset < 11 * days
    marked = rows[marked_bin]["receipt"]["retain_until_utc_us"] - clock.offset
    assert 20 * days < marked < 21 * days


def test_order_key_first_then_marked_recording_then_older_ones(unit: Unit, tmp_path: Path) -> None:
    probe = TargetProbe(DirectoryTarget(tmp_path / "dock"))
    run(unit, probe)
    puts = probe.puts()
    assert puts[0] == "device-pub.pem"
    recording_of = {}
    for p in unit.store.glob("*.json"):
        m = json.loads(p.read_bytes())
        rec = m.get("recording") or m.get("fields", {}).get("recording")
        if rec:
            for ext in ("json", "sig", "bin"):
                recording_of[f"{p.stem}.{ext}"] = rec
    order = [recording_of.get(n, "-") for n in puts]
    last_b = max(i for i, r in enumerate(order) if r == "rec-b")
    first_a = min(i for i, r in enumerate(order) if r == "rec-a")
    assert last_b < first_a, order
    # Within a unit entry: payload, signature, manifest (the commit point) last.
    i = puts.index("0000000002.bin")
    assert puts[i : i + 3] == ["0000000002.bin", "0000000002.sig", "0000000002.json"]


def test_second_round_while_docked_sends_nothing_and_writes_no_event(
    unit: Unit, tmp_path: Path
) -> None:
    target = DirectoryTarget(tmp_path / "dock")
    sealer = unit.open_sealer()  # one boot, docked: the dock loop runs round after round
    offload(unit.store, target, sealer, StepClock(), always)
    head = sealer.head_seq
    probe = TargetProbe(target)
    again = offload(unit.store, probe, sealer, StepClock(), always)
    assert probe.puts() == []
    assert again.uploaded_files == 0 and again.receipt_events == 0 and again.complete
    assert sealer.head_seq == head  # the chain does not grow while the unit sits in the dock


def test_new_evidence_after_a_round_goes_in_the_next(unit: Unit, tmp_path: Path) -> None:
    target = DirectoryTarget(tmp_path / "dock")
    run(unit, target)
    sealer = unit.open_sealer()
    record(sealer, StepClock(), "rec-c", units=2, first_frame=500)
    unit.shutdown(sealer)
    done_before = receipted(unit.store)
    probe = TargetProbe(target)
    result = run(unit, probe)
    assert result.complete
    assert probe.puts() and not set(probe.puts()) & done_before
    assert not list(unit.store.glob("*.bin"))
    assert verify_store(DirectoryStoreReader(target.root), unpinned=True).intact


def test_undock_mid_file_stops_cleanly_and_resumes(unit: Unit, tmp_path: Path) -> None:
    # Big payloads so one file takes several reads; undock on the 3rd read of the round.
    sealer = unit.open_sealer()
    record(sealer, StepClock(), "rec-big", units=2, payload_bytes=3 << 20, first_frame=900)
    unit.shutdown(sealer)
    target = DirectoryTarget(tmp_path / "dock")
    reads = iter(range(10_000))
    calls = {"n": 0}

    def until_undock() -> bool:
        calls["n"] += 1
        return next(reads) < 40

    first = run(unit, target, should_continue=until_undock)
    assert first.stopped == "undocked" and not first.complete
    assert not any(n.startswith(".tmp-") for n in store_files(target.root))
    # Nothing freed that the chain does not show as confirmed at the target.
    assert freed(unit.store) <= receipted(unit.store)
    for name in freed(unit.store):
        assert (target.root / name).is_file()
    second = run(unit, TargetProbe(target))
    assert second.complete
    assert not list(unit.store.glob("*.bin"))
    assert verify_store(DirectoryStoreReader(target.root), unpinned=True).intact


def test_target_full_stops_with_error_keeps_unconfirmed(unit: Unit, tmp_path: Path) -> None:
    before = store_files(unit.store)
    small = DirectoryTarget(tmp_path / "dock", capacity_bytes=6000)
    with pytest.raises(StorageFullError, match="full"):
        run(unit, small)
    kept = {n for n in before if n.endswith(".bin")} - freed(unit.store)
    for name in kept:
        assert (unit.store / name).read_bytes() == before[name]
    for name in freed(unit.store):
        assert (small.root / name).read_bytes() == before[name]
    big = DirectoryTarget(tmp_path / "dock")
    assert run(unit, big).complete
    for name, data in before.items():
        assert (big.root / name).read_bytes() == data


def test_corrupted_copy_at_target_fails_receipt_and_frees_nothing_of_it(
    unit: Unit, tmp_path: Path
) -> None:
    inner = DirectoryTarget(tmp_path / "dock")

    def rot(name: str, receipt: Receipt) -> Receipt:
        if name == "0000000003.bin":
            path = inner.root / name
            path.chmod(0o644)
            data = bytearray(path.read_bytes())
            data[10] ^= 0xFF
            path.write_bytes(bytes(data))
        return receipt

    with pytest.raises(IntegrityError, match="target copy differs"):
        run(unit, TargetProbe(inner, after_put=rot))
    assert (unit.store / "0000000003.bin").is_file()
    assert "0000000003.bin" not in receipted(unit.store)
    assert "0000000003.bin" not in freed(unit.store)


def test_receipt_that_does_not_describe_the_file_is_refused(unit: Unit, tmp_path: Path) -> None:
    def lie(name: str, receipt: Receipt) -> Receipt:
        return Receipt(receipt.target, name, receipt.size, "0" * 64, receipt.md5_b64, 0)

    with pytest.raises(IntegrityError, match="receipt does not describe"):
        run(unit, TargetProbe(DirectoryTarget(tmp_path / "dock"), after_put=lie))
    assert len(list(unit.store.glob("*.bin"))) == 5
    assert not receipted(unit.store)


def test_link_loss_keeps_receipts_of_what_was_confirmed(unit: Unit, tmp_path: Path) -> None:
    inner = DirectoryTarget(tmp_path / "dock")
    count = {"n": 0}

    def drop(op: str, name: str) -> None:
        count["n"] += op == "put"
        if count["n"] == 12:
            raise ConnectionError("link down")

    with pytest.raises(ConnectionError, match="link down"):
        run(unit, TargetProbe(inner, before=drop))
    assert receipted(unit.store)  # progress up to the failure is on the chain
    assert freed(unit.store) <= receipted(unit.store)
    done_before = receipted(unit.store)
    probe = TargetProbe(inner)
    assert run(unit, probe).complete
    assert probe.puts() and not set(probe.puts()) & done_before


def _cut_points() -> list[tuple[str, int]]:
    return [("put", n) for n in range(1, 40, 3)] + [("event", n) for n in range(1, 7)]


@pytest.mark.parametrize(("where", "n"), _cut_points())
def test_power_cut_anywhere_loses_nothing_frees_nothing_unconfirmed(
    unit: Unit, tmp_path: Path, where: str, n: int
) -> None:
    before = store_files(unit.store)
    bins = {k for k in before if k.endswith(".bin")}
    inner = DirectoryTarget(tmp_path / "dock")
    count = {"n": 0}

    def cut(op: str, name: str) -> None:
        if op == "put":
            count["n"] += 1
            if where == "put" and count["n"] == n:
                raise PowerCut(name)

    cut_after = n if where == "event" else 10**9
    with contextlib.suppress(PowerCut):
        run(unit, TargetProbe(inner, before=cut), wrap=lambda s: CuttingSink(s, cut_after))
    # After the cut: every payload is on the unit or confirmed at the target (named as freed
    # only after its receipt event), and the unit's chain still verifies.
    for name in bins:
        if not (unit.store / name).exists():
            assert name in freed(unit.store) and name in receipted(unit.store)
            assert (inner.root / name).read_bytes() == before[name]
    report = verify_store(DirectoryStoreReader(unit.store), unpinned=True, allow_freed=True)
    assert report.intact, report.all_findings
    # Next boot re-runs the offload: it completes without re-sending any receipted file.
    done_before = receipted(unit.store)
    probe = TargetProbe(inner)
    assert run(unit, probe).complete
    assert not set(probe.puts()) & done_before
    for name, data in before.items():
        assert (inner.root / name).read_bytes() == data
    assert not list(unit.store.glob("*.bin"))
    assert verify_store(DirectoryStoreReader(inner.root), unpinned=True).intact


def test_plan_rebuilds_confirmed_files_from_both_receipt_forms() -> None:
    entries = [
        parse_entry(0, {"type": "event", "kind": "boot", "fields": {}}),
        parse_entry(
            1,
            {
                "type": "event",
                "kind": "offload_receipt",
                "fields": {
                    "target": "file:///t",
                    "files": [{"file": "0000000000.json", "sha256": "ab", "size": 3}],
                },
            },
        ),
        parse_entry(
            2,
            {
                "type": "event",
                "kind": "offload_receipt",
                "fields": {
                    "target": "file:///t",
                    "file": "0000000000.sig",
                    "sha256": "cd",
                    "size": 64,
                },
            },
        ),
    ]
    state = ChainState.from_entries(entries)
    assert set(state.confirmed_at("file:///t")) == {"0000000000.json", "0000000000.sig"}
    assert state.confirmed_at("s3://other") == {}
    plan = build_plan(entries, ["device-pub.pem"], state, "file:///t", set())
    names = [p.name for p in plan]
    assert names[0] == "device-pub.pem"
    assert "0000000000.json" not in names
    # A different target gets everything again.
    assert len(build_plan(entries, [], state, "s3://other/x", set())) == 6


def test_plan_skips_payloads_gone_from_the_unit_and_resends_withdrawn_ones() -> None:
    unit_m = {"type": "unit", "recording": "r", "payload": {"file": "0000000000.bin"}}
    files = [{"file": f"0000000000.{x}", "sha256": "00", "size": 1} for x in ("bin", "sig", "json")]
    entries: list[Entry] = [
        parse_entry(0, unit_m),
        parse_entry(1, {"kind": "offload_receipt", "fields": {"target": "x", "files": files}}),
        parse_entry(
            2, {"kind": "offload_freed", "fields": {"target": "x", "files": [files[0]["file"]]}}
        ),
    ]
    state = ChainState.from_entries(entries)
    # Freed and gone: nothing to send. Missing without a freed event: nothing either (verify
    # reports it). Freed and confirmed but still present (a cut before the unlink): confirmed.
    assert build_plan(entries[:1], [], state, "x", set()) == []
    assert len(build_plan(entries[:1], [], ChainState(), "x", set())) == 2
    assert build_plan(entries[:1], [], state, "x", {"0000000000.bin"}) == []
    # A signed mismatch withdraws the payload's confirmation: present, so it is sent again.
    bad = {"target": "x", "files": [{"file": "0000000000.bin", "reason": "differs"}]}
    entries.append(parse_entry(3, {"kind": "offload_mismatch", "fields": bad}))
    state = ChainState.from_entries(entries)
    plan = build_plan(entries[:1], [], state, "x", {"0000000000.bin"})
    assert [p.name for p in plan] == ["0000000000.bin"]
    assert build_plan(entries[:1], [], state, "x", set()) == []


def test_s3_settings_env_wins_over_profile_and_hides_secrets() -> None:
    env = {
        "AWS_ENDPOINT_URL": "https://s3.example:9000",
        "AWS_ACCESS_KEY_ID": "AKID",
        "AWS_SECRET_ACCESS_KEY": "very-secret",
        "AWS_CA_BUNDLE": "/etc/ca.pem",
    }
    s = S3Settings.resolve(env, endpoint_url="https://profile", region="eu-west-1", ca_bundle="/x")
    assert (s.endpoint_url, s.region, s.ca_bundle) == (
        "https://s3.example:9000",
        "eu-west-1",
        "/etc/ca.pem",
    )
    assert "very-secret" not in repr(s) and "AKID" not in repr(s)
    p = S3Settings.resolve({}, endpoint_url="https://profile", ca_bundle="/x")
    assert (p.endpoint_url, p.ca_bundle, p.region) == ("https://profile", "/x", "us-east-1")


def test_open_target_routes_urls_and_rejects_others(tmp_path: Path) -> None:
    t = open_target(tmp_path.as_uri())
    assert isinstance(t, DirectoryTarget) and t.root == tmp_path
    with pytest.raises(ValueError, match=r"offload\.target"):
        open_target("ftp://x/y")
    assert target_for_device("s3://b/p/", "unit-1") == "s3://b/p/unit-1"
    with pytest.raises(ValueError, match="device id"):
        target_for_device("s3://b/p", "../x")


def test_files_in_flight_keep_each_manifest_after_its_confirmed_payload_and_signature(
    unit: Unit, tmp_path: Path
) -> None:
    # A target that allows 4 files at once (as S3Target does): the round must still receipt and
    # free exactly what a one-at-a-time round does, and never send an entry's manifest (its
    # commit point) before that entry's payload and signature are confirmed at the target.
    lock, active, most = threading.Lock(), [0], [0]

    def before(op: str, name: str) -> None:
        if op == "put":
            with lock:
                active[0] += 1
                most[0] = max(most[0], active[0])
            if name.endswith(".bin"):
                time.sleep(0.02)  # a slow upload, so later small files overtake it

    def after_put(name: str, receipt: Receipt) -> Receipt:
        with lock:
            active[0] -= 1
        return receipt

    probe = TargetProbe(DirectoryTarget(tmp_path / "dock"), before=before, after_put=after_put)
    probe.parallel = 4
    result = run(unit, probe)
    assert result.complete and most[0] > 1
    assert not list(unit.store.glob("*.bin"))  # every payload confirmed, receipted and freed
    calls = list(probe.calls)
    for i, (op, name) in enumerate(calls):
        if op == "put" and name.endswith(".json"):
            stem = name[: -len(".json")]
            for part in (f"{stem}.sig", f"{stem}.bin"):
                if ("put", part) in calls:
                    assert ("confirm", part) in calls[:i], (name, part, calls)
