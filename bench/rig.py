"""Shared set-up for the benchmarks: a real Recorder on a real Sealer over a store on disk, a
provisioned simulated unit, and the machine description that goes into every note.

Nothing here measures; it only builds what the benchmarks drive. It must not bypass the
recorder's or the sealer's real code paths (no fake sinks, no in-memory stores).
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.media import BITRATE_BPS, FPS, HEIGHT, WIDTH
from evidence.format import SUITE_P384
from evidence.keys import AgencyPublicKey
from evidence.sealer import Sealer
from hal.software_key import SoftwareDeviceKey
from hal.types import Pattern
from recorder.config import Profile, parse_profile
from recorder.core import Recorder
from recorder.feedback import FeedbackController
from simulator.clock import VirtualClock

START_UTC_US = 1_767_258_000_000_000

CAMERA_1080P: dict[str, Any] = {
    "camera.width": WIDTH,
    "camera.height": HEIGHT,
    "camera.fps": float(FPS),
    "camera.bitrate_bps": BITRATE_BPS,
    "camera.keyframe_interval_s": 1.0,
}


def machine() -> str:
    """One line for the notes: cores, CPU model, Python."""
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    # The load average says whether the figures were taken on a shared, busy machine.
    return (
        f"{os.cpu_count()} cores, {model}, Python {platform.python_version()}, "
        f"load average {load:.1f}"
    )


class NullIndicator:
    """An ``Indicator`` that only remembers its pattern (no pins: not what is measured)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self.pattern: Pattern | None = None

    @property
    def name(self) -> str:
        return self._name

    def play(self, pattern: Pattern) -> None:
        self.pattern = pattern

    def close(self) -> None:
        pass


def profile_1080p(**recorder: Any) -> Profile:
    overrides: dict[str, Any] = dict(CAMERA_1080P)
    overrides.update({f"recorder.{k}": v for k, v in recorder.items()})
    return parse_profile({}, overrides)


def agency_key() -> AgencyPublicKey:
    return AgencyPublicKey(
        SUITE_P384, "0" * 64, ec.generate_private_key(ec.SECP384R1()).public_key()
    )


def build_recorder(
    store: Path, profile: Profile, identity: Mapping[str, Any] | None = None
) -> tuple[VirtualClock, Sealer, Recorder]:
    """A Recorder sealing into ``store`` (on disk, durable writes) on a VirtualClock."""
    clock = VirtualClock(START_UTC_US)
    key = SoftwareDeviceKey(Ed25519PrivateKey.generate())
    sealer = Sealer.open(store, key, [agency_key()], "BENCH-1", "b" * 32, "rtc")
    feedback = FeedbackController(
        NullIndicator("led"), NullIndicator("haptic"), NullIndicator("buzzer")
    )
    ident = dict(identity or {"device_id": "BENCH-1", "officer_id": "PC-1"})
    return clock, sealer, Recorder(clock, sealer, feedback, profile, ident)
