"""The Raspberry Pi profile and install path: what a unit is configured and installed with."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

from hal.alsa import AlsaMicrophone
from hal.system_clock import SystemClock
from recorder.config import load_profile_text

ROOT = Path(__file__).resolve().parents[2]
PI = load_profile_text((ROOT / "configs" / "pi.toml").read_text(), "configs/pi.toml")
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SYSTEM_NUMPY = "1.24.2"  # Raspberry Pi OS Bookworm's python3-numpy, which simplejpeg is built for


def test_gnss_reads_the_header_uart_on_every_model() -> None:
    assert PI.gnss.port == "/dev/serial0"


def test_the_microphone_is_named_by_card_id() -> None:
    assert re.fullmatch(r"plughw:CARD=[A-Za-z_][\w-]*,DEV=0", PI.audio.device)
    AlsaMicrophone(PI.audio.device, PI.audio.sample_rate_hz, PI.audio.channels, SystemClock())


def test_the_gpio_pin_factory_is_lgpio() -> None:
    assert PI.gpio.pin_factory == "lgpio"


def _pi_requirements() -> list[Requirement]:
    project = PYPROJECT["project"]
    return [
        Requirement(r) for r in [*project["dependencies"], *project["optional-dependencies"]["pi"]]
    ]


def test_a_pi_install_keeps_the_system_numpy_and_opencv() -> None:
    """`pip install '.[pi]'` in a --system-site-packages venv must not pull a PyPI numpy >= 2 or
    any opencv-python over the system's (picamera2 #1088, #1211)."""
    requirements = {r.name: r for r in _pi_requirements()}
    assert not [name for name in requirements if name.startswith("opencv")]
    assert requirements["numpy"].specifier.contains(SYSTEM_NUMPY)
    assert "picamera2" not in requirements  # from apt (python3-picamera2), never PyPI on a unit
    assert "lgpio" in requirements


def test_the_readme_install_uses_the_system_packages() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "python3 -m venv --system-site-packages" in readme
    assert "pip install '.[pi]'" in readme
    assert "python3-picamera2" in readme and "python3-lgpio" in readme


def test_the_hardware_doc_gives_the_uart_lines() -> None:
    doc = (ROOT / "docs" / "hardware.md").read_text()
    for line in ("enable_uart=1", "dtoverlay=disable-bt", "console=serial0"):
        assert line in doc


def test_the_gpiozero_backend_uses_the_profiles_pin_factory() -> None:
    """Every GPIO device of a ``gpiozero`` unit sits on the factory ``gpio.pin_factory`` names
    (gpiozero's mock here, lgpio on a Pi), never on whatever gpiozero's fallback would pick."""
    from gpiozero.pins.mock import MockFactory

    from firmware.backends import unit_hardware
    from firmware.identity import Assignment
    from recorder.config import parse_profile
    from simulator.clock import VirtualClock

    profile = parse_profile(
        {
            "camera": {"width": 512, "height": 288},
            "gpio": {"backend": "gpiozero", "pin_factory": "mock"},
            "gnss": {"backend": "none"},
            "audio": {"backend": "none"},
            "battery": {"backend": "none"},
        }
    )
    hw = unit_hardware(profile, Assignment("BWC-1", "OFF-1", "test"), VirtualClock(0))
    try:
        devices = [b.device for b in hw.buttons.values()]  # type: ignore[attr-defined]
        assert len(devices) == 3
        factories = {id(d.pin_factory) for d in devices}
        assert len(factories) == 1
        assert isinstance(devices[0].pin_factory, MockFactory)
    finally:
        hw.close()
