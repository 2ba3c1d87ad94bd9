"""Property-based mutation of a real store: any sequence of attacker moves (flip, truncate,
delete, swap, replay, plant, re-sign with a stolen or a forger's key) is caught, pinned against
the registry, with findings whose codes are all known and which name the kind of damage done.
Never an exception, never intact."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evidence.findings import Code
from evidence.store import DirectoryStoreReader
from evidence.verify import load_trust, verify_store
from tests.adversarial.stores import Attackable, entry, make_store, resign
from tests.vectors.evidence_store import fixed_device_key

MUTATE = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
KNOWN = {c.value for c in Code}
ENTRIES = 9  # boot, record_start, 5 units, record_stop, shutdown

# What each move must be reported as (any one of these codes).
EXPECT: dict[str, set[str]] = {
    "flip": {
        Code.SIGNATURE_INVALID, Code.PAYLOAD_HASH, Code.STORE_PUB_MISMATCH, Code.MANIFEST_INVALID,
        Code.SIGNATURE_MISSING, Code.KEY_UNKNOWN, Code.KEY_NOT_TRUSTED, Code.FORMAT_UNKNOWN,
    },
    "truncate": {
        Code.SIGNATURE_INVALID, Code.PAYLOAD_SIZE, Code.STORE_PUB_MISMATCH, Code.MANIFEST_INVALID,
        Code.NO_EVIDENCE,
    },
    "delete": {
        Code.ENTRY_MISSING, Code.SIGNATURE_MISSING, Code.PAYLOAD_MISSING, Code.RECORDING_NOT_CLOSED,
        Code.POWER_LOSS_UNEXPLAINED, Code.NO_EVIDENCE, Code.HEAD_MISSING,
    },
    "swap": {Code.SEQ_MISMATCH, Code.SIGNATURE_INVALID, Code.PAYLOAD_HASH, Code.PAYLOAD_SIZE},
    "replay": {Code.SEQ_MISMATCH, Code.SIGNATURE_INVALID, Code.PAYLOAD_HASH, Code.PAYLOAD_SIZE,
               Code.EVENT_WITH_PAYLOAD},
    "plant": {Code.ORPHAN_UNEXPLAINED, Code.ENTRY_MISSING, Code.SIGNATURE_MISSING,
              Code.MANIFEST_INVALID, Code.EVENT_WITH_PAYLOAD},
    "resign-stolen": {Code.PREV_MISMATCH, Code.UNIT_ORDER, Code.FRAMES_OVERLAP,
                      Code.FRAMES_MISSING, Code.MANIFEST_NOT_CANONICAL, Code.RECORDING_NOT_CLOSED,
                      Code.UNIT_OUTSIDE_RECORDING, Code.RECORDING_NOT_OPEN},
    "resign-forger": {Code.KEY_NOT_TRUSTED},
}  # fmt: skip

MOVES = st.sampled_from(sorted(EXPECT))
TARGETS = st.tuples(st.integers(0, ENTRIES - 1), st.sampled_from(["json", "sig", "bin"]))


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Attackable:
    return make_store(tmp_path_factory.mktemp("pristine"), [bytes([i]) * 200 for i in range(5)])


def _apply(store: Path, move: str, seq: int, ext: str, other: int) -> bool:
    """Do ``move`` to entry ``seq``'s ``ext`` file; False if there is nothing to do it to."""
    path = store / entry(seq, ext)
    if move == "plant":
        (store / "orphans").mkdir(exist_ok=True)
        (store / "orphans" / "x.bin").write_bytes(b"planted")
        (store / entry(ENTRIES + 3, "json")).write_bytes(b"{}")
        return True
    if not path.exists():
        return False
    data = path.read_bytes()
    if move == "flip":
        b = bytearray(data)
        i = (seq * 7919) % len(b)
        b[i] = (b[i] + 0x21) % 256  # repeated flips of one byte do not cancel out
        path.write_bytes(bytes(b))
    elif move == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif move == "delete":
        path.unlink()
    elif move in ("swap", "replay"):
        if other == seq or not (store / entry(other, ext)).exists():
            return False
        if move == "swap":
            path.write_bytes((store / entry(other, ext)).read_bytes())
            (store / entry(other, ext)).write_bytes(data)
        else:
            path.write_bytes((store / entry(other, ext)).read_bytes())
    elif move.startswith("resign"):
        if ext != "json":
            return False
        try:
            m = json.loads(data)
        except ValueError:  # an earlier move already garbled it
            return False
        if not isinstance(m, dict) or m.get("type") != "unit" or "first_frame" not in m:
            return False
        # Change what the unit says (its frames), keep it canonical and signed.
        text = data.replace(f'"first_frame":{m["first_frame"]}'.encode(), b'"first_frame":1')
        if text == data:
            return False
        key = fixed_device_key(1) if move == "resign-stolen" else fixed_device_key(8)
        if move == "resign-forger":
            text = text.replace(key_fp(1).encode(), key_fp(8).encode())
        resign(store, seq, text, key)
    return True


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def key_fp(seed: int) -> str:
    return fixed_device_key(seed).fingerprint()


@MUTATE
@given(
    moves=st.lists(st.tuples(MOVES, TARGETS, st.integers(0, ENTRIES - 1)), min_size=1, max_size=3)
)
def test_any_attacker_move_is_caught_with_its_code(
    pristine: Attackable, moves: list[tuple[str, tuple[int, str], int]]
) -> None:
    trusted = load_trust([pristine.registry])
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "ev"
        shutil.copytree(pristine.store, store)
        done = [m for m, (seq, ext), other in moves if _apply(store, m, seq, ext, other)]
        # The agency recorded the head at intake (--expect-head): a clean cut of the chain's tail,
        # which no store can show by itself, is then caught too.
        head = hashlib.sha256((pristine.store / entry(ENTRIES - 1, "json")).read_bytes())
        expected = [(ENTRIES - 1, head.hexdigest())]
        report = verify_store(DirectoryStoreReader(store), trusted, expected_heads=expected)
        codes = {f.code for f in report.all_findings}
        assert codes <= KNOWN, codes - KNOWN
        if _files(store) == _files(pristine.store):  # e.g. a swap undone by the same swap
            assert report.intact
            return
        assert not report.intact, done
        # At least one move is reported as what it was (later moves may mask earlier ones).
        assert any(codes & EXPECT[m] for m in done), (done, codes)
