"""The unit's folder at its profile's offload target, refused when it overlaps the unit itself.

Shared by the dock round of the booted unit (``firmware.boot``) and the technician's
``bwc offload``: one place decides where a unit's evidence goes.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from hal.errors import ConfigError
from offload.targets import OffloadTarget, open_target, target_for_device
from recorder.config import Profile


def build_target(
    profile: Profile, device_id: str, env: Mapping[str, str], unit_dir: Path
) -> OffloadTarget:
    """The unit's folder at the profile's target (``<target>/<device id>/``).

    ``ConfigError`` (exit 2) before anything is written if that folder is, contains or lies
    inside ``unit_dir``: freeing would then delete the only copy.
    """
    off = profile.offload
    if not off.target:
        raise ConfigError(
            "config key offload.target is not set: give file:///path or s3://bucket/prefix in "
            "the profile's [offload] section (or --set offload.target=...)"
        )
    target = open_target(
        target_for_device(off.target, device_id),
        env=env,
        endpoint_url=off.endpoint_url,
        region=off.region,
        ca_bundle=off.ca_bundle,
        base_dir=unit_dir,
    )
    target.keep_apart(unit_dir)
    return target
