"""Export: verified, decrypted recordings as DIR/<recording-id>.mp4 plus DIR/<recording-id>.json.

Refuses (``IntegrityError``) before writing anything if the store has any finding, and
(``RefusedError``) if any output name already exists: it never overwrites. Writes only inside DIR:
each output is written in a private directory this call creates inside DIR (random name, mode
0700), then hard-linked to its final name relative to DIR's descriptor, which fails rather than
follow or replace anything planted there. A recording id must match ``RECORDING_ID``, so one id
gives exactly one file name and no id names a path.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import av

from evidence.findings import Code
from evidence.format import TMP_PREFIX
from evidence.keys import AgencyPrivateKey
from evidence.opener import Recording, open_store
from evidence.records import RECORDING_ID
from evidence.remux import RemuxResult, SegmentInput, declared_audio, remux_to_mp4
from evidence.store import StoreReader
from evidence.times import with_iso_times
from hal.errors import IntegrityError, RefusedError, UsageError

log = logging.getLogger(__name__)


def export_store(
    store: StoreReader,
    key: AgencyPrivateKey,
    out_dir: Path,
    trusted_keys: list[bytes] | None = None,
    *,
    unpinned: bool = False,
) -> list[Path]:
    """Export every recording of ``store``; returns the paths written (mp4, json per recording)."""
    recordings = list(open_store(store, key, trusted_keys, unpinned=unpinned))
    names: list[str] = []
    for rec in recordings:
        rid = rec.report.id
        if not RECORDING_ID.match(rid):  # the verifier refuses these already; never name a path
            raise IntegrityError(
                f"[{Code.RECORDING_ID_INVALID}] recording id {rid[:40]!r} is not valid",
                code=Code.RECORDING_ID_INVALID,
            )
        names += [f"{rid}.mp4"] if rec.segments else []
        names.append(f"{rid}.json")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        dir_fd = os.open(out_dir, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        if out_dir.exists() and not out_dir.is_dir():
            raise UsageError(f"--out {out_dir}: is a file; give a folder to export into") from exc
        raise UsageError(f"--out {out_dir}: cannot create or open: {exc.strerror}") from exc
    try:
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                os.lstat(name, dir_fd=dir_fd)
                raise RefusedError(f"{out_dir / name}: already exists; export never overwrites")
        work = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=out_dir))
        try:
            return [out_dir / n for rec in recordings for n in _export_one(rec, work, dir_fd)]
        finally:
            shutil.rmtree(work, ignore_errors=True)
    finally:
        os.close(dir_fd)


def _export_one(rec: Recording, work: Path, dir_fd: int) -> list[str]:
    rid = rec.report.id
    written: list[str] = []
    remuxed = RemuxResult()
    audio = None
    if rec.segments:
        tmp = work / f"{rid}.mp4"
        try:
            # Streams as the signed manifests declare them; each segment placed at the capture
            # time of its first picture (evidence.remux).
            audio = declared_audio(rec.units)
            remuxed = remux_to_mp4(
                (
                    SegmentInput(seg.plaintext(), seg.manifests[0].get("start_pts_us"))
                    for seg in rec.segments
                ),
                tmp,
                audio=audio,
                probe=(seg.plaintext() for seg in rec.segments),
            )
        except IntegrityError as exc:
            code = exc.code or Code.MEDIA_UNDECODABLE
            raise IntegrityError(
                f"[{code}] recording {rid}: {exc.reason}", path=exc.path, code=code
            ) from exc
        except (av.error.FFmpegError, ValueError, IndexError, OverflowError) as exc:
            # Decrypted bytes that decrypt (so were sealed like this) but do not demux.
            raise IntegrityError(
                f"[{Code.MEDIA_UNDECODABLE}] recording {rid}: decrypted media does not decode as "
                f"H.264 MPEG-TS ({exc})",
                code=Code.MEDIA_UNDECODABLE,
            ) from exc
        _publish(tmp, f"{rid}.mp4", dir_fd)
        written.append(f"{rid}.mp4")
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
    if not rec.segments:
        meta["note"] = "no video was sealed for this recording (see stop_trigger)"
    meta = with_iso_times(meta)
    tmp_meta = work / f"{rid}.json"
    tmp_meta.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    _publish(tmp_meta, f"{rid}.json", dir_fd)
    log.info("exported recording %s (%d units)", rid, rec.report.units)
    written.append(f"{rid}.json")
    return written


def _publish(tmp: Path, name: str, dir_fd: int) -> None:
    """Give the finished file ``tmp`` its final ``name`` in DIR: a hard link, which fails if the
    name exists in any form (file, symlink, directory) instead of following or replacing it."""
    fd = os.open(tmp, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, name, dst_dir_fd=dir_fd, follow_symlinks=False)
    except FileExistsError as exc:
        raise RefusedError(f"{name}: appeared in --out during export; not overwritten") from exc


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
            "pinned_key": r.key if r.pinned else None,
            "origin": report.origin,
            "chain_entries": report.entries,
            "chain_head_seq": report.head_seq,
            "chain_head_sha256": report.head_hash,
            "unit_seqs": [r.unit_seqs[0], r.unit_seqs[-1]] if r.unit_seqs else [],
        },
    }
