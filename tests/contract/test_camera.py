"""Camera contract: SimCamera always; Picamera2Camera on picamera2's Pi 5 encoder with the bench
device wherever picamera2 imports (``picamera2_bench``), and on a real camera where one exists."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

import pytest

from hal.errors import HardwareError
from hal.picamera import Picamera2Camera, frame_index, frame_pts_us, load_picamera2
from hal.protocols import Camera
from hal.system_clock import SystemClock
from hal.types import EncodedFrame
from simulator.camera import SimCamera
from simulator.clock import VirtualClock
from tests.contract.picamera2_bench import PICAMERA2_MISSING

WIDTH, HEIGHT, FPS, KEY_S = 512, 288, 10.0, 1.0
Advance = Callable[[float], None]


def _sim() -> tuple[Camera, Advance]:
    clock = VirtualClock(1_764_000_000_000_000)
    camera = SimCamera(clock, WIDTH, HEIGHT, FPS, 400_000, KEY_S, "BWC-TEST")
    return camera, lambda s: clock.advance(round(s * 1e6))


def _picamera2() -> tuple[Camera, Advance]:
    camera = Picamera2Camera(WIDTH, HEIGHT, FPS, 400_000, KEY_S, "BWC-TEST", SystemClock())
    return camera, time.sleep


def _picamera2_bench() -> tuple[Camera, Advance]:
    """picamera2's LibavH264Encoder and request path, fed by the bench device at ``FPS``."""
    from tests.contract.picamera2_bench import libav_bench

    bench = libav_bench()
    camera = Picamera2Camera(
        WIDTH, HEIGHT, FPS, 400_000, KEY_S, "BWC-TEST", SystemClock(), api=bench.api()
    )
    sent = [0]

    def advance(seconds: float) -> None:
        device = bench.opened[-1]
        for _ in range(round(seconds * FPS)):
            device.capture(5_000_000_000 + round(sent[0] * 1e9 / FPS))
            sent[0] += 1

    return camera, advance


def _picamera2_cameras() -> tuple[bool, int]:
    """Whether picamera2 imports here, and how many cameras libcamera sees."""
    try:
        api = load_picamera2()
    except HardwareError:
        return False, 0
    return True, len(api.picamera2.global_camera_info())


_HAS_PICAMERA2, _CAMERAS = _picamera2_cameras()


@pytest.fixture(
    params=[
        pytest.param(_sim, id="sim"),
        pytest.param(
            _picamera2_bench,
            id="picamera2-bench",
            marks=pytest.mark.skipif(
                PICAMERA2_MISSING is not None and os.environ.get("BWC_REQUIRE_PICAMERA2") != "1",
                reason=f"picamera2: {PICAMERA2_MISSING}",
            ),
        ),
        pytest.param(
            _picamera2,
            id="picamera2",
            marks=pytest.mark.skipif(
                _CAMERAS == 0,
                reason="no camera here (picamera2 imports)"
                if _HAS_PICAMERA2
                else "picamera2 does not import here",
            ),
        ),
    ]
)
def camera(request: pytest.FixtureRequest) -> Iterator[tuple[Camera, Advance]]:
    cam, advance = request.param()
    yield cam, advance
    cam.stop()


def _nal_types(data: bytes) -> list[int]:
    """NAL unit types of an Annex B access unit."""
    types = []
    i = data.find(b"\x00\x00\x01")
    while i >= 0:
        types.append(data[i + 3] & 0x1F)
        i = data.find(b"\x00\x00\x01", i + 3)
    return types


def test_is_a_camera(camera: tuple[Camera, Advance]) -> None:
    cam, _ = camera
    assert isinstance(cam, Camera)
    assert (cam.width, cam.height, cam.fps) == (WIDTH, HEIGHT, FPS)


def test_frames_arrive_in_order_with_keyframes_and_headers(
    camera: tuple[Camera, Advance],
) -> None:
    cam, advance = camera
    frames: list[EncodedFrame] = []
    cam.start(frames.append)
    advance(2.55)
    assert len(frames) >= 20
    indices = [f.frame_index for f in frames]
    assert indices[0] == 0
    assert indices == sorted(set(indices))
    pts = [f.pts_us for f in frames]
    assert pts == sorted(set(pts))
    assert frames[0].is_keyframe
    keyframes = [f for f in frames if f.is_keyframe]
    assert len(keyframes) >= 2
    for frame in frames:
        assert frame.data.startswith((b"\x00\x00\x00\x01", b"\x00\x00\x01"))
        types = _nal_types(frame.data)
        if frame.is_keyframe:
            # SPS and PPS before every IDR, so each GOP decodes on its own.
            assert 7 in types and 8 in types and 5 in types
        else:
            assert 5 not in types


def test_nothing_arrives_after_stop(camera: tuple[Camera, Advance]) -> None:
    cam, advance = camera
    frames: list[EncodedFrame] = []
    cam.start(frames.append)
    advance(0.55)
    cam.stop()
    count = len(frames)
    assert count > 0
    advance(0.5)
    assert len(frames) == count


@pytest.mark.skipif(_HAS_PICAMERA2, reason="picamera2 imports here")
def test_picamera2_backend_loads_anywhere_and_fails_cleanly_without_picamera2() -> None:
    camera = Picamera2Camera(WIDTH, HEIGHT, FPS, 400_000, KEY_S, "BWC-TEST", SystemClock())
    with pytest.raises(HardwareError, match="picamera2"):
        camera.start(lambda _f: None)
    camera.stop()  # stopping a camera that never started is harmless


@pytest.mark.skipif(
    not _HAS_PICAMERA2 or _CAMERAS > 0, reason="needs picamera2 and no camera connected"
)
def test_with_picamera2_but_no_camera_start_fails_cleanly() -> None:
    """The real ``Picamera2(0)`` with no camera raises; the backend turns that into one
    ``HardwareError`` and leaves nothing open, so a second start fails the same way."""
    camera = Picamera2Camera(WIDTH, HEIGHT, FPS, 400_000, KEY_S, "BWC-TEST", SystemClock())
    for _ in range(2):
        with pytest.raises(HardwareError, match="camera 0: RuntimeError"):
            camera.start(lambda _f: None)
    camera.stop()


def test_picamera2_timestamps_map_to_the_unit_clock_and_indices_show_drops() -> None:
    first_us = 5_000_000  # encoder.firsttimestamp: the first frame's CLOCK_BOOTTIME time
    assert frame_pts_us(first_us, 0, 0) == 5_000_000
    assert frame_pts_us(first_us, 66_667, 0) == 5_066_667
    assert frame_pts_us(first_us, 66_667, -1_000) == 5_065_667
    indices = []
    previous = -1
    for relative_us in [0, 33_333, 66_667, 133_333, 133_400, 166_600]:  # one drop, one jitter
        previous = frame_index(relative_us, 30.0, previous)
        indices.append(previous)
    assert indices == [0, 1, 2, 4, 5, 6]
