"""The seam between the recorder and the evidence store: what is handed over to be sealed, and when.

The recorder hands over (1) each sealing unit, about one second of muxed MPEG-TS bytes, as soon as
it is complete, and (2) each state change as a named event with its fields. The evidence side
encrypts, signs, chains and durably writes them before the call returns, so whatever a call has
returned for survives a power cut. Implemented by ``evidence.sealer.Sealer``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from hal.errors import BwcError

JsonValue = Any
"""A value ``json.dumps`` accepts: None, bool, int, float, str, list or dict of these."""


class RecordError(BwcError, ValueError):
    """A manifest the sealer was asked to write breaks the rules the verifier reads it by.

    Raised before anything is signed or written; names the field. It means a bug in the caller
    (a new event kind not added to ``EventKind``, a non-finite number), never bad recorded data.
    """

    def __init__(self, reason: str, *, code: str | None = None) -> None:
        self.reason = reason
        self.code = code
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class UnitMeta:
    """What the recorder knows about one sealing unit. Goes into the signed manifest in clear.

    ``segment`` counts segments within the recording from 0; ``unit`` counts units within the
    segment from 0. Concatenating a segment's unit payloads in ``unit`` order gives one playable
    MPEG-TS file. ``first_frame``/``frame_count`` are camera frame indices (the stripe numbers
    of the simulated camera), so continuity can be checked across units without decrypting.
    """

    recording_id: str
    segment: int
    unit: int
    first_frame: int
    frame_count: int
    start_pts_us: int
    end_pts_us: int
    start_utc_us: int
    utc_source: str
    final: bool = False
    pre_event: bool = False
    audio: bool = False
    gnss: Mapping[str, JsonValue] | None = None
    extra: Mapping[str, JsonValue] = field(default_factory=dict)


class EvidenceSink(Protocol):
    """Seals units and events into the unit's one signed hash chain.

    Both methods are synchronous and durable: when they return, the entry is on stable storage
    (temp file, fsync, rename, fsync of the directory). Both raise ``StorageFullError`` when the
    write would eat into the reserve, and ``RecordError`` when the entry would not verify (an
    event kind not in ``evidence.records.EventKind``, a non-finite number), before writing
    anything.
    """

    def event(
        self,
        kind: str,
        fields: Mapping[str, JsonValue],
        *,
        mono_us: int,
        utc_us: int,
        reserve_ok: bool = False,
    ) -> int:
        """Seal one event; returns its sequence number in the chain.

        ``reserve_ok`` lets the event use the storage reserve (how a ``storage_full`` event and
        the ``record_stop`` after it still get written); units never may.
        """
        ...

    def seal_unit(self, payload: bytes, meta: UnitMeta, *, mono_us: int, utc_us: int) -> int:
        """Encrypt, sign and store one unit; returns its sequence number in the chain."""
        ...

    def free_bytes(self) -> int:
        """Bytes that can still be written before the reserve is reached."""
        ...
