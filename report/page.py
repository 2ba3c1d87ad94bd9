"""One report page: the plain-language summary and the parts the template draws, as typed values.

Pure: facts in, sentences and geometry out. The HTML itself lives in ``templates/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from report.clock_text import date_utc, duration_text, iso_utc
from report.model import RecordingFacts
from report.thumbnails import Thumbnail
from report.timeline import Event, Timeline, build_events, build_timeline, trigger_text
from report.track import Track, build_track


@dataclass(frozen=True)
class Fact:
    label: str
    value: str
    alert: bool = False


@dataclass
class Page:
    facts: RecordingFacts
    title: str
    headline: str
    verdict: str
    verdict_ok: bool
    generated_iso: str
    tool_version: str
    key_facts: list[Fact] = field(default_factory=list)
    verification: list[Fact] = field(default_factory=list)
    timeline: Timeline | None = None
    events: list[Event] = field(default_factory=list)
    thumbnails: list[Thumbnail] = field(default_factory=list)
    track: Track | None = None
    note: str | None = None
    decrypted: bool = True  # False: the store did not verify and nothing was opened


def build_page(
    facts: RecordingFacts,
    thumbnails: list[Thumbnail],
    generated_utc_us: int,
    tool_version: str,
    note: str | None = None,
    decrypted: bool = True,
) -> Page:
    verdict_ok = facts.intact and facts.pinned and not facts.findings
    if verdict_ok:
        verdict = "Verified intact: every part is signed by the registered device key and chained."
    elif facts.intact and not facts.pinned:
        verdict = (
            "Intact, but origin NOT checked (--unpinned): any key could have signed this; "
            "pin the device key with --trust."
        )
    else:
        verdict = f"NOT intact: {len(facts.findings)} finding(s), listed below."
    return Page(
        facts=facts,
        title=f"Recording {facts.id}",
        headline=_headline(facts),
        verdict=verdict,
        verdict_ok=verdict_ok,
        generated_iso=iso_utc(generated_utc_us),
        tool_version=tool_version,
        key_facts=_key_facts(facts),
        verification=_verification(facts),
        timeline=build_timeline(facts),
        events=build_events(facts),
        thumbnails=thumbnails,
        track=build_track(facts.track, facts.markers),
        note=note,
        decrypted=decrypted,
    )


def _headline(f: RecordingFacts) -> str:
    who = f"officer {f.officer}" if f.officer else "an unrecorded officer"
    device = f"camera {f.device}" if f.device else "an unnamed camera"
    if f.press_utc_us is None:
        return f"Recorded by {who} on {device}."
    text = (
        f"Recorded by {who} on {device} on {date_utc(f.press_utc_us)}, "
        f"started at {iso_utc(f.press_utc_us)}"
    )
    if f.video_end_utc_us is not None:
        text += f"; video until {iso_utc(f.video_end_utc_us)}"
    return text + "."


def _key_facts(f: RecordingFacts) -> list[Fact]:
    out = [
        Fact("Started by", trigger_text(f.start_trigger)),
        Fact(
            "Ended by", trigger_text(f.stop_trigger), alert=f.stop_trigger == "power_loss_recovery"
        ),
        Fact("Length of video", duration_text(f.duration_s)),
    ]
    if f.pre_event_captured_s is not None:
        sound = {True: "with sound", False: "no sound (agency policy)"}.get(
            f.pre_event_audio or False, ""
        )
        out.append(
            Fact(
                "Before the press",
                f"{duration_text(f.pre_event_captured_s)} kept from the buffer"
                + (f", {sound}" if sound else ""),
            )
        )
    out.append(Fact("Markers", str(len(f.markers)) if f.markers else "none"))
    out.append(
        Fact(
            "Microphone muted",
            f"{len(f.mute)} time(s)" if f.mute else "never",
        )
    )
    out.append(
        Fact("Stealth (indicators dark)", f"{len(f.stealth)} time(s)" if f.stealth else "never")
    )
    unexplained = [g for g in f.gaps if not g.explained]
    out.append(
        Fact(
            "Gaps in the video",
            "none"
            if not f.gaps
            else f"{len(f.gaps)} ({len(unexplained)} unexplained)"
            if unexplained
            else f"{len(f.gaps)}, each explained by a signed event",
            alert=bool(unexplained),
        )
    )
    out.append(
        Fact(
            "Power losses",
            str(f.power_losses) if f.power_losses else "none",
            alert=bool(f.power_losses),
        )
    )
    if f.units:
        out.append(Fact("Segments", str(f.segments)))
    out.append(Fact("Firmware", f.firmware_version or "not recorded"))
    if f.utc_source:
        out.append(Fact("Clock source", f.utc_source))
    if f.offloaded_units:
        out.append(Fact("Offloaded", f"{f.offloaded_units} units freed on the unit after offload"))
    return out


def _verification(f: RecordingFacts) -> list[Fact]:
    out = [
        Fact("Device", f.device or "not recorded"),
        Fact(
            "Device key (SHA-256 fingerprint)",
            (f.signing_key or "unknown") + ("  (pinned)" if f.pinned else "  (NOT pinned)"),
            alert=not f.pinned,
        ),
        Fact("Officer", f.officer or "not recorded"),
        Fact(
            "Chain entries of this recording",
            f"{f.unit_seqs[0]} to {f.unit_seqs[1]}" if f.unit_seqs else "none",
        ),
        Fact(
            "Chain length in this store", f"{f.chain_entries} entries, head at {f.chain_head_seq}"
        ),
        Fact("Chain head hash (SHA-256)", f.chain_head_sha256 or "none"),
    ]
    if f.boot_id is not None:
        out.append(
            Fact(
                "Boot",
                f"{f.boot_id}: "
                + (
                    "ended with a clean shutdown"
                    if f.boot_clean
                    else "ended without a clean shutdown"
                ),
            )
        )
    if f.profile_digest:
        out.append(Fact("Configuration profile digest", f.profile_digest))
    return out
