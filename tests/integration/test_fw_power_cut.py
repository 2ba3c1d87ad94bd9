"""Power cuts everywhere in an update: during the slot write at many byte offsets, between every
flash phase, and between every step of the boot decision and of commit/rollback.

A cut is a ``PowerCut`` raised in-process by an injected writer, observer or boot control; the
next boot then runs from the same directory. Afterwards the unit must always boot a good slot
(or an installed, verified slot by try-boot), the old slot must be intact, and further boots
must settle: committed if the install had been recorded, otherwise still on the old slot.
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from firmware.boot_control import SimBootControl
from firmware.flash import FLASH_PHASES, flash, preflight
from firmware.health import BootPlan, HealthResult, boot_decision, commit_or_rollback
from firmware.layout import UnitLayout
from firmware.slot_writer import DirectorySlotWriter
from firmware.update_state import drain_events, load_state
from tests.integration.test_fw_support import (
    CutAt,
    PowerCut,
    RecordingSink,
    boot,
    cutting_opener,
    facts,
    fw,
    healthy,
    make_bundle,
    make_keys,
    make_unit,
    tree_digest,
    unhealthy,
)

PAYLOAD_BYTES = (2 << 20) + 12_345  # three 1 MiB chunks, the last one partial


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(a fresh unit, a bundle for it), copied by each test."""
    root = tmp_path_factory.mktemp("template")
    key, pub = make_keys(root / "keys")
    make_unit(root / "unit", pub)
    payload = random.Random(7).randbytes(PAYLOAD_BYTES)
    bundle = make_bundle(root / "u.bwc", key, version="1.0.0", security_version=2, payload=payload)
    return root / "unit", bundle


def fresh_unit(template: tuple[Path, Path], tmp_path: Path, name: str = "unit") -> UnitLayout:
    shutil.copytree(template[0], tmp_path / name)
    return UnitLayout(tmp_path / name)


def assert_boots_good(layout: UnitLayout, old_slot: str, old_digest: str) -> BootPlan:
    plan = boot(layout)
    state = SimBootControl(layout).get_state(plan.slot)
    assert state == ("installed" if plan.tryboot else "good"), (plan, state)
    DirectorySlotWriter(layout).verify(plan.slot)
    assert tree_digest(layout.slot(old_slot)) == old_digest
    assert SimBootControl(layout).get_state(old_slot) == "good"
    return plan


def settle(
    layout: UnitLayout, sink: RecordingSink, old_slot: str, old_digest: str, health: HealthResult
) -> str:
    """Boot (with the health check) until nothing is pending; returns the final primary."""
    for _ in range(8):
        assert_boots_good(layout, old_slot, old_digest)
        commit_or_rollback(
            layout, SimBootControl(layout), health, sink, slots=DirectorySlotWriter(layout)
        )
        boot_control = SimBootControl(layout)
        if load_state(layout).pending is None and boot_control.armed_tryboot() is None:
            plan = assert_boots_good(layout, old_slot, old_digest)
            assert not plan.tryboot
            return boot_control.get_primary()
    raise AssertionError("the unit did not settle")


def _offsets() -> list[int]:
    fixed = [0, 1, 511, 4096, 65_536, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, 2 << 20]
    rng = random.Random(11)
    return [*fixed, *(rng.randrange(PAYLOAD_BYTES) for _ in range(6)), PAYLOAD_BYTES - 1]


@pytest.mark.parametrize("offset", _offsets())
def test_power_cut_during_the_slot_write(
    template: tuple[Path, Path], tmp_path: Path, offset: int
) -> None:
    layout = fresh_unit(template, tmp_path)
    old = tree_digest(layout.slot("A"))
    plan = preflight(layout, template[1], facts(), **fw(layout))
    with pytest.raises(PowerCut):
        flash(
            layout,
            plan,
            boot=SimBootControl(layout),
            slots=DirectorySlotWriter(layout, cutting_opener(offset)),
        )
    assert (layout.slots / ".incoming-B" / "image").stat().st_size == offset
    sink = RecordingSink()
    assert settle(layout, sink, "A", old, healthy()) == "A"
    assert SimBootControl(layout).get_state("B") == "empty"
    # The interrupted update can simply be run again, and then commits.
    flash(layout, preflight(layout, template[1], facts(), **fw(layout)), **fw(layout))
    assert not (layout.slots / ".incoming-B").exists()
    assert settle(layout, sink, "A", old, healthy()) == "B"
    assert load_state(layout).floor == 2


PHASE_CUTS = [(p, w) for p in FLASH_PHASES[1:] for w in ("start", "done")]
# The install is recorded (pending, slot installed) once "mark" is done: from there it commits.
RECORDED = {("mark", "done"), ("arm", "start"), ("arm", "done")}


@pytest.mark.parametrize(("phase", "when"), PHASE_CUTS)
def test_power_cut_between_flash_phases(
    template: tuple[Path, Path], tmp_path: Path, phase: str, when: str
) -> None:
    layout = fresh_unit(template, tmp_path)
    old = tree_digest(layout.slot("A"))
    plan = preflight(layout, template[1], facts(), **fw(layout))
    with pytest.raises(PowerCut):
        flash(layout, plan, observer=CutAt(phase, when), **fw(layout))
    sink = RecordingSink()
    final = settle(layout, sink, "A", old, healthy())
    if (phase, when) in RECORDED:
        assert final == "B"
        assert sink.kinds().count("firmware_commit") == 1
        assert load_state(layout).floor == 2
    else:
        assert final == "A"
        assert "firmware_commit" not in sink.kinds()
        assert load_state(layout).floor == 0
    assert "firmware_rollback" not in sink.kinds()


def test_power_cut_between_phases_of_a_second_update_keeps_the_running_slot(
    template: tuple[Path, Path], tmp_path: Path
) -> None:
    """After a first update B runs; a second update writes A and must never touch B."""
    first = fresh_unit(template, tmp_path, "first")
    flash(first, preflight(first, template[1], facts(), **fw(first)), **fw(first))
    boot(first)
    assert (
        commit_or_rollback(
            first, SimBootControl(first), healthy(), None, slots=DirectorySlotWriter(first)
        ).action
        == "committed"
    )
    boot(first)
    # Re-sign a second bundle with the unit's own trusted key pair from the template.
    keys = template[0].parent / "keys"
    second = make_bundle(tmp_path / "v2.bwc", keys / "release-key.pem", version="1.1.0",
                         security_version=3, payload=b"second" * 1000)  # fmt: skip
    for phase, when in PHASE_CUTS:
        unit_dir = tmp_path / f"cut-{phase}-{when}"
        shutil.copytree(first.root, unit_dir)
        layout = UnitLayout(unit_dir)
        old = tree_digest(layout.slot("B"))
        with pytest.raises(PowerCut):
            flash(
                layout,
                preflight(layout, second, facts(), **fw(layout)),
                observer=CutAt(phase, when),
                **fw(layout),
            )
        final = settle(layout, RecordingSink(), "B", old, healthy())
        assert final == ("A" if (phase, when) in RECORDED else "B"), (phase, when)


class CuttingBoot:
    """Boot control that loses power at its ``cut_at``-th tick (one before, one after a write)."""

    def __init__(self, inner: SimBootControl, cut_at: int) -> None:
        self.inner, self.cut_at, self.ticks = inner, cut_at, 0

    def _tick(self) -> None:
        self.ticks += 1
        if self.ticks == self.cut_at:
            raise PowerCut(f"tick {self.ticks}")

    def select_boot_slot(self) -> tuple[str, bool]:
        self._tick()
        result = self.inner.select_boot_slot()
        self._tick()
        return result

    def set_primary(self, slot: str) -> None:
        self._tick()
        self.inner.set_primary(slot)
        self._tick()

    def set_state(self, slot: str, state: str) -> None:
        self._tick()
        self.inner.set_state(slot, state)
        self._tick()

    def arm_tryboot(self, slot: str) -> None:
        self._tick()
        self.inner.arm_tryboot(slot)
        self._tick()

    def get_primary(self) -> str:
        return self.inner.get_primary()

    def get_state(self, slot: str) -> str:
        return self.inner.get_state(slot)

    def get_current(self) -> str:
        return self.inner.get_current()

    def booted_by_tryboot(self) -> bool:
        return self.inner.booted_by_tryboot()

    def armed_tryboot(self) -> str | None:
        return self.inner.armed_tryboot()

    def is_initialised(self) -> bool:
        return self.inner.is_initialised()

    def disarm_tryboot(self) -> None:
        self._tick()
        self.inner.disarm_tryboot()
        self._tick()

    def consume_tryboot(self) -> None:
        self.inner.consume_tryboot()

    def check_boot(self) -> list[str]:
        return self.inner.check_boot()


def _staged(template: tuple[Path, Path], tmp_path: Path) -> UnitLayout:
    layout = fresh_unit(template, tmp_path, "staged")
    flash(layout, preflight(layout, template[1], facts(), **fw(layout)), **fw(layout))
    return layout


@pytest.mark.parametrize("health", ["pass", "fail"])
def test_power_cut_at_every_step_of_boot_and_commit(
    template: tuple[Path, Path], tmp_path: Path, health: str
) -> None:
    staged = _staged(template, tmp_path)
    old = tree_digest(staged.slot("A"))
    result = healthy() if health == "pass" else unhealthy()
    cases = 0
    for stage in ("boot", "commit"):
        cut_at = 1
        while True:
            unit_dir = tmp_path / f"{stage}-{cut_at}"
            shutil.copytree(staged.root, unit_dir)
            layout = UnitLayout(unit_dir)
            cutter = CuttingBoot(SimBootControl(layout), cut_at)
            try:
                if stage == "boot":
                    boot_decision(layout, cutter, slots=DirectorySlotWriter(layout))
                else:
                    boot(layout)
                    commit_or_rollback(
                        layout, cutter, result, None, slots=DirectorySlotWriter(layout)
                    )
            except PowerCut:
                pass
            else:
                break  # every window of this stage has been cut
            cases += 1
            sink = RecordingSink()
            final = settle(layout, sink, "A", old, result)
            state = load_state(layout)
            if health == "pass":
                assert (final, state.floor) == ("B", 2), (stage, cut_at)
                assert "firmware_rollback" not in sink.kinds()
            else:
                assert (final, state.floor) == ("A", 0), (stage, cut_at)
                assert SimBootControl(layout).get_state("B") == "bad"
                assert "firmware_commit" not in sink.kinds()
            cut_at += 1
    assert cases == (6 if health == "pass" else 4)  # every write window was cut


def test_power_lost_in_every_try_boot_gives_up_after_three_attempts(
    template: tuple[Path, Path], tmp_path: Path
) -> None:
    layout = _staged(template, tmp_path)
    old = tree_digest(layout.slot("A"))
    for attempt in (1, 2, 3):
        plan = assert_boots_good(layout, "A", old)
        assert (plan.slot, plan.tryboot, plan.attempts) == ("B", True, attempt)
        # Power is lost before the health check: the following boot returns to the old slot.
        plan = assert_boots_good(layout, "A", old)
        assert (plan.slot, plan.tryboot) == ("A", False)
        assert plan.retry_armed == (attempt < 3)
    boot_control = SimBootControl(layout)
    assert boot_control.get_state("B") == "bad"
    assert load_state(layout).pending is None
    sink = RecordingSink()
    commit_or_rollback(layout, boot_control, healthy(), sink, slots=DirectorySlotWriter(layout))
    assert sink.kinds() == ["firmware_install", "firmware_rollback"]
    assert "all 3 try-boots" in sink.events[1][1]["reason"]
    assert assert_boots_good(layout, "A", old).slot == "A"


def test_events_are_delivered_at_least_once_across_a_cut(
    template: tuple[Path, Path], tmp_path: Path
) -> None:
    layout = _staged(template, tmp_path)

    class CutAfterSeal(RecordingSink):
        def event(
            self,
            kind: str,
            fields: Mapping[str, Any],
            *,
            mono_us: int,
            utc_us: int,
            reserve_ok: bool = False,
        ) -> int:
            super().event(kind, fields, mono_us=mono_us, utc_us=utc_us)
            raise PowerCut("after sealing, before forgetting")

    first = CutAfterSeal()
    with pytest.raises(PowerCut):
        drain_events(layout, first, mono_us=0, utc_us=0)
    second = RecordingSink()
    assert drain_events(layout, second, mono_us=0, utc_us=0) == 1
    assert first.events == second.events
    assert second.events[0][1]["event_id"] == "fw-1-firmware_install"


@pytest.mark.soak
@pytest.mark.skipif("SOAK_TRIALS" not in os.environ, reason="make soak only")
def test_soak_random_power_cuts(template: tuple[Path, Path], tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("SOAK_SEED", "1")))
    for trial in range(int(os.environ["SOAK_TRIALS"])):
        layout = fresh_unit(template, tmp_path, f"soak-{trial}")
        old = tree_digest(layout.slot("A"))
        plan = preflight(layout, template[1], facts(), **fw(layout))
        if rng.random() < 0.5:
            cut = cutting_opener(rng.randrange(PAYLOAD_BYTES))
            with pytest.raises(PowerCut):
                flash(
                    layout,
                    plan,
                    boot=SimBootControl(layout),
                    slots=DirectorySlotWriter(layout, cut),
                )
        else:
            phase, when = rng.choice(PHASE_CUTS)
            with pytest.raises(PowerCut):
                flash(layout, plan, observer=CutAt(phase, when), **fw(layout))
        settle(layout, RecordingSink(), "A", old, healthy())
        shutil.rmtree(layout.root)
