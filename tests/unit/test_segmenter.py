"""The TS segmenter on real H.264 (libx264, 512x288, 30 fps, GOP 30): units, segments, demux."""

from __future__ import annotations

import io
import itertools
from typing import Any

import av
import pytest

from hal.types import EncodedFrame
from recorder.segmenter import Segmenter, TsUnit
from tests.unit.fakes import HEIGHT, WIDTH, h264_frames


def run(frames: list[EncodedFrame], unit_s: float, segment_s: float) -> list[TsUnit]:
    seg = Segmenter(WIDTH, HEIGHT, unit_s, segment_s)
    units: list[TsUnit] = []
    for f in frames:
        units += seg.push(f)
    units += seg.flush()
    return units


def demux(payload: bytes) -> list[Any]:
    with av.open(io.BytesIO(payload), mode="r", format="mpegts") as c:
        return [p for p in c.demux(video=0) if p.size]


def decode_count(payload: bytes) -> int:
    with av.open(io.BytesIO(payload), mode="r", format="mpegts") as c:
        return sum(1 for _ in c.decode(video=0))


def test_units_are_about_unit_s_and_chain_frames() -> None:
    frames = h264_frames(60, start_index=100, start_pts_us=7_000_000)  # 2 s
    units = run(frames, unit_s=0.5, segment_s=60)
    assert [u.frame_count for u in units] == [15, 15, 15, 15]
    assert units[0].first_frame == 100
    for a, b in itertools.pairwise(units):
        assert b.first_frame == a.first_frame + a.frame_count
        assert b.start_pts_us == a.end_pts_us
        assert b.unit == a.unit + 1
    assert units[-1].segment_final and not any(u.segment_final for u in units[:-1])
    assert units[-1].end_pts_us == frames[-1].pts_us + (frames[-1].pts_us - frames[-2].pts_us)
    assert all(len(u.payload) % 188 == 0 and u.payload for u in units)


def test_whole_segment_demuxes_every_frame_with_timestamps() -> None:
    frames = h264_frames(60, start_pts_us=1_000_000)
    units = run(frames, unit_s=1.0, segment_s=60)
    whole = b"".join(u.payload for u in units)
    packets = demux(whole)
    assert len(packets) == 60
    # No re-encoding: each packet is the frame's bytes, after the access unit delimiter the
    # mpegts muxer inserts.
    aud = b"\x00\x00\x00\x01\x09\xf0"
    assert [bytes(p).removeprefix(aud) for p in packets] == [f.data for f in frames]
    pts_us = [round(float(p.pts * p.time_base) * 1e6) for p in packets if p.pts is not None]
    steps = {b - a for a, b in itertools.pairwise(pts_us)}
    assert steps <= {33_333, 33_334}
    assert sum(p.is_keyframe for p in packets) == 2
    assert decode_count(whole) == 60


@pytest.mark.parametrize("k", [1, 2, 3])
def test_truncated_prefix_of_units_demuxes_and_decodes(k: int) -> None:
    frames = h264_frames(60)
    units = run(frames, unit_s=0.5, segment_s=60)
    prefix = b"".join(u.payload for u in units[:k])
    expected = sum(u.frame_count for u in units[:k])
    assert len(demux(prefix)) == expected
    assert decode_count(prefix) == expected


def test_segments_start_on_keyframes_after_segment_s_and_restart_units() -> None:
    frames = h264_frames(30 * 7)  # 7 s, keyframes every 1 s
    units = run(frames, unit_s=1.0, segment_s=2.5)
    segs = sorted({u.segment for u in units})
    assert segs == [0, 1, 2]
    by_index = {f.frame_index: f for f in frames}
    for s in segs:
        su = [u for u in units if u.segment == s]
        assert [u.unit for u in su] == list(range(len(su)))
        assert by_index[su[0].first_frame].is_keyframe
        assert su[-1].segment_final
        whole = b"".join(u.payload for u in su)
        assert len(demux(whole)) == sum(u.frame_count for u in su)
        assert decode_count(whole) == sum(u.frame_count for u in su)
        if s < segs[-1]:  # 3 s: the first keyframe at or after 2.5 s
            assert sum(u.frame_count for u in su) == 90
    assert sum(u.frame_count for u in units) == len(frames)


def test_frame_gap_keeps_going() -> None:
    frames = [f for f in h264_frames(60) if f.frame_index not in (40, 41)]
    units = run(frames, unit_s=1.0, segment_s=60)
    assert sum(u.frame_count for u in units) == 58
    assert [(u.first_frame, u.frame_count) for u in units] == [(0, 30), (30, 10), (42, 18)]
    assert len(demux(b"".join(u.payload for u in units))) == 58


def test_take_unit_cuts_now() -> None:
    seg = Segmenter(WIDTH, HEIGHT, 1.0, 60)
    frames = h264_frames(10)
    for f in frames:
        assert seg.push(f) == []
    unit = seg.take_unit()
    assert unit is not None and unit.frame_count == 10
    assert seg.take_unit() is None
    assert len(demux(unit.payload)) == 10


def test_must_start_on_keyframe() -> None:
    seg = Segmenter(WIDTH, HEIGHT, 1.0, 60)
    with pytest.raises(ValueError, match="keyframe"):
        seg.push(h264_frames(2)[1])
