"""evidence.remux: streams declared from the units, segments placed at their capture times."""

from __future__ import annotations

import itertools
from fractions import Fraction
from pathlib import Path

import av
import pytest

from evidence.remux import AudioDeclaration, SegmentInput, declared_audio, remux_to_mp4
from hal.errors import IntegrityError
from recorder.segmenter import AudioTrack, Segmenter, TsUnit
from tests.unit.fakes import HEIGHT, WIDTH, h264_frames
from tests.unit.test_audio_segmenter import interleave, mic_chunks

RATE = 48_000
DECL = AudioDeclaration("aac", RATE, 1, 64_000)


def segments(units: list[TsUnit]) -> list[SegmentInput]:
    by_seg: dict[int, list[TsUnit]] = {}
    for u in units:
        by_seg.setdefault(u.segment, []).append(u)
    return [
        SegmentInput(b"".join(u.payload for u in us), us[0].start_pts_us)
        for _, us in sorted(by_seg.items())
    ]


def preroll_without_sound() -> list[SegmentInput]:
    """A 1 s-segment recording whose first segment (the pre-roll) has no audio packet yet."""
    seg = Segmenter(WIDTH, HEIGHT, 1.0, 1.0, AudioTrack(RATE, 1))
    late = [c for c in mic_chunks(3.0) if c.pts_us >= 1_000_000]
    return segments(interleave(seg, h264_frames(90), late))


def streams(mp4: Path) -> tuple[int, list[Fraction]]:
    with av.open(str(mp4)) as c:
        n_audio = len(c.streams.audio)
        video = [
            Fraction(p.pts) * p.time_base
            for p in c.demux(video=0)
            if p.size and p.pts is not None and p.time_base is not None
        ]
    return n_audio, video


def test_declared_audio_survives_a_first_segment_without_sound(tmp_path: Path) -> None:
    segs = preroll_without_sound()
    undeclared = remux_to_mp4(segs, tmp_path / "probe-less.mp4")
    assert undeclared.counts.get("audio", 0) == 0  # what a probe of the first bytes gives
    result = remux_to_mp4(segs, tmp_path / "declared.mp4", audio=DECL)
    n_audio, video = streams(tmp_path / "declared.mp4")
    assert n_audio == 1 and result.counts["audio"] > 0
    assert {b - a for a, b in itertools.pairwise(video)} == {Fraction(1, 30)}
    assert result.video_max_step_us == 33_333


def test_segments_sit_at_their_capture_times_and_a_real_gap_stays(tmp_path: Path) -> None:
    segs = preroll_without_sound()
    # Say the last segment was captured 0.5 s later than its bytes claim: it moves, the rest stay.
    moved = [*segs[:-1], SegmentInput(segs[-1].data, (segs[-1].start_pts_us or 0) + 500_000)]
    remux_to_mp4(moved, tmp_path / "gap.mp4", audio=DECL)
    _, video = streams(tmp_path / "gap.mp4")
    steps = sorted({b - a for a, b in itertools.pairwise(video)})
    assert steps == [Fraction(1, 30), Fraction(1, 30) + Fraction(1, 2)]


def test_declaration_is_read_strictly_from_the_manifests() -> None:
    ok = {"extra": {"streams": {"audio": {"codec": "aac", "sample_rate_hz": RATE, "channels": 1}}}}
    assert declared_audio([{"extra": {}}, ok, ok]) == AudioDeclaration("aac", RATE, 1)
    assert declared_audio([{"extra": {"streams": {"video": {}}}}]) is None
    other = {
        "extra": {"streams": {"audio": {"codec": "aac", "sample_rate_hz": 44_100, "channels": 1}}}
    }
    with pytest.raises(IntegrityError, match="different audio streams"):
        declared_audio([ok, other])
    for bad in (
        {"codec": "mp3", "sample_rate_hz": RATE, "channels": 1},
        {"codec": "aac", "sample_rate_hz": True, "channels": 1},
        {"codec": "aac", "sample_rate_hz": RATE, "channels": 3},
        "aac",
    ):
        with pytest.raises(IntegrityError, match=r"streams\.audio"):
            declared_audio([{"extra": {"streams": {"audio": bad}}}])


def test_legacy_per_segment_encoders_overlap_is_left_out_and_counted(tmp_path: Path) -> None:
    """Evidence sealed with one AAC encoder per segment: each new segment's priming frame
    overlaps the previous segment's tail; the export keeps one monotonic audio track."""
    frames, chunks = h264_frames(60), mic_chunks(2.0)
    legacy: list[SegmentInput] = []
    for k in range(2):  # a fresh Segmenter (so a fresh encoder) per one-second segment
        seg = Segmenter(WIDTH, HEIGHT, 1.0, 60, AudioTrack(RATE, 1))
        lo, hi = k * 1_000_000, (k + 1) * 1_000_000
        units = interleave(
            seg,
            [f for f in frames if lo <= f.pts_us < hi],
            [c for c in chunks if lo <= c.pts_us < hi],
        )
        legacy += segments(units)
    result = remux_to_mp4(legacy, tmp_path / "legacy.mp4", audio=DECL)
    assert result.dropped_overlap > 0
    with av.open(str(tmp_path / "legacy.mp4")) as c:
        dts = [p.dts for p in c.demux(audio=0) if p.size and p.dts is not None]
    assert all(b > a for a, b in itertools.pairwise(dts))
    assert result.video_max_step_us == 33_333
