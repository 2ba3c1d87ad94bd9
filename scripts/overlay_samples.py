"""Render one frame PNG of the burned-in overlay per supported resolution, to look at.

    .venv/bin/python scripts/overlay_samples.py --out .overlay-samples

For every size in ``hal.overlay.SUPPORTED_RESOLUTIONS`` it writes ``sim-WxH.png``: the first frame
of the simulated camera, encoded by libx264 and decoded again (what a recording holds), and
``pi-WxH.png``: the Pi backend's one-line layout (time and device id) drawn by the same routine
on a frame of alternating bright and dark bands, the hardest backgrounds for white text.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

import av
import cv2
import numpy as np

from hal.overlay import SUPPORTED_RESOLUTIONS, TextStyle, draw_text
from hal.types import EncodedFrame
from simulator.camera import SimCamera
from simulator.clock import VirtualClock

DEVICE_ID = "DEMO-0001"
START_UTC_US = 1_767_225_599_987_000  # 2025-12-31 23:59:59.987 UTC: every digit position used


def sim_frame(width: int, height: int) -> np.ndarray:
    clock = VirtualClock(START_UTC_US)
    cam = SimCamera(clock, width, height, 10.0, 4_000_000, 1.0, DEVICE_ID)
    frames: list[EncodedFrame] = []
    cam.start(frames.append)
    clock.run_until(50_000)
    cam.stop()
    ctx = av.CodecContext.create("h264", "r")
    for packet in ctx.parse(frames[0].data) + ctx.parse(None):
        for frame in ctx.decode(packet):
            return np.asarray(frame.to_ndarray(format="bgr24"))
    raise RuntimeError(f"{width}x{height}: the first frame did not decode")


def pi_frame(width: int, height: int) -> np.ndarray:
    luma = np.full((height, width), 40, dtype=np.uint8)
    band = max(1, width // 12)
    for x in range(band, width, 2 * band):
        luma[:, x : x + band] = 220  # bright bands under the text as well as dark ones
    stamp = dt.datetime.fromtimestamp(START_UTC_US / 1e6, tz=dt.UTC)
    style = TextStyle.for_width(width)
    # The same call as hal.picamera.Picamera2Camera._burn_in.
    text = f"{stamp:%Y-%m-%d %H:%M:%S}Z {DEVICE_ID}"
    draw_text(luma, text, (16, 16 + int(40 * style.scale)), style)
    return np.asarray(cv2.cvtColor(luma, cv2.COLOR_GRAY2BGR))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(".overlay-samples"))
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    for width, height in SUPPORTED_RESOLUTIONS:
        for name, image in (
            (f"sim-{width}x{height}.png", sim_frame(width, height)),
            (f"pi-{width}x{height}.png", pi_frame(width, height)),
        ):
            path = out / name
            cv2.imwrite(str(path), image)
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
