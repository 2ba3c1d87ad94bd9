"""The officer's view of a running unit: a status snapshot, and its rendering with rich.

``StatusSnapshot`` is plain data read from the unit after each step (``read_snapshot``);
``render_status`` is a pure function of it, so tests render it to text without a terminal;
``StatusTracker`` turns the feedback the recorder showed since the last step (and offload
progress, GNSS changes) into short-lived notices, on the unit's monotonic time. ``bwc run`` wraps
them in a thin ``rich.live.Live`` shell. Nothing here drives the unit or writes anything.

The LED colours are the terminal's way to tell patterns apart at a glance; on the unit the
patterns differ by rhythm (docs/feedback.md), which the view spells out too.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rich.console import RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from recorder.feedback import Feedback, all_patterns

if TYPE_CHECKING:
    from firmware.sim_unit import SimulatedUnit
    from offload.runner import OffloadProgress

NOTICE_US = 5_000_000
"""How long a confirmation (marker, stop, stealth, ...) stays on screen, in unit time."""

RECENT_US = 1_500_000
"""How long a haptic or tone pattern is shown after it started (they play once, briefly)."""

GNSS_STALE_S = 10.0
"""A fix older than this is shown as lost (the recorder stops attaching it to units then)."""

MAX_NOTICES = 4

HOLD_SHOWN_S = 0.4
"""A button held this long is shown as a hold in progress (a press is shorter)."""

_PATTERNS = {p.name: p for p in all_patterns()}

LED_STYLES = {
    "led:buffering": ("green", "buffering"),
    "led:recording": ("bold red", "recording"),
    "led:low-battery": ("yellow", "low battery"),
    "led:fault": ("bold red", "fault"),
    "led:offloading": ("blue", "offloading"),
    "led:offload-complete": ("green", "offload complete"),
}

NOTICES: dict[Feedback, tuple[str, str, str]] = {
    Feedback.RECORDING_START: ("●", "recording started", "bold red"),
    Feedback.STOP: ("■", "recording stopped and sealed", "bold"),
    Feedback.MARKER: ("⚑", "marker added (signed)", "bold cyan"),
    Feedback.REMINDER: ("⏱", "reminder: still recording", "red"),
    Feedback.LOW_BATTERY: ("⚠", "low battery", "bold yellow"),
    Feedback.FAULT: ("✖", "fault", "bold red"),
    Feedback.STEALTH_ON: ("◐", "stealth on: LED and sounds off", "magenta"),
    Feedback.STEALTH_OFF: ("◑", "stealth off: indicators back", "magenta"),
    Feedback.REFUSED: ("✋", "refused: not allowed now", "yellow"),
    Feedback.OFFLOADING: ("⇪", "offloading to the dock", "blue"),
    Feedback.OFFLOAD_COMPLETE: ("✓", "offload complete: every file confirmed", "bold green"),
    Feedback.MUTED: ("∅", "microphone muted (signed)", "bold magenta"),
    Feedback.UNMUTED: ("♪", "microphone on again (signed)", "magenta"),
}

SYMBOLS = {"led": "●", "haptic": "≋", "tone": "♪"}


@dataclass(frozen=True)
class Signal:
    """What one indicator is doing now: its pattern name and, for the LED, whether lit now."""

    indicator: str  # "led" | "haptic" | "tone"
    pattern: str  # e.g. "led:recording"; "off" when dark
    lit: bool = True


@dataclass(frozen=True)
class OffloadView:
    target: str
    files_done: int
    files_total: int
    bytes_done: int
    bytes_total: int
    rate_bps: float | None = None
    eta_s: float | None = None
    complete: bool = False
    failed: bool = False


@dataclass(frozen=True)
class Notice:
    symbol: str
    text: str
    style: str


@dataclass(frozen=True)
class StatusSnapshot:
    """Everything the officer's view shows, as plain values."""

    device_id: str
    state: str
    utc_us: int
    utc_source: str = "rtc"
    buffer_s: float = 0.0
    pre_event_s: float = 0.0
    recording_id: str | None = None
    recording_elapsed_s: float | None = None
    pre_event_captured_s: float | None = None
    markers: int = 0
    muted: bool = False
    stealth: bool = False
    storage_blocked: bool = False
    battery_pct: float | None = None
    charging: bool = False
    low_battery_pct: float = 15.0
    gnss: tuple[float, float, int] | None = None  # lat, lon, satellites of a fresh fix
    gnss_age_s: float | None = None  # age of the last fix, fresh or not
    docked: bool = False
    holds: tuple[tuple[str, float], ...] = ()  # (button, seconds held) towards hold_s
    hold_s: float = 3.0
    signals: tuple[Signal, ...] = ()
    offload: OffloadView | None = None
    notices: tuple[Notice, ...] = ()
    firmware: tuple[str, ...] = ()
    keys: str = ""


# ---------------------------------------------------------------------------------------------
# Rendering: pure functions of the snapshot


def render_status(s: StatusSnapshot) -> RenderableType:
    """The whole view as one rich renderable (a panel)."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(justify="right", style="dim", no_wrap=True)
    grid.add_column()
    grid.add_row("state", _state_text(s))
    grid.add_row("feedback", _signals_text(s))
    grid.add_row("GNSS", _gnss_text(s))
    grid.add_row("battery", _battery_text(s))
    for button, held_s in s.holds:
        if held_s >= HOLD_SHOWN_S:  # shorter is a press on its way up, not a hold
            grid.add_row("holding", _hold_text(s, button, held_s))
    if s.docked or s.offload is not None:
        grid.add_row("dock", Text("in the dock" if s.docked else "out of the dock", style="bold"))
    if s.offload is not None:
        grid.add_row("offload", _offload_text(s.offload))
    for line in s.firmware:
        grid.add_row("firmware", Text(line.removeprefix("firmware: ")))
    for i, n in enumerate(s.notices):
        grid.add_row("" if i else "just now", Text(f"{n.symbol} {n.text}", style=n.style))
    if s.keys:
        grid.add_row("keys", Text(s.keys, style="dim"))
    when = datetime.fromtimestamp(s.utc_us / 1e6, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return Panel(
        grid,
        title=f"[b]{s.device_id}[/b]  {when} ({s.utc_source})",
        title_align="left",
    )


def status_text(s: StatusSnapshot, width: int = 100) -> str:
    """The view as plain text (tests, logs): what a terminal of ``width`` columns shows."""
    from rich.console import Console

    console = Console(width=width, record=True, color_system=None, file=io.StringIO())
    console.print(render_status(s))
    return console.export_text()


def clock_s(seconds: float) -> str:
    total = int(seconds)
    return f"{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"


def _state_text(s: StatusSnapshot) -> Text:
    t = Text()
    if s.state == "recording":
        t.append("● REC ", style="bold white on red")
        t.append(f" {clock_s(s.recording_elapsed_s or 0.0)}", style="bold red")
        t.append(" since the press")
        if s.pre_event_captured_s is not None:
            t.append(f", plus {s.pre_event_captured_s:.1f} s from before it")
        else:
            t.append(", waiting for a keyframe")
        t.append(f" · {s.markers} marker{'s' if s.markers != 1 else ''}")
        if s.recording_id:
            t.append(f" · id {s.recording_id[:8]}", style="dim")
    elif s.state == "buffering":
        t.append("◌ BUFFERING", style="bold green")
        if s.buffer_s >= s.pre_event_s:
            # It keeps up to a GOP more than asked, so the pre-roll is never short.
            t.append(f"  pre-event buffer full: {s.buffer_s:.1f} s ready (RAM only)")
        else:
            t.append(f"  pre-event buffer {s.buffer_s:4.1f} of {s.pre_event_s:g} s (RAM only)")
    elif s.state == "fault":
        t.append("✖ FAULT", style="bold red")
        if s.storage_blocked:
            t.append("  storage full: recording refused until space is freed")
        t.append(f"  pre-event buffer {s.buffer_s:4.1f} s")
    elif s.state == "off":
        t.append("⏻ OFF", style="bold")
        t.append("  powered off: any recording was stopped and sealed")
    else:
        t.append(s.state.upper(), style="bold")
    if s.muted:
        t.append("  ∅ MUTED", style="bold magenta")
    if s.stealth:
        t.append("  ◐ STEALTH", style="bold magenta")
    return t


def describe_pattern(name: str) -> str:
    """``solid``, ``blink 100 ms every 3 s``, ``150-100-150 ms``: a pattern's rhythm in words."""
    p = _PATTERNS.get(name)
    if p is None:
        return ""
    if p.repeat:
        if len(p.steps) == 1 and p.steps[0][1] == 0:
            return "solid"
        on, off = p.steps[0]
        period_s = (on + off) / 1000
        return f"blink {on} ms every {period_s:g} s"
    flat = [ms for step in p.steps for ms in step if ms]
    return "-".join(str(ms) for ms in flat) + " ms"


def _signals_text(s: StatusSnapshot) -> Text:
    t = Text()
    if s.stealth:
        t.append("all dark (stealth)", style="magenta")
        return t
    for i, sig in enumerate(s.signals):
        if i:
            t.append("   ")
        if sig.indicator == "led":
            style, _label = LED_STYLES.get(sig.pattern, ("dim", sig.pattern))
            if sig.pattern == "off":
                t.append("○ LED off", style="dim")
                continue
            t.append("●" if sig.lit else "○", style=style if sig.lit else "dim")
            t.append(f" {sig.pattern} ", style=style)
            t.append(f"({describe_pattern(sig.pattern)})", style="dim")
        else:
            t.append(f"{SYMBOLS[sig.indicator]} {sig.pattern} ", style="bold")
            t.append(f"({describe_pattern(sig.pattern)})", style="dim")
    return t


def _gnss_text(s: StatusSnapshot) -> Text:
    if s.gnss is not None:
        lat, lon, sats = s.gnss
        return Text(f"⌖ fix {lat:.5f}, {lon:.5f} ({sats} satellites)", style="green")
    if s.gnss_age_s is not None:
        return Text(f"no fix (last one {s.gnss_age_s:.0f} s ago)", style="yellow")
    return Text("no fix yet", style="yellow")


def _battery_text(s: StatusSnapshot) -> Text:
    if s.battery_pct is None:
        return Text("?", style="dim")
    pct = s.battery_pct
    low = pct < s.low_battery_pct
    bars = round(max(0.0, min(100.0, pct)) / 20)
    t = Text("▮" * bars + "▯" * (5 - bars) + f" {pct:.0f}%", style="bold yellow" if low else "")
    if low:
        t.append("  LOW", style="bold yellow")
    if s.charging:
        t.append("  charging", style="green")
    return t


def _bar(fraction: float, width: int = 20) -> str:
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "█" * filled + "░" * (width - filled)


def _hold_text(s: StatusSnapshot, button: str, held_s: float) -> Text:
    what = {"event": "stop (event held)", "function": "stealth (function held)"}.get(
        button, f"{button} held"
    )
    t = Text(f"{what} ")
    t.append(_bar(held_s / s.hold_s if s.hold_s else 1.0), style="bold")
    t.append(f" {min(held_s, s.hold_s):.1f} of {s.hold_s:g} s")
    return t


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def _offload_text(o: OffloadView) -> Text:
    t = Text()
    if o.failed:
        t.append("offload round failed; retrying", style="bold red")
        return t
    if o.complete:
        t.append(
            f"✓ offload complete: {o.files_total} files, {human_bytes(o.bytes_total)} confirmed",
            style="bold green",
        )
        return t
    t.append("⇪ ", style="blue")
    t.append(_bar(o.bytes_done / o.bytes_total if o.bytes_total else 0.0, 16), style="blue")
    t.append(
        f" {o.files_done}/{o.files_total} files · "
        f"{human_bytes(o.bytes_done)} of {human_bytes(o.bytes_total)}"
    )
    if o.rate_bps:
        t.append(f" · {human_bytes(o.rate_bps)}/s")
    if o.eta_s is not None:
        t.append(f" · {o.eta_s:.0f} s left" if o.eta_s >= 1 else " · <1 s left")
    return t


# ---------------------------------------------------------------------------------------------
# Tracking: notices from what changed, on the unit's monotonic time


@dataclass
class StatusTracker:
    """Keeps the short-lived notices and the offload rate between snapshots."""

    seen_feedback: int = 0
    notices: list[tuple[int, Notice]] = field(default_factory=list)
    had_fix: bool | None = None
    offload_failed: bool = False
    last_progress: OffloadProgress | None = None
    last_recording: str = ""  # the recording in progress, described for its stop notice
    round_started_wall_s: float = 0.0

    def observe(
        self,
        now_us: int,
        new_feedback: Sequence[Feedback],
        status: Mapping[str, Any],
        fault_reason: str = "",
    ) -> None:
        """Feedback shown since the last call, the recorder's status now, and what the unit
        knows about a fault that is not the recorder's own (a camera, the dock's offload)."""
        for fb in new_feedback:
            spec = NOTICES.get(fb)
            if spec is None:
                continue
            symbol, text, style = spec
            if fb is Feedback.MARKER:
                text = f"marker {status.get('markers', '?')} added (signed)"
            elif fb is Feedback.RECORDING_START:
                pre = status.get("pre_event_captured_s")
                if isinstance(pre, int | float):
                    text = f"recording started, with {pre:.1f} s from before the press"
            elif fb is Feedback.STOP and self.last_recording:
                text = f"recording stopped and sealed: {self.last_recording}"
            elif fb is Feedback.FAULT and status.get("storage_blocked"):
                text = "fault: storage full, recording stopped and sealed"
            elif fb is Feedback.FAULT:
                text = f"fault: {fault_reason or 'see the unit log'}"
                self.offload_failed = "offload" in fault_reason
            elif fb in (Feedback.OFFLOADING, Feedback.OFFLOAD_COMPLETE):
                self.offload_failed = False
            self._add(now_us, Notice(symbol, text, style))
        since = status.get("recording_since_mono_us")
        if isinstance(since, int):
            markers = int(status.get("markers") or 0)
            pre = status.get("pre_event_captured_s")
            self.last_recording = (
                f"{clock_s((now_us - since) / 1e6)} since the press"
                + (f" plus {pre:.1f} s before it" if isinstance(pre, int | float) else "")
                + f", {markers} marker{'s' if markers != 1 else ''}"
            )
        fix = _fresh_fix(status.get("gnss"))
        if self.had_fix is not None and fix is not None and not self.had_fix:
            self._add(now_us, Notice("⌖", "GNSS fix acquired", "green"))
        elif self.had_fix and fix is None:
            self._add(now_us, Notice("⌖", "GNSS fix lost", "yellow"))
        self.had_fix = fix is not None
        self.notices = [(t, n) for t, n in self.notices if now_us - t < NOTICE_US][-MAX_NOTICES:]

    def _add(self, now_us: int, notice: Notice) -> None:
        self.notices.append((now_us, notice))

    def offload_view(
        self, progress: OffloadProgress | None, wall_s: float, complete: bool
    ) -> OffloadView | None:
        """The offload line: rate and time left measured on the wall clock of this round."""
        if progress is None:
            return None
        last = self.last_progress
        if last is None or (
            progress is not last
            and (progress.files_done == 0 or progress.files_done < last.files_done)
        ):
            self.round_started_wall_s = wall_s  # a new round began
        self.last_progress = progress
        elapsed = wall_s - self.round_started_wall_s
        rate = progress.bytes_done / elapsed if elapsed > 0.05 and progress.bytes_done else None
        left = progress.bytes_total - progress.bytes_done
        return OffloadView(
            progress.target,
            progress.files_done,
            progress.files_total,
            progress.bytes_done,
            progress.bytes_total,
            rate,
            left / rate if rate else None,
            complete=complete and progress.files_done == progress.files_total,
            failed=self.offload_failed,
        )


def _fresh_fix(gnss: Any) -> tuple[float, float, int] | None:
    if not isinstance(gnss, Mapping) or gnss.get("lat_deg") is None:
        return None
    if float(gnss.get("age_s") or 0.0) > GNSS_STALE_S:
        return None
    return (float(gnss["lat_deg"]), float(gnss["lon_deg"]), int(gnss.get("satellites") or 0))


def led_lit(pattern_name: str, started_us: int, now_us: int) -> bool:
    """Whether a repeating LED pattern that started at ``started_us`` is lit at ``now_us``."""
    p = _PATTERNS.get(pattern_name)
    if p is None:
        return pattern_name != "off"
    period = sum(on + off for on, off in p.steps) * 1000
    if period <= 0:
        return False
    phase = (now_us - started_us) % period
    for on, off in p.steps:
        if phase < on * 1000:
            return True
        phase -= (on + off) * 1000
        if phase < 0:
            return False
    return False


def current_signals(
    histories: Mapping[str, Iterable[tuple[int, str]]], now_us: int
) -> tuple[Signal, ...]:
    """The LED's steady pattern (lit or not right now) and haptic/tone patterns just played.

    ``histories`` maps ``led``, ``haptic`` and ``tone`` to ``(monotonic_us, pattern)`` plays.
    """
    out: list[Signal] = []
    for indicator in ("led", "haptic", "tone"):
        last: tuple[int, str] | None = None
        for item in histories.get(indicator, ()):
            last = item
        if last is None:
            if indicator == "led":
                out.append(Signal("led", "off", False))
            continue
        started_us, name = last
        if indicator == "led":
            out.append(Signal("led", name, led_lit(name, started_us, now_us)))
        elif name != "off" and now_us - started_us < RECENT_US:
            out.append(Signal(indicator, name))
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# Reading a simulated unit


def read_snapshot(
    unit: SimulatedUnit,
    tracker: StatusTracker,
    *,
    wall_s: float,
    keys: str = "",
    firmware: Sequence[str] = (),
    docked: bool | None = None,
) -> StatusSnapshot:
    """One snapshot of ``unit`` now; feeds ``tracker`` the feedback shown since the last one.

    ``docked`` overrides reading the dock line (closed once the unit has powered off).
    """
    if docked is None:
        docked = unit.dock.docked()
    rec = unit.recorder
    now_us = unit.clock.monotonic_us()
    status = rec.status()
    shown = rec.feedback_shown
    # A FAULT that is not storage: while docked it is the offload round's; else a boot fault.
    faults = unit.booted.faults
    fault_reason = faults[-1] if faults else ""
    if docked:
        fault_reason = "the dock's offload round failed (it retries)"
    tracker.observe(now_us, shown[tracker.seen_feedback :], status, fault_reason)
    tracker.seen_feedback = len(shown)
    battery = status.get("battery")
    gnss = status.get("gnss")
    since = status.get("recording_since_mono_us")
    holding = status.get("holding")
    histories = {
        "led": _tail(unit.indicators["led"].history),
        "haptic": _tail(unit.indicators["haptic"].history),
        "tone": _tail(unit.indicators["buzzer"].history),
    }
    last = unit.last_offload
    return StatusSnapshot(
        device_id=unit.assignment.device_id,
        state=str(status["state"]),
        utc_us=unit.clock.utc_us(),
        utc_source=str(status.get("clock_source", "")),
        buffer_s=float(status.get("buffer_s") or 0.0),
        pre_event_s=float(status.get("pre_event_s") or 0.0),
        recording_id=str(status["recording"]) if status.get("recording") else None,
        recording_elapsed_s=(now_us - since) / 1e6 if isinstance(since, int) else None,
        pre_event_captured_s=_float_or_none(status.get("pre_event_captured_s")),
        markers=int(status.get("markers") or 0),
        muted=bool(status.get("muted")),
        stealth=bool(status.get("stealth")),
        storage_blocked=bool(status.get("storage_blocked")),
        battery_pct=float(battery["level_pct"]) if isinstance(battery, dict) else None,
        charging=bool(battery.get("charging")) if isinstance(battery, dict) else False,
        low_battery_pct=unit.profile.recorder.low_battery_pct,
        gnss=_fresh_fix(gnss),
        gnss_age_s=_float_or_none(gnss.get("age_s")) if isinstance(gnss, dict) else None,
        docked=docked,
        holds=tuple(sorted((str(k), float(v)) for k, v in holding.items()))
        if isinstance(holding, dict)
        else (),
        hold_s=float(status.get("hold_s") or 3.0),
        signals=current_signals(histories, now_us),
        offload=tracker.offload_view(
            unit.dock_offload.progress if docked else None,
            wall_s,
            bool(last is not None and last.complete),
        ),
        notices=tuple(n for _, n in tracker.notices),
        firmware=tuple(firmware),
        keys=keys,
    )


def _tail(history: Sequence[tuple[int, str]]) -> Sequence[tuple[int, str]]:
    return history[-1:]


def _float_or_none(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None
