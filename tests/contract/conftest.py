"""Contract-suite set-up.

picamera2 (installed by ``scripts/picamera2-for-tests.sh`` on machines without a Pi) imports
``pykms`` for its DRM preview; ``shims/pykms.py`` stands in for it when no real one exists. See
that module for why this is honest: the camera backend never uses a preview.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("pykms") is None and importlib.util.find_spec("kms") is None:
    sys.path.append(str(Path(__file__).parent / "shims"))
