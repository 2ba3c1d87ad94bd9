"""The Pi unit's privileged split: the recorder's boot control only writes requests on the data
partition; the root helper (`bwc bootctl`) applies them to the real FAT p1 of an SD-card image; the
systemd units order the helper before the recorder and pass `systemd-analyze verify`."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from firmware import root_helper
from firmware.boot_control import (
    FatAutoboot,
    MirroredAutoboot,
    PiBootControl,
    PiSystem,
    parse_autoboot,
    render_autoboot,
)
from firmware.fat import FatVolume
from firmware.health import HealthResult, boot_decision, commit_or_rollback
from firmware.layout import UnitLayout
from firmware.slot_writer import PartitionSlotWriter
from firmware.update_state import PendingTry, UpdateState, load_state, save_state
from hal.errors import RefusedError
from tests.pi_bootloader import PiBootloaderModel
from tests.sd_image import SdImage, build_two_slot_card

UNITS = Path(__file__).resolve().parents[2] / "firmware" / "systemd"


@pytest.fixture(scope="module")
def card_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_two_slot_card(tmp_path_factory.mktemp("card") / "sd.img").path


class Rig:
    def __init__(self, root: Path, card: SdImage) -> None:
        self.card = card
        self.layout = UnitLayout(root / "data")
        self.model = PiBootloaderModel(card, root / "proc")
        system = PiSystem(self.model.cmdline_path, self.model.device_tree, self.model.reboot)
        volume = FatVolume(card.path, card.partitions()[1][0])
        # The helper: root, the raw partition.
        self.helper = PiBootControl(FatAutoboot(volume, self.layout.autoboot_txt), self.layout,
                                    system)  # fmt: skip
        self.helper_runs = 0

        def path_unit_fires(_seconds: float) -> None:
            # What bwc-bootsel-apply.path does when the request appears: one helper run.
            self.helper_runs += 1
            root_helper.sync(self.layout, self.helper)

        # The recorder: User=bwc, reads the mirror, writes requests.
        self.recorder = PiBootControl(
            MirroredAutoboot(self.layout.autoboot_txt, self.layout.autoboot_request,
                             wait_s=1.0, sleep=path_unit_fires),
            self.layout,
            PiSystem(self.model.cmdline_path, self.model.device_tree),
        )  # fmt: skip
        self.slots = PartitionSlotWriter(card.path, self.layout, mounts=root / "none",
                                         cmdline=self.model.cmdline_path)  # fmt: skip


@pytest.fixture
def rig(card_template: Path, tmp_path: Path) -> Rig:
    shutil.copy(card_template, tmp_path / "sd.img")
    rig = Rig(tmp_path, SdImage(tmp_path / "sd.img"))
    rig.model.power_on()
    assert root_helper.sync(rig.layout, rig.helper) == []  # bwc-bootsel.service at boot
    rig.helper.set_state("A", "good")
    rig.helper.set_state("B", "installed")
    return rig


def test_the_recorder_commits_through_the_helper(rig: Rig) -> None:
    pending = PendingTry(slot="B", version="1.0.0", security_version=2, sha256="0" * 64)
    save_state(rig.layout, UpdateState(pending=pending))
    rig.helper.arm_tryboot("B")
    root_helper.tryboot(rig.helper)  # bwc-tryboot.service, started by the technician
    rig.model.power_on()
    root_helper.sync(rig.layout, rig.helper)
    plan = boot_decision(rig.layout, rig.recorder, slots=rig.slots)
    assert (plan.slot, plan.tryboot) == ("B", True)
    healthy = HealthResult(True, True, True, True)
    outcome = commit_or_rollback(rig.layout, rig.recorder, healthy, None, slots=rig.slots)
    assert outcome.action == "committed" and rig.helper_runs == 1
    assert parse_autoboot(rig.card.mtype(1, "autoboot.txt"), "p1").primary == "B"
    assert not rig.layout.autoboot_request.exists()
    assert rig.model.power_on().partition == 3


def test_a_commit_the_helper_misses_is_applied_at_the_next_boot(rig: Rig) -> None:
    pending = PendingTry(slot="B", version="1.0.0", security_version=2, sha256="0" * 64)
    save_state(rig.layout, UpdateState(pending=pending))
    rig.helper.arm_tryboot("B")
    root_helper.tryboot(rig.helper)
    rig.model.power_on()
    boot_decision(rig.layout, rig.recorder, slots=rig.slots)
    lazy = PiBootControl(
        MirroredAutoboot(rig.layout.autoboot_txt, rig.layout.autoboot_request, wait_s=0.1,
                         sleep=lambda _s: None),
        rig.layout,
        PiSystem(rig.model.cmdline_path, rig.model.device_tree),
    )  # fmt: skip
    with pytest.raises(RefusedError, match="did not apply"):
        lazy.set_primary("B")
    assert load_state(rig.layout).pending is not None  # not committed yet
    # Power cut; next power-on boots the old primary, then bwc-bootsel.service applies it.
    assert rig.model.power_on().partition == 2
    assert root_helper.sync(rig.layout, rig.helper) == ["slot B is now the primary"]
    boot_decision(rig.layout, rig.recorder, slots=rig.slots)
    assert load_state(rig.layout).pending is None  # the commit was finished
    assert rig.model.power_on().partition == 3


@pytest.mark.parametrize(
    ("request_bytes", "reason"),
    [
        (b"[all]\nboot_partition=1\n", "boot_partition"),
        (render_autoboot("B") + b"# padding\n", "canonical"),
        (render_autoboot("B"), "slot B is bad"),
    ],
)
def test_the_helper_refuses_bad_requests(rig: Rig, request_bytes: bytes, reason: str) -> None:
    rig.helper.set_state("B", "bad")
    rig.layout.autoboot_request.write_bytes(request_bytes)
    notes = root_helper.sync(rig.layout, rig.helper)
    assert len(notes) == 1 and "refused" in notes[0] and reason in notes[0]
    assert rig.card.mtype(1, "autoboot.txt") == render_autoboot("A")
    assert not rig.layout.autoboot_request.exists()


def test_tryboot_needs_an_armed_installed_slot(rig: Rig) -> None:
    with pytest.raises(RefusedError, match="no try-boot is armed"):
        root_helper.tryboot(rig.helper)
    rig.helper.arm_tryboot("B")
    rig.helper.set_state("B", "empty")
    with pytest.raises(RefusedError, match="not an installed slot"):
        root_helper.tryboot(rig.helper)
    assert not rig.model.tryboot_flag


def test_bootctl_on_a_simulated_unit_is_a_usage_error(tmp_path: Path) -> None:
    unit = tmp_path / "unit"
    (unit / "config").mkdir(parents=True)
    (unit / "config" / "profile.toml").write_text("[unit]\nboot = 'sim'\n")
    result = subprocess.run(
        [sys.executable, "-m", "firmware.cli", "bootctl", "sync", "--device", str(unit)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "only 'pi'" in result.stderr


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNITS / name)
    return parser


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze missing (package systemd, installed by .ci/run)")
    bwc = Path(sys.executable).with_name("bwc")
    for unit in UNITS.iterdir():
        text = unit.read_text().replace("/opt/bwc/.venv/bin/bwc", str(bwc))
        (tmp_path / unit.name).write_text(text)
    names = sorted(str(p) for p in tmp_path.iterdir())
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *names],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stderr) == (0, "")


def test_privileges_are_split_and_ordered() -> None:
    recorder = _unit("bwc-recorder.service")
    service = recorder["Service"]
    assert (service["User"], service["NoNewPrivileges"], service["ProtectSystem"]) == (
        "bwc",
        "yes",
        "strict",
    )
    assert "bootctl" not in service["ExecStart"]
    assert "bwc-bootsel.service" in recorder["Unit"]["After"].split()
    assert int(recorder["Unit"]["StartLimitIntervalSec"]) > 0
    assert int(recorder["Unit"]["StartLimitBurst"]) > 0
    bootsel = _unit("bwc-bootsel.service")
    assert "bwc-recorder.service" in bootsel["Unit"]["Before"].split()
    assert bootsel["Service"]["Type"] == "oneshot"
    assert bootsel["Service"]["ExecStart"].endswith("bootctl sync --device /var/lib/bwc/unit")
    path = _unit("bwc-bootsel-apply.path")
    assert path["Path"]["PathExists"] == "/var/lib/bwc/unit/boot/autoboot.request"
    assert "tryboot" in _unit("bwc-tryboot.service")["Service"]["ExecStart"]
