"""One boot path for every unit: ``firmware.boot.boot_unit`` with the Pi's boot control over a
real SD-card image (and the simulator's hardware, since this machine has no Pi), boot-state and
camera faults that are signed and never stop buffering, the daemon loop's systemd notifications,
restarts after a kill, and docking with the Pi's dock backend (gpiozero on mock pins)."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from firmware.backends import FirmwareBackends, UnitHardware, firmware_backends, unit_hardware
from firmware.boot import BootedUnit, DockOffload, Supervision, boot_unit
from firmware.boot_control import FatAutoboot, PiBootControl, PiSystem, render_autoboot
from firmware.bundle import build_bundle, generate_key_pair, load_signing_key
from firmware.fat import FatVolume
from firmware.flash import UnitFacts, flash, init_slots, preflight
from firmware.identity import Assignment, load_assignment, read_profile
from firmware.layout import UnitLayout
from firmware.pi_unit import serve
from firmware.slot_writer import PartitionSlotWriter
from firmware.supervisor import RunMarker
from firmware.update_state import PendingTry, UpdateState, save_state
from hal.errors import HardwareError
from hal.protocols import Clock
from hal.types import ClockSource
from recorder.config import Profile
from recorder.state_machine import State
from simulator.clock import VirtualClock
from tests.integration.conftest import provision_unit
from tests.integration.test_fw_support import BUILD_UTC_S
from tests.offload_store import chain_events
from tests.pi_bootloader import PiBootloaderModel
from tests.sd_image import SdImage, build_sd_image, build_slot_image

SMALL = {"camera.width": 512, "camera.height": 288}
START_UTC_US = (BUILD_UTC_S + 86_400) * 1_000_000


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A provisioned unit whose data directory sits on a Pi card (slot A factory), + a bundle."""
    root = tmp_path_factory.mktemp("bootpath")
    provision_unit(root)
    layout = UnitLayout(root / "unit")
    # This unit's slots are the card's partitions, not directories: drop the simulated ones.
    shutil.rmtree(layout.boot)
    shutil.rmtree(layout.slots)
    layout.update_state_json.unlink()
    card = build_sd_image(root / "sd.img")
    rig = Rig(root, layout, SdImage(root / "sd.img"))
    rig.model.power_on()
    assert init_slots(layout, "0.1.0", 0, build_utc_s=BUILD_UTC_S, **rig.fw_kwargs())
    key, pub = generate_key_pair(root / "keys")
    shutil.copy(pub, layout.release_pub)
    build_bundle(
        build_slot_image(root / "slot", "1.0.0"),
        root / "update.bwc",
        version="1.0.0",
        security_version=1,
        compatible="bwc-sim",
        key=load_signing_key(key),
        build_utc_s=BUILD_UTC_S,
        min_battery_pct=30,
    )
    assert card.path.exists()
    return root


class Rig:
    def __init__(self, root: Path, layout: UnitLayout, card: SdImage) -> None:
        self.layout, self.card = layout, card
        self.model = PiBootloaderModel(card, root / "proc")
        system = PiSystem(self.model.cmdline_path, self.model.device_tree, self.model.reboot)
        volume = FatVolume(card.path, card.partitions()[1][0])
        self.boot = PiBootControl(FatAutoboot(volume, layout.autoboot_txt), layout, system)
        self.slots = PartitionSlotWriter(
            card.path, layout, mounts=root / "mounts", cmdline=self.model.cmdline_path
        )

    def fw_kwargs(self) -> dict[str, Any]:
        return {"boot": self.boot, "slots": self.slots}

    def firmware(self) -> FirmwareBackends:
        return FirmwareBackends(self.boot, self.slots)


@pytest.fixture
def rig(template: Path, tmp_path: Path) -> Rig:
    shutil.copytree(template, tmp_path / "t")
    root = tmp_path / "t"
    rig = Rig(root, UnitLayout(root / "unit"), SdImage(root / "sd.img"))
    rig.model.power_on()
    return rig


def clock_factory(_earliest_utc_us: int) -> Clock:
    return VirtualClock(START_UTC_US, ClockSource.RTC)


def boot(
    rig: Rig,
    *,
    hardware: Any = unit_hardware,
    supervision: Supervision | None = None,
    overrides: dict[str, Any] | None = None,
) -> BootedUnit:
    profile = read_profile(rig.layout.profile, {**SMALL, **(overrides or {})})
    return boot_unit(
        rig.layout,
        profile=profile,
        assignment=load_assignment(rig.layout),
        firmware=rig.firmware(),
        make_clock=clock_factory,
        make_hardware=hardware,
        supervision=supervision,
    )


def power_off(unit: BootedUnit) -> None:
    if unit.camera is not None and unit.camera.running:
        unit.hardware.camera.stop()
    unit.daemon.drain()
    unit.recorder.shutdown("test power off")
    unit.hardware.close()


def test_the_boot_function_runs_a_pi_update_end_to_end(rig: Rig, template: Path) -> None:
    unit = boot(rig)
    assert (unit.plan.slot, unit.plan.tryboot, unit.faults) == ("A", False, [])
    assert unit.recorder.state is State.BUFFERING and unit.outcome is not None
    power_off(unit)
    facts = UnitFacts(compatible="bwc-sim", battery_pct=100.0, free_bytes=10**12)
    plan = preflight(rig.layout, template / "update.bwc", facts, **rig.fw_kwargs())
    flash(rig.layout, plan, **rig.fw_kwargs())
    rig.boot.reboot_into_tryboot()
    assert rig.model.power_on().partition == 3
    unit = boot(rig)
    assert (unit.plan.slot, unit.plan.tryboot, unit.firmware_version) == ("B", True, "1.0.0")
    assert unit.outcome is not None and unit.outcome.action == "committed"
    power_off(unit)
    assert rig.model.power_on().partition == 3
    kinds = [e["slot"] for e in chain_events(rig.layout.evidence, "boot")]
    assert kinds == ["A", "B"]
    assert [e["slot"] for e in chain_events(rig.layout.evidence, "firmware_commit")] == ["B"]
    assert verified(rig)


def test_a_boot_state_error_is_a_signed_fault_and_buffering_goes_on(rig: Rig) -> None:
    rig.model.cmdline_path.write_text("console=tty1 root=/dev/mmcblk0p5 ro\n")
    unit = boot(rig)
    assert unit.recorder.state is State.BUFFERING
    assert unit.plan.slot == "unknown" and unit.outcome is None
    faults = chain_events(rig.layout.evidence, "fault")
    assert [f["component"] for f in faults] == ["boot_control"]
    assert "root=PARTUUID" in faults[0]["reason"]
    power_off(unit)
    assert verified(rig)


def test_an_unreadable_boot_state_file_is_a_fault_not_a_crash(rig: Rig) -> None:
    pending = PendingTry(slot="B", version="1.0.0", security_version=1, sha256="0" * 64)
    save_state(rig.layout, UpdateState(pending=pending))  # so the decision reads slot states
    rig.layout.slot_state_json.unlink()
    rig.layout.slot_state_json.mkdir()  # any OSError on reading it, here EISDIR
    unit = boot(rig)
    assert unit.recorder.state is State.BUFFERING and unit.plan.slot == "unknown"
    reasons = [f["reason"] for f in chain_events(rig.layout.evidence, "fault")]
    assert len(reasons) == 1 and "slot-state.json" in reasons[0]
    power_off(unit)


class DeadCamera:
    """A camera that fails to start ``failures`` times (no camera on the connector), then works."""

    def __init__(self, inner: Any, failures: int) -> None:
        self.inner, self.left, self.attempts = inner, failures, 0
        self.width, self.height, self.fps = inner.width, inner.height, inner.fps

    def start(self, sink: Any) -> None:
        self.attempts += 1
        if self.left > 0:
            self.left -= 1
            raise HardwareError("no camera detected on the CSI connector")
        self.inner.start(sink)

    def stop(self) -> None:
        self.inner.stop()


def dead_camera_hardware(failures: int) -> Any:
    def make(profile: Profile, assignment: Assignment, clock: Clock) -> UnitHardware:
        hw = unit_hardware(profile, assignment, clock)
        hw.camera = DeadCamera(hw.camera, failures)
        return hw

    return make


def test_a_camera_less_boot_is_one_signed_fault_with_backoff(rig: Rig) -> None:
    unit = boot(rig, hardware=dead_camera_hardware(5))
    assert unit.camera is not None and not unit.camera.running
    assert unit.recorder.state is State.BUFFERING
    # The health check does not pass without a camera: nothing is committed on such a boot.
    assert unit.outcome is not None and unit.outcome.action == "nothing_pending"
    clock = unit.clock
    assert isinstance(clock, VirtualClock)
    for second in range(1, 121):  # two minutes of a loop polling ten times a second
        for tenth in range(10):
            now = (second * 10 + tenth) * 100_000
            clock.run_until(now)
            unit.camera.poll(now)
    camera = unit.hardware.camera
    assert isinstance(camera, DeadCamera)
    # At 0, 5, 15, 35 and 75 s (backoff 5 s doubling): five attempts in two minutes, not 1200.
    assert camera.attempts == 5 and not unit.camera.running
    faults = chain_events(rig.layout.evidence, "fault")
    assert [(f["component"], f["code"]) for f in faults] == [("camera", "start_failed")]
    assert unit.recorder.status()["hardware_faults"] == ["camera/start_failed"]
    clock.run_until(155_000_000)
    unit.camera.poll(clock.monotonic_us())
    assert unit.camera.running and camera.attempts == 6
    assert chain_events(rig.layout.evidence, "fault_cleared") == [
        {"component": "camera", "code": "start_failed", "attempts": 6}
    ]
    assert unit.recorder.status()["hardware_faults"] == []
    power_off(unit)
    assert verified(rig)


def verified(rig: Rig) -> bool:
    """The store passes strict `bwc verify`, pinned to the unit's own key."""
    from firmware.cli import main

    return main(["verify", str(rig.layout.evidence), "--trust", str(rig.layout.device_pub)]) == 0


def test_ready_at_once_even_in_fault_and_a_killed_run_is_a_signed_restart(rig: Rig) -> None:
    supervision = Supervision(RunMarker(rig.layout.run / "daemon.json"), "os-boot-1")
    unit = boot(rig, hardware=dead_camera_hardware(100), supervision=supervision)
    stop = threading.Event()
    sent: list[str] = []

    def notifier(message: str) -> bool:
        sent.append(message)
        stop.set()  # systemd got the first message: the test's service manager stops us
        return True

    assert serve(unit, stop, notifier=notifier) == 0
    assert sent[0].startswith("READY=1\nSTATUS=buffering") and "CAMERA FAULT" in sent[0]
    assert sent[-1] == "STOPPING=1"
    assert not (rig.layout.run / "daemon.json").exists()  # a clean stop
    # A run killed by the watchdog (SIGABRT: no cleanup ran) leaves its marker behind ...
    killed = boot(rig, supervision=supervision)
    assert (rig.layout.run / "daemon.json").exists()
    killed.hardware.close()
    # ... and the next start in the same OS boot seals daemon_restart, without any finally.
    again = boot(rig, supervision=supervision)
    assert len(chain_events(rig.layout.evidence, "daemon_restart")) == 1
    power_off(again)


def test_the_pi_dock_backend_is_created_and_offloads(rig: Rig) -> None:
    from hal.gpio import GpiozeroDock

    def pi_gpio(profile: Profile, assignment: Assignment, clock: Clock) -> UnitHardware:
        # The Pi's GPIO registry entry, with the simulator's camera (no Pi camera here).
        return unit_hardware(profile, assignment, clock)

    unit = boot(
        rig, hardware=pi_gpio, overrides={"gpio.backend": "gpiozero", "gpio.pin_factory": "mock"}
    )
    dock = unit.hardware.dock
    assert isinstance(dock, GpiozeroDock)
    offload = DockOffload(unit, dock)
    offload.poll(0)
    assert offload.last_result is None  # not docked
    dock.device.pin.drive_low()  # the dock-sense line (active low)
    offload.poll(1_000_000)
    assert offload.last_result is not None and offload.last_result.complete
    assert chain_events(rig.layout.evidence, "offload_receipt")
    power_off(unit)


def test_simboot_control_is_named_only_by_the_simulator_composition() -> None:
    root = Path(__file__).resolve().parents[2]
    found = sorted(
        str(p.relative_to(root))
        for package in ("firmware", "recorder", "hal", "evidence", "offload", "simulator")
        for p in (root / package).rglob("*.py")
        if "SimBootControl" in p.read_text()
    )
    assert found == ["firmware/backends.py", "firmware/boot_control.py"]


def test_the_registry_picks_the_pi_boot_control(rig: Rig) -> None:
    profile = read_profile(rig.layout.profile, {"unit.boot": "pi", "unit.disk": str(rig.card.path)})
    fw = firmware_backends(rig.layout, profile.unit, privileged=True)
    assert isinstance(fw.boot, PiBootControl) and isinstance(fw.slots, PartitionSlotWriter)
    assert fw.boot.get_primary() == "A"


def pi_profile(rig: Rig) -> None:
    """Make the unit's own profile a Pi one: boot control on this card."""
    text = rig.layout.profile.read_text()
    text = text.replace("[unit]\n", f'[unit]\nboot = "pi"\ndisk = "{rig.card.path}"\n', 1)
    rig.layout.profile.write_text(text)


def test_fw_status_and_bootctl_sync_on_a_pi_unit(
    rig: Rig, capsys: pytest.CaptureFixture[str]
) -> None:
    from firmware.cli import main

    pi_profile(rig)
    rig.layout.autoboot_request.write_bytes(render_autoboot("B"))  # B is empty: refused
    assert main(["bootctl", "sync", "--device", str(rig.layout.root)]) == 0
    out = capsys.readouterr().out
    assert "refused the autoboot request" in out and "slot B is empty" in out
    assert main(["fw", "status", "--device", str(rig.layout.root), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["primary"] == "A"
    assert status["slots"]["A"]["state"] == "good" and status["slots"]["A"]["source"] == "factory"
    assert status["slots"]["B"]["state"] == "empty"
