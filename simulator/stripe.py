"""The simulated camera's frame stripe (CONTRACT §6): a frame number drawn into, and read from,
the top 16 pixel rows.

32 cells of 16x16 pixels at x = 16*i, most significant bit first; white (255) is 1, black (0) is 0.
This module only draws and reads; it must not know about encoders or files.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

STRIPE_HEIGHT_PX = 16
CELL_PX = 16
BITS = 32
STRIPE_WIDTH_PX = CELL_PX * BITS  # 512: the narrowest frame that can carry the stripe
_MARGIN_PX = 4
"""Cells are read from their 8x8 centre, away from block edges where H.264 ringing lives."""

_SHIFTS = np.arange(BITS - 1, -1, -1, dtype=np.uint64)


def draw_stripe(image: npt.NDArray[np.uint8], frame_number: int) -> None:
    """Draw ``frame_number`` into the top rows of ``image`` in place.

    ``image`` is a luma plane (H x W) or a BGR image (H x W x 3); in BGR every channel is set,
    so white converts to full luma.
    """
    if not 0 <= frame_number < 1 << BITS:
        raise ValueError(f"frame number {frame_number} does not fit in {BITS} bits")
    if image.shape[1] < STRIPE_WIDTH_PX or image.shape[0] < STRIPE_HEIGHT_PX:
        raise ValueError(f"image {image.shape} is too small for the frame stripe")
    bits = (np.uint64(frame_number) >> _SHIFTS) & np.uint64(1)
    cells = (bits.astype(np.uint8) * np.uint8(255)).repeat(CELL_PX)
    band = image[:STRIPE_HEIGHT_PX, :STRIPE_WIDTH_PX]
    if band.ndim == 3:
        band[...] = cells[np.newaxis, :, np.newaxis]
    else:
        band[...] = cells[np.newaxis, :]


def read_stripe(gray: npt.NDArray[np.uint8]) -> int:
    """Read the frame number from a decoded luma plane (H x W, uint8).

    Each cell's 8x8 centre is averaged and thresholded at 128, which survives the blocking and
    ringing of a lossy encode.
    """
    if gray.ndim != 2:
        raise ValueError("read_stripe needs a single-channel (luma) image")
    if gray.shape[1] < STRIPE_WIDTH_PX or gray.shape[0] < STRIPE_HEIGHT_PX:
        raise ValueError(f"image {gray.shape} is too small for the frame stripe")
    centre = gray[_MARGIN_PX : CELL_PX - _MARGIN_PX, :STRIPE_WIDTH_PX].astype(np.float32)
    cells = centre.reshape(CELL_PX - 2 * _MARGIN_PX, BITS, CELL_PX)
    means = cells[:, :, _MARGIN_PX : CELL_PX - _MARGIN_PX].mean(axis=(0, 2))
    value = 0
    for bit in means >= 128.0:
        value = (value << 1) | int(bit)
    return value
