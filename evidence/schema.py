"""The rules manifests are read by: strict JSON and the schema of units and events.

A manifest is data from a possibly hostile store. Reading refuses, with ``IntegrityError`` and a
finding code, anything the sealer never writes: documents over ``MAX_MANIFEST_BYTES``, non-finite
numbers (``NaN``, ``Infinity``, ``1e400``), lone surrogates, duplicate keys, unknown, missing or
wrongly typed fields. ``evidence.records`` writes by the same rules. Pure functions: no IO.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from evidence.findings import Code
from evidence.format import (
    AAD_NAME,
    CIPHER,
    FORMAT_V2,
    FORMATS,
    NONCE_LEN,
    SECRET_ID_LEN,
    entry_name,
)
from hal.errors import IntegrityError

MAX_SIG_BYTES = 1024
"""A signature file is 64 bytes; reading a planted huge one whole must not cost memory."""

MAX_MANIFEST_BYTES = 256 * 1024
"""A unit manifest with a dozen recipients and a GNSS fix is a few kB; an offload receipt naming a
few hundred files ~100 kB. Anything bigger is refused before it is parsed (and never written)."""


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name}")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text[:20]} overflows a double")
    return value


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k[:40]!r}")
        out[k] = v
    return out


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
"""The only way a lone surrogate gets into a decoded manifest: valid UTF-8 (checked by the decode)
never encodes one, so it must come from a ``\\uD800``-``\\uDFFF`` escape. A match (a genuine
pair, or an escaped backslash before literal text, included) sends the whole object through
``_check_strings``; no match proves there is nothing to find, and saves walking every string of
every manifest (a third of the cost of reading one)."""


def _check_strings(value: Any) -> None:
    """Refuse lone surrogates anywhere (keys and values): they cannot be re-encoded as UTF-8, so
    the canonical-form check, a JSON report and an export file would all crash on them."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise ValueError("string holds a lone surrogate") from exc
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)


def decode_json(data: bytes, path: str) -> dict[str, Any]:
    """A JSON object from ``data``, strictly; ``IntegrityError`` naming ``path`` otherwise."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise IntegrityError(
            f"manifest is {len(data)} bytes, over the {MAX_MANIFEST_BYTES}-byte limit",
            path=path,
            code=Code.MANIFEST_TOO_LARGE,
        )
    try:
        text = data.decode("utf-8")
        obj = json.loads(
            text,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
            object_pairs_hook=_no_duplicates,
        )
        if _SURROGATE_ESCAPE.search(text):
            _check_strings(obj)
    except (ValueError, RecursionError) as exc:
        # ValueError covers UnicodeDecodeError and JSONDecodeError; RecursionError: hostile depth.
        raise IntegrityError(
            f"manifest is not strict JSON ({str(exc)[:80]})", path=path, code=Code.MANIFEST_INVALID
        ) from exc
    if not isinstance(obj, dict):
        raise IntegrityError("manifest is not a JSON object", path=path, code=Code.MANIFEST_INVALID)
    return obj


UNIT = "unit"
EVENT = "event"

_HEX64 = re.compile(r"^[0-9a-f]{64}\Z")
_SECRET_ID = re.compile(rf"[0-9a-f]{{{SECRET_ID_LEN * 2}}}")
"""Used with ``fullmatch``: ``$`` would let a trailing newline through."""
RECORDING_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}\Z")
"""Recording ids the recorder writes (hex/uuid-like); anything else is refused before it can name
a file: no dots, slashes or case-folding tricks, so one id gives exactly one export file name."""

_COMMON: dict[str, type] = {
    "format": str,
    "seq": int,
    "prev": str,
    "type": str,
    "device": str,
    "key": str,
    "boot": str,
    "mono_us": int,
    "utc_us": int,
    "utc_source": str,
}
UNIT_FIELDS: dict[str, type] = {
    "recording": str,
    "segment": int,
    "unit": int,
    "first_frame": int,
    "frame_count": int,
    "start_pts_us": int,
    "end_pts_us": int,
    "start_utc_us": int,
    "final": bool,
    "pre_event": bool,
    "audio": bool,
    "extra": dict,
    "payload": dict,
    "recipients": list,
    "start_utc_source": str,
}
_UNIT_KEYS = frozenset(_COMMON) | frozenset(UNIT_FIELDS) | {"gnss"}
_UNIT_KEYS_V2 = _UNIT_KEYS | {"secret_id"}
"""``bwc-evidence/2`` units also name the segment secret their key is derived from."""
_EVENT_KEYS = frozenset(_COMMON) | {"kind", "fields"}
_PAYLOAD_KEYS = frozenset({"file", "size", "sha256", "cipher", "nonce", "aad"})
_RECIPIENT_KEYS = frozenset({"fingerprint", "suite", "enc_and_ct"})


def _typed(
    m: Mapping[str, Any], schema: Mapping[str, type], what: str, path: str, code: Code
) -> None:
    for k, t in schema.items():
        v = m.get(k)
        if not isinstance(v, t) or (t is int and isinstance(v, bool)):
            raise IntegrityError(
                f"{what} field {k!r} missing or of the wrong type", path=path, code=code
            )


def _exact(m: Mapping[str, Any], keys: frozenset[str], what: str, path: str, code: Code) -> None:
    unknown = sorted(set(m) - keys)
    if unknown:
        raise IntegrityError(f"{what} has unknown field {unknown[0][:40]!r}", path=path, code=code)
    missing = sorted(keys - set(m))
    if missing:
        raise IntegrityError(f"{what} field {missing[0]!r} is missing", path=path, code=code)


@dataclass(frozen=True, slots=True)
class Manifest:
    """One decoded, schema-checked manifest. ``fields`` is the raw object (already checked)."""

    seq: int
    type: str
    key: str
    device: str
    boot: str
    fields: dict[str, Any]

    @property
    def format(self) -> str:
        """The manifest's own version marker (one of ``evidence.format.FORMATS``)."""
        return str(self.fields["format"])

    @property
    def kind(self) -> str | None:
        k = self.fields.get("kind")
        return k if isinstance(k, str) else None

    @property
    def event_fields(self) -> dict[str, Any]:
        f = self.fields.get("fields")
        return f if isinstance(f, dict) else {}

    def is_event(self, kind: str) -> bool:
        return self.type == EVENT and self.kind == kind

    def __getitem__(self, key: str) -> Any:
        return self.fields[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)


def parse_manifest(data: bytes, path: str) -> Manifest:
    """Decode and schema-check one manifest (not its signature, seq or place in the chain)."""
    m = decode_json(data, path)
    if m.get("format") not in FORMATS:
        raise IntegrityError(
            f"unknown format marker {str(m.get('format'))[:40]!r}",
            path=path,
            code=Code.FORMAT_UNKNOWN,
        )
    _typed(m, _COMMON, "manifest", path, Code.MANIFEST_INVALID)
    if not _HEX64.match(m["key"]):
        raise IntegrityError(
            "manifest field 'key' is not a SHA-256 fingerprint",
            path=path,
            code=Code.MANIFEST_INVALID,
        )
    return Manifest(m["seq"], m["type"], m["key"], m["device"], m["boot"], m)


def check_unit(m: Manifest, path: str) -> None:
    """The unit-specific schema: payload description, recipients, a valid recording id, and for
    ``bwc-evidence/2`` the id of the segment secret (``secret_id``) its recipients wrap."""
    v2 = m.format == FORMAT_V2
    _typed(m.fields, UNIT_FIELDS, "unit", path, Code.UNIT_MALFORMED)
    _exact(m.fields, _UNIT_KEYS_V2 if v2 else _UNIT_KEYS, "unit", path, Code.UNIT_MALFORMED)
    if v2 and not (isinstance(m["secret_id"], str) and _SECRET_ID.fullmatch(m["secret_id"])):
        raise IntegrityError(
            f"unit field 'secret_id' is not {SECRET_ID_LEN * 2} lowercase hex digits",
            path=path,
            code=Code.UNIT_MALFORMED,
        )
    if m.fields["gnss"] is not None and not isinstance(m.fields["gnss"], dict):
        raise IntegrityError(
            "unit field 'gnss' is of the wrong type", path=path, code=Code.UNIT_MALFORMED
        )
    if not RECORDING_ID.match(m["recording"]):
        raise IntegrityError(
            f"recording id {m['recording'][:40]!r} is not a valid id",
            path=path,
            code=Code.RECORDING_ID_INVALID,
        )
    p = m["payload"]
    size = p.get("size")
    if (
        p.keys() != _PAYLOAD_KEYS
        or p.get("file") != entry_name(m.seq, "bin")
        or not isinstance(size, int)
        or isinstance(size, bool)
        or size < 0
        or not isinstance(p.get("sha256"), str)
        or not _HEX64.match(p["sha256"])
        or p.get("cipher") != CIPHER
        or p.get("aad") != AAD_NAME
        or not isinstance(p.get("nonce"), str)
        or len(p["nonce"]) != NONCE_LEN * 2
    ):
        raise IntegrityError(
            "unit payload description is malformed", path=path, code=Code.UNIT_MALFORMED
        )
    if not m["recipients"] or not all(
        isinstance(r, dict)
        and r.keys() == _RECIPIENT_KEYS
        and all(isinstance(v, str) for v in r.values())
        for r in m["recipients"]
    ):
        raise IntegrityError(
            "unit has no well-formed recipient", path=path, code=Code.UNIT_MALFORMED
        )


def check_event(m: Manifest, path: str) -> None:
    """The event-specific schema: a kind and a fields object; a recording id, if named, is valid."""
    if not isinstance(m.get("kind"), str) or not isinstance(m.get("fields"), dict):
        raise IntegrityError("event without kind or fields", path=path, code=Code.EVENT_MALFORMED)
    _exact(m.fields, _EVENT_KEYS, "event", path, Code.EVENT_MALFORMED)
    rec = m.event_fields.get("recording")
    if isinstance(rec, str) and not RECORDING_ID.match(rec):
        raise IntegrityError(
            f"recording id {rec[:40]!r} is not a valid id",
            path=path,
            code=Code.RECORDING_ID_INVALID,
        )
