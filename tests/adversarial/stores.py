"""Real sealed stores for the adversarial suite, and the moves an attacker makes on them.

Test support only. Stores are built with the real ``Sealer`` and fixed test keys; ``resign``
re-signs a manifest with a given key, which is what a forger holding that key (a stolen or a
fabricated unit key) can do.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from evidence.keys import AgencyPublicKey
from evidence.sealer import Sealer
from firmware.cli import main
from hal.software_key import SoftwareDeviceKey
from tests.vectors.evidence_store import build_store, fixed_device_key, write_agency_pair

BOOT_A = "aa" * 16
BOOT_B = "bb" * 16


@dataclass
class Attackable:
    """A unit's store plus what the agency holds: its registered key and the agency key pair."""

    root: Path
    store: Path
    key: SoftwareDeviceKey
    agency: AgencyPublicKey
    agency_key: Path
    registry: Path

    @property
    def trust(self) -> list[str]:
        return ["--trust", str(self.registry)]


def make_store(
    root: Path,
    payloads: Sequence[bytes] = (b"a" * 300, b"b" * 300, b"c" * 300),
    *,
    device_id: str = "bwc-test-0001",
    seed: int = 1,
) -> Attackable:
    agency, _ = write_agency_pair(root / "agency", 0xAD7E)
    key = fixed_device_key(seed)
    store = root / device_id
    build_store(store, key, [agency], list(payloads), device_id=device_id, boot_id=BOOT_A)
    registry = root / "registry"
    registry.mkdir(exist_ok=True)
    (registry / f"{device_id}.pem").write_bytes(key.public_pem())
    return Attackable(root, store, key, agency, root / "agency" / "agency-key.pem", registry)


def entry(seq: int, ext: str) -> str:
    return f"{seq:010d}.{ext}"


def first(store: Path, predicate: Any) -> int:
    for path in sorted(store.glob("[0-9]*.json")):
        m = json.loads(path.read_bytes())
        if predicate(m):
            return int(m["seq"])
    raise AssertionError("no such entry")


def resign(store: Path, seq: int, data: bytes, key: SoftwareDeviceKey) -> None:
    """Replace entry ``seq``'s manifest with ``data``, validly signed by ``key``."""
    (store / entry(seq, "json")).write_bytes(data)
    (store / entry(seq, "sig")).write_bytes(key.sign(data))


def seal_more(a: Attackable, *events: tuple[str, dict[str, Any]]) -> Sealer:
    """A later boot of the same unit that seals ``events``, then shuts down cleanly."""
    sealer = Sealer.open(a.store, a.key, [a.agency], "bwc-test-0001", BOOT_B, "simulated")
    sealer.event("boot", {}, mono_us=1, utc_us=1)
    for kind, fields in events:
        sealer.event(kind, fields, mono_us=2, utc_us=2)
    sealer.event("shutdown", {}, mono_us=3, utc_us=3)
    return sealer


@dataclass
class Outcome:
    code: int
    out: str
    err: str

    @property
    def report(self) -> Any:
        return json.loads(self.out)

    @property
    def codes(self) -> set[str]:
        r = self.report
        units = r.get("units", [r])
        return {c for u in units for c in u["finding_counts"]}


def bwc(capsys: pytest.CaptureFixture[str], *args: str | Path) -> Outcome:
    capsys.readouterr()
    code = main([str(a) for a in args])
    got = capsys.readouterr()
    assert "Traceback" not in got.err, got.err
    if code == 2:
        assert len(got.err.strip().splitlines()) == 1, got.err
    return Outcome(code, got.out, got.err)


def verify(capsys: pytest.CaptureFixture[str], store: Path | str, *extra: str | Path) -> Outcome:
    return bwc(capsys, "verify", store, "--json", *extra)


def junk_ts() -> bytes:
    """Bytes that are not MPEG-TS (a sync byte in the wrong place, then noise)."""
    buf = io.BytesIO()
    for i in range(50):
        buf.write(bytes([(i * 37 + j) % 251 for j in range(188)]))
    return buf.getvalue()


__all__ = ["main"]
