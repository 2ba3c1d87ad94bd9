"""The segmenter: muxes encoded H.264 frames into MPEG-TS in memory, cut into sealing units.

It never re-encodes and never touches files: PyAV's mpegts muxer writes into ``_TsSink`` (an
in-memory file-like), with ``flush_packets=1`` so every muxed frame reaches the sink before
``mux`` returns; a unit is simply the bytes the sink holds at the cut.

* A unit is about ``unit_s`` of media, cut on a frame boundary (not necessarily a keyframe), and
  also wherever the camera's frame indices jump, so a unit's frames are always consecutive.
* A segment is one TS container (PAT/PMT at its start, continuity counters from 0). A new segment
  starts at the first keyframe at or after ``segment_s`` of segment duration, so every segment
  starts with a keyframe (SPS/PPS included, the encoder repeats them) and any prefix of a
  segment's units is itself a demuxable TS.

Cost per frame is the muxer's 188-byte packetisation; no copies of the frame bytes before it
(``av.Packet`` references the frame's memory, which is why frames must be immutable ``bytes``: the
muxer may hold a packet to interleave audio after ``mux`` returns). Single-threaded.

Audio (optional ``AudioTrack``): raw s16le ``AudioChunk`` values are queued by ``push_audio`` and
encoded to AAC by PyAV into the same TS, on the same monotonic timeline as the video. Chunks are
fed to the encoder only up to the next video frame's pts, so the muxer sees both streams in time
order. FFmpeg's interleaver keeps the newest packet back until a later one arrives (with
``max_interleave_delta`` at 1 µs it keeps exactly one), so with audio a unit is cut *after*
muxing the first frame of the next unit: that frame is the one held back, and the unit's bytes
are exactly what precedes it in time.

One AAC encoder serves the whole recording (``_AacEncoder``): a new encoder per segment would
start every segment with its priming frame and end the last with padding, about 21 ms of
near-silence at every boundary. Its packets are muxed into the segment that is open when the
encoder hands them out, so a unit's audio may trail its video by up to the encoder's delay (two
AAC frames, about 43 ms at 48 kHz) and the first packets of a segment may start that much before
its first picture; the timestamps say where each belongs, and the exported MP4 (one timeline for
the recording) plays them gap-free. The encoder is fed whole AAC frames with sample-exact
timestamps; a hole in the microphone's chunks is filled with silence so the track never slides
against the video.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av

from hal.types import AudioChunk, EncodedFrame

_US = Fraction(1, 1_000_000)
PCM_CODEC = "pcm_s16le"
_TS_OPTIONS = {
    "flush_packets": "1",
    # Each AAC frame in its own PES packet, so no audio waits inside the TS muxer at a cut.
    "pes_payload_size": "0",
    # Keep at most one packet in FFmpeg's interleaving queue (see the module docstring).
    "max_interleave_delta": "1",
}


@dataclass(frozen=True, slots=True)
class AudioTrack:
    """The audio stream a segment carries: what the microphone delivers, and the AAC bitrate."""

    sample_rate_hz: int
    channels: int
    bitrate_bps: int = 64_000
    codec: str = "aac"


@dataclass(frozen=True, slots=True)
class TsUnit:
    """One cut: ``payload`` is TS bytes; concatenating a segment's units gives its whole TS."""

    segment: int
    unit: int
    payload: bytes
    first_frame: int
    frame_count: int
    start_pts_us: int
    end_pts_us: int
    """Exclusive end: the next frame's pts, or last pts + the last frame interval."""
    segment_final: bool
    """The last unit of its segment (the container was closed after it)."""
    audio_packets: int = 0
    """Encoded audio packets muxed into this unit's bytes."""


_AVIO_BUFFER_BYTES = 1 << 20
"""The muxer's write buffer. ``flush_packets`` empties it after every packet anyway, so its size
only sets how many ``write`` calls a frame costs: one for a 1 MiB buffer against about ten
(each a Python call and a bytes object) with 4 KiB at 10 Mbit/s."""


class _TsSink:
    """The file-like the muxer writes into; ``take`` hands the bytes over and forgets them."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self.nbytes = 0

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._chunks.append(chunk)
        self.nbytes += len(chunk)
        return len(chunk)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        out = b"".join(self._chunks)
        self._chunks.clear()
        self.nbytes = 0
        return out


class _AacEncoder:
    """The recording's one audio encoder: raw chunks in, AAC packets out, on one sample clock.

    Chunks are cut into whole encoder frames; each frame's pts is its first sample's index on
    the unit's monotonic clock (``pts_us * rate / 1e6``), so the packets carry the capture time.
    A chunk that starts later than the samples held end (by more than ``_JITTER_SAMPLES``) gets
    the hole filled with silence; overlap was already refused by ``Segmenter.push_audio``.
    """

    _JITTER_SAMPLES = 2
    """Rounding of µs timestamps back to samples; below this a chunk counts as contiguous."""

    def __init__(self, track: AudioTrack) -> None:
        ctx: Any = av.CodecContext.create(track.codec, "w")
        ctx.sample_rate = track.sample_rate_hz
        ctx.layout = _layout(track.channels)
        ctx.format = "fltp"
        ctx.bit_rate = track.bitrate_bps
        ctx.time_base = Fraction(1, track.sample_rate_hz)
        ctx.open()
        self._ctx = ctx
        self._rate = track.sample_rate_hz
        self._channels = track.channels
        self._frame_samples = int(ctx.frame_size) or 1024
        self._held = bytearray()
        self._held_start: int | None = None  # sample index of the first held sample
        self.silence_filled_samples = 0

    def encode(self, chunk: AudioChunk) -> list[Any]:
        width = 2 * self._channels
        start = round(chunk.pts_us * self._rate / 1_000_000)
        if self._held_start is None:
            self._held_start = start
        end = self._held_start + len(self._held) // width
        if start - end > self._JITTER_SAMPLES:
            self._held += bytes((start - end) * width)
            self.silence_filled_samples += start - end
        self._held += chunk.data
        out: list[Any] = []
        step = self._frame_samples * width
        while len(self._held) >= step:
            out += self._encode_frame(bytes(self._held[:step]))
            del self._held[:step]
        return out

    def flush(self) -> list[Any]:
        """The held samples (a short last frame) and everything inside the encoder."""
        out: list[Any] = []
        if self._held:
            out += self._encode_frame(bytes(self._held))
            self._held.clear()
        out += self._ctx.encode(None)
        return out

    def _encode_frame(self, data: bytes) -> list[Any]:
        assert self._held_start is not None
        samples = len(data) // (2 * self._channels)
        # Packed s16 straight into the frame's one plane: no numpy (about 12 MB of RSS and
        # 0.1 s of import on a unit that would load it for nothing else).
        frame = av.AudioFrame(format="s16", layout=_layout(self._channels), samples=samples)
        frame.planes[0].update(data)
        frame.sample_rate = self._rate
        frame.time_base = Fraction(1, self._rate)
        frame.pts = self._held_start
        self._held_start += samples
        return list(self._ctx.encode(frame))


def _layout(channels: int) -> str:
    return "mono" if channels == 1 else "stereo"


class Segmenter:
    """Feed frames with ``push`` (and audio with ``push_audio``); it returns the units completed
    so far. ``flush`` ends all."""

    def __init__(
        self,
        width: int,
        height: int,
        unit_s: float,
        segment_s: float,
        audio: AudioTrack | None = None,
    ) -> None:
        self.width = width
        self.height = height
        self.unit_us = round(unit_s * 1_000_000)
        self.segment_us = round(segment_s * 1_000_000)
        self.audio = audio
        self.segment = -1
        self.unit = 0
        self._container: Any = None
        self._stream: Any = None
        self._audio_stream: Any = None
        self._sink = _TsSink()
        self._seg_start_us = 0
        self._unit_first: EncodedFrame | None = None
        self._unit_count = 0
        self._unit_audio = 0
        self._last: EncodedFrame | None = None
        self._last_interval_us = 0
        # Raw chunks waiting for the video to catch up, sorted by pts (ties keep arrival order).
        self._audio_pending: list[AudioChunk] = []
        self._audio_fed_end_us: int | None = None
        self._aac = _AacEncoder(audio) if audio is not None else None
        self.frames_in = 0
        self.audio_chunks_in = 0
        self.audio_chunks_dropped = 0
        """Chunks refused: before the first frame, overlapping audio already encoded, or in a
        format other than ``audio``."""
        self.audio_silence_filled_samples = 0
        """Samples of silence put into holes between the microphone's chunks."""

    @property
    def open(self) -> bool:
        return self._container is not None

    def push_audio(self, chunk: AudioChunk) -> None:
        """Queue one raw chunk; it is encoded and muxed once a video frame at or after it comes."""
        a = self.audio
        if (
            a is None
            or chunk.codec != PCM_CODEC
            or chunk.sample_rate_hz != a.sample_rate_hz
            or chunk.channels != a.channels
            or (self._audio_fed_end_us is not None and chunk.pts_us < self._audio_fed_end_us)
        ):
            self.audio_chunks_dropped += 1
            return
        keys = [c.pts_us for c in self._audio_pending]
        self._audio_pending.insert(bisect.bisect_right(keys, chunk.pts_us), chunk)
        self.audio_chunks_in += 1

    def push(self, frame: EncodedFrame) -> list[TsUnit]:
        """Mux ``frame``; returns the unit that ended just before it, if any."""
        out: list[TsUnit] = []
        if self._container is None:
            if not frame.is_keyframe:
                raise ValueError("a segment must start with a keyframe")
            if self.segment < 0:
                self._drop_audio_before(frame.pts_us)  # nothing before the first picture
            self._open_segment(frame.pts_us)
            self._mux(frame)
            return out
        self._feed_audio(frame.pts_us)
        if frame.is_keyframe and frame.pts_us - self._seg_start_us >= self.segment_us:
            unit = self._cut(frame.pts_us, close=True)
            if unit is not None:
                out.append(unit)
            self._open_segment(frame.pts_us)
            self._mux(frame)
        elif self._unit_first is not None and (
            frame.pts_us - self._unit_first.pts_us >= self.unit_us
            or (self._last is not None and frame.frame_index != self._last.frame_index + 1)
        ):
            # Also cut where frame indices jump, so every unit holds consecutive frames and
            # first_frame + frame_count always names the frame the next unit should start with.
            unit = self._cut(frame.pts_us, close=False, next_frame=frame)
            if unit is not None:
                out.append(unit)
        else:
            self._mux(frame)
        return out

    def take_unit(self) -> TsUnit | None:
        """Cut the current unit now (at a frame boundary) and return it; None if it is empty.

        With an audio track the last muxed frame is still held by the interleaver, so the unit
        is closed with its segment (the next frame then opens a new segment on a keyframe only;
        callers use this at the end of a recording).
        """
        if self._last is None or self._unit_first is None:
            return None
        end_us = self._last.pts_us + self._last_interval_us
        if self._audio_stream is not None:
            self._feed_audio(end_us)
            return self._cut(end_us, close=True, final=True)
        return self._cut(end_us, close=False)

    def flush(self) -> list[TsUnit]:
        """Close the current segment and return its last unit (marked ``segment_final``)."""
        if self._container is None or self._last is None:
            return []
        end_us = self._last.pts_us + self._last_interval_us
        self._feed_audio(end_us)
        self._audio_pending.clear()  # audio after the last picture has no video to sit with
        unit = self._cut(end_us, close=True, final=True)
        return [unit] if unit is not None else []

    def _open_segment(self, start_pts_us: int) -> None:
        self.segment += 1
        self.unit = 0
        self._seg_start_us = start_pts_us
        self._sink = _TsSink()
        container = av.open(
            self._sink,
            mode="w",
            format="mpegts",
            options=_TS_OPTIONS,
            buffer_size=_AVIO_BUFFER_BYTES,
        )
        stream = container.add_stream("h264")
        stream.width = self.width
        stream.height = self.height
        stream.time_base = Fraction(1, 90_000)
        self._audio_stream = None
        if self.audio is not None:
            a = self.audio
            # Declared with the recording encoder's parameters (PyAV opens a twin encoder for
            # the stream's header fields); the packets come from ``_AacEncoder``.
            audio_stream: Any = container.add_stream(a.codec, rate=a.sample_rate_hz)
            audio_stream.layout = _layout(a.channels)
            audio_stream.bit_rate = a.bitrate_bps
            self._audio_stream = audio_stream
        self._container = container
        self._stream = stream

    def _drop_audio_before(self, pts_us: int) -> None:
        keep = [c for c in self._audio_pending if c.pts_us >= pts_us]
        self.audio_chunks_dropped += len(self._audio_pending) - len(keep)
        self._audio_pending = keep

    def _feed_audio(self, before_us: int) -> None:
        """Encode and mux every queued chunk that starts before ``before_us``."""
        if self._audio_stream is None:
            return
        n = 0
        while n < len(self._audio_pending) and self._audio_pending[n].pts_us < before_us:
            n += 1
        ready, self._audio_pending = self._audio_pending[:n], self._audio_pending[n:]
        for chunk in ready:
            self._encode_audio(chunk)

    def _encode_audio(self, chunk: AudioChunk | None) -> None:
        """Encode ``chunk`` (None: drain the encoder) and mux what comes out into this segment."""
        assert self._aac is not None
        if chunk is None:
            packets = self._aac.flush()
        else:
            filled = self._aac.silence_filled_samples
            packets = self._aac.encode(chunk)
            self.audio_silence_filled_samples += self._aac.silence_filled_samples - filled
            self._audio_fed_end_us = chunk.pts_us + chunk.duration_us
        for packet in packets:
            packet.stream = self._audio_stream
            self._container.mux(packet)
            self._unit_audio += 1

    def _mux(self, frame: EncodedFrame) -> None:
        packet = av.Packet(frame.data)
        packet.stream = self._stream
        packet.time_base = _US
        packet.pts = frame.pts_us
        packet.dts = frame.pts_us  # no B-frames: decode order is presentation order
        packet.is_keyframe = frame.is_keyframe
        self._container.mux(packet)
        if self._last is not None:
            self._last_interval_us = frame.pts_us - self._last.pts_us
        self._last = frame
        if self._unit_first is None:
            self._unit_first = frame
        self._unit_count += 1
        self.frames_in += 1

    def _start_next_unit(self, frame: EncodedFrame) -> None:
        self._unit_first, self._unit_count, self._unit_audio = None, 0, 0
        self._mux(frame)

    def _cut(
        self,
        end_pts_us: int,
        *,
        close: bool,
        next_frame: EncodedFrame | None = None,
        final: bool = False,
    ) -> TsUnit | None:
        """End the current unit at ``end_pts_us``. With ``next_frame`` (a cut inside a segment)
        that frame is muxed too and begins the next unit; see the module docstring for why it is
        muxed before the bytes are taken when there is an audio stream."""
        first, count, audio_packets = self._unit_first, self._unit_count, self._unit_audio
        if close:
            if self._audio_stream is not None and final:
                self._encode_audio(None)  # the recording's end: drain the encoder into it
                audio_packets = self._unit_audio
                assert self.audio is not None
                self._aac = _AacEncoder(self.audio)  # a drained encoder takes no more input
            self._container.close()  # writes any muxer tail into the sink
            self._container = None
            self._stream = None
            self._audio_stream = None
        if next_frame is not None and self._audio_stream is not None:
            self._start_next_unit(next_frame)
            payload = self._sink.take()  # next_frame itself is held back by the interleaver
        else:
            payload = self._sink.take()
            if next_frame is not None:
                self._start_next_unit(next_frame)
            else:
                self._unit_first, self._unit_count, self._unit_audio = None, 0, 0
        if first is None:
            return None
        unit = TsUnit(
            segment=self.segment,
            unit=self.unit,
            payload=payload,
            first_frame=first.frame_index,
            frame_count=count,
            start_pts_us=first.pts_us,
            end_pts_us=end_pts_us,
            segment_final=close,
            audio_packets=audio_packets,
        )
        self.unit += 1
        return unit
