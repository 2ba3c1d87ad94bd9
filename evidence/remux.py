"""Remuxing a recording's MPEG-TS segments into one MP4 without re-encoding (PyAV stream copy).

It never decodes or re-encodes a frame: the pictures in the MP4 are the bytes the camera's encoder
produced, and the sound is the AAC the unit encoded.

Streams: the MP4 declares its streams before the first packet. The audio stream is declared from
what the signed unit manifests say the recording carries (``StreamDeclaration``: codec, sample
rate, channels, bitrate; the recorder knows them), never from FFmpeg's probe of the first bytes: a
pre-roll without pre-event audio declares an audio stream in its TS that holds no packet yet, and
a probe of it cannot tell the sample rate. Only for evidence sealed before manifests carried the
declaration does ``probe`` (a second pass over the segments) describe the stream.

Timeline: every segment is placed by the capture time its manifest gives its first picture
(``start_pts_us``), relative to the recording's first, so the MP4's timeline is the camera's: a
frame interval stays one frame interval across segment boundaries, and a real gap (a camera
drop, explained by a signed event) stays a gap. The TS's own clock only positions packets within
their segment (so a 33-bit PTS wrap between segments cannot shift anything).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from hal.errors import IntegrityError

log = logging.getLogger(__name__)

_SUPPORTED_AUDIO = frozenset({"aac"})


@dataclass(frozen=True, slots=True)
class AudioDeclaration:
    """The audio stream a recording carries, as its unit manifests declare it."""

    codec: str
    sample_rate_hz: int
    channels: int
    bitrate_bps: int | None = None

    @classmethod
    def from_json(cls, value: object) -> AudioDeclaration:
        """From a manifest's ``extra.streams.audio``; ``IntegrityError`` naming the bad field."""
        if not isinstance(value, Mapping):
            raise IntegrityError("streams.audio is not an object")
        codec, rate, channels = (
            value.get("codec"),
            value.get("sample_rate_hz"),
            value.get("channels"),
        )
        bitrate = value.get("bitrate_bps")
        if codec not in _SUPPORTED_AUDIO:
            raise IntegrityError(
                f"streams.audio.codec {codec!r} is not one of {sorted(_SUPPORTED_AUDIO)}"
            )
        if not isinstance(rate, int) or isinstance(rate, bool) or not 8_000 <= rate <= 192_000:
            raise IntegrityError(f"streams.audio.sample_rate_hz {rate!r} is not a sample rate")
        if channels not in (1, 2) or isinstance(channels, bool):
            raise IntegrityError(f"streams.audio.channels {channels!r} is not 1 or 2")
        if bitrate is not None and (not isinstance(bitrate, int) or isinstance(bitrate, bool)):
            raise IntegrityError(f"streams.audio.bitrate_bps {bitrate!r} is not an integer")
        return cls(str(codec), rate, int(channels), bitrate)


@dataclass(frozen=True, slots=True)
class SegmentInput:
    """One segment's TS bytes and the capture time (µs) its manifest gives its first picture."""

    data: bytes
    start_pts_us: int | None = None


@dataclass
class RemuxResult:
    """What was written: packets per stream type and the video timeline's largest step."""

    counts: dict[str, int] = field(default_factory=dict)
    video_max_step_us: int = 0
    """The largest step between consecutive frames' presentation times in the MP4."""
    dropped_overlap: int = 0
    """Packets left out because they overlapped the one before (evidence sealed with one AAC
    encoder per segment repeats a few milliseconds at each boundary)."""


def remux_to_mp4(
    segments: Iterable[SegmentInput | bytes],
    out_path: Path,
    *,
    audio: AudioDeclaration | None = None,
    probe: Iterable[bytes] | None = None,
) -> RemuxResult:
    """Write ``out_path`` from MPEG-TS ``segments`` in order.

    ``audio``: the declared audio stream (None: the recording declares none, or predates the
    declaration; then ``probe``, the same segments again, is read until one describes it).
    ``IntegrityError`` if a segment cannot be demuxed (the decrypted bytes are not MPEG-TS).
    """
    result = RemuxResult()
    out: Any = av.open(str(out_path), mode="w", format="mp4", options={"movflags": "+faststart"})
    try:
        timeline = _Timeline(out, result)
        for index, seg in enumerate(segments):
            item = SegmentInput(seg) if isinstance(seg, bytes) else seg
            src = _open_ts(item.data, index)
            try:
                if index == 0:
                    _add_streams(src, out, timeline.streams, audio, probe)
                timeline.copy(src, item.start_pts_us)
            finally:
                src.close()
    finally:
        out.close()
    return result


def _open_ts(data: bytes, index: int) -> Any:
    try:
        return av.open(io.BytesIO(data), mode="r", format="mpegts")
    except av.error.FFmpegError as exc:
        raise IntegrityError(f"segment {index} is not a readable MPEG-TS stream") from exc


def _described(stream: Any) -> bool:
    """Whether FFmpeg found enough of ``stream`` to declare it in an MP4."""
    if stream.type == "audio":
        return bool(stream.codec_context.sample_rate)
    return True


def _add_streams(
    src: Any,
    out: Any,
    out_streams: dict[str, Any],
    audio: AudioDeclaration | None,
    probe: Iterable[bytes] | None,
) -> None:
    """Video from the first segment (it starts on a keyframe with SPS/PPS); audio as declared."""
    missing: set[str] = set()
    for s in src.streams:
        if s.type not in ("video", "audio") or s.type in out_streams:
            continue
        if s.type == "audio" and audio is not None:
            continue
        if _described(s):
            out_streams[s.type] = out.add_stream_from_template(s)
        else:
            missing.add(s.type)
    if audio is not None:
        stream = out.add_stream(audio.codec, rate=audio.sample_rate_hz)
        stream.layout = "mono" if audio.channels == 1 else "stereo"
        if audio.bitrate_bps:
            stream.bit_rate = audio.bitrate_bps
        out_streams["audio"] = stream
        return
    if not missing or probe is None:
        return  # a stream nothing describes is left out (no packet of it exists to copy)
    for index, data in enumerate(probe):
        other = _open_ts(data, index)
        try:
            for s in other.streams:
                if s.type in missing and _described(s):
                    out_streams[s.type] = out.add_stream_from_template(s)
                    missing.discard(s.type)
        finally:
            other.close()
        if not missing:
            return


def declared_audio(manifests: Iterable[Mapping[str, Any]]) -> AudioDeclaration | None:
    """The audio stream the units declare (``extra.streams.audio``), None if none does.

    ``IntegrityError`` if two units of one recording declare different streams.
    """
    found: AudioDeclaration | None = None
    for m in manifests:
        extra = m.get("extra")
        streams = extra.get("streams") if isinstance(extra, Mapping) else None
        if not isinstance(streams, Mapping) or streams.get("audio") is None:
            continue
        decl = AudioDeclaration.from_json(streams["audio"])
        if found is not None and decl != found:
            raise IntegrityError(
                f"units declare different audio streams ({found} and {decl}) in one recording"
            )
        found = decl
    return found


class _Timeline:
    """Places each segment's packets on the recording's one timeline (see the module docstring)."""

    def __init__(self, out: Any, result: RemuxResult) -> None:
        self.out = out
        self.streams: dict[str, Any] = {}
        self.result = result
        self._first_start_us: int | None = None
        self._first_video_s: Fraction | None = None  # where the first picture sits in the MP4
        self._end_s: Fraction | None = None  # end of what was written (segments without a time)
        self._last_dts: dict[str, int] = {}
        self._last_video_s: Fraction | None = None

    def copy(self, src: Any, start_pts_us: int | None) -> None:
        streams = [s for s in src.streams if s.type in ("video", "audio")]
        packets = [
            p
            for p in src.demux(streams)
            if p.dts is not None and p.size > 0 and p.stream.type in self.streams
        ]
        if not packets:
            return
        seg_start = min(Fraction(p.dts) * p.time_base for p in packets)
        video = [Fraction(p.pts) * p.time_base for p in packets if p.stream.type == "video"]
        first_video = min(video) if video else seg_start
        if self._first_video_s is None:
            # The MP4 starts at the earliest packet of the first segment (audio priming may
            # precede the first picture by an AAC frame), so nothing has a negative time.
            offset = -seg_start
            self._first_video_s = first_video + offset
            self._first_start_us = start_pts_us
        elif start_pts_us is not None and self._first_start_us is not None:
            at = self._first_video_s + Fraction(start_pts_us - self._first_start_us, 1_000_000)
            offset = at - first_video
        else:
            assert self._end_s is not None
            offset = self._end_s - seg_start  # no capture time: butt it against the last
        end = self._end_s if self._end_s is not None else Fraction(0)
        for p in packets:
            tb = p.time_base
            shift = round(offset / tb)
            p.dts += shift
            if p.pts is not None:
                p.pts += shift
            kind = p.stream.type
            last = self._last_dts.get(kind)
            if last is not None and p.dts <= last:
                self.result.dropped_overlap += 1
                continue
            self._last_dts[kind] = p.dts
            ost = self.streams[kind]
            end = max(end, Fraction(max(p.pts or p.dts, p.dts) + (p.duration or 0)) * tb)
            if kind == "video" and p.pts is not None:
                at = Fraction(p.pts) * tb
                if self._last_video_s is not None:
                    step_us = round((at - self._last_video_s) * 1_000_000)
                    self.result.video_max_step_us = max(self.result.video_max_step_us, step_us)
                self._last_video_s = at
            p.stream = ost
            self.out.mux(p)
            self.result.counts[ost.type] = self.result.counts.get(ost.type, 0) + 1
        self._end_s = end
        if self.result.dropped_overlap:
            log.info("%d overlapping packets left out", self.result.dropped_overlap)
