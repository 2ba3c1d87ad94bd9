"""The segmenter with an audio track: AAC in the same TS and units, exact unit cuts, alignment,
and the chunks it refuses. Also the simulated microphone's click timing and ALSA device listing.
"""

from __future__ import annotations

import io
import itertools
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from hal.alsa import capture_devices
from hal.types import AudioChunk, EncodedFrame
from recorder.segmenter import AudioTrack, Segmenter, TsUnit
from simulator.clock import VirtualClock
from simulator.microphone import SimMicrophone
from tests.unit.fakes import HEIGHT, WIDTH, h264_frames

RATE = 48_000
TRACK = AudioTrack(RATE, 1)


def mic_chunks(seconds: float, *, start_us: int = 0) -> list[AudioChunk]:
    clock = VirtualClock(1_700_000_000_000_000)
    clock.advance(start_us)
    chunks: list[AudioChunk] = []
    mic = SimMicrophone(clock, RATE, 1)
    mic.start(chunks.append)
    clock.advance(round(seconds * 1e6))
    mic.stop()
    return chunks


def interleave(
    seg: Segmenter, frames: list[EncodedFrame], chunks: list[AudioChunk]
) -> list[TsUnit]:
    """Feed in delivery order: a chunk when its last sample is captured, a frame at its pts."""
    events: list[tuple[int, int, Any]] = [(f.pts_us, 1, f) for f in frames]
    events += [(c.pts_us + c.duration_us, 0, c) for c in chunks]
    units: list[TsUnit] = []
    for _, kind, item in sorted(events, key=lambda e: (e[0], e[1])):
        if kind == 0:
            seg.push_audio(item)
        else:
            units += seg.push(item)
    return units + seg.flush()


def packets(payload: bytes, kind: str) -> list[Any]:
    with av.open(io.BytesIO(payload), mode="r", format="mpegts") as c:
        streams = [s for s in c.streams if s.type == kind]
        if not streams:
            return []
        return [p for p in c.demux(streams[0]) if p.size]


def test_units_carry_aac_and_cut_exactly_at_their_frames() -> None:
    frames = h264_frames(90)  # 3 s at 30 fps, GOP 1 s
    seg = Segmenter(WIDTH, HEIGHT, 0.5, 60, TRACK)
    units = interleave(seg, frames, mic_chunks(3.2))
    assert [u.frame_count for u in units] == [15] * 6
    assert all(u.audio_packets > 0 for u in units)
    for a, b in itertools.pairwise(units):
        assert b.first_frame == a.first_frame + a.frame_count
    # Any prefix of the units demuxes to exactly the frames those units claim: the frame that
    # begins the next unit is never in the earlier unit's bytes (the interleaver holds it back).
    for k in range(1, len(units) + 1):
        prefix = b"".join(u.payload for u in units[:k])
        assert len(packets(prefix, "video")) == sum(u.frame_count for u in units[:k])
    whole = b"".join(u.payload for u in units)
    audio = packets(whole, "audio")
    assert len(audio) == sum(u.audio_packets for u in units)
    with av.open(io.BytesIO(whole), mode="r", format="mpegts") as c:
        (astream,) = c.streams.audio
        assert astream.codec_context.name == "aac"
        assert astream.codec_context.sample_rate == RATE


def test_click_is_aligned_with_its_frame_after_decoding() -> None:
    frames = h264_frames(90)
    seg = Segmenter(WIDTH, HEIGHT, 1.0, 60, TRACK)
    whole = b"".join(u.payload for u in interleave(seg, frames, mic_chunks(3.0)))
    with av.open(io.BytesIO(whole), mode="r", format="mpegts") as c:
        video_t = [
            float(p.pts * p.time_base)
            for p in c.demux(video=0)
            if p.size and p.pts is not None and p.time_base is not None
        ]
    frame_at = dict(enumerate(video_t))  # frame index -> TS time
    onsets: list[float] = []
    with av.open(io.BytesIO(whole), mode="r", format="mpegts") as c:
        for f in c.decode(audio=0):
            assert f.pts is not None and f.time_base is not None
            for i in np.nonzero(np.abs(f.to_ndarray()[0]) > 0.4)[0]:
                t = float(f.pts * f.time_base) + i / f.sample_rate
                if not onsets or t - onsets[-1] > 0.5:
                    onsets.append(t)
    # Clicks at 1 s and 2 s (the one at 0 s is in the encoder's priming of the first frame).
    for k in (1, 2):
        offset = min(abs(t - frame_at[k * 30]) for t in onsets)
        assert offset < 0.005


def test_audio_before_the_first_frame_is_dropped() -> None:
    frames = h264_frames(30, start_pts_us=2_000_000)
    seg = Segmenter(WIDTH, HEIGHT, 1.0, 60, TRACK)
    chunks = mic_chunks(3.0)
    for c in chunks:
        if c.pts_us < 2_000_000:
            seg.push_audio(c)
    late = [c for c in chunks if c.pts_us >= 2_000_000]
    units = interleave(seg, frames, late)
    assert seg.audio_chunks_dropped == 100  # 2 s of 20 ms chunks
    whole = b"".join(u.payload for u in units)
    audio = packets(whole, "audio")
    video = packets(whole, "video")
    assert audio and video
    first_audio = min(float(p.pts * p.time_base) for p in audio)
    first_video = min(float(p.pts * p.time_base) for p in video)
    assert first_audio >= first_video - 0.0215  # only the AAC encoder's priming frame


def test_wrong_format_and_overlapping_chunks_are_refused() -> None:
    seg = Segmenter(WIDTH, HEIGHT, 1.0, 60, TRACK)
    good = mic_chunks(0.2)
    stereo = AudioChunk(b"\0" * 3840, 0, 20_000, "pcm_s16le", RATE, 2)
    opus = AudioChunk(b"x", 0, 20_000, "opus", RATE, 1)
    seg.push_audio(stereo)
    seg.push_audio(opus)
    assert seg.audio_chunks_dropped == 2
    frames = h264_frames(10)
    interleave(seg, frames[:5], good[:5])
    seg.push_audio(good[1])  # overlaps audio already encoded
    assert seg.audio_chunks_dropped == 3


def test_without_a_track_audio_is_refused_and_units_are_video_only() -> None:
    seg = Segmenter(WIDTH, HEIGHT, 1.0, 60)
    units = interleave(seg, h264_frames(30), mic_chunks(1.0))
    assert seg.audio_chunks_dropped == 50
    assert all(u.audio_packets == 0 for u in units)
    assert packets(b"".join(u.payload for u in units), "audio") == []


def test_segments_each_carry_their_audio() -> None:
    seg = Segmenter(WIDTH, HEIGHT, 1.0, 1.0, TRACK)
    units = interleave(seg, h264_frames(90), mic_chunks(3.0))
    assert [u.segment for u in units] == [0, 1, 2]
    for u in units:
        assert packets(u.payload, "audio"), f"segment {u.segment} has no audio"


def test_sim_microphone_clicks_on_whole_seconds() -> None:
    chunks = mic_chunks(2.5)
    assert [c.pts_us for c in chunks[:3]] == [0, 20_000, 40_000]
    pcm = np.concatenate([np.frombuffer(c.data, dtype="<i2") for c in chunks]) / 32768
    loud = np.nonzero(np.abs(pcm) > 0.4)[0]
    onsets = [int(i) for i in loud if i == 0 or abs(pcm[i - 1]) <= 0.4]
    starts = sorted({i // RATE * RATE for i in onsets})
    assert starts == [0, RATE, 2 * RATE]
    # Each click lasts 5 ms; the bed between clicks stays quiet.
    assert all(i % RATE < RATE * 5 // 1000 for i in loud)
    assert np.abs(pcm[RATE // 10 : RATE // 2]).max() < 0.05


def test_sim_microphone_refuses_a_fractional_chunk() -> None:
    with pytest.raises(ValueError, match="whole number of samples"):
        SimMicrophone(VirtualClock(0), 11_025, 1, chunk_ms=20)


def test_capture_devices_reads_proc_asound(tmp_path: Path) -> None:
    pcm = tmp_path / "pcm"
    pcm.write_text(
        "00-00: bcm2835 Headphones : bcm2835 Headphones : playback 8\n"
        "01-00: USB Audio : USB Audio : playback 1 : capture 1\n"
    )
    assert capture_devices(pcm) == ["hw:1,0"]
    assert capture_devices(tmp_path / "missing") == []


def test_one_encoder_for_the_recording_no_priming_gap_at_segment_boundaries() -> None:
    """Across segments the AAC packets step by exactly one frame of samples: no priming frame
    and no padding at a boundary, and each segment's audio sits where its time says."""
    seg = Segmenter(WIDTH, HEIGHT, 0.5, 1.0, TRACK)
    units = interleave(seg, h264_frames(120), mic_chunks(4.0))
    segments: dict[int, bytes] = {}
    for u in units:
        segments[u.segment] = segments.get(u.segment, b"") + u.payload
    assert sorted(segments) == [0, 1, 2, 3]
    pts: list[int] = []
    for data in segments.values():
        audio = packets(data, "audio")
        assert audio
        pts += [round(p.pts * p.time_base * RATE) for p in audio]
    steps = {b - a for a, b in itertools.pairwise(pts)}
    assert steps == {1024}, f"audio steps at boundaries: {sorted(steps)}"
    # The recording's audio is one stream: its first packet is the one priming frame before the
    # first picture, its last ends with the last sample delivered before the last picture's end.
    assert pts[0] == -1024 + 0


def test_a_hole_in_the_chunks_is_filled_with_silence_so_sync_holds() -> None:
    seg = Segmenter(WIDTH, HEIGHT, 1.0, 60, TRACK)
    chunks = [c for c in mic_chunks(3.0) if not 1_000_000 <= c.pts_us < 1_100_000]
    units = interleave(seg, h264_frames(90), chunks)
    assert seg.audio_silence_filled_samples == 5 * 960
    whole = b"".join(u.payload for u in units)
    pts = [round(p.pts * p.time_base * RATE) for p in packets(whole, "audio")]
    assert {b - a for a, b in itertools.pairwise(pts)} == {1024}
    with av.open(io.BytesIO(whole), mode="r", format="mpegts") as c:
        video_t = [
            float(p.pts * p.time_base)
            for p in c.demux(video=0)
            if p.size and p.pts is not None and p.time_base is not None
        ]
    onsets: list[float] = []
    with av.open(io.BytesIO(whole), mode="r", format="mpegts") as c:
        for f in c.decode(audio=0):
            assert f.pts is not None and f.time_base is not None
            for i in np.nonzero(np.abs(f.to_ndarray()[0]) > 0.4)[0]:
                t = float(f.pts * f.time_base) + i / f.sample_rate
                if not onsets or t - onsets[-1] > 0.5:
                    onsets.append(t)
    assert min(abs(t - video_t[60]) for t in onsets) < 0.005  # the click at 2 s, after the hole
