"""The recording's timeline: geometry for an inline SVG, and the list of what happened, in order.

Pure: it turns ``RecordingFacts`` into coordinates and sentences; the template draws them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from report.clock_text import clock_utc, duration_text, iso_utc, offset_text, parse_iso_us
from report.model import RecordingFacts

WIDTH = 1000
LABEL_W = 118  # the row names on the left
PLOT_X0 = 124
PLOT_X1 = 984
ROW_H = 30
TOP = 8

ROWS = ("Video", "Segments", "Sound", "Stealth", "Markers", "Unit events")

TRIGGERS = {
    "double_press": "the officer double-pressed the event button",
    "trigger": "an automatic trigger (holster or light bar)",
    "hold": "the officer held the event button",
    "low_battery": "the battery ran low",
    "storage_full": "the storage was full",
    "shutdown": "the unit was switched off",
    "power_loss_recovery": "the unit lost power; closed when it next started",
}

MAX_LISTED_SEGMENTS = 20

XMap = Callable[[int], float]
"""UTC microseconds to the SVG's x coordinate."""

_STEPS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600)


def trigger_text(trigger: str | None) -> str:
    if trigger is None:
        return "not recorded"
    return TRIGGERS.get(trigger, trigger.replace("_", " "))


@dataclass(frozen=True)
class Span:
    row: int
    kind: str  # css class: pre-event, recording, gap, unexplained, mute, stealth, segment
    x: float
    width: float
    label: str
    title: str


@dataclass(frozen=True)
class Mark:
    row: int
    kind: str  # marker, power-loss, press, stop
    x: float
    label: str
    title: str


@dataclass(frozen=True)
class Tick:
    x: float
    label: str


@dataclass(frozen=True)
class Event:
    at_iso: str
    offset: str  # from the button press
    kind: str
    title: str
    detail: str
    sort_us: int = 0


@dataclass
class Timeline:
    start_iso: str
    end_iso: str
    spans: list[Span] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)
    ticks: list[Tick] = field(default_factory=list)
    rows: tuple[str, ...] = ROWS
    width: int = WIDTH
    label_w: int = LABEL_W
    plot_x0: int = PLOT_X0
    plot_x1: int = PLOT_X1
    row_h: int = ROW_H
    top: int = TOP

    @property
    def height(self) -> int:
        return self.top + self.row_h * len(self.rows) + 26

    def row_y(self, row: int) -> int:
        return self.top + row * self.row_h


def build_timeline(facts: RecordingFacts) -> Timeline | None:
    """The timeline's geometry, or None for a recording with no sealed video."""
    if not facts.units:
        return None
    t0 = facts.units[0].start_utc_us
    t1 = facts.units[-1].end_utc_us
    if facts.stop_utc_us is not None and facts.stop_trigger != "power_loss_recovery":
        # A normal stop is signed when the hold completes, a moment after the last frame.
        t1 = max(t1, min(facts.stop_utc_us, t1 + 5_000_000))
    span_us = max(1, t1 - t0)

    def x(utc_us: int) -> float:
        clamped = min(max(utc_us, t0), t1)
        return round(PLOT_X0 + (clamped - t0) / span_us * (PLOT_X1 - PLOT_X0), 2)

    during = [e for e in facts.chain_events if e.during]
    names = [
        n for n in ROWS if (n != "Stealth" or facts.stealth) and (n != "Unit events" or during)
    ]
    row = {n: i for i, n in enumerate(names)}
    tl = Timeline(iso_utc(t0), iso_utc(t1), rows=tuple(names))
    press = facts.press_utc_us
    video_end = facts.units[-1].end_utc_us
    if press is not None and press > t0:
        tl.spans.append(
            Span(
                0,
                "pre-event",
                x(t0),
                x(press) - x(t0),
                "before the press",
                f"Pre-event video {iso_utc(t0)} to {iso_utc(press)}: recorded from the "
                "camera's buffer, before the button was pressed",
            )
        )
    rec_from = press if press is not None and press > t0 else t0
    tl.spans.append(
        Span(
            0,
            "recording",
            x(rec_from),
            max(1.0, x(video_end) - x(rec_from)),
            "recording",
            f"Recording {iso_utc(rec_from)} to {iso_utc(video_end)}",
        )
    )
    for g in facts.gaps:
        kind = "gap" if g.explained else "unexplained"
        why = "explained by a signed event" if g.explained else "NOT explained by any signed event"
        tl.spans.append(
            Span(
                0,
                kind,
                x(g.from_utc_us),
                max(2.0, x(g.to_utc_us) - x(g.from_utc_us)),
                "gap",
                f"Frames {g.from_frame}-{g.to_frame} missing ({why})",
            )
        )
    _segments(facts, tl, x)
    if press is not None and press > t0 and facts.pre_event_audio is False:
        tl.spans.append(
            Span(
                row["Sound"],
                "nosound",
                x(t0),
                x(press) - x(t0),
                "no sound",
                "The pre-event part keeps no sound (agency policy, recorder.pre_event_audio)",
            )
        )
    for iv in facts.mute:
        end = iv.to_utc_us if iv.to_utc_us is not None else t1
        tl.spans.append(
            Span(
                row["Sound"],
                "mute",
                x(iv.from_utc_us),
                max(2.0, x(end) - x(iv.from_utc_us)),
                "muted",
                f"Microphone muted {iso_utc(iv.from_utc_us)} to {iso_utc(end)}",
            )
        )
    for iv in facts.stealth:
        end = iv.to_utc_us if iv.to_utc_us is not None else t1
        tl.spans.append(
            Span(
                row["Stealth"],
                "stealth",
                x(iv.from_utc_us),
                max(2.0, x(end) - x(iv.from_utc_us)),
                "stealth",
                f"Stealth (indicators dark) {iso_utc(iv.from_utc_us)} to {iso_utc(end)}",
            )
        )
    for m in facts.markers:
        tl.marks.append(
            Mark(
                row["Markers"],
                "marker",
                x(m.utc_us),
                str(m.number),
                f"Marker {m.number} at {iso_utc(m.utc_us)}",
            )
        )
    if press is not None:
        tl.marks.append(Mark(0, "press", x(press), "", f"Button pressed at {iso_utc(press)}"))
    if facts.power_losses:
        tl.marks.append(
            Mark(
                0,
                "power-loss",
                x(video_end),
                "",
                f"Power lost: the last sealed video ends at {iso_utc(video_end)}",
            )
        )
    elif facts.stop_utc_us is not None:
        tl.marks.append(
            Mark(0, "stop", x(facts.stop_utc_us), "", f"Stopped at {iso_utc(facts.stop_utc_us)}")
        )
    for e in during:
        tl.marks.append(
            Mark(row["Unit events"], "unit", x(e.utc_us), e.title, f"{e.title}: {e.detail}")
        )
    tl.ticks = _ticks(t0, t1, x)
    return tl


def _segments(facts: RecordingFacts, tl: Timeline, x: XMap) -> None:
    bounds: list[tuple[int, int, int]] = []  # segment, start, end
    for u in facts.units:
        if bounds and bounds[-1][0] == u.segment:
            seg, start, _ = bounds[-1]
            bounds[-1] = (seg, start, u.end_utc_us)
        else:
            bounds.append((u.segment, u.start_utc_us, u.end_utc_us))
    for seg, start, end in bounds:
        tl.spans.append(
            Span(
                1,
                f"segment s{seg % 2}",
                x(start),
                max(1.0, x(end) - x(start)),
                f"{seg + 1}",
                f"Segment {seg + 1} of {len(bounds)}: {iso_utc(start)} to {iso_utc(end)}",
            )
        )


def _ticks(t0: int, t1: int, x: XMap) -> list[Tick]:
    span_s = (t1 - t0) / 1e6
    step_s = next((s for s in _STEPS_S if span_s / s <= 8), _STEPS_S[-1])
    step_us = step_s * 1_000_000
    first = t0 + (-t0) % step_us
    ticks = []
    t = first
    while t <= t1:
        ticks.append(Tick(x(t), clock_utc(t)))
        t += step_us
    return ticks


def build_events(facts: RecordingFacts) -> list[Event]:
    """Everything signed about this recording, in time order, in plain words."""
    press = facts.press_utc_us
    base = press if press is not None else (facts.video_start_utc_us or 0)
    events: list[Event] = []

    def add(utc_us: int, kind: str, title: str, detail: str = "") -> None:
        events.append(
            Event(iso_utc(utc_us), offset_text((utc_us - base) / 1e6), kind, title, detail, utc_us)
        )

    start = facts.video_start_utc_us
    if start is not None and press is not None and start < press:
        captured = facts.pre_event_captured_s
        sound = {True: "with sound", False: "without sound"}.get(
            facts.pre_event_audio or False, "sound unknown"
        )
        add(
            start,
            "pre-event",
            "Pre-event video begins",
            f"Kept from the camera's buffer: {duration_text(captured or 0)} before the press "
            f"(policy {duration_text(facts.pre_event_s or 0)}), {sound}.",
        )
    if press is not None:
        add(press, "press", "Recording started", f"Started by {trigger_text(facts.start_trigger)}.")
    # Segment starts are listed while there are few; a long shift's hundreds are on the timeline.
    if 1 < facts.segments <= MAX_LISTED_SEGMENTS:
        seen: set[int] = set()
        for u in facts.units:
            if u.segment not in seen and u.segment > 0:
                add(u.start_utc_us, "segment", f"Segment {u.segment + 1} begins", "")
            seen.add(u.segment)
    for m in facts.markers:
        frame = f" (frame {m.frame})" if m.frame is not None else ""
        add(m.utc_us, "marker", f"Marker {m.number}", f"The officer marked this moment{frame}.")
    for iv in facts.mute:
        add(iv.from_utc_us, "mute", "Microphone muted", "Signed by the unit; video continues.")
        if iv.to_utc_us is not None:
            add(iv.to_utc_us, "mute", "Microphone on again", "")
    for iv in facts.stealth:
        add(iv.from_utc_us, "stealth", "Stealth on", "LED, vibration and tones switched off.")
        if iv.to_utc_us is not None:
            add(iv.to_utc_us, "stealth", "Stealth off", "")
    for g in facts.gaps:
        how = "explained by a signed event" if g.explained else "NOT explained by any signed event"
        add(
            g.from_utc_us,
            "gap" if g.explained else "unexplained",
            f"Gap: frames {g.from_frame}-{g.to_frame} missing",
            f"{duration_text((g.to_utc_us - g.from_utc_us) / 1e6)} without video, {how}.",
        )
    end = facts.video_end_utc_us
    if facts.power_losses and end is not None:
        add(
            end,
            "power-loss",
            "Power lost",
            "The unit lost power while recording; the video sealed before it is complete "
            "(at most one sealing unit, about a second, can be lost).",
        )
    # The signed discovery of a power loss comes before the stop it leads to (same boot, same
    # second); everything else from the chain is added after, and the sort below keeps that order.
    after = [c for c in facts.chain_events if c.kind != "power-loss"]
    for c in facts.chain_events:
        if c.kind == "power-loss":
            add(c.utc_us, c.kind, c.title, c.detail)
    if facts.stop_utc_us is not None:
        detail = f"Stopped because {trigger_text(facts.stop_trigger)}."
        if facts.stop_trigger == "power_loss_recovery":
            detail = (
                "At its next start the unit found the recording open, signed a "
                "power-loss event and closed it."
            )
        add(facts.stop_utc_us, "stop", "Recording closed", detail)
    for c in after:
        add(c.utc_us, c.kind, c.title, c.detail)
    last_seq = facts.unit_seqs[1] if facts.unit_seqs else None
    for a in facts.anchors:
        when = parse_iso_us(a.gen_time)
        if when is None or last_seq is None or a.head_seq is None or a.head_seq < last_seq:
            continue
        how = {"verified": "signature verified", "unverified": "signature not checked"}.get(
            a.status, "INVALID"
        )
        add(
            when,
            "anchor",
            "Time anchor",
            f"{a.tsa or 'A time-stamping authority'} signed the chain up to entry {a.head_seq} "
            f"(this recording included) at {iso_utc(when)}; {how}.",
        )
    events.sort(key=lambda e: e.sort_us)
    return events
