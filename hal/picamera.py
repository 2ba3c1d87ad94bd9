"""The Raspberry Pi camera on picamera2: hardware H.264 with the time and device id burned in.

This is the only module that imports picamera2 (and only in ``start``), so it loads on any machine
and fails with ``HardwareError`` where there is no camera stack.

Timestamps: picamera2's encoder passes ``timestamp`` = sensor timestamp minus the first frame's
(``encoder.firsttimestamp``), in microseconds on CLOCK_BOOTTIME. We add ``firsttimestamp`` back to
get the frame's CLOCK_BOOTTIME time, then the offset between the unit's ``Clock`` and
CLOCK_BOOTTIME measured once at ``start`` (zero for ``SystemClock``, which reads CLOCK_BOOTTIME).
So ``pts_us`` is the sensor's capture time on the unit's monotonic clock, immune to encoder delay.

Threading: ``pre_callback`` runs on picamera2's camera thread; ``outputframe`` on the encoder's
thread. Both must not block; the sink is a queue hand-off. ``_lock`` guards the sink so that no
frame is delivered after ``stop`` returns.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from typing import Any

from hal.errors import ConfigError, HardwareError
from hal.overlay import TextStyle, draw_text
from hal.protocols import Clock, FrameSink
from hal.types import EncodedFrame

log = logging.getLogger(__name__)

_BOOTTIME = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)
_SAME_CLOCK_US = 1000
"""An offset below this is read jitter between two reads of the same clock: treat it as zero."""


def _boottime_us() -> int:
    return time.clock_gettime_ns(_BOOTTIME) // 1000


def frame_pts_us(first_sensor_us: int, relative_us: int, clock_minus_boot_us: int) -> int:
    """A frame's capture time on the unit's clock from picamera2's encoder timestamp.

    ``relative_us`` is what the encoder passes to ``outputframe`` (sensor time minus the first
    frame's); ``first_sensor_us`` is ``encoder.firsttimestamp`` (CLOCK_BOOTTIME, µs).
    """
    return first_sensor_us + relative_us + clock_minus_boot_us


def frame_index(relative_us: int, fps: float, previous: int) -> int:
    """The frame's number from its sensor time, so a frame dropped before the encoder leaves a
    gap; never repeats or goes back, even if the sensor runs slightly off ``fps``."""
    return max(previous + 1, round(relative_us * fps / 1e6))


class Picamera2Camera:
    """A ``Camera`` on libcamera/picamera2 with the Pi's V4L2 H.264 encoder."""

    def __init__(
        self,
        width: int,
        height: int,
        fps: float,
        bitrate_bps: int,
        keyframe_interval_s: float,
        device_id: str,
        clock: Clock,
        overlay: bool = True,
        *,
        camera_num: int = 0,
    ) -> None:
        if width <= 0 or height <= 0 or width % 2 or height % 2:
            raise ConfigError("camera.width and camera.height must be even and positive")
        if fps <= 0:
            raise ConfigError(f"camera.fps must be positive (got {fps})")
        if keyframe_interval_s <= 0:
            raise ConfigError("camera.keyframe_interval_s must be positive")
        self._width, self._height, self._fps = width, height, float(fps)
        self._bitrate_bps = bitrate_bps
        self._gop = max(1, round(fps * keyframe_interval_s))
        self._device_id = device_id
        self._clock = clock
        self._overlay = overlay
        self._camera_num = camera_num
        self._lock = threading.Lock()
        self._sink: FrameSink | None = None
        self._picam2: Any = None
        self._encoder: Any = None
        self._clock_minus_boot_us = 0
        self._last_index = -1

    @property
    def width(self) -> int:
        return self._width

    @property
    def height(self) -> int:
        return self._height

    @property
    def fps(self) -> float:
        return self._fps

    def start(self, sink: FrameSink) -> None:
        try:
            from picamera2 import Picamera2
            from picamera2.encoders import H264Encoder
        except ImportError as exc:
            raise HardwareError(f"picamera2 is not available: {exc}") from exc
        offset_us = self._clock.monotonic_us() - _boottime_us()
        self._clock_minus_boot_us = 0 if abs(offset_us) < _SAME_CLOCK_US else offset_us
        self._last_index = -1
        with self._lock:
            self._sink = sink
        picam2: Any = None
        try:
            picam2 = Picamera2(self._camera_num)
            config = picam2.create_video_configuration(
                main={"size": (self._width, self._height), "format": "YUV420"},
                controls={"FrameRate": self._fps},
            )
            picam2.configure(config)
            if self._overlay:
                picam2.pre_callback = self._burn_in
            # repeat=True: SPS/PPS before every I-frame, so each GOP decodes on its own.
            encoder = H264Encoder(
                bitrate=self._bitrate_bps, repeat=True, iperiod=self._gop, framerate=self._fps
            )
            self._picam2, self._encoder = picam2, encoder
            picam2.start_recording(encoder, _make_output(self._on_frame))
        except (RuntimeError, OSError, ValueError, IndexError) as exc:
            with self._lock:
                self._sink = None
            self._picam2 = self._encoder = None
            if picam2 is not None:
                picam2.close()
            raise HardwareError(f"camera {self._camera_num}: {exc}") from exc

    def stop(self) -> None:
        with self._lock:
            self._sink = None  # from here on, _on_frame delivers nothing
        picam2, self._picam2, self._encoder = self._picam2, None, None
        if picam2 is None:
            return
        try:
            picam2.stop_recording()
        finally:
            picam2.close()

    # -- picamera2 callbacks (camera and encoder threads) --------------------------------------

    def _on_frame(self, data: bytes, keyframe: bool, timestamp_us: int) -> None:
        encoder = self._encoder
        first_us = getattr(encoder, "firsttimestamp", None) or 0
        pts_us = frame_pts_us(first_us, timestamp_us, self._clock_minus_boot_us)
        index = self._last_index = frame_index(timestamp_us, self._fps, self._last_index)
        with self._lock:
            if self._sink is not None:
                self._sink(EncodedFrame(data, pts_us, keyframe, index))

    def _burn_in(self, request: Any) -> None:
        from picamera2 import MappedArray

        sensor_ns = request.get_metadata().get("SensorTimestamp")
        utc_us = self._clock.utc_us()
        if sensor_ns is not None:
            capture_us = sensor_ns // 1000 + self._clock_minus_boot_us
            utc_us -= self._clock.monotonic_us() - capture_us
        stamp = dt.datetime.fromtimestamp(utc_us / 1e6, tz=dt.UTC)
        text = f"{stamp:%Y-%m-%d %H:%M:%S}Z {self._device_id}"
        style = TextStyle.for_width(self._width)
        origin = (16, 16 + int(40 * style.scale))
        with MappedArray(request, "main") as mapped:
            luma = mapped.array[: self._height]  # YUV420: the Y plane is the first rows
            draw_text(luma, text, origin, style)


def _make_output(on_frame: Any) -> Any:
    """A picamera2 ``Output`` that hands each encoded frame to ``on_frame`` (encoder thread)."""
    from picamera2.outputs import Output

    class _SinkOutput(Output):  # type: ignore[misc]
        def outputframe(
            self,
            frame: Any,
            keyframe: bool = True,
            timestamp: int | None = None,
            packet: Any = None,
            audio: bool = False,
        ) -> None:
            if audio or frame is None:
                return
            on_frame(bytes(frame), bool(keyframe), int(timestamp or 0))

    return _SinkOutput()
