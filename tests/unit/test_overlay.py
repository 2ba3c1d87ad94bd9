"""hal.overlay: the outline never leaves a ghost glyph, at every width the config accepts.

Rendered and read back: the white text must be exactly the text drawn alone, and every outline
pixel must touch it (within ``outline_px``). A second, thicker ``putText`` for the outline fails
this (its glyphs advance further and drift right of the text), which is the defect it guards.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from hal.overlay import OUTLINE_LUMA, SUPPORTED_RESOLUTIONS, TEXT_LUMA, TextStyle, draw_text

TEXTS = ("DEMO-0001", "2026-11-29 23:59:59.987Z", "2026-11-29 15:09:40Z DEMO-0001")
BACKGROUND = 128
# Every even width the config accepts (camera.width 64..4096) in steps of 62, plus the shipped ones.
WIDTHS = sorted({*range(64, 4097, 62), 4096, *(w for w, _ in SUPPORTED_RESOLUTIONS)})


def text_alone(shape: tuple[int, int], text: str, origin: tuple[int, int], s: TextStyle) -> Any:
    plane = np.zeros(shape, dtype=np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(plane, text, origin, font, s.scale, 255, s.thickness, cv2.LINE_8)
    return plane > 0


def within(mask: npt.NDArray[np.bool_], of: npt.NDArray[np.bool_], px: int) -> bool:
    """Whether every pixel of ``mask`` lies within ``px`` (Chebyshev) of a pixel of ``of``."""
    grown = cv2.dilate(of.astype(np.uint8), np.ones((2 * px + 1, 2 * px + 1), np.uint8)) > 0
    return bool(np.all(grown[mask]))


@pytest.mark.parametrize("width", WIDTHS)
def test_outline_hugs_the_text_at_every_width(width: int) -> None:
    style = TextStyle.for_width(width)
    for text in TEXTS:
        w = int(cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, style.scale, style.thickness)[0][0])
        shape = (style.line_px * 3, w + 64)
        origin = (16, style.line_px * 2)
        plane = np.full(shape, BACKGROUND, dtype=np.uint8)
        draw_text(plane, text, origin, style)
        alone = text_alone(shape, text, origin, style)
        white = plane == TEXT_LUMA
        dark = plane == OUTLINE_LUMA
        assert np.array_equal(white, alone), f"{width}px {text!r}: the text itself changed"
        assert dark.any(), f"{width}px {text!r}: no outline"
        assert within(dark, alone, style.outline_px), f"{width}px {text!r}: ghost outline"
        assert np.all((plane == BACKGROUND) | white | dark)


def test_two_pass_put_text_leaves_a_ghost_which_the_check_catches() -> None:
    """The old drawing (a thicker putText under the text) fails the read-back at 640 px."""
    style = TextStyle.for_width(640)
    text = "DEMO-0001"
    shape, origin = (120, 400), (16, 80)
    plane = np.full(shape, BACKGROUND, dtype=np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(plane, text, origin, font, style.scale, OUTLINE_LUMA, style.thickness + 2)
    cv2.putText(plane, text, origin, font, style.scale, TEXT_LUMA, style.thickness)
    alone = text_alone(shape, text, origin, style)
    assert not within(plane == OUTLINE_LUMA, alone, style.outline_px + 1)


def test_text_off_the_frame_is_clipped_and_a_strided_view_is_drawn_in_place() -> None:
    style = TextStyle.for_width(640)
    buf = np.full((300, 704), BACKGROUND, dtype=np.uint8)  # a picamera2 stride wider than the frame
    luma = buf[:240, :640]
    draw_text(luma, "2026-11-29 15:09:40Z DEMO-0001 " * 3, (600, 10), style)
    assert (luma == TEXT_LUMA).any()
    assert np.all(buf[:, 640:] == BACKGROUND) and np.all(buf[240:] == BACKGROUND)
    draw_text(luma, "X", (-500, -500), style)  # wholly outside: nothing, no error
    with pytest.raises(ValueError, match="2-D"):
        draw_text(np.zeros((4, 4, 3), np.uint8), "X", (0, 2), style)
