"""A stand-in for ``pykms`` (kms++'s DRM/KMS bindings), for the contract tests only.

picamera2 imports its DRM preview at package import, and that module reads a few
``pykms.PixelFormat`` names while defining its ``DrmPreview`` class. kms++ is a Raspberry Pi OS
package built from source, not on PyPI or in Debian. The unit never opens a preview, so the tests
need the names and nothing else: anything else is missing (``AttributeError``), so a test that
reached a preview would fail loudly. ``tests/contract/conftest.py`` puts this directory on
``sys.path`` only when no real ``pykms`` or ``kms`` is importable.
"""

from __future__ import annotations

import enum


class PixelFormat(enum.Enum):
    """DRM fourcc names as kms++ spells them (only what picamera2's class body reads)."""

    RGB888 = "RG24"
    BGR888 = "BG24"
    XRGB8888 = "XR24"
    XBGR8888 = "XB24"
    YUV420 = "YU12"
    YVU420 = "YV12"
    NV12 = "NV12"
    NV21 = "NV21"
    YUYV = "YUYV"
    YVYU = "YVYU"
