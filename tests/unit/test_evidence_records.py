"""Typed manifests write themselves by the rules the verifier reads them by, byte for byte.

The golden vectors pin the format: every stored manifest reads as a typed record that writes back
the identical bytes. A manifest the verifier would refuse is refused when written, before anything
is signed, and the sealer's chain carries on unharmed after such a refusal.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evidence.findings import Code
from evidence.format import canonical_json
from evidence.records import (
    EntryHeader,
    EventKind,
    EventManifest,
    RecordError,
    UnitManifest,
    read_record,
)
from evidence.schema import decode_json
from evidence.sealer import Sealer
from evidence.sealing import UnitMeta
from evidence.store import DirectoryStoreReader
from evidence.verify import verify_store
from hal.errors import IntegrityError
from tests.vectors.evidence_store import VECTORS, fixed_device_key, write_agency_pair

STORES = (VECTORS / "store", VECTORS / "store-v2")  # bwc-evidence/1, bwc-evidence/2
BOOT = "0123456789abcdef" * 2


def _manifests() -> list[Path]:
    return [p for store in STORES for p in sorted(store.glob("*.json"))]


def _v2_unit() -> dict[str, Any]:
    path = next(p for p in sorted(STORES[1].glob("*.json")) if b'"type":"unit"' in p.read_bytes())
    obj: dict[str, Any] = json.loads(path.read_bytes())
    return obj


def _header(seq: int = 0) -> EntryHeader:
    return EntryHeader(
        seq=seq,
        prev="0" * 64,
        device="bwc-test-0001",
        key="ab" * 32,
        boot=BOOT,
        mono_us=1,
        utc_us=2,
        utc_source="simulated",
    )


def test_every_golden_manifest_reads_as_a_record_that_writes_the_same_bytes() -> None:
    kinds: set[str] = set()
    for path in _manifests():
        data = path.read_bytes()
        record = read_record(data, str(path))
        assert record.to_bytes() == data, path.name
        assert type(record).from_bytes(data, str(path)) == record
        kinds.add(record.kind if isinstance(record, EventManifest) else "unit")
    assert {"unit", "boot", "record_start", "record_stop", "shutdown"} <= kinds


def test_a_record_is_typed_not_a_dict() -> None:
    path = next(p for p in _manifests() if b'"type":"unit"' in p.read_bytes())
    unit = UnitManifest.from_bytes(path.read_bytes(), str(path))
    assert unit.header.seq == int(path.stem)
    assert unit.recording == "rec-0001"
    assert unit.payload["file"] == f"{path.stem}.bin"
    with pytest.raises(IntegrityError) as exc:
        EventManifest.from_bytes(path.read_bytes(), str(path))
    assert exc.value.code == Code.EVENT_MALFORMED


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ({"level": float("nan")}, "strict JSON"),
        ({"level": float("inf")}, "strict JSON"),  # what 1e400 parses to
        ({"note": "\udc80"}, "strict JSON"),  # a lone surrogate
        ({"blob": b"\x00"}, "strict JSON"),  # JSON has no bytes
        ({"recording": "../a"}, "not a valid id"),
        ({"pad": "x" * (300 * 1024)}, "over the"),
    ],
)
def test_an_event_the_verifier_would_refuse_is_refused_when_written(
    fields: dict[str, Any], why: str
) -> None:
    with pytest.raises(RecordError, match=why):
        EventManifest(header=_header(), kind=EventKind.MARKER, fields=fields).to_bytes()


def test_an_unknown_event_kind_is_refused_when_written() -> None:
    with pytest.raises(RecordError, match=r"unknown event kind 'gnss_fix'.*EventKind"):
        EventManifest(header=_header(), kind="gnss_fix", fields={}).to_bytes()
    with pytest.raises(RecordError, match="unknown event kind ''"):
        EventManifest(header=_header(), kind="", fields={}).to_bytes()


def test_a_unit_the_verifier_would_refuse_is_refused_when_written() -> None:
    path = next(p for p in _manifests() if b'"type":"unit"' in p.read_bytes())
    good = UnitManifest.from_bytes(path.read_bytes(), str(path))
    bad = [
        dataclasses.replace(good, recording="a/b"),
        dataclasses.replace(good, recipients=()),
        dataclasses.replace(good, payload={**good.payload, "size": -1}),
        dataclasses.replace(good, payload={**good.payload, "file": "0000000099.bin"}),
        dataclasses.replace(good, gnss={"lat_deg": float("nan")}),
        dataclasses.replace(good, header=dataclasses.replace(good.header, key="not-a-hash")),
    ]
    for record in bad:
        with pytest.raises(RecordError):
            record.to_bytes()
    assert good.to_bytes() == path.read_bytes()


@pytest.mark.parametrize(
    ("entry_type", "extra", "code"),
    [
        ("unit", {"note": "planted"}, Code.UNIT_MALFORMED),
        ("event", {"note": "planted"}, Code.EVENT_MALFORMED),
    ],
)
def test_reading_refuses_unknown_and_missing_fields(
    entry_type: str, extra: dict[str, Any], code: Code
) -> None:
    path = next(p for p in _manifests() if f'"type":"{entry_type}"'.encode() in p.read_bytes())
    obj = json.loads(path.read_bytes())
    with pytest.raises(IntegrityError, match="unknown field 'note'") as exc:
        read_record(canonical_json({**obj, **extra}), "x")
    assert exc.value.code == code
    missing = {k: v for k, v in obj.items() if k != ("gnss" if entry_type == "unit" else "kind")}
    with pytest.raises(IntegrityError):
        read_record(canonical_json(missing), "x")


def _sealer(tmp_path: Path) -> Sealer:
    agency, _priv = write_agency_pair(tmp_path / "agency", 7)
    return Sealer.open(tmp_path / "store", fixed_device_key(1), [agency], "dev-1", BOOT, "rtc")


def test_the_sealer_refuses_an_unknown_kind_and_writes_nothing(tmp_path: Path) -> None:
    sealer = _sealer(tmp_path)
    sealer.event("boot", {}, mono_us=1, utc_us=1)
    before = sorted(p.name for p in sealer.store.iterdir())
    with pytest.raises(RecordError, match="unknown event kind 'bogus'"):
        sealer.event("bogus", {}, mono_us=2, utc_us=2)
    with pytest.raises(RecordError, match="strict JSON"):
        sealer.event("marker", {"x": float("nan")}, mono_us=2, utc_us=2)
    bad_unit = UnitMeta("rec/1", 0, 0, 0, 1, 0, 1, 0, "rtc")
    with pytest.raises(RecordError, match="not a valid id"):
        sealer.seal_unit(b"ts", bad_unit, mono_us=2, utc_us=2)
    assert sorted(p.name for p in sealer.store.iterdir()) == before
    # The chain carries on at the next seq: a refused write leaves no hole.
    assert sealer.event("shutdown", {"reason": "test"}, mono_us=3, utc_us=3) == 1
    report = verify_store(DirectoryStoreReader(sealer.store), unpinned=True)
    assert report.intact, report.format_text()


def test_the_sealer_writes_every_entry_through_the_records(tmp_path: Path) -> None:
    sealer = _sealer(tmp_path)
    sealer.event("record_start", {"recording": "r1"}, mono_us=1, utc_us=1)
    gnss = {"lat_deg": 51.5, "lon_deg": -0.1}
    sealer.seal_unit(
        b"payload", UnitMeta("r1", 0, 0, 0, 5, 0, 9, 4, "rtc", gnss=gnss), mono_us=2, utc_us=3
    )
    unit_path = sealer.store / "0000000001.json"
    unit = UnitManifest.from_bytes(unit_path.read_bytes(), str(unit_path))
    assert (unit.recording, unit.frame_count, unit.gnss) == ("r1", 5, gnss)
    first = (sealer.store / "0000000000.json").read_bytes()
    assert unit.header.prev == hashlib.sha256(first).hexdigest()
    assert read_record(first, "0").to_bytes() == first


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and infinities included: those must be refused, never written
    | st.text(st.characters(), max_size=8),  # lone surrogates included
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(fields=st.dictionaries(st.text(max_size=10), _JSON, max_size=4))
def test_any_event_either_writes_bytes_that_read_back_equal_or_is_refused(
    fields: dict[str, Any],
) -> None:
    record = EventManifest(header=_header(), kind=EventKind.MARKER, fields=fields)
    try:
        data = record.to_bytes()
    except RecordError:
        return
    again = EventManifest.from_bytes(data, "x")
    assert again.to_bytes() == data
    assert canonical_json(json.loads(data)) == data


@pytest.mark.parametrize(
    "text",
    [
        r'{"a":"\ud800"}',
        r'{"a":"\uDFFF"}',
        r'{"\uDc00":1}',
        r'{"a":[1,{"b":["x\udbffy"]}]}',
        r'{"a":"\ude00\ud83d"}',  # a pair in the wrong order is two lone surrogates
    ],
)
def test_a_lone_surrogate_escape_is_refused_wherever_it_sits(text: str) -> None:
    with pytest.raises(IntegrityError, match="strict JSON"):
        decode_json(text.encode(), "m.json")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (r'{"a":"\ud83d\ude00"}', "\U0001f600"),  # a genuine pair decodes
        (r'{"a":"\\ud800"}', "\\ud800"),  # an escaped backslash, then plain text
        ('{"a":"\u00e9"}', "\u00e9"),
    ],
)
def test_surrogate_like_text_that_is_not_a_lone_surrogate_is_read(text: str, value: str) -> None:
    assert decode_json(text.encode(), "m.json") == {"a": value}


def test_a_v2_unit_must_name_its_secret_exactly() -> None:
    good = _v2_unit()
    assert good["format"] == "bwc-evidence/2"
    assert isinstance(read_record(canonical_json(good), "x"), UnitManifest)
    without = {k: v for k, v in good.items() if k != "secret_id"}
    with pytest.raises(IntegrityError, match="'secret_id' is missing") as exc:
        read_record(canonical_json(without), "x")
    assert exc.value.code == Code.UNIT_MALFORMED
    for bad in ("AB" * 16, "ab" * 15, "ab" * 17, 12, None, "zz" * 16, "ab" * 16 + "\n"):
        with pytest.raises(IntegrityError, match="secret_id") as exc:
            read_record(canonical_json({**good, "secret_id": bad}), "x")
        assert exc.value.code == Code.UNIT_MALFORMED


def test_a_v1_unit_has_no_secret_id() -> None:
    v1 = {**_v2_unit(), "format": "bwc-evidence/1"}
    with pytest.raises(IntegrityError, match="unknown field 'secret_id'") as exc:
        read_record(canonical_json(v1), "x")
    assert exc.value.code == Code.UNIT_MALFORMED
    del v1["secret_id"]
    assert read_record(canonical_json(v1), "x").to_dict()["format"] == "bwc-evidence/1"


@pytest.mark.parametrize("marker", ["bwc-evidence/3", "bwc-evidence/0", "", 2, None])
def test_an_unknown_format_marker_is_refused_by_name(marker: object) -> None:
    with pytest.raises(IntegrityError, match="unknown format marker") as exc:
        read_record(canonical_json({**_v2_unit(), "format": marker}), "x")
    assert exc.value.code == Code.FORMAT_UNKNOWN
