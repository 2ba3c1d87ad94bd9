"""``Picamera2Camera`` against picamera2's real encoder, request and buffer classes.

Runs wherever picamera2 imports (``scripts/picamera2-for-tests.sh`` sets that up on Debian 12;
``.ci/run`` does, and sets ``BWC_REQUIRE_PICAMERA2=1`` so a broken set-up fails instead of
skipping). Only the camera device is a bench (``picamera2_bench``): the encoder is picamera2's
``LibavH264Encoder``, the one a Pi 5 uses, fed at the frame rate of ``configs/pi.toml``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import pytest

from hal.errors import HardwareError
from hal.picamera import Picamera2Camera, encoder_framerate, make_h264_encoder
from hal.types import ClockSource, EncodedFrame
from recorder.config import load_profile_text
from simulator.clock import VirtualClock
from tests.contract.picamera2_bench import PICAMERA2_MISSING

ROOT = Path(__file__).resolve().parents[2]
PI_PROFILE = load_profile_text((ROOT / "configs" / "pi.toml").read_text(), "configs/pi.toml")
WIDTH, HEIGHT = 320, 240  # small frames; the rate, bitrate and GOP are the profile's
SENSOR_START_NS = 7_000_000_000

needs_picamera2 = pytest.mark.skipif(
    PICAMERA2_MISSING is not None and os.environ.get("BWC_REQUIRE_PICAMERA2") != "1",
    reason=f"picamera2 does not import here: {PICAMERA2_MISSING}",
)


def _camera(
    bench: object,
    faults: list[tuple[str, str, str]] | None = None,
    clock: VirtualClock | None = None,
) -> Picamera2Camera:
    from tests.contract.picamera2_bench import Bench

    assert isinstance(bench, Bench)
    cam = PI_PROFILE.camera
    return Picamera2Camera(
        WIDTH,
        HEIGHT,
        cam.fps,
        cam.bitrate_bps,
        cam.keyframe_interval_s,
        "BWC-PI-TEST",
        clock if clock is not None else VirtualClock(1_764_000_000_000_000),
        overlay=True,
        on_fault=None if faults is None else lambda *f: faults.append(f),
        api=bench.api(),
    )


def _run(camera: Picamera2Camera, bench: object, frames: int) -> list[EncodedFrame]:
    from tests.contract.picamera2_bench import Bench

    assert isinstance(bench, Bench)
    out: list[EncodedFrame] = []
    camera.start(out.append)
    device = bench.opened[-1]
    period_ns = round(1e9 / PI_PROFILE.camera.fps)
    for n in range(frames):
        device.capture(SENSOR_START_NS + n * period_ns, luma=(n * 7) % 256)
    camera.stop()
    return out


def test_the_frame_rate_is_never_a_float() -> None:
    assert encoder_framerate(30.0) == 30
    assert isinstance(encoder_framerate(30.0), int)
    assert encoder_framerate(29.97) == Fraction(2997, 100)
    assert encoder_framerate(30000 / 1001) == Fraction(30000, 1001)
    assert isinstance(encoder_framerate(PI_PROFILE.camera.fps), int | Fraction)


@needs_picamera2
def test_pyav_refuses_the_float_rate_picamera2_would_be_given() -> None:
    """The failure this backend avoids, on the installed PyAV: a float rate breaks Pi 5 start."""
    from picamera2.encoders import LibavH264Encoder

    encoder = LibavH264Encoder(bitrate=1_000_000, iperiod=30, framerate=PI_PROFILE.camera.fps)
    encoder.width, encoder.height, encoder.format, encoder.stride = WIDTH, HEIGHT, "YUV420", WIDTH
    with pytest.raises(AttributeError):
        encoder.start()


@needs_picamera2
def test_libav_encoder_at_the_profile_rate_delivers_timed_keyframed_h264() -> None:
    from tests.contract.picamera2_bench import libav_bench

    bench = libav_bench()
    clock = VirtualClock(1_764_000_000_000_000)
    camera = _camera(bench, clock=clock)
    # The sensor's CLOCK_BOOTTIME maps onto the unit's clock by the offset measured at start.
    clock_minus_boot_us = clock.monotonic_us() - time.clock_gettime_ns(time.CLOCK_BOOTTIME) // 1000
    frames = _run(camera, bench, 75)
    assert len(frames) >= 60  # libx264 may hold the last few back until its flush at stop
    assert [f.frame_index for f in frames] == list(range(len(frames)))
    period_ns = round(1e9 / PI_PROFILE.camera.fps)
    first_us = SENSOR_START_NS // 1000
    assert abs(frames[0].pts_us - (first_us + clock_minus_boot_us)) < 1_000_000
    for n, frame in enumerate(frames):
        sensor_us = (SENSOR_START_NS + n * period_ns) // 1000
        assert frame.pts_us - frames[0].pts_us == sensor_us - first_us
    keyframes = [f.frame_index for f in frames if f.is_keyframe]
    gop = round(PI_PROFILE.camera.fps * PI_PROFILE.camera.keyframe_interval_s)
    assert keyframes[:3] == [0, gop, 2 * gop]
    for frame in frames:
        assert frame.data.startswith((b"\x00\x00\x00\x01", b"\x00\x00\x01"))
        nal_types = _nal_types(frame.data)
        if frame.is_keyframe:
            assert {7, 8, 5} <= set(nal_types)  # SPS and PPS before every IDR
        else:
            assert 5 not in nal_types
    assert bench.opened[0].closed
    assert camera.overlay_failures == 0


@needs_picamera2
def test_a_failed_start_closes_the_camera_and_raises_hardware_error() -> None:
    from tests.contract.picamera2_bench import libav_bench

    bench = libav_bench(fail_on="configure")
    camera = _camera(bench)
    with pytest.raises(HardwareError, match="RuntimeError: Failed to configure camera"):
        camera.start(lambda _f: None)
    assert bench.opened[0].closed
    camera.stop()  # harmless after a failed start


@needs_picamera2
def test_the_encoders_own_start_error_closes_the_camera() -> None:
    """An encoder that fails at start (here: a float rate given straight to picamera2's Libav
    encoder, the Pi 5 crash) leaves no open camera behind and surfaces as HardwareError."""
    from picamera2.encoders import LibavH264Encoder

    from tests.contract.picamera2_bench import Bench

    def float_rate_encoder(**kwargs: object) -> object:
        kwargs["framerate"] = float(PI_PROFILE.camera.fps)
        return LibavH264Encoder(**kwargs)

    bench = Bench(float_rate_encoder)
    camera = _camera(bench)
    with pytest.raises(HardwareError, match="AttributeError"):
        camera.start(lambda _f: None)
    assert bench.opened[0].closed


@needs_picamera2
def test_overlay_failures_are_contained_counted_and_reported_while_frames_flow() -> None:
    """A clock stepped to a corrupt GNSS time (year 318857) makes the real overlay raise on
    picamera2's processing thread: every such frame is still encoded and delivered."""
    from tests.contract.picamera2_bench import libav_bench

    bench = libav_bench()
    faults: list[tuple[str, str, str]] = []
    clock = VirtualClock(1_764_000_000_000_000)
    camera = _camera(bench, faults, clock)
    out: list[EncodedFrame] = []
    camera.start(out.append)
    device = bench.opened[-1]
    period_ns = round(1e9 / PI_PROFILE.camera.fps)
    for n in range(5):
        device.capture(SENSOR_START_NS + n * period_ns)
    assert camera.overlay_failures == 0
    clock.set_utc(10**19, ClockSource.GNSS)
    for n in range(5, 40):
        device.capture(SENSOR_START_NS + n * period_ns)
    clock.set_utc(1_764_000_100_000_000, ClockSource.GNSS)
    for n in range(40, 45):
        device.capture(SENSOR_START_NS + n * period_ns)
    camera.stop()
    assert camera.overlay_failures == 35
    assert len(out) >= 40  # frames kept flowing through every failure
    assert [code for _src, code, _d in faults] == ["overlay_failed", "overlay_failed"]  # 1st, 10th
    assert all(src == "camera" for src, _c, _d in faults)
    assert "out of range" in faults[0][2]
    assert "(10 frames so far)" in faults[1][2]


@needs_picamera2
def test_an_overlay_that_cannot_import_is_one_fault_at_start_and_frames_flow(
    tmp_path: Path,
) -> None:
    """A first ``import cv2`` that fails would, on picamera2's processing thread, end it. It is
    done in ``start``: one ``overlay_unavailable`` fault, and the camera records without text.
    Reproduced in a fresh interpreter with a ``cv2`` that fails as a broken OpenCV install does."""
    broken = tmp_path / "cv2"
    broken.mkdir()
    (broken / "__init__.py").write_text(
        "raise ImportError('libGL.so.1: cannot open shared object file')\n"
    )
    code = (
        "from tests.contract import test_picamera2_glue as t\n"
        "from tests.contract.picamera2_bench import libav_bench\n"
        "bench = libav_bench()\n"
        "faults = []\n"
        "camera = t._camera(bench, faults)\n"
        "frames = []\n"
        "camera.start(frames.append)\n"
        "for n in range(30):\n"
        "    bench.opened[-1].capture(t.SENSOR_START_NS + n * 33_333_333)\n"
        "camera.stop()\n"
        "print(len(frames), camera.overlay_failures, faults)\n"
    )
    shims = ROOT / "tests" / "contract" / "shims"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT), str(shims)])}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    count, failures, faults = result.stdout.strip().split(" ", 2)
    assert int(count) >= 25 and failures == "0"
    assert faults.startswith("[('camera', 'overlay_unavailable', 'ImportError: libGL.so.1")
    assert faults.count("overlay_") == 1


def test_overlay_reports_are_bounded() -> None:
    from hal.picamera import _is_decade

    assert [n for n in range(1, 2001) if _is_decade(n)] == [1, 10, 100, 1000]


@needs_picamera2
def test_make_h264_encoder_gives_libav_an_integer_rate() -> None:
    from picamera2.encoders import LibavH264Encoder

    encoder = make_h264_encoder(LibavH264Encoder, 1_000_000, 30, PI_PROFILE.camera.fps)
    assert encoder.framerate == 30 and isinstance(encoder.framerate, int)
    assert encoder.repeat is True and encoder.iperiod == 30


def test_a_numpy_abi_clash_at_import_is_one_hardware_error(tmp_path: Path) -> None:
    """Bookworm with a PyPI numpy over the system one: ``import picamera2`` raises ValueError
    (picamera2 #1088). Reproduced by a package of that name raising what simplejpeg raised."""
    fake = tmp_path / "picamera2"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        "raise ValueError('numpy.dtype size changed, may indicate binary incompatibility. "
        "Expected 96 from C header, got 88 from PyObject')\n"
    )
    code = (
        "from hal.errors import HardwareError\n"
        "from hal.picamera import load_picamera2\n"
        "try:\n    load_picamera2()\n"
        "except HardwareError as exc:\n    print(exc)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert "picamera2 is not available (ValueError: numpy.dtype size changed" in result.stdout
    assert "a numpy from PyPI shadows the system numpy" in result.stdout


def _nal_types(data: bytes) -> list[int]:
    types = []
    i = data.find(b"\x00\x00\x01")
    while i >= 0:
        types.append(data[i + 3] & 0x1F)
        i = data.find(b"\x00\x00\x01", i + 3)
    return types
