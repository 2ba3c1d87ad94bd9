"""The verifier's second part: what the chain means. Boots and their clean or unclean ends,
recordings from record_start to record_stop, units in order with continuous frames, and each
event kind's rule (``RULES``). Works on entries that already passed ``verify_chain``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from evidence.findings import Code
from evidence.format import entry_name
from evidence.records import UNIT, EventKind, Manifest
from evidence.verify_context import Context, Entry
from evidence.verify_report import BootReport, RecordingReport
from hal.errors import IntegrityError


def _str(v: object) -> str | None:
    return v if isinstance(v, str) else None


def _num(v: object) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _int(v: object) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _close_interval(intervals: list[dict[str, Any]], utc_us: int) -> None:
    if intervals and intervals[-1]["to_utc_us"] is None:
        intervals[-1]["to_utc_us"] = utc_us


class Meaning:
    """One pass over the good entries in chain order; findings go to ``ctx``."""

    def __init__(self, ctx: Context, entries: list[Entry]) -> None:
        self.ctx = ctx
        self.entries = entries
        self.boots: list[BootReport] = []
        self.boot_entries: dict[str, list[Entry]] = {}
        self.last: dict[str, Entry] = {}  # recording -> its last entry, for findings
        self.prev_unit: dict[str, Manifest] = {}
        self.stealth_on: Manifest | None = None
        self.mute_on: set[str] = set()
        self.recovered: set[str] = set()
        self.gaps_declared: dict[str, list[tuple[int, int]]] = {}
        for e in entries:
            if e.manifest.is_event(EventKind.FRAME_GAP):
                f = e.manifest.event_fields
                a, b = f.get("from_frame"), f.get("to_frame")
                if isinstance(a, int) and isinstance(b, int):
                    self.gaps_declared.setdefault(str(f.get("recording")), []).append((a, b))

    def run(self) -> None:
        for e in self.entries:
            m = e.manifest
            self._boot_of(e)
            if m.type == UNIT:
                self._unit(e)
                continue
            rule = RULES.get(m.kind or "")
            if rule is not None:
                rule(self, e, m.event_fields)
        self._check_boots()
        for rec_id, r in self.ctx.recs.items():
            if not r.closed:
                self._finding(
                    "recording not closed: no record_stop (tail removed?)",
                    self.last[rec_id],
                    Code.RECORDING_NOT_CLOSED,
                    rec_id,
                )
        self.ctx.report.boots = self.boots

    def _finding(self, reason: str, e: Entry, code: Code, rec: str | None = None) -> None:
        self.ctx.finding(IntegrityError(reason, path=self.ctx.path(e.name), code=code), rec)

    def _boot_of(self, e: Entry) -> None:
        m = e.manifest
        if not self.boots or self.boots[-1].id != m.boot:
            if any(b.id == m.boot for b in self.boots):
                self._finding(
                    f"boot {m.boot[:40]} reappears after a later boot (replayed entry?)",
                    e,
                    Code.BOOT_REPLAYED,
                )
            self.boots.append(BootReport(m.boot, e.seq, e.seq, False))
        b = self.boots[-1]
        b.last_seq = e.seq
        b.clean = m.is_event(EventKind.SHUTDOWN)
        self.boot_entries.setdefault(m.boot, []).append(e)

    def _open_recordings(self) -> list[RecordingReport]:
        return [r for r in self.ctx.recs.values() if not r.closed]

    # -- rules, one per event kind --------------------------------------------

    def boot(self, e: Entry, f: dict[str, Any]) -> None:
        b = self.boots[-1]
        b.firmware_version = _str(f.get("firmware_version"))
        b.profile_digest = _str(f.get("profile_digest"))
        b.device_id = _str(f.get("device_id"))
        b.officer_id = _str(f.get("officer_id"))

    def provisioned(self, e: Entry, f: dict[str, Any]) -> None:
        # A unit re-provisioned under a new identity archives its offloaded chain and starts a
        # new one, whose first event names the identity before it ({"previous": {...}}).
        prev = f.get("previous")
        if prev is None:
            return
        ok = isinstance(prev, dict) and all(
            isinstance(prev.get(k), str) for k in ("device_id", "device_key_fingerprint")
        )
        if not ok or e.seq != 0:
            self._finding(
                "a hand-over from a previous identity must be entry 0 of a new chain and name "
                "the previous device id and key fingerprint",
                e,
                Code.HANDOVER_INVALID,
            )
            return
        head = prev.get("chain_head_seq")
        where = prev.get("archive")
        self.ctx.report.handovers.append(
            f"hand-over: this chain continues device {str(prev['device_id'])[:64]} "
            f"(key {str(prev['device_key_fingerprint'])[:64]}, chain head seq {head} "
            f"{str(prev.get('chain_head_sha256'))[:64]}"
            + (f", archived in {str(where)[:200]}" if isinstance(where, str) else "")
            + "); verify that chain with its own key"
        )

    def record_start(self, e: Entry, f: dict[str, Any]) -> None:
        rec_id = _str(f.get("recording"))
        if rec_id is None:
            return
        m, b = e.manifest, self.boots[-1]
        if rec_id in self.ctx.recs:
            self._finding(
                f"second record_start for recording {rec_id}", e, Code.RECORDING_DUPLICATE, rec_id
            )
            return
        r = RecordingReport(rec_id)
        self.ctx.recs[rec_id] = r
        r.start_trigger = _str(f.get("trigger"))
        r.pre_event_s = _num(f.get("pre_event_s"))
        r.pre_event_captured_s = _num(f.get("pre_event_captured_s"))
        pa = f.get("pre_event_audio")
        r.pre_event_audio = pa if isinstance(pa, bool) else None
        r.officer_id = _str(f.get("officer_id")) or b.officer_id
        r.profile_digest = _str(f.get("profile_digest")) or b.profile_digest
        r.boot = m.boot
        r.start_utc_us = m["utc_us"]
        r.press_utc_us = _int(f.get("press_utc_us"))
        r.utc_source = m["utc_source"]
        self.last[rec_id] = e
        if self.stealth_on is not None:
            r.stealth.append({"from_utc_us": m["utc_us"], "to_utc_us": None})

    def record_stop(self, e: Entry, f: dict[str, Any]) -> None:
        rec_id = _str(f.get("recording"))
        if rec_id is None:
            return
        m = e.manifest
        r = self.ctx.recs.get(rec_id)
        if r is None or r.closed:
            self._finding(
                f"record_stop for recording {rec_id} that is not open", e, Code.RECORDING_NOT_OPEN
            )
            return
        r.closed = True
        r.stop_trigger = _str(f.get("trigger"))
        r.end_utc_us = m["utc_us"]
        self.last[rec_id] = e
        if r.stop_trigger == "power_loss_recovery" and rec_id not in self.recovered:
            self._finding(
                "power_loss_recovery stop without a power_loss_discovered event naming this "
                "recording",
                e,
                Code.RECOVERY_UNEXPLAINED,
                rec_id,
            )
        _close_interval(r.stealth, m["utc_us"])
        _close_interval(r.mute, m["utc_us"])
        self.mute_on.discard(rec_id)
        units_said = f.get("units")
        if isinstance(units_said, int) and units_said != r.units:
            r.notes.append(f"record_stop says {units_said} units; the chain holds {r.units}")

    def marker(self, e: Entry, f: dict[str, Any]) -> None:
        r = self.ctx.recs.get(_str(f.get("recording")) or "")
        if r is not None:
            r.markers.append({k: f.get(k) for k in ("at_mono_us", "at_utc_us", "frame")})

    def stealth(self, e: Entry, f: dict[str, Any]) -> None:
        utc = e.manifest["utc_us"]
        on = bool(f.get("on"))
        if on and self.stealth_on is None:
            self.stealth_on = e.manifest
            for r in self._open_recordings():
                r.stealth.append({"from_utc_us": utc, "to_utc_us": None})
        elif not on and self.stealth_on is not None:
            self.stealth_on = None
            for r in self._open_recordings():
                _close_interval(r.stealth, utc)

    def mute(self, e: Entry, f: dict[str, Any]) -> None:
        rec_id = _str(f.get("recording")) or ""
        r = self.ctx.recs.get(rec_id)
        if r is None:
            return
        utc = e.manifest["utc_us"]
        if bool(f.get("on")) and rec_id not in self.mute_on:
            self.mute_on.add(rec_id)
            r.mute.append({"from_utc_us": utc, "to_utc_us": None})
        elif not f.get("on") and rec_id in self.mute_on:
            self.mute_on.discard(rec_id)
            _close_interval(r.mute, utc)

    def power_loss_discovered(self, e: Entry, f: dict[str, Any]) -> None:
        open_rec = f.get("open_recording")
        if isinstance(open_rec, str):
            self.recovered.add(open_rec)
            if open_rec in self.ctx.recs:
                self.ctx.recs[open_rec].power_losses += 1

    # -- units -------------------------------------------------------------------

    def _unit(self, e: Entry) -> None:
        m = e.manifest
        rec_id: str = m["recording"]
        r = self.ctx.recs.get(rec_id)
        if r is None or r.closed:
            state = "before its record_start" if r is None else "after its record_stop"
            self._finding(
                f"unit of recording {rec_id} {state}", e, Code.UNIT_OUTSIDE_RECORDING, rec_id
            )
            return
        self.last[rec_id] = e
        p = self.prev_unit.get(rec_id)
        seg, unit = m["segment"], m["unit"]
        if p is None:
            if (seg, unit) != (0, 0):
                self._finding(
                    f"recording starts at segment {seg} unit {unit}, not 0/0",
                    e,
                    Code.UNIT_ORDER,
                    rec_id,
                )
            r.first_frame = m["first_frame"]
            r.duration_s = 0.0
            r.utc_source = m.get("start_utc_source", r.utc_source)
        else:
            self._continuity(e, p, r)
        r.duration_s += max(0, m["end_pts_us"] - m["start_pts_us"]) / 1e6
        r.units += 1
        r.segments = max(r.segments, seg + 1)
        r.last_frame = m["first_frame"] + m["frame_count"] - 1
        r.unit_seqs.append(e.seq)
        gnss = m.get("gnss")
        if isinstance(gnss, dict):
            r.gnss.append(gnss)
        self.prev_unit[rec_id] = m

    def _continuity(self, e: Entry, p: Manifest, r: RecordingReport) -> None:
        m = e.manifest
        seg, unit = m["segment"], m["unit"]
        if (seg, unit) not in ((p["segment"], p["unit"] + 1), (p["segment"] + 1, 0)):
            self._finding(
                f"unit out of order: segment {seg} unit {unit} follows segment {p['segment']} "
                f"unit {p['unit']}",
                e,
                Code.UNIT_ORDER,
                r.id,
            )
        expected = p["first_frame"] + p["frame_count"]
        first = m["first_frame"]
        if first < expected:
            self._finding(
                f"frames overlap or go backwards: first_frame {first}, expected {expected}",
                e,
                Code.FRAMES_OVERLAP,
                r.id,
            )
        elif first > expected:
            explained = any(
                a <= expected and b >= first - 1 for a, b in self.gaps_declared.get(r.id, [])
            )
            r.gaps.append({"from_frame": expected, "to_frame": first - 1, "explained": explained})
            if not explained:
                self._finding(
                    f"frames {expected}-{first - 1} missing with no frame_gap event",
                    e,
                    Code.FRAMES_MISSING,
                    r.id,
                )
        r.duration_s += max(0, m["start_pts_us"] - p["end_pts_us"]) / 1e6

    def _check_boots(self) -> None:
        for before, after in itertools.pairwise(self.boots):
            if before.clean:
                continue
            ok = any(
                e.manifest.is_event(EventKind.POWER_LOSS_DISCOVERED)
                and e.manifest.event_fields.get("previous_boot") == before.id
                for e in self.boot_entries.get(after.id, [])
            )
            if not ok:
                self.ctx.finding(
                    IntegrityError(
                        f"boot {after.id} follows an unclean end of boot {before.id} without a "
                        "power_loss_discovered event (entries removed?)",
                        path=self.ctx.path(entry_name(after.first_seq, "json")),
                        code=Code.POWER_LOSS_UNEXPLAINED,
                    )
                )


Rule = Callable[[Meaning, Entry, dict[str, Any]], None]
RULES: dict[str, Rule] = {
    EventKind.BOOT: Meaning.boot,
    EventKind.PROVISIONED: Meaning.provisioned,
    EventKind.RECORD_START: Meaning.record_start,
    EventKind.RECORD_STOP: Meaning.record_stop,
    EventKind.MARKER: Meaning.marker,
    EventKind.STEALTH: Meaning.stealth,
    EventKind.MUTE: Meaning.mute,
    EventKind.POWER_LOSS_DISCOVERED: Meaning.power_loss_discovered,
}
"""The rule for each event kind with a meaning beyond being signed and chained. Payload-naming
kinds (offload_freed, power_loss_discovered's orphans) are judged in ``verify_payloads``;
timestamp tokens in ``evidence.timestamp``."""
