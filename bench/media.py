"""Pre-encoded 1080p30 10 Mbit/s H.264 for the recorder benchmarks, generated once and cached.

The scene is a panning noise texture with moving shapes, busy enough that libx264 (ultrafast,
ABR at 10 Mbit/s, 1 s GOP, no B-frames, SPS/PPS on every keyframe: the Pi encoder's settings)
really spends about 10 Mbit/s; ``load_replay`` reports the actual rate. It must not be counted in
any recorder figure: encoding happens here, once, and the benchmarks replay the access units.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
from av.video.codeccontext import VideoCodecContext

from hal.types import EncodedFrame

CACHE = Path(".bench")
WIDTH, HEIGHT, FPS = 1920, 1080, 30
BITRATE_BPS = 10_000_000
GOP = 30
SECONDS = 10  # a whole number of GOPs, so looping the clip restarts on a keyframe


@dataclass(frozen=True)
class Replay:
    """Access units of the cached clip: (Annex B bytes, is_keyframe), from a keyframe on."""

    units: list[tuple[bytes, bool]]
    path: Path

    @property
    def bytes_per_s(self) -> float:
        return sum(len(d) for d, _ in self.units) / (len(self.units) / FPS)

    def frames(self, count: int, start_index: int = 0, start_us: int = 0) -> list[EncodedFrame]:
        """``count`` frames looping the clip, timed at 30 fps from ``start_us``."""
        n = len(self.units)
        out = []
        for i in range(start_index, start_index + count):
            data, key = self.units[i % n]
            out.append(EncodedFrame(data, start_us + round(i * 1_000_000 / FPS), key, i))
        return out


def _encoder() -> VideoCodecContext:
    ctx = av.CodecContext.create("libx264", "w")
    assert isinstance(ctx, VideoCodecContext)
    ctx.width, ctx.height, ctx.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    ctx.time_base = Fraction(1, FPS)
    ctx.framerate = Fraction(FPS)
    ctx.bit_rate = BITRATE_BPS
    ctx.gop_size = GOP
    ctx.max_b_frames = 0
    ctx.options = {
        "preset": "ultrafast",
        "tune": "zerolatency",
        "x264-params": (
            f"repeat-headers=1:annexb=1:keyint={GOP}:min-keyint={GOP}:scenecut=0:bframes=0"
            f":vbv-maxrate={BITRATE_BPS // 1000}:vbv-bufsize={BITRATE_BPS // 1000}"
        ),
    }
    ctx.open()
    return ctx


def _generate(path: Path) -> None:
    import numpy as np  # only to make the clip: the memory benchmark must not carry it

    rng = np.random.default_rng(7)
    # A texture twice the frame size, blurred a little (2x2 box) so it looks like a busy street
    # rather than pure noise; the frame is a window panning across it.
    tex = rng.integers(0, 256, (HEIGHT * 2 // 2, WIDTH * 2 // 2), dtype=np.uint8)
    tex = np.repeat(np.repeat(tex, 2, axis=0), 2, axis=1)
    chroma = rng.integers(90, 170, (HEIGHT, WIDTH), dtype=np.uint8)
    ctx = _encoder()
    frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as out:
        for i in range(SECONDS * FPS):
            dx, dy = (i * 7) % WIDTH, (i * 3) % HEIGHT
            y = tex[dy : dy + HEIGHT, dx : dx + WIDTH].copy()
            box = 200 + (i * 13) % (WIDTH - 600)
            y[300:700, box : box + 400] = 230 - (i % 40)
            frame.planes[0].update(y.tobytes())
            frame.planes[1].update(chroma[dy // 2 : dy // 2 + HEIGHT // 2, : WIDTH // 2].tobytes())
            frame.planes[2].update(chroma[: HEIGHT // 2, dx // 2 : dx // 2 + WIDTH // 2].tobytes())
            frame.pts = i
            for packet in ctx.encode(frame):
                out.write(bytes(packet))
        for packet in ctx.encode(None):
            out.write(bytes(packet))
    tmp.replace(path)


def load_replay() -> Replay:
    """The cached clip (generated on first use, ~1 min), as access units."""
    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"replay-{HEIGHT}p{FPS}-{BITRATE_BPS // 1_000_000}mbit.h264"
    if not path.exists():
        _generate(path)
    units: list[tuple[bytes, bool]] = []
    with av.open(str(path), format="h264") as container:
        for packet in container.demux(video=0):
            if packet.size == 0 or (not units and not packet.is_keyframe):
                continue
            units.append((bytes(packet), bool(packet.is_keyframe)))
    keep = len(units) // GOP * GOP
    return Replay(units[:keep], path)


if __name__ == "__main__":
    r = load_replay()
    print(json.dumps({"frames": len(r.units), "mbit_per_s": r.bytes_per_s * 8 / 1e6}))
