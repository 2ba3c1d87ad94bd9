"""SimCamera: every frame decodes to its number; exact timing, GOP, replay, small frames refused."""

from __future__ import annotations

from pathlib import Path

import av
import pytest

from hal.errors import ConfigError
from hal.types import EncodedFrame
from simulator.camera import SimCamera
from simulator.clock import VirtualClock
from simulator.h264 import read_frame_numbers

START_UTC_US = 1_764_000_000_000_000


def _camera(clock: VirtualClock, fps: float = 15.0, **kw: object) -> SimCamera:
    return SimCamera(clock, 512, 288, fps, 300_000, 1.0, "BWC-UNIT", **kw)  # type: ignore[arg-type]


def _record(seconds: float, fps: float = 15.0) -> list[EncodedFrame]:
    clock = VirtualClock(START_UTC_US)
    camera = _camera(clock, fps)
    frames: list[EncodedFrame] = []
    camera.start(frames.append)
    clock.run_until(round(seconds * 1e6))
    camera.stop()
    return frames


def test_every_frame_decodes_to_its_number_in_order() -> None:
    frames = _record(4.0)
    n = len(frames)
    assert n == 61  # frames at 0, 1/15 s, ..., 4 s inclusive
    assert [f.frame_index for f in frames] == list(range(n))
    assert read_frame_numbers(frames) == list(range(n))


def test_frame_times_are_exact_integers_without_drift() -> None:
    frames = _record(3.0, fps=29.97)
    assert [f.pts_us for f in frames] == [round(i * 1e6 / 29.97) for i in range(len(frames))]


def test_keyframes_every_gop_and_each_gop_decodes_alone() -> None:
    frames = _record(3.5)
    keys = [f.frame_index for f in frames if f.is_keyframe]
    assert keys == [0, 15, 30, 45]
    # Cut at the second keyframe: SPS/PPS are repeated, so the tail decodes by itself.
    tail = frames[15:]
    assert read_frame_numbers(tail) == list(range(15, len(frames)))


def test_decodes_from_a_file_path_too(tmp_path: Path) -> None:
    frames = _record(1.0)
    path = tmp_path / "clip.h264"
    path.write_bytes(b"".join(f.data for f in frames))
    assert read_frame_numbers(str(path)) == list(range(len(frames)))
    assert read_frame_numbers(path.read_bytes()) == list(range(len(frames)))


def test_stop_delivers_nothing_more_and_start_counts_from_zero_again() -> None:
    clock = VirtualClock(START_UTC_US)
    camera = _camera(clock)
    frames: list[EncodedFrame] = []
    camera.start(frames.append)
    clock.run_until(1_000_000)
    camera.stop()
    count = len(frames)
    clock.run_until(2_000_000)
    assert len(frames) == count
    again: list[EncodedFrame] = []
    camera.start(again.append)
    clock.run_until(2_500_000)
    camera.stop()
    assert again[0].frame_index == 0 and again[0].is_keyframe
    assert again[0].pts_us == 2_000_000
    assert read_frame_numbers(again) == list(range(len(again)))


def test_refuses_frames_narrower_than_the_stripe() -> None:
    clock = VirtualClock(0)
    with pytest.raises(ConfigError, match=r"camera\.width must be at least 512"):
        SimCamera(clock, 510, 288, 15, 300_000, 1.0, "BWC-UNIT")
    with pytest.raises(ConfigError, match="even"):
        SimCamera(clock, 513, 288, 15, 300_000, 1.0, "BWC-UNIT")


def test_replay_loops_the_files_access_units_with_keyframe_flags(tmp_path: Path) -> None:
    source = _record(1.5)  # 23 frames: keyframes at 0 and 15
    path = tmp_path / "source.h264"
    path.write_bytes(b"".join(f.data for f in source))
    clock = VirtualClock(START_UTC_US)
    camera = _camera(clock, replay_path=str(path))
    frames: list[EncodedFrame] = []
    camera.start(frames.append)
    clock.run_until(3_000_000)
    camera.stop()
    n_src = len(source)
    assert len(frames) == 46
    assert [f.frame_index for f in frames] == list(range(46))
    for f in frames:
        original = source[f.frame_index % n_src]
        assert f.data == original.data
        assert f.is_keyframe == original.is_keyframe
    assert read_frame_numbers(frames) == [i % n_src for i in range(46)]


def test_replay_of_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    camera = _camera(VirtualClock(0), replay_path=str(tmp_path / "nope.h264"))
    with pytest.raises(ConfigError, match="replay"):
        camera.start(lambda _f: None)


def test_stream_is_h264_at_the_configured_size() -> None:
    frames = _record(0.2)
    codec = av.CodecContext.create("h264", "r")
    decoded = []
    for packet in codec.parse(b"".join(f.data for f in frames)):
        decoded += codec.decode(packet)
    decoded += codec.decode(None)
    assert decoded
    assert all((f.width, f.height) == (512, 288) for f in decoded)


def test_decodes_an_mpeg_ts_muxed_without_re_encoding(tmp_path: Path) -> None:
    from fractions import Fraction

    frames = _record(2.0)
    path = tmp_path / "clip.ts"
    with av.open(str(path), mode="w", format="mpegts") as out:
        stream = out.add_stream("h264", rate=15)
        stream.width, stream.height = 512, 288
        stream.time_base = Fraction(1, 90_000)
        for f in frames:
            packet = av.Packet(f.data)
            packet.stream = stream
            packet.time_base = stream.time_base
            packet.pts = packet.dts = f.pts_us * 9 // 100
            packet.is_keyframe = f.is_keyframe
            out.mux(packet)
    assert read_frame_numbers(path) == list(range(len(frames)))


def test_runs_are_deterministic_byte_for_byte() -> None:
    first = _record(1.5)
    second = _record(1.5)
    assert [f.data for f in first] == [f.data for f in second]
    assert [(f.pts_us, f.is_keyframe) for f in first] == [(f.pts_us, f.is_keyframe) for f in second]
