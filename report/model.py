"""What the report knows about one recording, as typed values, taken from what export computes.

The source is the export metadata (``evidence.export.export_metadata``, the JSON that travels with
an exported MP4) plus the verified unit manifests the opener hands over (``Recording.units``) and
the store's verification report. Nothing here re-reads or re-checks the store: a field the verifier
did not report is reported as unknown, never guessed.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from evidence.opener import Recording
from report.chain import ChainEvent


@dataclass(frozen=True)
class UnitSpan:
    """One sealed unit on the UTC axis: its frames and where they fall in time."""

    seq: int
    segment: int
    first_frame: int
    frame_count: int
    start_utc_us: int
    end_utc_us: int  # exclusive: when the next frame would have been
    pre_event: bool

    def frame_utc_us(self, frame: int) -> int:
        """When ``frame`` (a frame of this unit) was captured, on the unit's UTC clock."""
        step = (self.end_utc_us - self.start_utc_us) / max(1, self.frame_count)
        return self.start_utc_us + round((frame - self.first_frame) * step)

    @property
    def last_frame(self) -> int:
        return self.first_frame + self.frame_count - 1


@dataclass(frozen=True)
class Interval:
    from_utc_us: int
    to_utc_us: int | None  # None: still on when the recording ended


@dataclass(frozen=True)
class Marker:
    number: int
    utc_us: int
    frame: int | None


@dataclass(frozen=True)
class Gap:
    from_frame: int
    to_frame: int
    explained: bool
    from_utc_us: int
    to_utc_us: int


@dataclass(frozen=True)
class Fix:
    utc_us: int
    lat_deg: float
    lon_deg: float
    satellites: int | None = None
    hdop: float | None = None


@dataclass(frozen=True)
class Anchor:
    seq: int
    head_seq: int | None
    gen_time: str | None
    tsa: str | None
    status: str  # verified | unverified | invalid
    unit_minus_tsa_s: float | None = None  # how far the unit's clock was from the TSA's


@dataclass(frozen=True)
class Finding:
    file: str
    reason: str
    code: str | None = None


@dataclass
class RecordingFacts:
    """Everything the page shows about one recording."""

    id: str
    device: str | None
    officer: str | None
    press_utc_us: int | None
    stop_utc_us: int | None
    utc_source: str | None
    start_trigger: str | None
    stop_trigger: str | None
    pre_event_s: float | None
    pre_event_captured_s: float | None
    pre_event_audio: bool | None
    duration_s: float
    firmware_version: str | None
    profile_digest: str | None
    power_losses: int
    offloaded_units: int
    units: list[UnitSpan] = field(default_factory=list)
    markers: list[Marker] = field(default_factory=list)
    mute: list[Interval] = field(default_factory=list)
    stealth: list[Interval] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    track: list[Fix] = field(default_factory=list)
    # Verification
    intact: bool = False
    signing_key: str | None = None
    pinned: bool = False
    chain_entries: int = 0
    chain_head_seq: int = -1
    chain_head_sha256: str = ""
    unit_seqs: tuple[int, int] | None = None
    boot_id: str | None = None
    boot_clean: bool | None = None
    anchors: list[Anchor] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    chain_events: list[ChainEvent] = field(default_factory=list)

    @property
    def video_start_utc_us(self) -> int | None:
        return self.units[0].start_utc_us if self.units else None

    @property
    def video_end_utc_us(self) -> int | None:
        return self.units[-1].end_utc_us if self.units else None

    @property
    def segments(self) -> int:
        return len({u.segment for u in self.units})

    def unit_of_frame(self, frame: int) -> UnitSpan | None:
        return next((u for u in self.units if u.first_frame <= frame <= u.last_frame), None)

    def frame_at(self, utc_us: int) -> int | None:
        """The frame shown at ``utc_us`` (the last one captured at or before it), if any."""
        best: int | None = None
        for u in self.units:
            if u.start_utc_us > utc_us:
                break
            step = (u.end_utc_us - u.start_utc_us) / max(1, u.frame_count)
            index = min(u.frame_count - 1, int((utc_us - u.start_utc_us) / step) if step else 0)
            best = u.first_frame + index
        return best


def facts_of(
    rec: Recording, meta: dict[str, Any], chain_events: list[ChainEvent] | None = None
) -> RecordingFacts:
    """``RecordingFacts`` from an opened recording, its export metadata and its signed events."""
    verification = meta.get("verification") or {}
    units = [_unit_span(m) for m in rec.units]
    explained = {
        int(g["from_frame"]): bool(g.get("explained"))
        for g in meta.get("frames", {}).get("gaps", [])
    }
    gaps: list[Gap] = []
    for before, after in itertools.pairwise(units):
        if after.first_frame > before.last_frame + 1:
            start = before.last_frame + 1
            gaps.append(
                Gap(
                    start,
                    after.first_frame - 1,
                    explained.get(start, False),
                    before.end_utc_us,
                    after.start_utc_us,
                )
            )
    report = rec.store_report
    seqs = verification.get("unit_seqs") or []
    boot = rec.boot
    return RecordingFacts(
        id=str(meta["recording"]),
        device=_opt_str(meta.get("device")),
        officer=_opt_str(meta.get("officer")),
        press_utc_us=_opt_int(meta.get("start_utc_us")),
        stop_utc_us=_opt_int(meta.get("end_utc_us")),
        utc_source=_opt_str(meta.get("utc_source")),
        start_trigger=_opt_str(meta.get("start_trigger")),
        stop_trigger=_opt_str(meta.get("stop_trigger")),
        pre_event_s=_opt_float(meta.get("pre_event_s")),
        pre_event_captured_s=_opt_float(meta.get("pre_event_captured_s")),
        pre_event_audio=_opt_bool((meta.get("audio") or {}).get("pre_event_audio")),
        duration_s=float(meta.get("duration_s") or 0.0),
        firmware_version=_opt_str(meta.get("firmware_version")),
        profile_digest=_opt_str(meta.get("profile_digest")),
        power_losses=int(meta.get("power_losses") or 0),
        offloaded_units=rec.report.offloaded_units,
        units=units,
        markers=[
            Marker(i + 1, int(m["at_utc_us"]), _opt_int(m.get("frame")))
            for i, m in enumerate(meta.get("markers") or [])
            if isinstance(m.get("at_utc_us"), int)
        ],
        mute=_intervals((meta.get("audio") or {}).get("mute")),
        stealth=_intervals(meta.get("stealth")),
        gaps=gaps,
        track=_track(meta.get("gnss_track")),
        intact=bool(verification.get("intact")),
        signing_key=_opt_str(verification.get("signing_key")),
        pinned=bool(verification.get("pinned")),
        chain_entries=int(verification.get("chain_entries") or 0),
        chain_head_seq=int(verification.get("chain_head_seq", -1)),
        chain_head_sha256=str(verification.get("chain_head_sha256") or ""),
        unit_seqs=(int(seqs[0]), int(seqs[-1])) if seqs else None,
        boot_id=boot.id if boot else None,
        boot_clean=boot.clean if boot else None,
        anchors=[
            Anchor(
                a.seq,
                a.head_seq,
                a.gen_time,
                _tsa_name(a.tsa_name) or a.tsa_url,
                a.status,
                a.device_utc_minus_tsa_s,
            )
            for a in report.anchors
        ],
        findings=[
            Finding(f.file, f.reason, _opt_str(getattr(f, "code", None)))
            for f in report.all_findings
        ],
        notes=[*report.notes, *rec.report.notes],
        chain_events=list(chain_events or []),
    )


def _tsa_name(name: str | None) -> str | None:
    """``<Name(CN=Test TSA)>`` (an X.509 name's repr) as ``CN=Test TSA``."""
    if name and name.startswith("<Name(") and name.endswith(")>"):
        return name[6:-2]
    return name


def _unit_span(m: dict[str, Any]) -> UnitSpan:
    start = int(m["start_utc_us"])
    return UnitSpan(
        seq=int(m["seq"]),
        segment=int(m["segment"]),
        first_frame=int(m["first_frame"]),
        frame_count=int(m["frame_count"]),
        start_utc_us=start,
        end_utc_us=start + max(0, int(m["end_pts_us"]) - int(m["start_pts_us"])),
        pre_event=bool(m.get("pre_event")),
    )


def _intervals(raw: object) -> list[Interval]:
    if not isinstance(raw, list):
        return []
    out = []
    for item in raw:
        if isinstance(item, dict) and isinstance(item.get("from_utc_us"), int):
            out.append(Interval(item["from_utc_us"], _opt_int(item.get("to_utc_us"))))
    return out


def _track(raw: object) -> list[Fix]:
    """One fix per distinct GNSS time: every unit carries the latest fix, so most repeat."""
    if not isinstance(raw, list):
        return []
    seen: set[int] = set()
    fixes = []
    for g in raw:
        if not isinstance(g, dict):
            continue
        utc, lat, lon = g.get("utc_us"), _opt_float(g.get("lat_deg")), _opt_float(g.get("lon_deg"))
        if not isinstance(utc, int) or lat is None or lon is None or utc in seen:
            continue
        seen.add(utc)
        fixes.append(Fix(utc, lat, lon, _opt_int(g.get("satellites")), _opt_float(g.get("hdop"))))
    fixes.sort(key=lambda f: f.utc_us)
    return fixes


def _opt_str(v: object) -> str | None:
    return v if isinstance(v, str) else None


def _opt_int(v: object) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _opt_float(v: object) -> float | None:
    if isinstance(v, int | float) and not isinstance(v, bool):
        return float(v)
    return None


def _opt_bool(v: object) -> bool | None:
    return v if isinstance(v, bool) else None
