"""The simulated camera: a cheap moving scene, burned-in time and device id, the frame stripe,
encoded to real H.264 by libx264 on simulated time.

It implements ``hal.protocols.Camera`` with the same encoder settings a Pi unit uses (fixed GOP,
no B-frames, SPS/PPS repeated before every keyframe, Annex B). It must not read the wall clock:
frames are produced by events on the ``VirtualClock``, so a run is deterministic.

Threading: every method and the sink run on the thread that advances the virtual clock.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections import deque
from fractions import Fraction

import av
import cv2
import numpy as np
import numpy.typing as npt
from av.video.codeccontext import VideoCodecContext

from hal.errors import ConfigError, HardwareError
from hal.overlay import TextStyle, draw_text
from hal.protocols import FrameSink
from hal.types import EncodedFrame
from simulator.clock import Handle, VirtualClock
from simulator.stripe import STRIPE_HEIGHT_PX, STRIPE_WIDTH_PX, draw_stripe

log = logging.getLogger(__name__)


class SimCamera:
    """A ``Camera`` that renders and encodes a synthetic scene, or replays an H.264 file."""

    def __init__(
        self,
        clock: VirtualClock,
        width: int,
        height: int,
        fps: float,
        bitrate_bps: int,
        keyframe_interval_s: float,
        device_id: str,
        overlay: bool = True,
        replay_path: str | None = None,
    ) -> None:
        if width < STRIPE_WIDTH_PX:
            raise ConfigError(
                f"camera.width must be at least {STRIPE_WIDTH_PX} for the simulated camera's "
                f"frame stripe (got {width})"
            )
        if width % 2 or height % 2:
            raise ConfigError(f"camera.width and camera.height must be even (got {width}x{height})")
        if height < 4 * STRIPE_HEIGHT_PX:
            raise ConfigError(
                f"camera.height must be at least {4 * STRIPE_HEIGHT_PX} (got {height})"
            )
        if fps <= 0:
            raise ConfigError(f"camera.fps must be positive (got {fps})")
        if bitrate_bps <= 0:
            raise ConfigError(f"camera.bitrate_bps must be positive (got {bitrate_bps})")
        if keyframe_interval_s <= 0:
            raise ConfigError(
                f"camera.keyframe_interval_s must be positive (got {keyframe_interval_s})"
            )
        self._clock = clock
        self._width = width
        self._height = height
        self._fps = float(fps)
        self._bitrate_bps = bitrate_bps
        self._gop = max(1, round(fps * keyframe_interval_s))
        self._device_id = device_id
        self._overlay = overlay
        self._replay_path = replay_path

        self._sink: FrameSink | None = None
        self._timer: Handle | None = None
        self._start_us = 0
        self._next_index = 0
        self._encoder: VideoCodecContext | None = None
        # Frames handed to the encoder and not yet out: (frame_index, pts_us), in order.
        self._pending: deque[tuple[int, int]] = deque()
        self._replay_units: list[tuple[bytes, bool]] = []

        # Contiguous scratch planes reused for every frame (cv2 draws only into contiguous arrays).
        self._y = np.empty((height, width), dtype=np.uint8)
        self._u = np.empty((height // 2, width // 2), dtype=np.uint8)
        self._v = np.empty((height // 2, width // 2), dtype=np.uint8)
        self._bg_y, self._bg_u, self._bg_v = _background(width, height)
        self._text_style = TextStyle.for_width(width)
        if overlay:
            # The device id never changes, so it is drawn once into the background.
            self._put_text(self._bg_y, device_id, row=1)
        # One encoder input frame, reused: libx264 copies the picture inside encode(), so the
        # planes are free again when encode() returns (sliced threads, no lookahead).
        self._av_frame = av.VideoFrame(width, height, "yuv420p")
        self._av_planes = [
            np.frombuffer(memoryview(plane), dtype=np.uint8).reshape(-1, plane.line_size)[
                :rows, :cols
            ]
            for plane, (rows, cols) in zip(
                self._av_frame.planes,
                ((height, width), (height // 2, width // 2), (height // 2, width // 2)),
                strict=True,
            )
        ]

    # -- hal.protocols.Camera ----------------------------------------------------------------

    @property
    def width(self) -> int:
        return self._width

    @property
    def height(self) -> int:
        return self._height

    @property
    def fps(self) -> float:
        return self._fps

    @property
    def gop_frames(self) -> int:
        """Frames from one keyframe to the next."""
        return self._gop

    def start(self, sink: FrameSink) -> None:
        if self._sink is not None:
            raise RuntimeError("camera already started")
        if self._replay_path is not None:
            self._replay_units = _load_access_units(self._replay_path)
        else:
            self._encoder = self._open_encoder()
        self._sink = sink
        self._pending.clear()
        self._next_index = 0
        self._start_us = self._clock.monotonic_us()
        self._timer = self._clock.call_at(self._start_us, self._capture)

    def stop(self) -> None:
        """Stop capture. Nothing reaches the sink after this returns; queued output is dropped."""
        self._sink = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._encoder is not None:
            # Drain so libx264 frees its frames; the packets are discarded on purpose.
            with contextlib.suppress(av.error.EOFError):  # already flushed
                self._encoder.encode(None)
            self._encoder = None
        self._pending.clear()

    # -- frame production --------------------------------------------------------------------

    def _frame_time_us(self, index: int) -> int:
        # Exact integer timing: frame n at start + round(n * 1e6 / fps), so no drift accumulates.
        return self._start_us + round(index * 1_000_000 / self._fps)

    def _capture(self) -> None:
        if self._sink is None:
            return
        index = self._next_index
        self._next_index += 1
        pts_us = self._clock.monotonic_us()
        if self._replay_units:
            data, is_key = self._replay_units[index % len(self._replay_units)]
            self._sink(EncodedFrame(data, pts_us, is_key, index))
        else:
            self._encode(index, pts_us)
        if self._sink is not None:
            self._timer = self._clock.call_at(self._frame_time_us(index + 1), self._capture)

    def _encode(self, index: int, pts_us: int) -> None:
        assert self._encoder is not None
        self._render(index, pts_us)
        frame = self._av_frame
        for dst, src in zip(self._av_planes, (self._y, self._u, self._v), strict=True):
            np.copyto(dst, src)
        frame.pts = pts_us - self._start_us
        self._pending.append((index, pts_us))
        for packet in self._encoder.encode(frame):
            if not self._pending:
                raise HardwareError("simulated encoder produced more packets than frames")
            packet_index, packet_pts_us = self._pending.popleft()
            sink = self._sink
            if sink is None:
                return
            sink(EncodedFrame(bytes(packet), packet_pts_us, packet.is_keyframe, packet_index))

    def _render(self, index: int, pts_us: int) -> None:
        """Draw frame ``index`` into the reused I420 buffer. Cheap on purpose: a few shapes."""
        w, h = self._width, self._height
        t_s = (pts_us - self._start_us) / 1e6
        np.copyto(self._y, self._bg_y)
        np.copyto(self._u, self._bg_u)
        np.copyto(self._v, self._bg_v)
        # A square bouncing horizontally (orange-ish), a disc orbiting (blue-ish), a sweeping bar.
        size = h // 5
        x = int((w - size) * abs(((t_s * 0.25) % 2.0) - 1.0))
        y = h // 3
        _box((self._y, self._u, self._v), (x, y, size, size), (200, 80, 190))
        cx = int(w / 2 + (w / 4) * np.cos(t_s * 1.3))
        cy = int(h * 0.6 + (h / 6) * np.sin(t_s * 1.3))
        r = h // 10
        cv2.circle(self._y, (cx, cy), r, 90, -1)
        cv2.circle(self._u, (cx // 2, cy // 2), r // 2, 200, -1)
        cv2.circle(self._v, (cx // 2, cy // 2), r // 2, 90, -1)
        bar_x = int((t_s * w / 4) % w)
        self._y[STRIPE_HEIGHT_PX:, bar_x : bar_x + 6] = 235
        if self._overlay:
            self._burn_in(pts_us)
        draw_stripe(self._y, index)

    def _burn_in(self, pts_us: int) -> None:
        utc_us = self._clock.utc_us() + (pts_us - self._clock.monotonic_us())
        stamp = dt.datetime.fromtimestamp(utc_us / 1e6, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[
            :-3
        ]
        self._put_text(self._y, f"{stamp}Z", row=0)

    def _put_text(self, y_plane: npt.NDArray[np.uint8], text: str, row: int) -> None:
        """White text with a dark outline (``hal.overlay``), on line ``row`` below the stripe."""
        style = self._text_style
        draw_text(y_plane, text, (8, STRIPE_HEIGHT_PX + 8 + style.line_px * (row + 1)), style)

    def _open_encoder(self) -> VideoCodecContext:
        ctx = av.CodecContext.create("libx264", "w")
        if not isinstance(ctx, VideoCodecContext):
            raise HardwareError("libx264 is not a video encoder in this PyAV build")
        ctx.width = self._width
        ctx.height = self._height
        ctx.pix_fmt = "yuv420p"
        ctx.time_base = Fraction(1, 1_000_000)
        ctx.framerate = Fraction(self._fps).limit_denominator(1001)
        ctx.bit_rate = self._bitrate_bps
        ctx.gop_size = self._gop
        ctx.max_b_frames = 0
        # repeat-headers puts SPS/PPS in front of every keyframe, so each GOP decodes on its own
        # (what the Pi's encoder does with repeat=True). scenecut=0 keeps keyframes on the GOP.
        ctx.options = {
            "preset": "ultrafast",
            "tune": "zerolatency",
            "x264-params": (
                f"repeat-headers=1:annexb=1:keyint={self._gop}:min-keyint={self._gop}"
                ":scenecut=0:bframes=0"
            ),
        }
        ctx.open()
        return ctx


def _box(
    planes: tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8], npt.NDArray[np.uint8]],
    rect: tuple[int, int, int, int],
    yuv: tuple[int, int, int],
) -> None:
    y_plane, u_plane, v_plane = planes
    x, y, w, h = rect
    y_plane[y : y + h, x : x + w] = yuv[0]
    u_plane[y // 2 : (y + h) // 2, x // 2 : (x + w) // 2] = yuv[1]
    v_plane[y // 2 : (y + h) // 2, x // 2 : (x + w) // 2] = yuv[2]


def _background(
    width: int, height: int
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """A static diagonal gradient with a faint chroma tint, computed once.

    It is stepped on the 16x16 macroblock grid (8x8 in chroma) so that every background block is
    flat: x264 codes those almost for free, which keeps the simulator's encode cost on the
    moving parts (about 20 % less CPU than a smooth gradient at 640x480).
    """
    ys, xs = np.mgrid[0:height, 0:width]
    xs, ys = xs // 16 * 16, ys // 16 * 16
    bg_y = (40 + 150 * (xs / width * 0.6 + ys / height * 0.4)).astype(np.uint8)
    cys, cxs = np.mgrid[0 : height // 2, 0 : width // 2]
    cxs, cys = cxs // 8 * 8, cys // 8 * 8
    bg_u = (112 + 32 * cxs / (width // 2)).astype(np.uint8)
    bg_v = (144 - 32 * cys / (height // 2)).astype(np.uint8)
    return bg_y, bg_u, bg_v


def _load_access_units(path: str) -> list[tuple[bytes, bool]]:
    """Every access unit of a raw Annex B H.264 file with its keyframe flag, from the first
    keyframe on, so that looping the list always restarts on a decodable frame."""
    units: list[tuple[bytes, bool]] = []
    try:
        with av.open(path, format="h264") as container:
            for packet in container.demux(video=0):
                if packet.size == 0:
                    continue
                if not units and not packet.is_keyframe:
                    continue
                units.append((bytes(packet), bool(packet.is_keyframe)))
    except (OSError, av.error.FFmpegError) as exc:
        raise ConfigError(f"camera replay file {path}: {exc}") from exc
    if not units:
        raise ConfigError(f"camera replay file {path}: no keyframe found")
    return units
