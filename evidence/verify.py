"""The verifier: checks a store's signatures, hash chain, payload hashes, continuity and events.

Needs no secret key. Each check raises ``IntegrityError(reason, path=file)`` internally; the report
collects them as findings, so one bad file does not hide the others. It never writes to the store.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.x509 import Certificate, load_pem_x509_certificate

from evidence.format import (
    AAD_NAME,
    CIPHER,
    DEVICE_PUB_NAME,
    FORMAT,
    NONCE_LEN,
    ORPHANS_DIR,
    SIG_LEN,
    TMP_PREFIX,
    ZERO_HASH,
    canonical_json,
    entry_name,
    parse_entry_name,
)
from evidence.store import StoreReader
from evidence.timestamp import TOKEN_KIND, Anchor, check_anchor
from hal.errors import IntegrityError, UsageError
from hal.software_key import fingerprint_raw

HASH_CHUNK = 1 << 20  # 1 MiB reads: large enough that hashing, not Python, sets the pace.

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_COMMON: dict[str, type | tuple[type, ...]] = {
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
_UNIT: dict[str, type | tuple[type, ...]] = {
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
}


@dataclass
class Finding:
    file: str
    reason: str
    recording: str | None = None


@dataclass
class RecordingReport:
    id: str
    units: int = 0
    segments: int = 0
    duration_s: float = 0.0
    first_frame: int | None = None
    last_frame: int | None = None
    start_utc_us: int | None = None
    end_utc_us: int | None = None
    utc_source: str | None = None
    start_trigger: str | None = None
    stop_trigger: str | None = None
    pre_event_s: float | None = None
    pre_event_captured_s: float | None = None
    pre_event_audio: bool | None = None
    officer_id: str | None = None
    profile_digest: str | None = None
    boot: str | None = None
    closed: bool = False
    gaps: list[dict[str, Any]] = field(default_factory=list)
    power_losses: int = 0
    markers: list[dict[str, Any]] = field(default_factory=list)
    stealth: list[dict[str, Any]] = field(default_factory=list)
    mute: list[dict[str, Any]] = field(default_factory=list)
    gnss: list[dict[str, Any]] = field(default_factory=list)
    offloaded_units: int = 0
    unit_seqs: list[int] = field(default_factory=list)
    key: str | None = None
    pinned: bool = False
    notes: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.findings


@dataclass
class BootReport:
    id: str
    first_seq: int
    last_seq: int
    clean: bool
    firmware_version: str | None = None
    profile_digest: str | None = None
    device_id: str | None = None
    officer_id: str | None = None


@dataclass
class Report:
    store: str
    entries: int = 0
    head_seq: int = -1
    head_hash: str = ZERO_HASH
    device: str | None = None
    keys: list[str] = field(default_factory=list)
    pinned: bool = False
    recordings: list[RecordingReport] = field(default_factory=list)
    boots: list[BootReport] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    offloaded: list[str] = field(default_factory=list)
    anchors: list[Anchor] = field(default_factory=list)
    anchored_seq: int | None = None  # highest seq covered by a good (see anchors) timestamp token
    anchored_at: str | None = None  # that token's gen_time (ISO 8601 UTC)
    anchor_verified: bool = False  # whether that token's signature was checked (--tsa-ca)

    @property
    def all_findings(self) -> list[Finding]:
        return self.findings + [f for r in self.recordings for f in r.findings]

    @property
    def intact(self) -> bool:
        return not self.all_findings

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["intact"] = self.intact
        out["all_findings"] = [asdict(f) for f in self.all_findings]
        for rec, r in zip(out["recordings"], self.recordings, strict=True):
            rec["intact"] = r.intact
            del rec["unit_seqs"]
        return out

    def format_text(self) -> str:
        lines = [f"store {self.store}: {self.entries} entries, head seq {self.head_seq}"]
        lines.append(f"  head hash {self.head_hash}")
        for fp in self.keys:
            pin = "pinned" if self.pinned else "unpinned"
            lines.append(f"  signed by device key {fp} ({pin})")
        if self.device is not None:
            lines.append(f"  device {self.device}")
        for i, b in enumerate(self.boots):
            if b.clean:
                end = "clean shutdown"
            elif i == len(self.boots) - 1:
                # The newest boot of a copy taken mid-shift (or of a unit still on) has no
                # shutdown entry yet: that is where the store ends, not a fault.
                end = "no shutdown entry yet: the store ends while the unit was on"
            else:
                end = "ended without a clean shutdown (power lost; see the next boot)"
            lines.append(f"  boot {b.id}: entries {b.first_seq}-{b.last_seq}, {end}")
        for r in self.recordings:
            lines.append(
                f"recording {r.id}: {'INTACT' if r.intact else 'BROKEN'}; {_n(r.units, 'unit')} "
                f"in {_n(r.segments, 'segment')}, {r.duration_s:.1f} s, frames {r.first_frame}-"
                f"{r.last_frame}, start {r.start_trigger}, stop {r.stop_trigger}"
            )
            if r.offloaded_units:
                lines.append(f"  {r.offloaded_units} unit payloads offloaded (freed on device)")
            for g in r.gaps:
                how = "explained" if g["explained"] else "UNEXPLAINED"
                lines.append(f"  frame gap {g['from_frame']}-{g['to_frame']}: {how}")
            if r.power_losses:
                lines.append(f"  power losses: {r.power_losses}")
            for m in r.markers:
                lines.append(f"  marker at frame {m.get('frame')} (utc_us {m.get('at_utc_us')})")
            for s in r.stealth:
                lines.append(f"  stealth {s['from_utc_us']} - {s['to_utc_us']}")
            for s in r.mute:
                lines.append(f"  mute {s['from_utc_us']} - {s['to_utc_us']}")
            lines.extend(f"  note: {n}" for n in r.notes)
            lines.extend(f"  FINDING {f.file}: {f.reason}" for f in r.findings)
        lines.extend(_anchor_lines(self))
        lines.extend(f"note: {n}" for n in self.notes)
        lines.extend(f"FINDING {f.file}: {f.reason}" for f in self.findings)
        n = len(self.all_findings)
        lines.append("result: INTACT" if n == 0 else f"result: {n} finding(s); NOT intact")
        return "\n".join(lines)


def _n(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


# ---------------------------------------------------------------------- trusted keys


def load_trusted_key(path: Path) -> bytes:
    """The raw Ed25519 public key of a device public key PEM (SPKI) or an X.509 certificate."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise UsageError(f"--trust {path}: file not found") from exc
    except OSError as exc:
        raise UsageError(f"--trust {path}: cannot read: {exc.strerror}") from exc
    try:
        if b"BEGIN CERTIFICATE" in data:
            key: object = load_pem_x509_certificate(data).public_key()
        else:
            key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise UsageError(f"--trust {path}: not a public key PEM or certificate") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise UsageError(f"--trust {path}: not an Ed25519 device public key")
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


# ---------------------------------------------------------------------- verification


@dataclass
class _Entry:
    seq: int
    manifest: dict[str, Any]
    name: str


def hash_stream(store: StoreReader, name: str) -> tuple[int, str]:
    """Size and hex SHA-256 of a file, streamed in large chunks."""
    h = hashlib.sha256()
    size = 0
    buf = bytearray(HASH_CHUNK)
    view = memoryview(buf)
    with store.open(name) as f:
        while True:
            n = f.readinto(view)  # type: ignore[attr-defined]
            if not n:
                break
            h.update(view[:n])
            size += n
    return size, h.hexdigest()


class _Verifier:
    def __init__(
        self,
        store: StoreReader,
        trusted_keys: Sequence[bytes] | None,
        tsa_roots: Sequence[Certificate] | None = None,
    ) -> None:
        self.store = store
        self.tsa_roots = list(tsa_roots) if tsa_roots else None
        self.report = Report(store=store.describe(""))
        self.trusted = {fingerprint_raw(k): k for k in trusted_keys or ()}
        self.pinning = trusted_keys is not None and len(trusted_keys) > 0
        self.keys: dict[str, Ed25519PublicKey] = {
            fp: Ed25519PublicKey.from_public_bytes(raw) for fp, raw in self.trusted.items()
        }
        self.chain_key: str | None = None
        self.chain_device: str | None = None
        self._recs: dict[str, RecordingReport] = {}
        self.store_pub_fp: str | None = None  # None: no file; "": unreadable
        self.named_keys: set[str] = set()  # every fingerprint a manifest names, valid or not

    def finding(self, exc: IntegrityError, recording: str | None = None) -> None:
        f = Finding(exc.path or self.store.describe(""), exc.reason, recording)
        rec = self._recs.get(recording) if recording is not None else None
        if rec is not None:
            rec.findings.append(f)
        else:
            self.report.findings.append(f)

    def path(self, name: str) -> str:
        return self.store.describe(name)

    def run(self) -> Report:
        names = self.store.names()
        jsons: set[int] = set()
        others: dict[int, set[str]] = {}
        for name in names:
            parsed = parse_entry_name(name)
            if parsed is None:
                self._classify_other(name)
            elif parsed[1] == "json":
                jsons.add(parsed[0])
            else:
                others.setdefault(parsed[0], set()).add(parsed[1])
        self._load_store_pub(names)
        head = max(jsons) if jsons else -1
        for seq, exts in sorted(others.items()):
            if seq > head:
                for ext in sorted(exts):
                    self.report.notes.append(
                        f"{self.path(entry_name(seq, ext))}: uncommitted leftover "
                        "(power cut during a write; moved to orphans/ at the next boot)"
                    )
        entries = self._check_chain(head, jsons, others)
        self.report.entries = len(jsons)
        self.report.head_seq = head
        if head >= 0 and head in jsons:
            # An unreadable head is already a finding of _check_chain ("unreadable").
            with contextlib.suppress(OSError):
                self.report.head_hash = hashlib.sha256(
                    self.store.read(entry_name(head, "json"))
                ).hexdigest()
        self.report.device = self.chain_device
        self._check_store_pub()
        self.report.keys = sorted({e.manifest["key"] for e in entries})
        self.report.pinned = self.pinning and all(k in self.trusted for k in self.report.keys)
        self._semantics(entries)
        self._check_payloads(entries, others)
        self._check_orphans(names, entries)
        self._check_anchors(entries)
        for r in self._recs.values():
            r.key = self.chain_key
            r.pinned = self.report.pinned
        self.report.recordings = list(self._recs.values())
        return self.report

    def _classify_other(self, name: str) -> None:
        if name == DEVICE_PUB_NAME or name.startswith(f"{ORPHANS_DIR}/"):
            return
        if name.startswith(TMP_PREFIX):
            self.report.notes.append(
                f"{self.path(name)}: uncommitted temp file (a write was interrupted)"
            )
        else:
            self.report.notes.append(f"{self.path(name)}: not part of the evidence format")

    def _load_store_pub(self, names: list[str]) -> None:
        # The store's own device-pub.pem is a convenience, never trust: it only supplies a key to
        # try; the report says "unpinned" unless --trust names the same key.
        if DEVICE_PUB_NAME not in names:
            return
        self.store_pub_fp = ""
        try:
            key = serialization.load_pem_public_key(self.store.read(DEVICE_PUB_NAME))
        except (ValueError, UnsupportedAlgorithm, OSError):
            return
        if isinstance(key, Ed25519PublicKey):
            canonical = key.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            if canonical != self.store.read(DEVICE_PUB_NAME):
                return  # The sealer writes exactly this encoding; anything else was altered.
            raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            self.store_pub_fp = fingerprint_raw(raw)
            self.keys.setdefault(self.store_pub_fp, key)

    def _check_store_pub(self) -> None:
        if self.store_pub_fp is None:
            return
        path = self.path(DEVICE_PUB_NAME)
        expected = self.chain_key or (min(self.named_keys) if len(self.named_keys) == 1 else None)
        if not self.store_pub_fp:
            self.finding(
                IntegrityError("not an Ed25519 public key PEM in canonical form", path=path)
            )
        elif expected is None or self.store_pub_fp != expected:
            self.finding(
                IntegrityError("does not match the key the chain is signed with", path=path)
            )

    # -- chain ---------------------------------------------------------------

    def _check_chain(self, head: int, jsons: set[int], others: dict[int, set[str]]) -> list[_Entry]:
        good: list[_Entry] = []
        prev_hash: str | None = ZERO_HASH
        expected = 0
        # Walk the entries present, reporting each run of missing ones once: a single hostile
        # name like 9999999999.json must cost one finding, not ten billion loop turns.
        for seq in sorted(jsons):
            name = entry_name(seq, "json")
            if seq != expected:
                missing = (
                    f"entry {expected} is"
                    if seq - expected == 1
                    else f"entries {expected} to {seq - 1} are"
                )
                self.finding(
                    IntegrityError(
                        f"{missing} missing (deleted?); the chain is broken here",
                        path=self.path(entry_name(expected, "json")),
                    )
                )
                prev_hash = None
            expected = seq + 1
            try:
                data = self.store.read(name)
            except OSError as exc:
                self.finding(IntegrityError(f"unreadable: {exc.strerror}", path=self.path(name)))
                prev_hash = None
                continue
            try:
                manifest = self._check_entry(seq, name, data, prev_hash, others.get(seq, set()))
                good.append(_Entry(seq, manifest, name))
            except IntegrityError as exc:
                self.finding(exc)
            prev_hash = hashlib.sha256(data).hexdigest()
        return good

    def _check_entry(
        self, seq: int, name: str, data: bytes, prev_hash: str | None, exts: set[str]
    ) -> dict[str, Any]:
        path = self.path(name)
        try:
            m = json.loads(data)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            # RecursionError: hostile nesting depth; the stdlib decoder gives up, so do we.
            raise IntegrityError("manifest is not valid JSON", path=path) from exc
        if not isinstance(m, dict):
            raise IntegrityError("manifest is not a JSON object", path=path)
        if m.get("format") != FORMAT:
            raise IntegrityError(f"unknown format marker {m.get('format')!r}", path=path)
        for k, t in _COMMON.items():
            if not isinstance(m.get(k), t) or (isinstance(m.get(k), bool) and t is int):
                raise IntegrityError(
                    f"manifest field {k!r} missing or of the wrong type", path=path
                )
        fp = m["key"]
        if not _HEX64.match(fp):
            raise IntegrityError("manifest field 'key' is not a SHA-256 fingerprint", path=path)
        self.named_keys.add(fp)
        self._check_signature(seq, data, fp, path)
        if canonical_json(m) != data:
            raise IntegrityError("manifest is not in canonical form", path=path)
        if m["seq"] != seq:
            raise IntegrityError(
                f"manifest says seq {m['seq']} but is stored as entry {seq} (moved or replayed)",
                path=path,
            )
        if prev_hash is not None and m["prev"] != prev_hash:
            before = "the zero hash" if seq == 0 else f"the hash of {entry_name(seq - 1, 'json')}"
            raise IntegrityError(
                f"prev does not match {before} (entry removed, reordered, replayed or spliced)",
                path=path,
            )
        if self.chain_key is None:
            self.chain_key = fp
        elif fp != self.chain_key:
            raise IntegrityError(
                f"signed by device key {fp[:16]}…, the rest of the chain by {self.chain_key[:16]}…",
                path=path,
            )
        if self.chain_device is None:
            self.chain_device = m["device"]
        elif m["device"] != self.chain_device:
            raise IntegrityError(
                f"device id {m['device']!r} differs from the chain's {self.chain_device!r}",
                path=path,
            )
        if m["type"] == "unit":
            self._check_unit_manifest(seq, m, path)
        elif m["type"] == "event":
            if not isinstance(m.get("kind"), str) or not isinstance(m.get("fields"), dict):
                raise IntegrityError("event without kind or fields", path=path)
            if "bin" in exts:
                raise IntegrityError(
                    "an event has a payload file beside it", path=self.path(entry_name(seq, "bin"))
                )
        else:
            raise IntegrityError(f"unknown entry type {m['type']!r}", path=path)
        return m

    def _check_signature(self, seq: int, data: bytes, fp: str, path: str) -> None:
        sig_name = entry_name(seq, "sig")
        sig_path = self.path(sig_name)
        if self.pinning and fp not in self.trusted:
            raise IntegrityError(
                f"signed by key {fp} which is not a trusted (--trust) key", path=path
            )
        key = self.keys.get(fp)
        if key is None:
            raise IntegrityError(
                f"signing key {fp} unknown (no matching device-pub.pem; pass --trust)", path=path
            )
        try:
            sig = self.store.read(sig_name)
        except OSError as exc:
            raise IntegrityError("signature file missing or unreadable", path=sig_path) from exc
        if len(sig) != SIG_LEN:
            raise IntegrityError(f"signature is {len(sig)} bytes, not {SIG_LEN}", path=sig_path)
        try:
            key.verify(sig, data)
        except InvalidSignature as exc:
            # Either file may be the altered one, so the finding names both.
            raise IntegrityError(
                f"Ed25519 signature {sig_path} does not verify over this manifest", path=path
            ) from exc

    def _check_unit_manifest(self, seq: int, m: dict[str, Any], path: str) -> None:
        for k, t in _UNIT.items():
            if not isinstance(m.get(k), t) or (isinstance(m.get(k), bool) and t is int):
                raise IntegrityError(f"unit field {k!r} missing or of the wrong type", path=path)
        p = m["payload"]
        if (
            p.get("file") != entry_name(seq, "bin")
            or not isinstance(p.get("size"), int)
            or not isinstance(p.get("sha256"), str)
            or p.get("cipher") != CIPHER
            or p.get("aad") != AAD_NAME
            or not isinstance(p.get("nonce"), str)
            or len(p["nonce"]) != NONCE_LEN * 2
        ):
            raise IntegrityError("unit payload description is malformed", path=path)
        if not m["recipients"] or not all(
            isinstance(r, dict) and isinstance(r.get("fingerprint"), str) for r in m["recipients"]
        ):
            raise IntegrityError("unit has no well-formed recipient", path=path)

    # -- payloads ------------------------------------------------------------

    def _check_payloads(self, entries: list[_Entry], others: dict[int, set[str]]) -> None:
        freed: set[str] = set()
        for e in entries:
            if e.manifest["type"] == "event" and e.manifest["kind"] == "offload_freed":
                files = e.manifest["fields"].get("files")
                if isinstance(files, list):
                    freed.update(Path(str(f)).name for f in files)
        for e in entries:
            m = e.manifest
            if m["type"] != "unit":
                continue
            p = m["payload"]
            rec = m["recording"]
            name = p["file"]
            if "bin" not in others.get(e.seq, set()):
                if name in freed:
                    self.report.offloaded.append(name)
                    if rec in self._recs:
                        self._recs[rec].offloaded_units += 1
                    continue
                self.finding(IntegrityError("payload file missing", path=self.path(name)), rec)
                continue
            try:
                size, digest = hash_stream(self.store, name)
            except OSError as exc:
                self.finding(
                    IntegrityError(f"payload unreadable: {exc.strerror}", path=self.path(name)),
                    rec,
                )
                continue
            if size != p["size"]:
                self.finding(
                    IntegrityError(
                        f"payload is {size} bytes, manifest says {p['size']} (truncated?)",
                        path=self.path(name),
                    ),
                    rec,
                )
            elif digest != p["sha256"]:
                self.finding(
                    IntegrityError(
                        "payload SHA-256 does not match its manifest", path=self.path(name)
                    ),
                    rec,
                )

    def _check_orphans(self, names: list[str], entries: list[_Entry]) -> None:
        named: set[str] = set()
        for e in entries:
            # A clean boot that still found leftovers (e.g. a write that failed for space)
            # names them in ``leftovers_moved`` instead.
            if e.manifest["type"] == "event" and e.manifest["kind"] in (
                "power_loss_discovered",
                "leftovers_moved",
            ):
                orphans = e.manifest["fields"].get("orphans")
                if isinstance(orphans, list):
                    named.update(str(o) for o in orphans)
        for name in names:
            if not name.startswith(f"{ORPHANS_DIR}/"):
                continue
            if name in named:
                self.report.notes.append(
                    f"{self.path(name)}: leftover of a power cut, named in a signed "
                    "power_loss_discovered event"
                )
            else:
                self.finding(
                    IntegrityError(
                        "orphan not named by a signed power_loss_discovered/leftovers_moved event",
                        path=self.path(name),
                    )
                )

    # -- meaning -------------------------------------------------------------

    def _semantics(self, entries: list[_Entry]) -> None:
        gaps_declared: dict[str, list[tuple[int, int]]] = {}
        for e in entries:
            m = e.manifest
            if m["type"] == "event" and m["kind"] == "frame_gap":
                f = m["fields"]
                if isinstance(f.get("from_frame"), int) and isinstance(f.get("to_frame"), int):
                    gaps_declared.setdefault(str(f.get("recording")), []).append(
                        (f["from_frame"], f["to_frame"])
                    )
        boots: list[BootReport] = []
        boot_entries: dict[str, list[_Entry]] = {}
        last: dict[str, _Entry] = {}  # recording -> its last entry, for findings
        prev_unit: dict[str, dict[str, Any]] = {}
        stealth_on: dict[str, Any] | None = None
        mute_on: dict[str, dict[str, Any]] = {}
        recovered: set[str] = set()
        for e in entries:
            m = e.manifest
            boot = m["boot"]
            if not boots or boots[-1].id != boot:
                if any(b.id == boot for b in boots):
                    self.finding(
                        IntegrityError(
                            f"boot {boot} reappears after a later boot (replayed entry?)",
                            path=self.path(e.name),
                        )
                    )
                boots.append(BootReport(boot, e.seq, e.seq, False))
            b = boots[-1]
            b.last_seq = e.seq
            b.clean = m["type"] == "event" and m["kind"] == "shutdown"
            boot_entries.setdefault(boot, []).append(e)
            if m["type"] == "unit":
                self._unit(e, prev_unit, gaps_declared, last)
                continue
            kind, f = m["kind"], m["fields"]
            rec_id = f.get("recording")
            rec_id = rec_id if isinstance(rec_id, str) else None
            if kind == "boot":
                b.firmware_version = _str(f.get("firmware_version"))
                b.profile_digest = _str(f.get("profile_digest"))
                b.device_id = _str(f.get("device_id"))
                b.officer_id = _str(f.get("officer_id"))
            elif kind == "record_start" and rec_id is not None:
                if rec_id in self._recs:
                    self.finding(
                        IntegrityError(
                            f"second record_start for recording {rec_id}", path=self.path(e.name)
                        ),
                        rec_id,
                    )
                    continue
                r = RecordingReport(rec_id)
                self._recs[rec_id] = r
                r.start_trigger = _str(f.get("trigger"))
                r.pre_event_s = _num(f.get("pre_event_s"))
                r.pre_event_captured_s = _num(f.get("pre_event_captured_s"))
                pa = f.get("pre_event_audio")
                r.pre_event_audio = pa if isinstance(pa, bool) else None
                r.officer_id = _str(f.get("officer_id")) or b.officer_id
                r.profile_digest = _str(f.get("profile_digest")) or b.profile_digest
                r.boot = boot
                r.start_utc_us = m["utc_us"]
                r.utc_source = m["utc_source"]
                last[rec_id] = e
                if stealth_on is not None:
                    r.stealth.append({"from_utc_us": m["utc_us"], "to_utc_us": None})
            elif kind == "record_stop" and rec_id is not None:
                r2 = self._recs.get(rec_id)
                if r2 is None or r2.closed:
                    self.finding(
                        IntegrityError(
                            f"record_stop for recording {rec_id} that is not open",
                            path=self.path(e.name),
                        )
                    )
                    continue
                r2.closed = True
                r2.stop_trigger = _str(f.get("trigger"))
                r2.end_utc_us = m["utc_us"]
                last[rec_id] = e
                if r2.stop_trigger == "power_loss_recovery" and rec_id not in recovered:
                    self.finding(
                        IntegrityError(
                            "power_loss_recovery stop without a power_loss_discovered event "
                            "naming this recording",
                            path=self.path(e.name),
                        ),
                        rec_id,
                    )
                _close_interval(r2.stealth, m["utc_us"])
                _close_interval(r2.mute, m["utc_us"])
                mute_on.pop(rec_id, None)
                units_said = f.get("units")
                if isinstance(units_said, int) and units_said != r2.units:
                    r2.notes.append(
                        f"record_stop says {units_said} units; the chain holds {r2.units}"
                    )
            elif kind == "marker" and rec_id in self._recs:
                self._recs[rec_id].markers.append(
                    {k: f.get(k) for k in ("at_mono_us", "at_utc_us", "frame")}
                )
            elif kind == "stealth":
                on = bool(f.get("on"))
                if on and stealth_on is None:
                    stealth_on = m
                    for r3 in self._open_recordings():
                        r3.stealth.append({"from_utc_us": m["utc_us"], "to_utc_us": None})
                elif not on and stealth_on is not None:
                    stealth_on = None
                    for r3 in self._open_recordings():
                        _close_interval(r3.stealth, m["utc_us"])
            elif kind == "mute" and rec_id in self._recs:
                r4 = self._recs[rec_id]
                if bool(f.get("on")) and rec_id not in mute_on:
                    mute_on[rec_id] = m
                    r4.mute.append({"from_utc_us": m["utc_us"], "to_utc_us": None})
                elif not f.get("on") and rec_id in mute_on:
                    del mute_on[rec_id]
                    _close_interval(r4.mute, m["utc_us"])
            elif kind == "power_loss_discovered":
                open_rec = f.get("open_recording")
                if isinstance(open_rec, str):
                    recovered.add(open_rec)
                    if open_rec in self._recs:
                        self._recs[open_rec].power_losses += 1
        self._check_boots(boots, boot_entries)
        for rec_id, r in self._recs.items():
            if not r.closed:
                self.finding(
                    IntegrityError(
                        "recording not closed: no record_stop (tail removed?)",
                        path=self.path(last[rec_id].name),
                    ),
                    rec_id,
                )
        self.report.boots = boots

    def _check_anchors(self, entries: list[_Entry]) -> None:
        """Judge every ``timestamp_token`` event (see ``evidence.timestamp``)."""
        good = {e.seq: e for e in entries}

        def manifest_bytes(seq: int) -> bytes | None:
            # Only entries that passed the chain checks count as anchored content.
            if seq not in good:
                return None
            try:
                return self.store.read(good[seq].name)
            except OSError:
                return None

        for e in entries:
            m = e.manifest
            if m["type"] != "event" or m["kind"] != TOKEN_KIND:
                continue
            try:
                a = check_anchor(
                    e.seq,
                    m["fields"],
                    m["utc_us"],
                    manifest_bytes,
                    self.tsa_roots,
                    self.path(e.name),
                )
            except IntegrityError as exc:
                self.finding(exc)
                f = m["fields"]
                bad = Anchor(
                    e.seq, _int(f.get("head_seq")), _str(f.get("head_hash")), None, None, "invalid"
                )
                self.report.anchors.append(bad)
                continue
            self.report.anchors.append(a)
            if a.head_seq is not None and (
                self.report.anchored_seq is None or a.head_seq > self.report.anchored_seq
            ):
                self.report.anchored_seq = a.head_seq
                self.report.anchored_at = a.gen_time
                self.report.anchor_verified = a.status == "verified"

    def _open_recordings(self) -> list[RecordingReport]:
        return [r for r in self._recs.values() if not r.closed]

    def _unit(
        self,
        e: _Entry,
        prev_unit: dict[str, dict[str, Any]],
        gaps_declared: dict[str, list[tuple[int, int]]],
        last: dict[str, _Entry],
    ) -> None:
        m = e.manifest
        rec_id = m["recording"]
        r = self._recs.get(rec_id)
        path = self.path(e.name)
        if r is None or r.closed:
            state = "before its record_start" if r is None else "after its record_stop"
            self.finding(IntegrityError(f"unit of recording {rec_id} {state}", path=path), rec_id)
            return
        last[rec_id] = e
        p = prev_unit.get(rec_id)
        seg, unit = m["segment"], m["unit"]
        if p is None:
            if (seg, unit) != (0, 0):
                self.finding(
                    IntegrityError(
                        f"recording starts at segment {seg} unit {unit}, not 0/0", path=path
                    ),
                    rec_id,
                )
            r.first_frame = m["first_frame"]
            r.duration_s = 0.0
            r.utc_source = m.get("start_utc_source", r.utc_source)
        else:
            ok = (seg, unit) in ((p["segment"], p["unit"] + 1), (p["segment"] + 1, 0))
            if not ok:
                self.finding(
                    IntegrityError(
                        f"unit out of order: segment {seg} unit {unit} follows segment "
                        f"{p['segment']} unit {p['unit']}",
                        path=path,
                    ),
                    rec_id,
                )
            expected = p["first_frame"] + p["frame_count"]
            first = m["first_frame"]
            if first < expected:
                self.finding(
                    IntegrityError(
                        f"frames overlap or go backwards: first_frame {first}, expected {expected}",
                        path=path,
                    ),
                    rec_id,
                )
            elif first > expected:
                explained = any(
                    a <= expected and b >= first - 1 for a, b in gaps_declared.get(rec_id, [])
                )
                r.gaps.append(
                    {"from_frame": expected, "to_frame": first - 1, "explained": explained}
                )
                if not explained:
                    self.finding(
                        IntegrityError(
                            f"frames {expected}-{first - 1} missing with no frame_gap event",
                            path=path,
                        ),
                        rec_id,
                    )
            r.duration_s += max(0, m["start_pts_us"] - p["end_pts_us"]) / 1e6
        r.duration_s += max(0, m["end_pts_us"] - m["start_pts_us"]) / 1e6
        r.units += 1
        r.segments = max(r.segments, seg + 1)
        r.last_frame = m["first_frame"] + m["frame_count"] - 1
        r.unit_seqs.append(e.seq)
        gnss = m.get("gnss")
        if isinstance(gnss, dict):
            r.gnss.append(gnss)
        prev_unit[rec_id] = m

    def _check_boots(self, boots: list[BootReport], boot_entries: dict[str, list[_Entry]]) -> None:
        for before, after in itertools.pairwise(boots):
            if before.clean:
                continue
            ok = any(
                e.manifest["type"] == "event"
                and e.manifest["kind"] == "power_loss_discovered"
                and e.manifest["fields"].get("previous_boot") == before.id
                for e in boot_entries.get(after.id, [])
            )
            if not ok:
                self.finding(
                    IntegrityError(
                        f"boot {after.id} follows an unclean end of boot {before.id} without a "
                        "power_loss_discovered event (entries removed?)",
                        path=self.path(entry_name(after.first_seq, "json")),
                    )
                )


def _close_interval(intervals: list[dict[str, Any]], utc_us: int) -> None:
    if intervals and intervals[-1]["to_utc_us"] is None:
        intervals[-1]["to_utc_us"] = utc_us


def _str(v: object) -> str | None:
    return v if isinstance(v, str) else None


def _int(v: object) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


_ANCHOR_STATUS = {
    "verified": "TSA signature verified (--tsa-ca)",
    "unverified": "TSA signature not checked (no --tsa-ca)",
}


def _anchor_lines(report: Report) -> list[str]:
    lines = []
    for a in report.anchors:
        how = _ANCHOR_STATUS.get(a.status, "INVALID")
        lines.append(
            f"  timestamp token at seq {a.seq}: anchors seq {a.head_seq} at {a.gen_time} "
            f"({a.tsa_name or a.tsa_url}); {how}"
        )
    if report.anchored_seq is not None:
        lines.append(
            f"chain anchored up to seq {report.anchored_seq} at {report.anchored_at}"
            + ("" if report.anchor_verified else " (TSA signature not checked: pass --tsa-ca)")
        )
    elif report.head_seq >= 0:
        lines.append("chain not anchored by any timestamp token")
    return lines


def _num(v: object) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def verify_store(
    store: StoreReader,
    trusted_keys: Sequence[bytes] | None = None,
    tsa_roots: Sequence[Certificate] | None = None,
    expected_heads: Sequence[tuple[int, str]] = (),
) -> Report:
    """Verify everything in ``store``. ``trusted_keys`` are raw Ed25519 public keys to pin;
    ``tsa_roots`` the CA certificates that timestamp tokens must chain to (else unverified);
    ``expected_heads`` (seq, manifest SHA-256) pairs recorded earlier (``check_expected_head``)."""
    report = _Verifier(store, trusted_keys, tsa_roots).run()
    for seq, digest in expected_heads:
        check_expected_head(store, report, seq, digest)
    return report


def parse_expected_head(text: str) -> tuple[int, str]:
    """``SEQ:SHA256`` as printed by an earlier ``bwc verify`` (head seq, head hash)."""
    seq_text, sep, digest = text.partition(":")
    digest = digest.strip().lower()
    if (
        not sep
        or not seq_text.strip().isdigit()
        or len(digest) != 64
        or not all(c in "0123456789abcdef" for c in digest)
    ):
        raise UsageError(
            f"--expect-head {text!r}: use SEQ:SHA256, the head seq and head hash an earlier "
            "`bwc verify` printed"
        )
    return int(seq_text), digest


def check_expected_head(store: StoreReader, report: Report, seq: int, digest: str) -> None:
    """The one check a store cannot make alone: that nothing was cut off its end.

    An agency that recorded the head (seq and manifest hash) at an earlier intake, or a receipt or
    anchor that names it, passes it here: the entry must still exist with exactly that hash.
    Because every entry names its predecessor's hash, that also fixes every entry before it.
    """
    name = entry_name(seq, "json")
    where = report.store + "/" + name
    if seq > report.head_seq:
        report.findings.append(
            Finding(
                where,
                f"expected head entry {seq} is missing: the chain now ends at "
                f"{report.head_seq} (entries removed from the end)",
            )
        )
        return
    try:
        actual = hashlib.sha256(store.read(name)).hexdigest()
    except OSError:
        report.findings.append(Finding(where, f"expected head entry {seq} is unreadable"))
        return
    if actual != digest:
        report.findings.append(
            Finding(
                where,
                f"expected head entry {seq} has hash {actual[:16]}…, not the "
                f"recorded {digest[:16]}… (the chain was rewritten)",
            )
        )
    else:
        report.notes.append(f"expected head entry {seq} present with the recorded hash")
