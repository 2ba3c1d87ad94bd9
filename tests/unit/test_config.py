"""The profile parser: every contract key exists; bad keys, types and ranges name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from hal.errors import ConfigError
from recorder.config import load_profile_text, parse_override, parse_profile

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("name", ["sim.toml", "pi.toml", "qemu.toml"])
def test_shipped_profiles_parse(name: str) -> None:
    profile = load_profile_text((CONFIGS / name).read_text(), name)
    assert profile.camera.fps > 0


def test_contract_keys_exist() -> None:
    p = parse_profile({})
    for value in (
        p.camera.width,
        p.camera.height,
        p.camera.fps,
        p.camera.bitrate_bps,
        p.camera.keyframe_interval_s,
        p.recorder.pre_event_s,
        p.recorder.pre_event_audio,
        p.recorder.segment_s,
    ):
        assert value is not None


@pytest.mark.parametrize(
    ("tables", "needle"),
    [
        ({"camera": {"widht": 640}}, "camera.widht"),
        ({"camera": {"width": "wide"}}, "camera.width"),
        ({"camera": {"width": True}}, "camera.width"),
        ({"recorder": {"pre_event_s": 121}}, "recorder.pre_event_s"),
        ({"recorder": {"pre_event_s": -1}}, "0 to 120"),
        ({"recorder": {"pre_event_audio": 1}}, "recorder.pre_event_audio"),
        ({"camera": {"backend": "webcam"}}, "'picamera2'"),
        ({"cam": {}}, "[cam]"),
        ({"camera": 5}, "[camera]"),
        ({"unit": {"helper_wait_s": 0.5}}, "unit.helper_wait_s"),
    ],
)
def test_bad_values_name_the_key(tables: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        parse_profile(tables)
    assert needle in str(info.value)


def test_overrides_apply_and_are_checked() -> None:
    key, value = parse_override("recorder.pre_event_s=45")
    assert parse_profile({}, {key: value}).recorder.pre_event_s == 45.0
    key, value = parse_override("offload.target=s3://bucket/prefix")
    assert parse_profile({}, {key: value}).offload.target == "s3://bucket/prefix"
    with pytest.raises(ConfigError, match=r"recorder\.pre_event_s"):
        parse_profile({}, dict([parse_override("recorder.pre_event_s=500")]))


@pytest.mark.parametrize(
    "text",
    ["recorder.pre_event_s", "pre_event_s=3", "recorder.nope=1", "nope.x=1", "camera.fps=fast"],
)
def test_bad_override_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_override(text)


def test_digest_changes_with_any_setting() -> None:
    assert parse_profile({}).digest() != parse_profile({"camera": {"fps": 25}}).digest()
    assert parse_profile({}).digest() == parse_profile({}).digest()


def test_toml_syntax_error_names_the_source() -> None:
    with pytest.raises(ConfigError, match=r"profile\.toml"):
        load_profile_text("[camera\nwidth=1", "profile.toml")
