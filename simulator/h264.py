"""Reading simulated video back: decode H.264 (raw Annex B, MPEG-TS or MP4) and read every frame's
stripe number. For tests and checks; it must not be used on the recording path.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable

import av
import numpy as np

from hal.types import EncodedFrame
from simulator.stripe import STRIPE_HEIGHT_PX, read_stripe

VideoSource = str | os.PathLike[str] | bytes | Iterable[EncodedFrame]


def read_frame_numbers(source: VideoSource) -> list[int]:
    """The stripe number of every decoded frame, in presentation order.

    ``source`` is a file path (any container FFmpeg probes: .mp4, .ts, .h264), raw Annex B bytes,
    or an iterable of ``EncodedFrame`` (concatenated as Annex B).
    """
    if isinstance(source, (str, os.PathLike)):
        container = av.open(os.fspath(source), mode="r")
    else:
        data = source if isinstance(source, bytes) else b"".join(f.data for f in source)
        container = av.open(io.BytesIO(data), mode="r", format="h264")
    numbers: list[int] = []
    with container:
        for frame in container.decode(video=0):
            plane = frame.planes[0]
            rows = np.frombuffer(memoryview(plane), dtype=np.uint8).reshape(-1, plane.line_size)
            numbers.append(read_stripe(rows[:STRIPE_HEIGHT_PX, : frame.width]))
    return numbers
