"""The frame stripe (CONTRACT §6): exact layout, round trips, and robustness to lossy coding."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.stripe import draw_stripe, read_stripe

FRAME_NUMBERS = st.integers(min_value=0, max_value=2**32 - 1)


def test_layout_is_32_cells_msb_first_white_for_one() -> None:
    y = np.full((64, 640), 77, dtype=np.uint8)
    draw_stripe(y, 0b1011 | (1 << 31))
    cells = [int(y[0, 16 * i]) for i in range(32)]
    assert cells[0] == 255  # the most significant bit comes first
    assert cells[1:28] == [0] * 27
    assert cells[28:] == [255, 0, 255, 255]
    for i in range(32):
        cell = y[:16, 16 * i : 16 * i + 16]
        assert (cell == cell[0, 0]).all()  # each cell is a uniform 16x16 block
    assert (y[16:] == 77).all()  # nothing below the 16 rows is touched
    assert (y[:16, 512:] == 77).all()  # nor right of the 32 cells


@given(FRAME_NUMBERS)
def test_round_trip_luma(number: int) -> None:
    y = np.zeros((32, 512), dtype=np.uint8)
    draw_stripe(y, number)
    assert read_stripe(y) == number


@given(FRAME_NUMBERS)
def test_round_trip_bgr_sets_every_channel(number: int) -> None:
    bgr = np.zeros((32, 600, 3), dtype=np.uint8)
    draw_stripe(bgr, number)
    assert (bgr[..., 0] == bgr[..., 2]).all()
    assert read_stripe(bgr[..., 1]) == number


@given(FRAME_NUMBERS, st.integers(min_value=0, max_value=2**31))
def test_survives_noise_and_edge_ringing(number: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = np.zeros((16, 512), dtype=np.uint8)
    draw_stripe(y, number)
    noisy = y.astype(np.int16) + rng.integers(-90, 91, size=y.shape, dtype=np.int16)
    # Ringing at block edges: the outer 3 pixels of every cell are garbage.
    noisy[:, np.arange(512) % 16 < 3] = rng.integers(0, 256, size=(16, 3 * 32))
    assert read_stripe(np.clip(noisy, 0, 255).astype(np.uint8)) == number


def test_rejects_numbers_and_images_that_do_not_fit() -> None:
    with pytest.raises(ValueError, match="32 bits"):
        draw_stripe(np.zeros((16, 512), np.uint8), 2**32)
    with pytest.raises(ValueError, match="32 bits"):
        draw_stripe(np.zeros((16, 512), np.uint8), -1)
    with pytest.raises(ValueError, match="too small"):
        draw_stripe(np.zeros((16, 511), np.uint8), 1)
    with pytest.raises(ValueError, match="too small"):
        read_stripe(np.zeros((15, 512), np.uint8))
    with pytest.raises(ValueError, match="single-channel"):
        read_stripe(np.zeros((16, 512, 3), np.uint8))
