"""A camera bench for ``Picamera2Camera`` built from picamera2's own classes.

Only the camera device is replaced: ``BenchPicamera2`` does what ``Picamera2`` does around an
encoder (``create_video_configuration``, ``configure``, ``start_recording`` as
``start_encoder`` sets the encoder up, ``stop_recording``, ``close``, ``pre_callback`` on each
request) and hands the encoder picamera2's real ``CompletedRequest`` objects over real buffers: a
ring of memfds standing for the dmabufs, mapped once as picamera2's ``DmaAllocator`` maps them
(only its DMA cache-sync ioctl is left out: a memfd is coherent) and read through picamera2's own
``MappedArray`` and ``Helpers``. So the encoder (``LibavH264Encoder`` on a Pi 5), the output
glue and the overlay run exactly as on a unit, minus libcamera's capture.

Import this module only where ``PICAMERA2_MISSING`` is None.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import threading
from dataclasses import dataclass, field
from typing import Any

from hal.errors import HardwareError
from hal.picamera import Picamera2Api, load_picamera2

try:
    load_picamera2()
    from picamera2.encoders import LibavH264Encoder
except (HardwareError, ImportError) as exc:  # the skip reason says which
    PICAMERA2_MISSING: str | None = str(exc)
else:
    PICAMERA2_MISSING = None


@dataclass
class _Plane:
    fd: int
    length: int


@dataclass
class _PlaneMetadata:
    bytes_used: int


@dataclass
class _BufferMetadata:
    planes: list[_PlaneMetadata]


@dataclass
class _FrameBuffer:
    """The shape of ``libcamera.FrameBuffer`` that picamera2's ``Sync`` maps."""

    planes: list[_Plane]
    metadata: _BufferMetadata


BUFFER_COUNT = 6
"""picamera2's default ``buffer_count`` for a video configuration."""


def _bench_allocator() -> Any:
    """An ``Allocator`` in the pattern of picamera2's ``DmaAllocator`` over memfds."""
    from picamera2.allocators.allocator import Allocator, Sync

    class BenchSync(Sync):  # type: ignore[misc]
        def __init__(self, allocator: Any, fb: Any, write: bool) -> None:
            self._allocator, self._fb = allocator, fb

        def __enter__(self) -> Any:
            return self._allocator.mapped_buffers[id(self._fb)]

        def __exit__(self, *exc: object) -> None:
            pass

    class BenchAllocator(Allocator):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.sync = BenchSync
            self.mapped_buffers: dict[int, mmap.mmap] = {}
            self.frame_buffers: list[_FrameBuffer] = []

        def allocate_ring(self, size: int) -> None:
            for _ in range(BUFFER_COUNT):
                fd = os.memfd_create("bench-frame")
                os.ftruncate(fd, size)
                fb = _FrameBuffer([_Plane(fd, size)], _BufferMetadata([_PlaneMetadata(size)]))
                self.frame_buffers.append(fb)
                self.mapped_buffers[id(fb)] = mmap.mmap(fd, size, mmap.MAP_SHARED)

        def close(self) -> None:
            for fb in self.frame_buffers:
                os.close(fb.planes[0].fd)
            for memory in self.mapped_buffers.values():
                with contextlib.suppress(BufferError):  # an array may still view it
                    memory.close()
            self.frame_buffers, self.mapped_buffers = [], {}

    return BenchAllocator()


@dataclass
class _LibcameraRequest:
    """The shape of ``libcamera.Request`` that ``CompletedRequest`` reads."""

    buffers: dict[Any, _FrameBuffer]
    metadata: dict[Any, Any]


@dataclass
class BenchPicamera2:
    """Stands in for ``picamera2.Picamera2`` (the device), see the module docstring."""

    camera_num: int
    fail_on: str = ""
    """Raise ``RuntimeError`` from this step ("configure"), as libcamera does on a bad config."""
    closed: bool = False
    pre_callback: Any = None
    encoder: Any = None
    camera_config: dict[str, Any] = field(default_factory=dict)
    # What CompletedRequest reads from its Picamera2.
    request_lock: Any = field(default_factory=threading.Lock)
    stop_count: int = 0
    configure_count: int = 0
    camera: Any = None  # no libcamera camera: released requests are not re-queued
    started: bool = False

    def __post_init__(self) -> None:
        from picamera2.request import Helpers

        self.allocator = _bench_allocator()
        self.frames = 0
        self.helpers = Helpers(self)
        self.stream_map: dict[str, Any] = {"main": "main-stream"}

    def create_video_configuration(
        self, main: dict[str, Any], controls: dict[str, Any]
    ) -> dict[str, Any]:
        width, height = main["size"]
        return {
            "main": {
                "size": (width, height),
                "format": main["format"],
                "stride": width,
                "framesize": width * height * 3 // 2,
            },
            "controls": dict(controls),
        }

    def configure(self, config: dict[str, Any]) -> None:
        if self.fail_on == "configure":
            raise RuntimeError("Failed to configure camera")
        self.camera_config = config
        self.configure_count += 1
        self.allocator.allocate_ring(config["main"]["framesize"])

    def start_recording(self, encoder: Any, output: Any) -> None:
        main = self.camera_config["main"]
        encoder.output = output
        encoder.name = "main"
        encoder.width, encoder.height = main["size"]
        encoder.format = main["format"]
        encoder.stride = main["stride"]
        encoder.start()
        self.encoder = encoder
        self.started = True

    def stop_recording(self) -> None:
        self.started = False
        self.stop_count += 1
        self.encoder.stop()

    def close(self) -> None:
        self.closed = True
        self.allocator.close()

    def capture(self, sensor_ns: int, luma: int = 128) -> None:
        """One frame through ``pre_callback`` and the encoder, as picamera2's threads pass it;
        nothing once the device is closed (a closed camera completes no requests)."""
        from libcamera import controls
        from picamera2.request import CompletedRequest

        if self.closed:
            return
        main = self.camera_config["main"]
        width, height = main["size"]
        buffer = self.allocator.frame_buffers[self.frames % BUFFER_COUNT]
        self.frames += 1
        memory = self.allocator.mapped_buffers[id(buffer)]
        memory[: width * height] = bytes([luma]) * (width * height)
        memory[width * height :] = bytes([128]) * (len(memory) - width * height)
        raw = _LibcameraRequest(
            {self.stream_map["main"]: buffer}, {controls.SensorTimestamp: sensor_ns}
        )
        request = CompletedRequest(raw, self)
        if self.pre_callback is not None:
            self.pre_callback(request)
        self.encoder.encode("main", request)
        request.release()


@dataclass
class Bench:
    """The ``Picamera2Api`` a test hands to ``Picamera2Camera``, and the devices it opened."""

    encoder_class: Any
    fail_on: str = ""
    opened: list[BenchPicamera2] = field(default_factory=list)

    def api(self) -> Picamera2Api:
        from picamera2.outputs import Output

        def open_camera(camera_num: int) -> BenchPicamera2:
            device = BenchPicamera2(camera_num, self.fail_on)
            self.opened.append(device)
            return device

        return Picamera2Api(open_camera, self.encoder_class, Output)


def libav_bench(fail_on: str = "") -> Bench:
    """A bench with picamera2's Pi 5 encoder."""
    return Bench(LibavH264Encoder, fail_on)
