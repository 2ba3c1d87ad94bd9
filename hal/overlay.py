"""The burned-in text overlay: white text with a dark outline, drawn into a frame's luma plane.

One routine for every camera (the simulated camera and the Pi's ``pre_callback``), so what a
court sees burned into a Pi recording is what the tests render here. Pure numpy and OpenCV on a
buffer the caller owns; cv2 is imported on first use, so importing this module costs nothing on
a unit without an overlay. It must not allocate a full frame per call: it works in the text's
own bounding box.

Why the outline is a dilation and not a second, thicker ``putText``: OpenCV advances each Hershey
glyph by an amount that grows with the stroke thickness, so a thicker pass drifts to the right of
the thin one and leaves a ghost glyph after the text (``DEMO-0001`` read as ``DEMO-00011`` at
640x480). Dilating the rasterised text gives an outline that is, by construction, within
``outline_px`` of a text pixel, at every resolution and scale.

Threading: none of its own; it draws on the caller's thread into the caller's buffer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

TEXT_LUMA = 235
"""Video-range white: the text itself."""
OUTLINE_LUMA = 16
"""Video-range black: the outline that keeps the text legible on any background."""

SUPPORTED_RESOLUTIONS: tuple[tuple[int, int], ...] = (
    (512, 288),
    (640, 480),
    (1280, 720),
    (1536, 864),
    (1920, 1080),
    (2304, 1296),
    (3840, 2160),
    (4096, 2160),
)
"""The frame sizes the profiles and the Camera Module 3's modes use; the style (scale and
thickness) follows the width, and the tests render every width the config accepts."""


@dataclass(frozen=True, slots=True)
class TextStyle:
    """How text is drawn at one frame width: Hershey simplex scale, stroke and outline."""

    scale: float
    thickness: int
    outline_px: int
    line_px: int
    """Distance between the baselines of two lines of text."""

    @classmethod
    def for_width(cls, width: int) -> TextStyle:
        """The style for a frame ``width`` pixels wide (about 50 characters across the frame)."""
        scale = width / 1100
        thickness = max(1, round(width / 480))
        return cls(
            scale=scale,
            thickness=thickness,
            outline_px=max(1, (thickness + 1) // 2),
            line_px=int(32 * scale) + 8,
        )


def _cv2() -> Any:
    import cv2

    return cv2


def require_cv2() -> None:
    """Import OpenCV now (``ImportError`` if it is missing), so a backend can find out at start
    rather than on its first frame."""
    _cv2()


def text_box(text: str, style: TextStyle) -> tuple[int, int, int]:
    """(width, height above the baseline, depth below it) of ``text`` without the outline."""
    cv2 = _cv2()
    (w, h), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, style.scale, style.thickness)
    return int(w), int(h), int(baseline)


def draw_text(
    luma: npt.NDArray[np.uint8],
    text: str,
    origin: tuple[int, int],
    style: TextStyle,
    *,
    text_luma: int = TEXT_LUMA,
    outline_luma: int = OUTLINE_LUMA,
) -> None:
    """Draw ``text`` with its baseline starting at ``origin`` (x, y) into the 2-D ``luma`` plane.

    The text is rasterised once into a mask of its bounding box; the outline is that mask
    dilated by ``style.outline_px``. Text running off the frame is clipped, never wrapped.
    ``luma`` may be a strided view (a picamera2 ``MappedArray`` row slice): only the box is
    touched.
    """
    if luma.ndim != 2:
        raise ValueError(f"draw_text needs a 2-D luma plane (got shape {luma.shape})")
    cv2 = _cv2()
    w, h, depth = text_box(text, style)
    pad = style.outline_px + style.thickness
    x, y = origin
    # The box in frame coordinates, then clipped to the frame.
    bx0, by0 = x - pad, y - h - pad
    bx1, by1 = x + w + pad, y + depth + pad
    fx0, fy0 = max(0, bx0), max(0, by0)
    fx1, fy1 = min(luma.shape[1], bx1), min(luma.shape[0], by1)
    if fx0 >= fx1 or fy0 >= fy1:
        return
    mask = np.zeros((by1 - by0, bx1 - bx0), dtype=np.uint8)
    cv2.putText(
        mask,
        text,
        (x - bx0, y - by0),
        cv2.FONT_HERSHEY_SIMPLEX,
        style.scale,
        255,
        style.thickness,
        cv2.LINE_8,
    )
    k = 2 * style.outline_px + 1
    outline = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    sub = (slice(fy0 - by0, fy1 - by0), slice(fx0 - bx0, fx1 - bx0))
    roi = luma[fy0:fy1, fx0:fx1]
    roi[outline[sub] > 0] = outline_luma
    roi[mask[sub] > 0] = text_luma
