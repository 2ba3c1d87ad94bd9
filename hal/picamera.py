"""The Raspberry Pi camera on picamera2: H.264 with the time and device id burned in.

This is the only module that imports picamera2 (and only in ``start``, through
``load_picamera2``), so it loads on any machine and fails with one ``HardwareError`` where there
is no camera stack, whatever the import really raised.

Encoders: picamera2's ``H264Encoder`` name is the V4L2 hardware encoder on VC4 boards (Pi 4,
Pi 3, Zero 2 W) and ``LibavH264Encoder`` (libx264 through PyAV) on a Pi 5, which has no hardware
H.264. The Libav one hands ``framerate`` to PyAV's ``add_stream(rate=...)``, which since PyAV 13
refuses a float (``AttributeError``), so the rate is always given as an ``int`` or ``Fraction``
(``encoder_framerate``).

Timestamps: picamera2's encoder passes ``timestamp`` = sensor timestamp minus the first frame's
(``encoder.firsttimestamp``), in microseconds on CLOCK_BOOTTIME. We add ``firsttimestamp`` back to
get the frame's CLOCK_BOOTTIME time, then the offset between the unit's ``Clock`` and
CLOCK_BOOTTIME measured once at ``start`` (zero for ``SystemClock``, which reads CLOCK_BOOTTIME).
So ``pts_us`` is the sensor's capture time on the unit's monotonic clock, immune to encoder delay.

Threading: ``pre_callback`` runs on picamera2's camera (processing) thread and ``outputframe`` on
the encoder's thread. Neither may block, and an exception escaping ``pre_callback`` would end the
processing thread, so frames would stop until the watchdog fired: overlay failures are contained
there (counted, reported once per decade of the count to the fault sink) and frames keep flowing.
``_lock`` guards the sink so that no frame is delivered after ``stop`` returns.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from hal.errors import ConfigError, HardwareError
from hal.overlay import TextStyle, draw_text, require_cv2
from hal.protocols import Clock, FaultSink, FrameSink
from hal.types import EncodedFrame

log = logging.getLogger(__name__)

_BOOTTIME = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)
_SAME_CLOCK_US = 1000
"""An offset below this is read jitter between two reads of the same clock: treat it as zero."""

IMPORT_ERRORS: tuple[type[Exception], ...] = (
    ImportError,  # no picamera2, libcamera, pykms or a compiled dependency (numpy API mismatch)
    ValueError,  # "numpy.dtype size changed": a PyPI numpy shadows the one simplejpeg was built for
    AttributeError,  # a binding older than picamera2 expects (libcamera, kms)
    OSError,  # a shared library or device probed at import time
    RuntimeError,
)
"""What ``import picamera2`` has been seen to raise on a broken install (picamera2 #1088, #1211)."""

START_ERRORS: tuple[type[Exception], ...] = (
    RuntimeError,  # libcamera and picamera2's own refusals
    OSError,  # V4L2 ioctls, /dev/dma_heap, and PyAV's FFmpeg errors that derive from it
    ValueError,
    IndexError,  # no camera with that number
    KeyError,  # a format picamera2's tables do not know
    AttributeError,  # PyAV >= 13 given a float frame rate
    TypeError,
)
"""What ``Picamera2(...)``/``configure``/``start_recording`` can raise. Anything else still closes
the camera (``start`` cleans up on any exception) but is not turned into ``HardwareError``."""


def _boottime_us() -> int:
    return time.clock_gettime_ns(_BOOTTIME) // 1000


@dataclass(frozen=True)
class Picamera2Api:
    """The parts of picamera2 this backend uses. ``load_picamera2`` fills it from the installed
    package; tests hand in the same classes with a bench standing in for the camera device."""

    picamera2: Any
    """``picamera2.Picamera2`` (or anything with its constructor and recording methods)."""
    h264_encoder: Any
    """``picamera2.encoders.H264Encoder``: V4L2 on VC4, ``LibavH264Encoder`` on a Pi 5."""
    output: Any
    """``picamera2.outputs.Output``, the base class of the sink output."""


def load_picamera2() -> Picamera2Api:
    """Import picamera2; any failure is one ``HardwareError`` that says how to fix the install."""
    try:
        from picamera2 import Picamera2
        from picamera2.encoders import H264Encoder
        from picamera2.outputs import Output
    except IMPORT_ERRORS as exc:
        hint = "install python3-picamera2 and use a venv with --system-site-packages (README)"
        if isinstance(exc, ValueError) and "numpy" in str(exc):
            hint = "a numpy from PyPI shadows the system numpy: remove it from the venv (README)"
        raise HardwareError(
            f"picamera2 is not available ({type(exc).__name__}: {exc}); {hint}"
        ) from exc
    return Picamera2Api(Picamera2, H264Encoder, Output)


def encoder_framerate(fps: float) -> int | Fraction:
    """The frame rate as picamera2's encoders and PyAV >= 13 accept it: an ``int`` when whole,
    else a ``Fraction`` (29.97 -> 2997/100). Never a float."""
    rate = Fraction(fps).limit_denominator(1001)
    return rate.numerator if rate.denominator == 1 else rate


def make_h264_encoder(encoder_class: Any, bitrate_bps: int, gop_frames: int, fps: float) -> Any:
    """An H.264 encoder as this unit needs it, for either of picamera2's H.264 encoders.

    ``repeat=True``: SPS/PPS before every I-frame, so each GOP decodes on its own.
    """
    return encoder_class(
        bitrate=bitrate_bps, repeat=True, iperiod=gop_frames, framerate=encoder_framerate(fps)
    )


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


def _is_decade(count: int) -> bool:
    """1, 10, 100, ...: a repeated fault is reported a bounded, logarithmic number of times."""
    while count >= 10 and count % 10 == 0:
        count //= 10
    return count == 1


class Picamera2Camera:
    """A ``Camera`` on libcamera/picamera2 (V4L2 H.264 on VC4 boards, libx264 on a Pi 5)."""

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
        on_fault: FaultSink | None = None,
        api: Picamera2Api | None = None,
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
        self.on_fault = on_fault
        self._api = api
        self._lock = threading.Lock()
        self._sink: FrameSink | None = None
        self._picam2: Any = None
        self._encoder: Any = None
        self._draw: Callable[[Any], None] | None = None
        self._clock_minus_boot_us = 0
        self._last_index = -1
        self.overlay_failures = 0
        """Frames whose overlay could not be drawn (they were still encoded and delivered)."""

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
        api = self._api if self._api is not None else load_picamera2()
        # Everything the processing thread will need is imported here, on the caller's thread: a
        # failing import in pre_callback would kill that thread and stop the frames.
        self._draw = self._load_overlay() if self._overlay else None
        offset_us = self._clock.monotonic_us() - _boottime_us()
        self._clock_minus_boot_us = 0 if abs(offset_us) < _SAME_CLOCK_US else offset_us
        self._last_index = -1
        with self._lock:
            self._sink = sink
        picam2: Any = None
        try:
            picam2 = api.picamera2(self._camera_num)
            config = picam2.create_video_configuration(
                main={"size": (self._width, self._height), "format": "YUV420"},
                controls={"FrameRate": self._fps},
            )
            picam2.configure(config)
            if self._draw is not None:
                picam2.pre_callback = self._burn_in
            encoder = make_h264_encoder(api.h264_encoder, self._bitrate_bps, self._gop, self._fps)
            self._picam2, self._encoder = picam2, encoder
            picam2.start_recording(encoder, make_output(api.output, self._on_frame))
        except BaseException as exc:
            # Whatever start raised, the camera is closed again: an open camera left behind
            # blocks the next start (libcamera allows one owner) and the daemon would die.
            self._abandon(picam2)
            if isinstance(exc, START_ERRORS):
                raise HardwareError(
                    f"camera {self._camera_num}: {type(exc).__name__}: {exc}"
                ) from exc
            raise

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

    def _abandon(self, picam2: Any) -> None:
        with self._lock:
            self._sink = None
        self._picam2 = self._encoder = None
        if picam2 is None:
            return
        try:
            picam2.close()
        except START_ERRORS as exc:  # the original error is the one worth raising
            log.error("camera %d: close after a failed start: %s", self._camera_num, exc)

    def _fault(self, code: str, detail: str) -> None:
        log.error("camera %d: %s: %s", self._camera_num, code, detail)
        if self.on_fault is not None:
            self.on_fault("camera", code, detail)

    # -- the overlay ---------------------------------------------------------------------------

    def _load_overlay(self) -> Callable[[Any], None] | None:
        """The drawing routine with its imports done, or None (and a fault) if they fail: the
        camera then records without the burned-in text rather than not at all."""
        try:
            from picamera2 import MappedArray

            require_cv2()
        except IMPORT_ERRORS as exc:
            self._fault("overlay_unavailable", f"{type(exc).__name__}: {exc}")
            return None

        style = TextStyle.for_width(self._width)
        origin = (16, 16 + int(40 * style.scale))

        def draw(request: Any) -> None:
            sensor_ns = request.get_metadata().get("SensorTimestamp")
            utc_us = self._clock.utc_us()
            if sensor_ns is not None:
                capture_us = sensor_ns // 1000 + self._clock_minus_boot_us
                utc_us -= self._clock.monotonic_us() - capture_us
            stamp = dt.datetime.fromtimestamp(utc_us / 1e6, tz=dt.UTC)
            text = f"{stamp:%Y-%m-%d %H:%M:%S}Z {self._device_id}"
            with MappedArray(request, "main") as mapped:
                luma = mapped.array[: self._height]  # YUV420: the Y plane is the first rows
                draw_text(luma, text, origin, style)  # hal.overlay: the sim camera's routine too

        return draw

    # -- picamera2 callbacks (camera and encoder threads) --------------------------------------

    def _burn_in(self, request: Any) -> None:
        draw = self._draw
        if draw is None:
            return
        try:
            draw(request)
        # Anything raised here would end picamera2's processing thread and with it every frame;
        # an overlay is worth less than the video it sits on, so contain all of it and report.
        except Exception as exc:
            self.overlay_failures += 1
            if _is_decade(self.overlay_failures):
                self._fault(
                    "overlay_failed",
                    f"{type(exc).__name__}: {exc} ({self.overlay_failures} frames so far)",
                )

    def _on_frame(self, data: bytes, keyframe: bool, timestamp_us: int) -> None:
        encoder = self._encoder
        first_us = getattr(encoder, "firsttimestamp", None) or 0
        pts_us = frame_pts_us(first_us, timestamp_us, self._clock_minus_boot_us)
        index = self._last_index = frame_index(timestamp_us, self._fps, self._last_index)
        with self._lock:
            if self._sink is not None:
                self._sink(EncodedFrame(data, pts_us, keyframe, index))


def make_output(output_class: Any, on_frame: Callable[[bytes, bool, int], None]) -> Any:
    """A picamera2 ``Output`` that hands each encoded video frame to ``on_frame`` (encoder
    thread); audio packets, which this unit captures on its own, are ignored."""

    class _SinkOutput(output_class):  # type: ignore[misc]
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
