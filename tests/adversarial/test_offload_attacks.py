"""Attacks on the offload: a target that is the unit's own storage, and target copies that go bad
between their receipt and the unit freeing its own. Each attack asserts the refusal (exit 2, one
line, nothing written) or the blocked free, and that nothing was freed that the target did not
hold, byte for byte, at the moment of freeing (read from the target itself)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from evidence.sealing import JsonValue
from evidence.store import DirectoryStoreReader
from evidence.verify import verify_store
from firmware.cli import main
from firmware.layout import UnitLayout
from hal.errors import ConfigError
from hal.software_key import SoftwareDeviceKey
from offload.plan import ChainState
from offload.runner import scan_store
from offload.targets import DirectoryTarget, OffloadInterrupted
from tests.offload_store import (
    StepClock,
    TargetProbe,
    Unit,
    WatchingSink,
    chain_events,
    freed,
    make_unit,
    provisioned,
    receipted,
    record,
    run_round,
    store_files,
)

# ------------------------------------------------------------------ helpers


def payload_digests(store: Path) -> dict[str, str]:
    """SHA-256 of every payload as its signed manifest names it (the truth a copy must match)."""
    out = {}
    for p in sorted(store.glob("*.json")):
        m = json.loads(p.read_bytes())
        if m.get("type") == "unit":
            out[m["payload"]["file"]] = m["payload"]["sha256"]
    return out


def assert_freed_only_what_target_holds(store: Path, target_root: Path) -> None:
    """Every payload the unit freed is at the target with the bytes its manifest names."""
    digests = payload_digests(store)
    for name in freed(store):
        if (store / name).exists():
            continue  # named by a freed event but kept (not unlinked)
        copy = target_root / name
        assert copy.is_file(), f"{name} freed but absent at the target"
        assert hashlib.sha256(copy.read_bytes()).hexdigest() == digests[name], name


def checking_freed_against(
    target_root: Path, store: Path
) -> Callable[[str, Mapping[str, JsonValue]], None]:
    """An event hook asserting, when ``offload_freed`` is written (just before the unlinks),
    that the target holds every named payload with the unit's bytes."""

    def hook(kind: str, fields: Mapping[str, JsonValue]) -> None:
        if kind != "offload_freed":
            return
        files = fields["files"]
        assert isinstance(files, list)
        for name in files:
            assert isinstance(name, str)
            there = (target_root / name).read_bytes()
            assert there == (store / name).read_bytes(), f"{name} freed but differs at the target"

    return hook


def corrupt(path: Path) -> None:
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40
    path.write_bytes(bytes(data))


@pytest.fixture
def unit(tmp_path: Path) -> Unit:
    u = make_unit(tmp_path / "unit")
    sealer = u.open_sealer()
    clock = StepClock()
    record(sealer, clock, "rec-a", units=3)
    record(sealer, clock, "rec-b", units=2, marked=True, first_frame=90)
    u.shutdown(sealer)
    return u


# ------------------------------------------------------------------ the target is the unit


def bwc_offload(
    device: Path, target_url: str, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["offload", "--device", str(device), "--set", f"offload.target={target_url}"])
    err = capsys.readouterr().err
    return code, err


def assert_refused_untouched(
    code: int, err: str, layout: UnitLayout, before: dict[str, bytes]
) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "offload target" in lines[0] and "unit's own directory" in lines[0], lines[0]
    assert store_files(layout.evidence) == before  # not one event, receipt or unlink
    assert len(list(layout.evidence.glob("*.bin"))) == 5


SHARE_ATTACKS: dict[str, Callable[[Path, Path], str]] = {}


def attack(name: str) -> Callable[[Callable[[Path, Path], str]], Callable[[Path, Path], str]]:
    def register(f: Callable[[Path, Path], str]) -> Callable[[Path, Path], str]:
        SHARE_ATTACKS[name] = f
        return f

    return register


@attack("share folder is a symlink to the unit's evidence/")
def _symlink_to_store(tmp: Path, device: Path) -> str:
    (tmp / "share").mkdir()
    (tmp / "share" / "unit-7").symlink_to(device / "evidence")
    return (tmp / "share").as_uri()


@attack("share is a symlink to the unit's directory")
def _symlink_to_unit(tmp: Path, device: Path) -> str:
    (tmp / "share").symlink_to(device)
    return (tmp / "share").as_uri()


@attack("relative target inside the unit (the old demo default)")
def _relative_inside(tmp: Path, device: Path) -> str:
    return "file://dock"


@attack("relative target that is the unit's directory")
def _relative_is(tmp: Path, device: Path) -> str:
    return "file://.."  # DEVICE/../<device-id>: the unit directory is named after its id here


@attack("target containing the unit's directory")
def _contains(tmp: Path, device: Path) -> str:
    return (tmp / "units").as_uri()  # tmp/units/unit-7 holds the unit as unit-7/sd


@attack("dotted path back into the store")
def _dotted(tmp: Path, device: Path) -> str:
    return (device / "evidence" / ".." / "evidence").as_uri()


def unit_dir_for(name: str, tmp: Path) -> Path:
    if name == "relative target that is the unit's directory":
        return tmp / "unit-7"
    if name == "target containing the unit's directory":
        return tmp / "units" / "unit-7" / "sd"
    return tmp / "device"


@pytest.mark.parametrize("name", sorted(SHARE_ATTACKS))
def test_target_overlapping_the_unit_is_refused_before_anything_is_written(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    device = unit_dir_for(name, tmp_path)
    layout = provisioned(tmp_path, device=device)
    url = SHARE_ATTACKS[name](tmp_path, device)
    before = store_files(layout.evidence)
    code, err = bwc_offload(device, url, capsys)
    assert_refused_untouched(code, err, layout, before)


@pytest.fixture
def bind_mount(tmp_path: Path) -> Iterator[Callable[[Path, Path], None]]:
    mounted: list[Path] = []

    def mount(source: Path, where: Path) -> None:
        where.mkdir(parents=True)
        done = subprocess.run(
            ["mount", "--bind", str(source), str(where)], capture_output=True, check=False
        )
        if done.returncode != 0:
            pytest.skip(f"bind mounts need root here: {done.stderr.decode().strip()}")
        mounted.append(where)

    yield mount
    for where in reversed(mounted):
        subprocess.run(["umount", str(where)], check=False)


def test_bind_mounted_store_as_share_is_refused_by_inode(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bind_mount: Callable[[Path, Path], None]
) -> None:
    layout = provisioned(tmp_path)
    # The share's unit folder is the unit's evidence/ under another path: no symlink to resolve.
    bind_mount(layout.evidence, tmp_path / "share" / "unit-7")
    before = store_files(layout.evidence)
    code, err = bwc_offload(layout.root, (tmp_path / "share").as_uri(), capsys)
    assert_refused_untouched(code, err, layout, before)
    assert "by inode" in err


def test_bind_mounted_ancestor_as_share_is_refused_by_inode(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bind_mount: Callable[[Path, Path], None]
) -> None:
    layout = provisioned(tmp_path, device=tmp_path / "outer" / "unit-7" / "sd")
    bind_mount(tmp_path / "outer", tmp_path / "share")  # share/unit-7 is outer/unit-7, around sd
    before = store_files(layout.evidence)
    code, err = bwc_offload(layout.root, (tmp_path / "share").as_uri(), capsys)
    assert_refused_untouched(code, err, layout, before)


def test_library_refuses_a_target_that_is_the_store_itself(unit: Unit) -> None:
    before = store_files(unit.store)
    with pytest.raises(ConfigError, match="unit's own directory"):
        run_round(unit, DirectoryTarget(unit.store))
    after = store_files(unit.store)
    # The round wrote no receipt and freed nothing (only its boot's own events were added).
    assert {n: d for n, d in after.items() if n in before} == before
    assert not receipted(unit.store) and not freed(unit.store)


def test_share_swapped_for_a_link_into_the_store_mid_round_stops_writes_and_frees(
    unit: Unit, tmp_path: Path
) -> None:
    share = tmp_path / "share"
    inner = DirectoryTarget(share)
    swapped = {"done": False}

    def swap(op: str, name: str) -> None:
        if op == "put" and name.endswith(".bin") and not swapped["done"]:
            swapped["done"] = True
            os.rename(share, tmp_path / "share-moved")
            share.symlink_to(unit.store)

    bins = {p.name for p in unit.store.glob("*.bin")}
    with pytest.raises(ConfigError, match="unit's own directory"):
        run_round(unit, TargetProbe(inner, before=swap))
    assert {p.name for p in unit.store.glob("*.bin")} == bins
    assert not freed(unit.store)


# ------------------------------------------------------------------ copies that go bad


def test_copy_corrupted_between_receipt_and_free_blocks_the_free_then_is_resent(
    unit: Unit, tmp_path: Path
) -> None:
    target = DirectoryTarget(tmp_path / "dock")
    victim = "0000000002.bin"  # the first unit of rec-a
    truth = (unit.store / victim).read_bytes()

    def hook(kind: str, fields: Mapping[str, JsonValue]) -> None:
        if kind == "offload_receipt" and (target.root / victim).exists():
            files = fields["files"]
            assert isinstance(files, list)
            if any(isinstance(f, dict) and f.get("file") == victim for f in files):
                corrupt(target.root / victim)
        checking_freed_against(target.root, unit.store)(kind, fields)

    result = run_round(unit, target, wrap=lambda s: WatchingSink(s, hook))

    assert not result.complete
    assert [f for f, _ in result.mismatched] == [victim]
    assert (unit.store / victim).read_bytes() == truth  # kept: the only good copy
    assert victim not in freed(unit.store)
    (event,) = chain_events(unit.store, "offload_mismatch")
    assert event["target"] == target.url and event["files"][0]["file"] == victim
    assert "differs" in event["files"][0]["reason"]
    assert_freed_only_what_target_holds(unit.store, target.root)

    # The next round sends it again, checks it again, and only then frees it.
    again = run_round(
        unit,
        target,
        wrap=lambda s: WatchingSink(s, checking_freed_against(target.root, unit.store)),
    )
    assert again.complete, again
    assert (target.root / victim).read_bytes() == truth
    assert not (unit.store / victim).exists()
    assert_freed_only_what_target_holds(unit.store, target.root)
    device_raw = SoftwareDeviceKey.load(unit.key_path).public_key_raw()
    at_dock = verify_store(DirectoryStoreReader(target.root), trusted_keys=[device_raw])
    assert at_dock.intact, at_dock.all_findings


def test_old_receipt_is_not_trusted_when_freeing_a_round_later(unit: Unit, tmp_path: Path) -> None:
    """Payload and signature confirmed in one round, the manifest in the next: freeing happens
    in the second round, and must check the copy then, not rely on the first round's receipt."""
    target = DirectoryTarget(tmp_path / "dock")
    victim = "0000000002"

    def cut(op: str, name: str) -> None:
        if op == "put" and name == f"{victim}.json":
            raise OffloadInterrupted("undocked")

    first = run_round(unit, TargetProbe(target, before=cut))
    assert first.stopped == "undocked"
    assert {f"{victim}.bin", f"{victim}.sig"} <= receipted(unit.store)
    assert (unit.store / f"{victim}.bin").exists()

    corrupt(target.root / f"{victim}.bin")  # between the receipt and the free, a round apart
    second = run_round(unit, target)
    assert [f for f, _ in second.mismatched] == [f"{victim}.bin"]
    assert (unit.store / f"{victim}.bin").exists()
    assert_freed_only_what_target_holds(unit.store, target.root)

    third = run_round(unit, target)
    assert third.complete and not (unit.store / f"{victim}.bin").exists()
    assert_freed_only_what_target_holds(unit.store, target.root)


def test_copy_deleted_before_the_free_blocks_it(unit: Unit, tmp_path: Path) -> None:
    target = DirectoryTarget(tmp_path / "dock")

    def hook(kind: str, fields: Mapping[str, JsonValue]) -> None:
        if kind == "offload_receipt":
            for p in target.root.glob("*.bin"):
                p.unlink()

    result = run_round(unit, target, wrap=lambda s: WatchingSink(s, hook))
    assert len(list(unit.store.glob("*.bin"))) == 5 and not result.freed_files
    assert {f for f, _ in result.mismatched} == set(payload_digests(unit.store))
    assert_freed_only_what_target_holds(unit.store, target.root)


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_copy_replaced_by_a_link_to_the_units_own_file_blocks_the_free(
    link: str, unit: Unit, tmp_path: Path
) -> None:
    target = DirectoryTarget(tmp_path / "dock")
    victim = "0000000002.bin"
    truth = (unit.store / victim).read_bytes()

    def hook(kind: str, fields: Mapping[str, JsonValue]) -> None:
        copy = target.root / victim
        untouched = copy.exists() and not copy.is_symlink() and copy.stat().st_nlink == 1
        if kind == "offload_receipt" and untouched:
            copy.unlink()
            if link == "symlink":
                copy.symlink_to(unit.store / victim)  # same bytes, but the unit's own file
            else:
                os.link(unit.store / victim, copy)

    result = run_round(unit, target, wrap=lambda s: WatchingSink(s, hook))
    assert [f for f, _ in result.mismatched] == [victim]
    assert "unit's own file" in result.mismatched[0][1]
    assert (unit.store / victim).read_bytes() == truth

    # The next round does not take the link for a copy: it sends a file of its own, then frees.
    again = run_round(
        unit,
        target,
        wrap=lambda s: WatchingSink(s, checking_freed_against(target.root, unit.store)),
    )
    assert again.complete, again
    copy = target.root / victim
    assert not copy.is_symlink() and copy.stat().st_nlink == 1 and copy.read_bytes() == truth
    assert not (unit.store / victim).exists()


def test_hostile_manifests_on_the_unit_are_sent_not_parsed_loosely(unit: Unit) -> None:
    """A 1 GiB sparse manifest is never read whole, and NaN, duplicate keys or a lone surrogate
    give no crash and no loose reading (a NaN-sized receipt does not confirm anything)."""
    huge = unit.store / "0000000900.json"
    with huge.open("wb") as f:
        f.truncate(1 << 30)
    files = [{"file": "0000000002.bin", "sha256": "00", "size": float("nan")}]
    bad = json.dumps({"kind": "offload_receipt", "fields": {"target": "x", "files": files}})
    (unit.store / "0000000901.json").write_text(bad)  # NaN: json.dumps writes it bare
    (unit.store / "0000000902.json").write_bytes(b'{"kind": "marker", "kind": "offload_freed"}')
    (unit.store / "0000000903.json").write_bytes(b'{"kind": "\\ud800"}')
    scan = scan_store(unit.store)
    hostile = {e.seq: e for e in scan.entries if e.seq >= 900}
    assert sorted(hostile) == [900, 901, 902, 903]
    assert all(e.kind is None and e.payload is None for e in hostile.values())
    assert ChainState.from_entries(scan.entries).confirmed == {}
