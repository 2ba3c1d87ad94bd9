"""The stock-tools recipe in docs/evidence-format.md, extracted from the document and run as
written over a real store holding every entry kind: it accepts the unit's store and its dock copy,
and rejects each kind of alteration (#12 item 10)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from evidence.timestamp import anchor_head
from hal.system_clock import SystemClock
from offload.targets import DirectoryTarget
from tests.offload_store import StepClock, Unit, make_unit, record, run_round
from tests.tsa import LocalTsa, openssl_ts_available, start_tsa

DOC = Path(__file__).resolve().parents[2] / "docs" / "evidence-format.md"

pytestmark = pytest.mark.skipif(
    shutil.which("openssl") is None or openssl_ts_available() is not None,
    reason="needs openssl (with ts) and coreutils",
)


def recipe() -> str:
    m = re.search(r"```sh evidence-recipe\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    assert m is not None, "the recipe block is missing from docs/evidence-format.md"
    return m.group(1)


@pytest.fixture(scope="module")
def tsa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTsa]:
    server = start_tsa(tmp_path_factory.mktemp("tsa"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, tsa: LocalTsa) -> tuple[Unit, Path]:
    """A unit with every entry kind, offloaded (so freed on the unit) to a dock directory."""
    unit = make_unit(tmp_path_factory.mktemp("unit"))
    clock = StepClock()
    sealer = unit.open_sealer()
    record(sealer, clock, "rec0", units=3, marked=True)
    unit.shutdown(sealer)
    # A power cut in the middle of a write: the next boot moves the leftover to orphans/ and
    # names it, with its size and hash, in a signed power_loss_discovered event.
    sealer = unit.open_sealer()
    record(sealer, clock, "rec1", units=2, first_frame=90)
    (unit.store / f"{sealer.head_seq + 1:010d}.bin").write_bytes(b"half of a unit's payload")
    sealer = unit.open_sealer()
    assert sealer.recovery is not None and sealer.recovery.orphans
    assert anchor_head(sealer, tsa.url, SystemClock()).anchored
    unit.shutdown(sealer)
    dock = DirectoryTarget(unit.root / "dock" / unit.device_id)
    assert run_round(unit, dock).complete
    assert run_round(unit, dock).complete  # the receipts of the first round reach the dock too
    return unit, dock.root


def fingerprint(unit: Unit) -> str:
    m = json.loads((unit.store / "0000000000.json").read_bytes())
    return str(m["key"])


def run(store: Path, unit: Unit, tsa: LocalTsa, **env: str) -> subprocess.CompletedProcess[str]:
    full = {"PATH": "/usr/bin:/bin", "FP": fingerprint(unit), "TSA_CA": str(tsa.ca_cert), **env}
    return subprocess.run(
        ["sh", "-c", recipe()], cwd=store, env=full, capture_output=True, text=True, check=False
    )


def kinds(store: Path) -> set[str]:
    out = set()
    for p in store.glob("[0-9]*.json"):
        m = json.loads(p.read_bytes())
        out.add(m["kind"] if m["type"] == "event" else "unit")
    return out


def test_the_store_has_every_entry_kind(built: tuple[Unit, Path]) -> None:
    unit, dock = built
    want = {"unit", "boot", "record_start", "record_stop", "marker", "shutdown"}
    want |= {"power_loss_discovered", "timestamp_token", "offload_receipt", "offload_freed"}
    assert want <= kinds(unit.store)
    assert want - {"offload_freed", "offload_receipt"} <= kinds(dock)
    assert list((unit.store / "orphans").iterdir()) and not list(unit.store.glob("*.bin"))


def test_recipe_accepts_the_unit_store_and_its_dock_copy(
    built: tuple[Unit, Path], tsa: LocalTsa
) -> None:
    unit, dock = built
    ok = run(unit.store, unit, tsa, ALLOW_FREED="1")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "entries checked" in ok.stdout and "Verification: OK" in ok.stdout
    at_dock = run(dock, unit, tsa)
    assert at_dock.returncode == 0, at_dock.stdout + at_dock.stderr
    # Strict by default: the unit's own store lacks the freed payloads.
    assert run(unit.store, unit, tsa).returncode != 0


def test_recipe_needs_the_registered_fingerprint(built: tuple[Unit, Path], tsa: LocalTsa) -> None:
    unit, dock = built
    assert run(dock, unit, tsa, FP="0" * 64).returncode != 0


def _first(store: Path, kind: str) -> str:
    for p in sorted(store.glob("[0-9]*.json")):
        m = json.loads(p.read_bytes())
        if (m["kind"] if m["type"] == "event" else "unit") == kind:
            return p.name
    raise AssertionError(kind)


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.chmod(0o644)
    path.write_bytes(bytes(data))


ALTERATIONS = [
    "nothing (unit)", "nothing (dock)", "unit manifest", "unit signature", "unit payload",
    "payload deleted", "event manifest",
    "receipt", "freed event", "power loss event", "orphan altered", "orphan deleted",
    "orphan planted", "token event", "middle entry deleted", "device key swapped",
]  # fmt: skip


@pytest.mark.parametrize("how", ALTERATIONS)
def test_recipe_rejects_each_alteration(
    built: tuple[Unit, Path], tsa: LocalTsa, tmp_path: Path, how: str
) -> None:
    unit, dock = built
    on_unit = ("nothing (unit)", "freed event", "orphan altered", "orphan deleted")
    src = unit.store if how in on_unit else dock
    store = tmp_path / "copy"
    shutil.copytree(src, store)
    for p in store.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    orphan = next((store / "orphans").iterdir()) if (store / "orphans").exists() else None
    if how == "unit manifest":
        _flip(store / _first(store, "unit"))
    elif how == "unit signature":
        _flip(store / _first(store, "unit").replace(".json", ".sig"))
    elif how == "unit payload":
        _flip(store / _first(store, "unit").replace(".json", ".bin"))
    elif how == "payload deleted":
        (store / _first(store, "unit").replace(".json", ".bin")).unlink()
    elif how == "event manifest":
        _flip(store / _first(store, "marker"))
    elif how == "receipt":
        _flip(store / _first(store, "offload_receipt"))
    elif how == "freed event":
        _flip(store / _first(store, "offload_freed"))
    elif how == "power loss event":
        _flip(store / _first(store, "power_loss_discovered"))
    elif how == "orphan altered":
        assert orphan is not None
        _flip(orphan)
    elif how == "orphan deleted":
        assert orphan is not None
        orphan.unlink()
    elif how == "orphan planted":
        (store / "orphans").mkdir(exist_ok=True)
        (store / "orphans" / "planted.bin").write_bytes(b"x")
    elif how == "token event":
        _flip(store / _first(store, "timestamp_token"))
    elif how == "middle entry deleted":
        (store / "0000000003.json").unlink()
    elif how == "device key swapped":
        from tests.vectors.evidence_store import fixed_device_key

        (store / "device-pub.pem").write_bytes(fixed_device_key(2).public_pem())
    allow = "1" if src == unit.store else "0"
    result = run(store, unit, tsa, ALLOW_FREED=allow)
    if how.startswith("nothing"):  # the copy itself is good: only the alteration may fail it
        assert result.returncode == 0, result.stdout[-500:] + result.stderr[-500:]
    else:
        assert result.returncode != 0, (how, result.stdout[-500:])
