"""Export: verified, decrypted recordings as DIR/<recording-id>.mp4 plus DIR/<recording-id>.json.

Refuses (``IntegrityError``) before writing anything if the store has any finding. Writes each
output under a temp name and renames it, so a half-written file never looks finished.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from evidence.format import TMP_PREFIX
from evidence.keys import AgencyPrivateKey
from evidence.opener import Recording, open_store
from evidence.remux import RemuxResult, SegmentInput, declared_audio, remux_to_mp4
from evidence.store import StoreReader
from evidence.times import with_iso_times
from hal.errors import UsageError

log = logging.getLogger(__name__)

_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


def export_store(
    store: StoreReader,
    key: AgencyPrivateKey,
    out_dir: Path,
    trusted_keys: list[bytes] | None = None,
) -> list[Path]:
    """Export every recording of ``store``; returns the paths written (mp4, json per recording)."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {out_dir}: cannot create: {exc.strerror}") from exc
    written: list[Path] = []
    for rec in open_store(store, key, trusted_keys):
        rid = rec.report.id
        if not _SAFE_ID.match(rid) or rid.startswith("."):
            # The id is signed, but it still must not name a path outside DIR.
            rid = re.sub(r"[^A-Za-z0-9._-]", "_", rid).lstrip(".")[:128] or "recording"
        mp4 = out_dir / f"{rid}.mp4"
        tmp = out_dir / f"{TMP_PREFIX}{rid}.mp4"
        remuxed = RemuxResult()
        audio = declared_audio(rec.units)
        if rec.segments:
            # Streams as the signed manifests declare them; each segment placed at the capture
            # time of its first picture (evidence.remux).
            remuxed = remux_to_mp4(
                (
                    SegmentInput(seg.plaintext(), seg.manifests[0].get("start_pts_us"))
                    for seg in rec.segments
                ),
                tmp,
                audio=audio,
                probe=(seg.plaintext() for seg in rec.segments),
            )
            os.replace(tmp, mp4)
            written.append(mp4)
        # A recording stopped (storage full, power loss) before its first unit was sealed has
        # signed start/stop events but no video: its JSON says so and no empty MP4 is written.
        meta = export_metadata(rec, remuxed.counts)
        meta["streams"] = {
            "audio": None if audio is None else dataclasses.asdict(audio),
            # Evidence sealed before units declared their streams is described by a probe.
            "audio_declared_by": "unit manifests" if audio is not None else None,
        }
        meta["timeline"] = {
            "video_max_step_us": remuxed.video_max_step_us,
            "overlapping_packets_left_out": remuxed.dropped_overlap,
        }
        meta = with_iso_times(meta)
        if not rec.segments:
            meta["note"] = "no video was sealed for this recording (see stop_trigger)"
        meta_path = out_dir / f"{rid}.json"
        tmp_meta = out_dir / f"{TMP_PREFIX}{rid}.json"
        tmp_meta.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp_meta, meta_path)
        log.info("exported recording %s (%d units)", rid, rec.report.units)
        written.append(meta_path)
    return written


_TIME_DEFINITIONS = {
    "first_frame": "capture time of the first frame in the export (the pre-roll's first)",
    "press": "the press (or trigger) that started the recording; the pre-roll counts back from it",
    "record_start": "when the unit sealed record_start (the gesture's completion): start_utc_us",
    "stop": "when the unit sealed record_stop (a hold completes hold_s after it began): end_utc_us",
    "last_frame": "capture time of the last frame in the export",
    "video_end": "end of the last frame's interval: first_frame + duration_s",
    "pre_event_s": "the pre-event buffer length configured",
    "pre_event_captured_s": "video before the press actually captured: press - first_frame",
}


def recording_times(rec: Recording) -> dict[str, Any]:
    """The instants a reader asks about, each named for what it is (see ``_TIME_DEFINITIONS``).

    Frame times come from the signed unit manifests (each unit's ``start_utc_us`` is its first
    frame's capture time on the unit's UTC clock); press and stop from the signed events.
    """
    r = rec.report
    times: dict[str, Any] = {
        "first_frame_utc_us": None,
        "press_utc_us": r.press_utc_us,
        "record_start_utc_us": r.start_utc_us,
        "stop_utc_us": r.end_utc_us,
        "last_frame_utc_us": None,
        "video_end_utc_us": None,
        "pre_event_s": r.pre_event_s,
        "pre_event_captured_s": r.pre_event_captured_s,
        "duration_s": None,
        "utc_source": r.utc_source,
        "definitions": _TIME_DEFINITIONS,
    }
    if not rec.units:
        return times
    first, last = rec.units[0], rec.units[-1]
    span_us = last["end_pts_us"] - last["start_pts_us"]
    interval_us = span_us // max(1, last["frame_count"])
    fps = _declared_fps(rec.units)
    if fps:
        interval_us = round(1_000_000 / fps)
    times["first_frame_utc_us"] = first["start_utc_us"]
    times["video_end_utc_us"] = last["start_utc_us"] + span_us
    times["last_frame_utc_us"] = last["start_utc_us"] + span_us - interval_us
    times["duration_s"] = round((last["end_pts_us"] - first["start_pts_us"]) / 1e6, 6)
    return times


def _declared_fps(manifests: list[dict[str, Any]]) -> float | None:
    for m in manifests:
        extra = m.get("extra")
        streams = extra.get("streams") if isinstance(extra, dict) else None
        video = streams.get("video") if isinstance(streams, dict) else None
        fps = video.get("fps") if isinstance(video, dict) else None
        if isinstance(fps, int | float) and not isinstance(fps, bool) and fps > 0:
            return float(fps)
    return None


def export_metadata(rec: Recording, packet_counts: dict[str, int]) -> dict[str, Any]:
    """The JSON that travels with an exported MP4: who, when, where, what was checked."""
    r = rec.report
    boot = rec.boot
    report = rec.store_report
    audio_units = sum(1 for m in rec.units if m.get("audio"))
    return {
        "recording": r.id,
        "device": rec.device,
        "officer": r.officer_id or (boot.officer_id if boot else None),
        "start_utc_us": r.start_utc_us,
        "times": recording_times(rec),
        "end_utc_us": r.end_utc_us,
        "utc_source": r.utc_source,
        "start_trigger": r.start_trigger,
        "stop_trigger": r.stop_trigger,
        "pre_event_s": r.pre_event_s,
        "pre_event_captured_s": r.pre_event_captured_s,
        "audio": {
            "pre_event_audio": r.pre_event_audio,
            "units_with_audio": audio_units,
            "units": r.units,
            "mute": r.mute,
        },
        "stealth": r.stealth,
        "markers": r.markers,
        "gnss_track": r.gnss,
        "segments": [
            {
                "index": s.index,
                "units": len(s.manifests),
                "first_frame": s.manifests[0]["first_frame"],
                "last_frame": s.manifests[-1]["first_frame"] + s.manifests[-1]["frame_count"] - 1,
            }
            for s in rec.segments
        ],
        "frames": {"first": r.first_frame, "last": r.last_frame, "gaps": r.gaps},
        "video_packets": packet_counts.get("video", 0),
        "audio_packets": packet_counts.get("audio", 0),
        "duration_s": r.duration_s,
        "power_losses": r.power_losses,
        "firmware_version": boot.firmware_version if boot else None,
        "profile_digest": r.profile_digest or (boot.profile_digest if boot else None),
        "boot": r.boot,
        "verification": {
            "intact": report.intact,
            "signing_key": r.key,
            "pinned": r.pinned,
            "chain_entries": report.entries,
            "chain_head_seq": report.head_seq,
            "chain_head_sha256": report.head_hash,
            "unit_seqs": [r.unit_seqs[0], r.unit_seqs[-1]] if r.unit_seqs else [],
        },
    }
