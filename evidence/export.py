"""Export: verified, decrypted recordings as DIR/<recording-id>.mp4 plus DIR/<recording-id>.json.

Refuses (``IntegrityError``) before writing anything if the store has any finding. Writes each
output under a temp name and renames it, so a half-written file never looks finished.
"""

from __future__ import annotations

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
        if rec.segments:
            # Streams as the signed manifests declare them; each segment placed at the capture
            # time of its first picture (evidence.remux).
            remuxed = remux_to_mp4(
                (
                    SegmentInput(seg.plaintext(), seg.manifests[0].get("start_pts_us"))
                    for seg in rec.segments
                ),
                tmp,
                audio=declared_audio(rec.units),
                probe=(seg.plaintext() for seg in rec.segments),
            )
            os.replace(tmp, mp4)
            written.append(mp4)
        # A recording stopped (storage full, power loss) before its first unit was sealed has
        # signed start/stop events but no video: its JSON says so and no empty MP4 is written.
        meta = export_metadata(rec, remuxed.counts)
        meta["timeline"] = {
            "video_max_step_us": remuxed.video_max_step_us,
            "overlapping_packets_left_out": remuxed.dropped_overlap,
        }
        if not rec.segments:
            meta["note"] = "no video was sealed for this recording (see stop_trigger)"
        meta_path = out_dir / f"{rid}.json"
        tmp_meta = out_dir / f"{TMP_PREFIX}{rid}.json"
        tmp_meta.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp_meta, meta_path)
        log.info("exported recording %s (%d units)", rid, rec.report.units)
        written.append(meta_path)
    return written


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
