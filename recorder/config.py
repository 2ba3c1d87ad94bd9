"""The unit's profile: TOML tables parsed into frozen, typed, range-checked objects.

Pure: it parses mappings and strings. Only the composition root (``firmware``) reads files.
Unknown keys, wrong types and out-of-range values raise ``ConfigError`` naming the key and
what is allowed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from hal.errors import ConfigError


def _rng(lo: float | None = None, hi: float | None = None, choices: tuple[str, ...] = ()) -> Any:
    return field(metadata={"lo": lo, "hi": hi, "choices": choices})


@dataclass(frozen=True)
class UnitConfig:
    compatible: str = "bwc-sim"
    model: str = "simulated unit"
    # Boot control and slot writer (firmware/backends.py): "sim" (directory slots) or "pi"
    # (tryboot A/B on the SD card ``disk``, docs/unit-layout.md).
    boot: str = field(default="sim", metadata={"choices": ("sim", "pi")})
    disk: str = "/dev/mmcblk0"
    # How long a commit waits for the root helper to rewrite autoboot.txt (bwc-bootsel-apply):
    # about a second on a Pi (an estimate); under QEMU's TCG the helper's run took 4 s after boot
    # and up to 18 s while the other boot services start.
    helper_wait_s: float = field(default=10.0, metadata={"lo": 1, "hi": 120})


@dataclass(frozen=True)
class CameraConfig:
    backend: str = field(default="sim", metadata={"choices": ("sim", "picamera2")})
    width: int = field(default=640, metadata={"lo": 64, "hi": 4096})
    height: int = field(default=480, metadata={"lo": 64, "hi": 4096})
    fps: float = field(default=30.0, metadata={"lo": 1, "hi": 120})
    bitrate_bps: int = field(default=2_000_000, metadata={"lo": 100_000, "hi": 50_000_000})
    keyframe_interval_s: float = field(default=1.0, metadata={"lo": 0.1, "hi": 10})
    overlay: bool = True
    replay_path: str = ""


@dataclass(frozen=True)
class RecorderConfig:
    pre_event_s: float = field(default=30.0, metadata={"lo": 0, "hi": 120})
    pre_event_audio: bool = False
    segment_s: float = field(default=60.0, metadata={"lo": 1, "hi": 3600})
    unit_s: float = field(default=1.0, metadata={"lo": 0.1, "hi": 1.0})
    reminder_interval_s: float = field(default=120.0, metadata={"lo": 0, "hi": 3600})
    stealth_allowed: bool = True
    mute_allowed: bool = True
    hold_s: float = field(default=3.0, metadata={"lo": 0.5, "hi": 10})
    double_press_window_s: float = field(default=0.6, metadata={"lo": 0.1, "hi": 2})
    gnss_interval_s: float = field(default=5.0, metadata={"lo": 1, "hi": 60})
    low_battery_pct: float = field(default=15.0, metadata={"lo": 0, "hi": 100})
    critical_battery_pct: float = field(default=5.0, metadata={"lo": 0, "hi": 100})


@dataclass(frozen=True)
class AudioConfig:
    backend: str = field(default="sim", metadata={"choices": ("sim", "alsa", "none")})
    device: str = "default"
    sample_rate_hz: int = field(default=48_000, metadata={"lo": 8_000, "hi": 96_000})
    channels: int = field(default=1, metadata={"lo": 1, "hi": 2})
    bitrate_bps: int = field(default=64_000, metadata={"lo": 16_000, "hi": 320_000})


@dataclass(frozen=True)
class GpioConfig:
    backend: str = field(default="sim", metadata={"choices": ("sim", "gpiozero")})
    pin_factory: str = field(default="lgpio", metadata={"choices": ("lgpio", "mock")})
    """The gpiozero pin factory of a ``gpiozero`` backend, chosen explicitly (not by fallback)."""
    event_pin: int = field(default=17, metadata={"lo": 0, "hi": 53})
    function_pin: int = field(default=27, metadata={"lo": 0, "hi": 53})
    trigger_pin: int = field(default=22, metadata={"lo": 0, "hi": 53})
    led_pin: int = field(default=5, metadata={"lo": 0, "hi": 53})
    haptic_pin: int = field(default=6, metadata={"lo": 0, "hi": 53})
    buzzer_pin: int = field(default=13, metadata={"lo": 0, "hi": 53})
    dock_pin: int = field(default=26, metadata={"lo": 0, "hi": 53})
    bounce_ms: int = field(default=20, metadata={"lo": 0, "hi": 500})


@dataclass(frozen=True)
class GnssConfig:
    backend: str = field(default="sim", metadata={"choices": ("sim", "serial", "none")})
    port: str = "/dev/serial0"
    baud: int = field(default=9600, metadata={"lo": 1200, "hi": 921_600})


@dataclass(frozen=True)
class BatteryConfig:
    backend: str = field(default="sim", metadata={"choices": ("sim", "none")})
    initial_pct: float = field(default=100.0, metadata={"lo": 0, "hi": 100})
    drain_pct_per_h: float = field(default=8.0, metadata={"lo": 0, "hi": 1000})
    cutoff_pct: float = field(default=2.0, metadata={"lo": 0, "hi": 50})


@dataclass(frozen=True)
class StorageConfig:
    reserve_mb: float = field(default=16.0, metadata={"lo": 0, "hi": 100_000})
    capacity_mb: float = field(default=0.0, metadata={"lo": 0, "hi": 10_000_000})
    """Simulated capacity of the evidence partition; 0 means the real free space."""


@dataclass(frozen=True)
class EvidenceConfig:
    kem: str = field(default="p384", metadata={"choices": ("p384", "mlkem1024-p384")})


@dataclass(frozen=True)
class OffloadConfig:
    target: str = ""
    retention_days: int = field(default=1095, metadata={"lo": 1, "hi": 36_500})
    marked_retention_days: int = field(default=3650, metadata={"lo": 1, "hi": 36_500})
    endpoint_url: str = ""
    region: str = "us-east-1"
    ca_bundle: str = ""
    tsa_url: str = ""


@dataclass(frozen=True)
class Profile:
    unit: UnitConfig = field(default_factory=UnitConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    recorder: RecorderConfig = field(default_factory=RecorderConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    gpio: GpioConfig = field(default_factory=GpioConfig)
    gnss: GnssConfig = field(default_factory=GnssConfig)
    battery: BatteryConfig = field(default_factory=BatteryConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    evidence: EvidenceConfig = field(default_factory=EvidenceConfig)
    offload: OffloadConfig = field(default_factory=OffloadConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)

    def digest(self) -> str:
        """SHA-256 of the canonical JSON of every resolved key: names the settings in force."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


_S = TypeVar("_S")


def _describe(f: dataclasses.Field[Any]) -> str:
    lo, hi, choices = f.metadata.get("lo"), f.metadata.get("hi"), f.metadata.get("choices", ())
    if choices:
        return "one of " + ", ".join(repr(c) for c in choices)
    if lo is not None and hi is not None:
        return f"{_type_name(f)} from {lo:g} to {hi:g}"
    return _type_name(f)


def _type_name(f: dataclasses.Field[Any]) -> str:
    return {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string"}[
        str(f.type)
    ]


def _check_value(key: str, f: dataclasses.Field[Any], value: Any) -> Any:
    kind = str(f.type)
    ok = {
        "bool": isinstance(value, bool),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, int | float) and not isinstance(value, bool),
        "str": isinstance(value, str),
    }[kind]
    if not ok:
        raise ConfigError(f"config key {key} must be {_describe(f)}, not {value!r}")
    if kind == "float":
        value = float(value)
    lo, hi, choices = f.metadata.get("lo"), f.metadata.get("hi"), f.metadata.get("choices", ())
    if choices and value not in choices:
        raise ConfigError(f"config key {key} must be {_describe(f)}, not {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(f"config key {key} must be {_describe(f)}, not {value!r}")
    return value


def _build_section(name: str, cls: type[_S], table: Any) -> _S:
    if not isinstance(table, Mapping):
        raise ConfigError(f"config section [{name}] must be a table")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"unknown config key {name}.{key} (known keys in [{name}]: {known})")
        values[key] = _check_value(f"{name}.{key}", fields[key], value)
    return cls(**values)


def _section_classes() -> dict[str, type[Any]]:
    hints = {
        "unit": UnitConfig,
        "camera": CameraConfig,
        "recorder": RecorderConfig,
        "audio": AudioConfig,
        "gpio": GpioConfig,
        "gnss": GnssConfig,
        "battery": BatteryConfig,
        "storage": StorageConfig,
        "evidence": EvidenceConfig,
        "offload": OffloadConfig,
    }
    return hints


def parse_profile(tables: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> Profile:
    """Build a ``Profile`` from parsed TOML tables, then apply ``--set`` overrides."""
    classes = _section_classes()
    merged: dict[str, dict[str, Any]] = {}
    for name, table in tables.items():
        if name not in classes:
            known = ", ".join(sorted(classes))
            raise ConfigError(f"unknown config section [{name}] (known sections: {known})")
        if not isinstance(table, Mapping):
            raise ConfigError(f"config section [{name}] must be a table")
        merged[name] = dict(table)
    for key, value in (overrides or {}).items():
        section, _, leaf = key.partition(".")
        merged.setdefault(section, {})[leaf] = value
    sections: dict[str, Any] = {}
    for name, cls in classes.items():
        sections[name] = _build_section(name, cls, merged.pop(name, {}))
    if merged:  # only reachable through overrides naming an unknown section
        bad = next(iter(merged))
        raise ConfigError(f"unknown config section [{bad}] (known sections: {', '.join(classes)})")
    profile = Profile(**sections)
    if profile.recorder.critical_battery_pct > profile.recorder.low_battery_pct:
        raise ConfigError(
            "config key recorder.critical_battery_pct must not exceed recorder.low_battery_pct"
        )
    return profile


def parse_override(text: str) -> tuple[str, Any]:
    """Parse one ``SECTION.KEY=VALUE`` from ``--set``; VALUE is a TOML value or a bare string."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    section, dot, leaf = key.partition(".")
    if not sep or not dot or not section or not leaf:
        raise ConfigError(
            f"--set {text!r}: expected SECTION.KEY=VALUE, e.g. recorder.pre_event_s=30"
        )
    classes = _section_classes()
    if section not in classes:
        raise ConfigError(f"--set {key}: unknown config section [{section}]")
    fields = {f.name: f for f in dataclasses.fields(classes[section])}
    if leaf not in fields:
        known = ", ".join(sorted(fields))
        raise ConfigError(f"--set {key}: unknown config key (known keys in [{section}]: {known})")
    raw = raw.strip()
    if str(fields[leaf].type) == "str":
        if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
            raw = raw[1:-1]
        return key, raw
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        raise ConfigError(f"--set {key}={raw}: value must be {_describe(fields[leaf])}") from None
    return key, value


def load_profile_text(
    text: str, source: str, overrides: Mapping[str, Any] | None = None
) -> Profile:
    """Parse TOML ``text`` (read by the caller from ``source``) into a ``Profile``."""
    try:
        tables = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML ({exc})") from None
    return parse_profile(tables, overrides)
