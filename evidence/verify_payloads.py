"""The verifier's third part: every file the chain names must be there and be what it says.

Unit payloads: present (or, with ``--allow-freed`` only, freed after a signed offload), of the
signed size (compared before anything is hashed) and SHA-256. Orphans: every file in ``orphans/``
is named by a signed ``power_loss_discovered``/``leftovers_moved`` event, and every file such an
event names is present, with the size and hash it recorded. ``bwc-evidence/2`` key material, as
far as it can be judged without the agency key: units naming one segment secret belong to one
segment and repeat the same wrapped secret.
"""

from __future__ import annotations

import hashlib
from pathlib import PurePosixPath
from typing import Any

from evidence.findings import Code
from evidence.format import FORMAT_V2, ORPHANS_DIR
from evidence.records import UNIT, EventKind
from evidence.store import StoreReader
from evidence.verify_context import Context, Entry
from hal.errors import IntegrityError

HASH_CHUNK = 1 << 20  # 1 MiB reads: large enough that hashing, not Python, sets the pace.


def hash_stream(store: StoreReader, name: str, limit: int | None = None) -> tuple[int, str]:
    """Size and hex SHA-256 of a file, streamed in large chunks; stops after ``limit`` + 1 bytes
    so a file that grows while it is read cannot make the work unbounded."""
    h = hashlib.sha256()
    size = 0
    buf = bytearray(HASH_CHUNK)
    view = memoryview(buf)
    with store.open(name) as f:
        while limit is None or size <= limit:
            n = f.readinto(view)  # type: ignore[attr-defined]
            if not n:
                break
            h.update(view[:n])
            size += n
    return size, h.hexdigest()


def _check_file(
    ctx: Context, name: str, size: int, sha256: str, rec: str | None, codes: tuple[Code, Code, Code]
) -> None:
    """``name`` must be a readable regular file of ``size`` bytes hashing to ``sha256``."""
    unreadable, wrong_size, wrong_hash = codes
    path = ctx.path(name)
    try:
        actual = ctx.store.size(name)
        if actual == size:
            actual, digest = hash_stream(ctx.store, name, size)
    except (OSError, IntegrityError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "cannot be read"
        ctx.finding(IntegrityError(f"unreadable: {why}", path=path, code=unreadable), rec)
        return
    if actual != size:
        ctx.finding(
            IntegrityError(
                f"file is {actual} bytes, the signed manifest says {size}",
                path=path,
                code=wrong_size,
            ),
            rec,
        )
    elif digest != sha256:
        ctx.finding(
            IntegrityError(
                "SHA-256 does not match the signed manifest", path=path, code=wrong_hash
            ),
            rec,
        )


_PAYLOAD_CODES = (Code.PAYLOAD_UNREADABLE, Code.PAYLOAD_SIZE, Code.PAYLOAD_HASH)
_ORPHAN_CODES = (Code.PAYLOAD_UNREADABLE, Code.ORPHAN_ALTERED, Code.ORPHAN_ALTERED)


def _names(rows: object) -> list[tuple[str, dict[str, Any]]]:
    """(file name, row) of an offload event's ``files``: plain names or ``{"file": ...}`` rows."""
    out: list[tuple[str, dict[str, Any]]] = []
    for row in rows if isinstance(rows, list) else []:
        if isinstance(row, str):
            out.append((PurePosixPath(row).name, {}))
        elif isinstance(row, dict) and isinstance(row.get("file"), str):
            out.append((PurePosixPath(row["file"]).name, row))
    return out


def _freed_payloads(entries: list[Entry]) -> tuple[dict[str, str], set[str]]:
    """Walk the offload events in chain order: which payloads were freed while a receipt for
    them stood (name -> the receipted SHA-256), and which were freed without one.

    A receipt confirms a file; an ``offload_mismatch`` withdraws that confirmation (the target's
    copy failed the check made just before freeing); an ``offload_freed`` counts only for files
    confirmed at that moment. A freed event naming anything else is what a unit that deletes
    evidence without a good copy elsewhere would write, so it is no excuse for an absent payload.
    """
    confirmed: dict[str, str] = {}
    freed: dict[str, str] = {}
    unreceipted: set[str] = set()
    for e in entries:
        m = e.manifest
        if m.is_event(EventKind.OFFLOAD_RECEIPT):
            for name, row in _names(m.event_fields.get("files")):
                if isinstance(row.get("sha256"), str):
                    confirmed[name] = row["sha256"]
        elif m.is_event(EventKind.OFFLOAD_MISMATCH):
            for name, _row in _names(m.event_fields.get("files")):
                confirmed.pop(name, None)
        elif m.is_event(EventKind.OFFLOAD_FREED):
            for name, _row in _names(m.event_fields.get("files")):
                if name in confirmed:
                    freed[name] = confirmed[name]
                    unreceipted.discard(name)
                elif name not in freed:
                    unreceipted.add(name)
    return freed, unreceipted


def check_payloads(ctx: Context, entries: list[Entry], present: set[str]) -> None:
    freed, unreceipted = _freed_payloads(entries)
    for e in entries:
        m = e.manifest
        if m.type != UNIT:
            continue
        p = m["payload"]
        rec: str = m["recording"]
        name: str = p["file"]
        if name not in present:
            if name in unreceipted or (name in freed and freed[name] != p["sha256"]):
                ctx.finding(
                    IntegrityError(
                        "payload absent: an offload_freed event names it, but no standing "
                        "receipt confirmed these bytes at a target before it was freed",
                        path=ctx.path(name),
                        code=Code.FREED_UNRECEIPTED,
                    ),
                    rec,
                )
            elif name in freed and ctx.policy.allow_freed:
                ctx.report.offloaded.append(name)
                if rec in ctx.recs:
                    ctx.recs[rec].offloaded_units += 1
            elif name in freed:
                ctx.finding(
                    IntegrityError(
                        "payload absent: freed on the unit after a signed offload. An offloaded "
                        "copy must hold every payload; for a unit's own store pass --allow-freed",
                        path=ctx.path(name),
                        code=Code.PAYLOAD_FREED,
                    ),
                    rec,
                )
            else:
                ctx.finding(
                    IntegrityError(
                        "payload file missing", path=ctx.path(name), code=Code.PAYLOAD_MISSING
                    ),
                    rec,
                )
            continue
        _check_file(ctx, name, p["size"], p["sha256"], rec, _PAYLOAD_CODES)


def _orphan_records(fields: dict[str, Any]) -> tuple[list[str], dict[str, tuple[int, str]]]:
    names = (
        [str(o) for o in fields.get("orphans", []) or []]
        if isinstance(fields.get("orphans"), list)
        else []
    )
    described: dict[str, tuple[int, str]] = {}
    files = fields.get("orphan_files")
    if isinstance(files, list):
        for f in files:
            if (
                isinstance(f, dict)
                and isinstance(f.get("file"), str)
                and isinstance(f.get("size"), int)
                and isinstance(f.get("sha256"), str)
            ):
                described[f["file"]] = (f["size"], f["sha256"])
    return names, described


def check_orphans(ctx: Context, names: list[str], entries: list[Entry]) -> None:
    named: dict[str, Entry] = {}
    described: dict[str, tuple[int, str]] = {}
    for e in entries:
        # A clean boot that still found leftovers (e.g. a write that failed for space)
        # names them in ``leftovers_moved`` instead.
        m = e.manifest
        if m.is_event(EventKind.POWER_LOSS_DISCOVERED) or m.is_event(EventKind.LEFTOVERS_MOVED):
            these, sizes = _orphan_records(m.event_fields)
            for o in these:
                named.setdefault(o, e)
            described.update(sizes)
    present = set(names)
    for name in names:
        if not name.startswith(f"{ORPHANS_DIR}/"):
            continue
        if name in named:
            ctx.report.notes.append(
                f"{ctx.path(name)}: leftover of a power cut, named in a signed "
                "power_loss_discovered event"
            )
        else:
            ctx.finding(
                IntegrityError(
                    "orphan not named by a signed power_loss_discovered/leftovers_moved event",
                    path=ctx.path(name),
                    code=Code.ORPHAN_UNEXPLAINED,
                )
            )
    for name, e in sorted(named.items()):
        if name not in present:
            ctx.finding(
                IntegrityError(
                    f"named by the signed event {e.name} but not in the store (deleted?)",
                    path=ctx.path(name),
                    code=Code.ORPHAN_MISSING,
                )
            )
        elif name in described:
            size, sha256 = described[name]
            _check_file(ctx, name, size, sha256, None, _ORPHAN_CODES)


def check_secrets(ctx: Context, entries: list[Entry]) -> None:
    """``bwc-evidence/2`` units that name one ``secret_id`` must be of one segment of one
    recording (``secret-reused``: the sealer draws a fresh secret and id per segment) and carry
    identical ``recipients`` (``secret-recipients-differ``: each repeats the one wrapped secret).
    Either would otherwise only show at export, as a unit whose key does not open."""
    first: dict[str, Entry] = {}
    for e in entries:
        m = e.manifest
        if m.type != UNIT or m.format != FORMAT_V2:
            continue
        sid: str = m["secret_id"]
        seen = first.setdefault(sid, e)
        if seen is e:
            continue
        s = seen.manifest
        if (s["recording"], s["segment"]) != (m["recording"], m["segment"]):
            ctx.finding(
                IntegrityError(
                    f"names segment secret {sid} of {seen.name} (recording "
                    f"{s['recording']!r}, segment {s['segment']}), not a secret of its own "
                    f"segment {m['segment']} of recording {m['recording']!r}",
                    path=ctx.path(e.name),
                    code=Code.SECRET_REUSED,
                ),
                m["recording"],
            )
        elif s["recipients"] != m["recipients"]:
            ctx.finding(
                IntegrityError(
                    f"names segment secret {sid} but its recipients differ from those of "
                    f"{seen.name}, which names the same secret",
                    path=ctx.path(e.name),
                    code=Code.SECRET_RECIPIENTS_DIFFER,
                ),
                m["recording"],
            )
