"""Preflight refusals that need injected unit facts: free space, a running try-boot."""

from __future__ import annotations

from pathlib import Path

import pytest

from firmware.flash import METADATA_BYTES, flash, preflight
from firmware.slot_writer import DirectorySlotWriter
from hal.errors import RefusedError
from tests.integration.test_fw_support import (
    boot,
    facts,
    fw,
    make_bundle,
    make_keys,
    make_unit,
    tree_digest,
)


def test_not_enough_space_is_refused_and_the_unit_is_untouched(tmp_path: Path) -> None:
    key, pub = make_keys(tmp_path / "keys")
    unit = make_unit(tmp_path / "unit", pub)
    bundle = make_bundle(tmp_path / "b.bwc", key, payload=b"x" * 100_000)
    before = tree_digest(unit.root)
    with pytest.raises(RefusedError, match="needs 165536 bytes free"):
        preflight(unit, bundle, facts(free_bytes=100_000 + METADATA_BYTES - 1), **fw(unit))
    assert tree_digest(unit.root) == before
    plan = preflight(unit, bundle, facts(free_bytes=100_000 + METADATA_BYTES), **fw(unit))
    assert [c.name for c in plan.checks][-1] == "space"


def test_flashing_during_an_uncommitted_try_boot_is_refused(tmp_path: Path) -> None:
    key, pub = make_keys(tmp_path / "keys")
    unit = make_unit(tmp_path / "unit", pub)
    first = make_bundle(tmp_path / "one.bwc", key, version="1.0.0")
    flash(unit, preflight(unit, first, facts(), **fw(unit)), **fw(unit))
    assert boot(unit).slot == "B"  # running B by try-boot, not committed
    second = make_bundle(tmp_path / "two.bwc", key, version="1.0.1")
    before = tree_digest(unit.root)
    with pytest.raises(RefusedError, match="uncommitted try-boot"):
        preflight(unit, second, facts(), **fw(unit))
    assert tree_digest(unit.root) == before


def test_a_unit_without_a_trusted_key_refuses(tmp_path: Path) -> None:
    key, pub = make_keys(tmp_path / "keys")
    unit = make_unit(tmp_path / "unit", pub)
    unit.release_pub.unlink()
    with pytest.raises(RefusedError, match="trusts no firmware signing key"):
        preflight(unit, make_bundle(tmp_path / "b.bwc", key), facts(), **fw(unit))


def test_flashing_the_rolled_back_slot_before_a_reboot_says_why(tmp_path: Path) -> None:
    from firmware.boot_control import SimBootControl
    from firmware.health import commit_or_rollback
    from tests.integration.test_fw_support import unhealthy

    key, pub = make_keys(tmp_path / "keys")
    unit = make_unit(tmp_path / "unit", pub)
    flash(
        unit,
        preflight(unit, make_bundle(tmp_path / "one.bwc", key), facts(), **fw(unit)),
        **fw(unit),
    )
    boot(unit)
    assert (
        commit_or_rollback(
            unit, SimBootControl(unit), unhealthy(), None, slots=DirectorySlotWriter(unit)
        ).action
        == "rolled_back"
    )
    second = make_bundle(tmp_path / "two.bwc", key, version="1.0.1")
    with pytest.raises(RefusedError, match="boot the unit once"):
        preflight(unit, second, facts(), **fw(unit))
    boot(unit)
    assert preflight(unit, second, facts(), **fw(unit)).target == "B"
