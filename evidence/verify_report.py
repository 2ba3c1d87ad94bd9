"""What verification found, as a report: per store, per boot, per recording; text and JSON.

Pure data and formatting. The text report summarises repeated findings of one code; ``--json``
lists the first few of each code too, plus a count per code, so a hostile store cannot make the
report itself unbounded.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from evidence.findings import Finding, counts_by_code, summarise
from evidence.format import ZERO_HASH
from evidence.times import iso_utc, with_iso_times
from evidence.timestamp import Anchor


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
    press_utc_us: int | None = None
    """The press (or trigger) the recording answers, from record_start: the pre-roll counts
    back from it. ``start_utc_us``/``end_utc_us`` are when record_start/record_stop were sealed."""
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
    formats: list[dict[str, Any]] = field(default_factory=list)
    """Runs of format versions in chain order (``format``, ``first_seq``, ``last_seq``), over
    the entries that passed the chain checks: a unit updated from /1 to /2 firmware shows two."""
    pinned: bool = False
    origin: str = "not-established"  # "pinned" | "unpinned" (--unpinned) | "not-established"
    recordings: list[RecordingReport] = field(default_factory=list)
    boots: list[BootReport] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    handovers: list[str] = field(default_factory=list)
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
        out["finding_counts"] = counts_by_code(self.all_findings)
        out["findings"] = _shown(self.findings)
        out["all_findings"] = _shown(self.all_findings)
        for rec, r in zip(out["recordings"], self.recordings, strict=True):
            rec["intact"] = r.intact
            rec["findings"] = _shown(r.findings)
            del rec["unit_seqs"]
        return with_iso_times(out)  # type: ignore[no-any-return]

    def format_text(self) -> str:
        lines = [f"store {self.store}: {self.entries} entries, head seq {self.head_seq}"]
        lines.append(f"  head hash {self.head_hash}")
        for fp in self.keys:
            lines.append(f"  signed by device key {fp} ({_ORIGIN_WORDS[self.origin]})")
        if self.device is not None:
            lines.append(f"  device {self.device}")
        for run in self.formats:
            lines.append(f"  {run['format']}: entries {run['first_seq']}-{run['last_seq']}")
        lines.extend(f"  {h}" for h in self.handovers)
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
            lines.extend(_recording_lines(r, self.origin))
        lines.extend(_anchor_lines(self))
        lines.extend(f"note: {n}" for n in self.notes)
        lines.extend(_finding_lines(self.findings, ""))
        n = len(self.all_findings)
        if n:
            lines.append(f"result: {n} finding(s); NOT intact")
        elif self.origin == "unpinned":
            lines.append(
                "result: INTACT, but ORIGIN NOT CHECKED (--unpinned): any key could have "
                "signed this"
            )
        else:
            lines.append("result: INTACT")
        return "\n".join(lines)


def _n(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


_ORIGIN_WORDS = {
    "pinned": "pinned by --trust",
    "unpinned": "UNPINNED: origin not checked",
    "not-established": "origin not established",
}


def _shown(findings: list[Finding]) -> list[dict[str, Any]]:
    return [asdict(f) for f in summarise(findings) if isinstance(f, Finding)]


def _finding_lines(findings: list[Finding], indent: str) -> list[str]:
    out = []
    for f in summarise(findings):
        if isinstance(f, Finding):
            out.append(f"{indent}FINDING [{f.code}] {f.file}: {f.reason}")
        else:
            out.append(f"{indent}{f}")
    return out


_RECORDING_VERDICT = {
    # A recording is INTACT only when the store's origin is pinned; otherwise its own checks
    # passed but who signed it is open, and the line must not read as the store's verdict.
    "pinned": "INTACT",
    "unpinned": "intact as signed, ORIGIN NOT CHECKED",
    "not-established": "checks pass, ORIGIN NOT ESTABLISHED",
}


def _recording_lines(r: RecordingReport, origin: str) -> list[str]:
    verdict = _RECORDING_VERDICT.get(origin, "ORIGIN UNKNOWN") if r.intact else "BROKEN"
    lines = [
        f"recording {r.id}: {verdict}; {_n(r.units, 'unit')} "
        f"in {_n(r.segments, 'segment')}, {r.duration_s:.1f} s, frames {r.first_frame}-"
        f"{r.last_frame}, start {r.start_trigger}, stop {r.stop_trigger}",
        f"  press {iso_utc(r.press_utc_us)}, record_start {iso_utc(r.start_utc_us)}, "
        f"record_stop {iso_utc(r.end_utc_us)} (UTC, {r.utc_source} clock)",
    ]
    if r.offloaded_units:
        lines.append(
            f"  {r.offloaded_units} unit payloads freed on the unit after offload (--allow-freed)"
        )
    for g in r.gaps:
        how = "explained" if g["explained"] else "UNEXPLAINED"
        lines.append(f"  frame gap {g['from_frame']}-{g['to_frame']}: {how}")
    if r.power_losses:
        lines.append(f"  power losses: {r.power_losses}")
    for m in r.markers:
        at = m.get("at_utc_us")
        lines.append(f"  marker at frame {m.get('frame')} ({_iso(at)}, utc_us {at})")
    for s in r.stealth:
        lines.append(f"  stealth {_interval(s)}")
    for s in r.mute:
        lines.append(f"  mute {_interval(s)}")
    lines.extend(f"  note: {n}" for n in r.notes)
    lines.extend(_finding_lines(r.findings, "  "))
    return lines


def _iso(utc_us: object) -> str | None:
    return iso_utc(utc_us) if isinstance(utc_us, int) and not isinstance(utc_us, bool) else None


def _interval(s: dict[str, Any]) -> str:
    """``from - to`` in ISO and raw µs (an open interval's end is None)."""
    a, b = s["from_utc_us"], s["to_utc_us"]
    return f"{_iso(a)} - {_iso(b)} (utc_us {a} - {b})"


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
