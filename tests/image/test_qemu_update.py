"""An update inside the VM: `bwc fw flash` of a second build into slot B, the try-boot, the commit.

Not part of `make test` (see test_qemu_boot.py; `make image-test` runs it). The VM is the unit:

1. Power-on of slot A. A root script on p7, started by systemd's ``systemd.run=`` (the
   technician's shell), starts the recorder (READY=1), stops it as an update job does, mounts
   the bundle (a second virtio disk: it is larger than p7) and runs ``bwc fw flash`` as root,
   which writes p3 and p6 of /dev/vda, then ``systemctl start bwc-tryboot``: the root helper's
   ``reboot "0 tryboot"``. The kernel prints the reboot command and QEMU stops (-no-reboot).
2. The bootloader model (tests/pi_bootloader.py) takes that command, reads p1's autoboot.txt
   from the disk image and picks the partition; the next QEMU run boots that partition's
   kernel, initramfs and cmdline.txt with ``tryboot = <1>`` in /chosen/bootloader.
3. The recorder on slot B counts the attempt, passes its health check and commits: the root
   helper rewrites autoboot.txt on p1, which this test reads with mtools afterwards; the model
   then boots slot B without a try-boot, and the chain copied out of p7 verifies with the
   install, the try-boot and the commit signed in it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from firmware.boot_control import render_autoboot
from tests.image.test_qemu_boot import (
    BOOT_TIMEOUT_S,
    IMAGE_DIR,
    Console,
    Partition,
    boot,
    copy_out_data,
    fat_read,
    partitions,
    provisioned_card,
)
from tests.integration.conftest import Bwc, write_scenario
from tests.offload_store import chain_events
from tests.pi_bootloader import PiBootloaderModel
from tests.sd_image import SdImage

pytestmark = [
    pytest.mark.image,
    pytest.mark.slow,
    pytest.mark.timeout(3600),
    pytest.mark.skipif("BWC_IMAGE_TEST" not in os.environ, reason="make image-test only"),
]

COMPATIBLE = "bwc-qemu-virt"  # configs/qemu.toml's unit.compatible
FLASH_TIMEOUT_S = float(os.environ.get("BWC_IMAGE_FLASH_TIMEOUT_S", "2400"))

# Run as root by systemd-run-generator's kernel-command-line.service (default.target is then
# that unit, so the script starts the recorder itself). p7 is mounted noexec: run through sh.
UPDATE_SCRIPT = """\
set -eu
echo "qemu-update: starting the recorder"
systemctl start bwc-recorder.service
echo "qemu-update: recorder ready; stopping it for the update"
systemctl stop bwc-recorder.service
mkdir -p /run/bwc-bundle
mount -o ro /dev/vdb /run/bwc-bundle
/opt/bwc/.venv/bin/bwc fw flash /run/bwc-bundle/fw.bundle --device /var/lib/bwc/unit --json
echo "qemu-update: flashed; rebooting into the try-boot"
systemctl start --no-block bwc-tryboot.service
"""


def bundle_disk(tmp_path: Path, keys: Path, version: str, *, knob: bool = False) -> Path:
    """A bundle of build/image/slot (the same slot image, a newer version), on an ext4 disk.

    ``knob``: the slot image also carries the test-only ``HEALTH_FAIL`` file (docs/firmware.md),
    which the slot writer writes nowhere: the partitions get the same good image, and its
    health check fails."""
    bwc = Bwc(tmp_path)
    slot = tmp_path / f"slot-{version}"
    slot.mkdir()
    for name in ("boot.vfat", "root.ext4", "packages.txt"):
        try:
            os.link(IMAGE_DIR / "slot" / name, slot / name)
        except OSError:
            shutil.copyfile(IMAGE_DIR / "slot" / name, slot / name)
    if knob:
        (slot / "HEALTH_FAIL").write_bytes(b"")
    folder = tmp_path / f"bundle-{version}"
    folder.mkdir()
    epoch = next(
        line.split()[1]
        for line in (IMAGE_DIR / "build-info.txt").read_text().splitlines()
        if line.startswith("source_date_epoch ")
    )
    bwc(
        "fw", "build", slot, "--version", version, "--security-version", "1",
        "--compatible", COMPATIBLE, "--key", keys / "release-key.pem",
        "--out", folder / "fw.bundle", "--build-utc", epoch,
    )  # fmt: skip
    shutil.rmtree(slot)
    size_mib = (folder / "fw.bundle").stat().st_size // 2**20 + 64
    disk = tmp_path / f"bundle-{version}.ext4"
    subprocess.run(
        ["mke2fs", "-q", "-t", "ext4", "-L", "bundle", "-d", str(folder), str(disk),
         f"{size_mib}M"],
        check=True,
    )  # fmt: skip
    shutil.rmtree(folder)
    return disk


def finish(console: Console, name: str) -> None:
    console.proc.kill()
    console.proc.wait()
    shutil.copyfile(console.log, IMAGE_DIR / f"qemu-update-{name}.log")


@dataclass
class VmUnit:
    """The card, its bootloader model and the wall times of each step."""

    tmp_path: Path
    disk: Path
    data: Partition
    keys: Path
    model: PiBootloaderModel
    times: dict[str, float] = field(default_factory=dict)
    boots: int = 0

    def flash_and_tryboot(self, bundle: Path, slot: str, version: str) -> None:
        """A normal power-on; root flashes ``bundle`` into ``slot`` and reboots "0 tryboot"."""
        booted = self.model.power_on()
        assert not booted.tryboot
        self.boots += 1
        name = f"boot{self.boots}"
        t0 = time.monotonic()
        console = boot(
            self.disk,
            self.tmp_path / name,
            'systemd.run="/bin/sh /var/lib/bwc/qemu-update.sh" systemd.run_success_action=none '
            "systemd.run_failure_action=none systemd.journald.forward_to_console=1",
            partition=booted.partition,
            tryboot=False,
            drives=(f"file={bundle},format=raw,if=virtio,readonly=on",),
        )
        try:
            i, _ = console.wait_for(r"initramfs: root PARTUUID=\S+ is /dev/vda", BOOT_TIMEOUT_S)
            i, _ = console.wait_for(r"qemu-update: recorder ready", BOOT_TIMEOUT_S, i)
            self.times[f"{name}_ready_s"] = time.monotonic() - t0
            i, _ = console.wait_for(r'"event": "plan"', BOOT_TIMEOUT_S, i)
            t_flash = time.monotonic()
            i, staged = console.wait_for(r'"event": "staged"', FLASH_TIMEOUT_S, i)
            self.times[f"{name}_flash_s"] = time.monotonic() - t_flash
            assert f'"slot": "{slot}"' in staged and f'"version": "{version}"' in staged, staged
            i, _ = console.wait_for(r"Restarting system with command '0 tryboot'", 600, i)
            self.times[f"{name}_total_s"] = time.monotonic() - t0
            console.proc.wait(timeout=120)
        finally:
            finish(console, name)
        # What the kernel was asked for is what the bootloader model gets.
        self.model.reboot(["reboot", "0 tryboot"])

    def run_boot(self, *, tryboot: bool) -> Console:
        """A power-on as the model chooses it; the recorder plays the idle scenario and stops."""
        booted = self.model.power_on()
        assert booted.tryboot is tryboot
        self.boots += 1
        name = f"boot{self.boots}"
        t0 = time.monotonic()
        console = boot(
            self.disk,
            self.tmp_path / name,
            "systemd.setenv=BWC_SCENARIO=/var/lib/bwc/qemu-idle.toml "
            "systemd.journald.forward_to_console=1",
            partition=booted.partition,
            tryboot=booted.tryboot,
        )
        root = {2: "05", 3: "06"}[booted.partition]
        try:
            i, _ = console.wait_for(
                rf"initramfs: root PARTUUID=\S+-{root} is /dev/vda", BOOT_TIMEOUT_S
            )
            i, _ = console.wait_for(r"Started bwc-recorder\.service", BOOT_TIMEOUT_S, i)
            self.times[f"{name}_ready_s"] = time.monotonic() - t0
            i, _ = console.wait_for(r"bwc run: powered off", 600, i)
            console.wait_for(r"bwc-recorder\.service: Deactivated successfully", 120, i)
            self.times[f"{name}_total_s"] = time.monotonic() - t0
        finally:
            finish(console, name)
        return console

    def chain(self) -> Path:
        """p7's evidence, copied out; ``bwc verify`` finds it intact with no finding."""
        unit = copy_out_data(self.disk, self.data, self.tmp_path)
        report = Bwc(self.tmp_path).json(
            "verify", unit / "evidence", "--trust", unit / "identity" / "device-pub.pem", "--json"
        )
        assert report["intact"] is True, report
        assert report["all_findings"] == [], report["all_findings"]
        return unit / "evidence"

    def autoboot(self) -> bytes:
        p1 = partitions(self.disk)[1]
        return fat_read(self.disk, p1, "autoboot.txt", self.tmp_path / "autoboot.txt").read_bytes()

    def record_times(self, name: str) -> None:
        (IMAGE_DIR / f"qemu-{name}-times.txt").write_text(
            "".join(f"{key} {value:.0f}\n" for key, value in self.times.items())
        )
        print(f"QEMU {name}: {self.times}", file=sys.stderr)


def vm_unit(tmp_path: Path) -> VmUnit:
    keys = tmp_path / "fwkeys"
    Bwc(tmp_path)("fw", "keygen", "--out", keys)
    idle = write_scenario(tmp_path / "idle.toml", 20.0)
    disk, _agency_keys, data = provisioned_card(
        tmp_path,
        {"qemu-update.sh": UPDATE_SCRIPT, "qemu-idle.toml": idle.read_text()},
        release_pub=keys / "release-pub.pem",
    )
    return VmUnit(tmp_path, disk, data, keys, PiBootloaderModel(SdImage(disk), tmp_path / "proc"))


def test_a_bad_build_flashed_inside_the_vm_is_rolled_back(tmp_path: Path) -> None:
    vm = vm_unit(tmp_path)
    vm.flash_and_tryboot(bundle_disk(tmp_path, vm.keys, "0.2.0", knob=True), "B", "0.2.0")
    console = vm.run_boot(tryboot=True)  # slot B, tried once: its health check fails
    assert vm.model.boots[-1].partition == 3
    assert any(
        "firmware: rolled back slot B (0.2.0): health check failed: test fault knob HEALTH_FAIL"
        in line
        for line in console.lines
    )
    # autoboot.txt was never changed; the next power-on is slot A's, and it boots and records.
    assert vm.autoboot() == render_autoboot("A")
    console = vm.run_boot(tryboot=False)
    assert vm.model.boots[-1].partition == 2
    assert any("on slot A (0.1.0)" in line for line in console.lines)
    store = vm.chain()
    boots = [(e["slot"], e["tryboot"]) for e in chain_events(store, "boot")]
    assert boots == [("A", False), ("B", True), ("A", False)], boots
    assert [e["slot"] for e in chain_events(store, "firmware_install")] == ["B"]
    rollbacks = chain_events(store, "firmware_rollback")
    assert [e["slot"] for e in rollbacks] == ["B"] and "HEALTH_FAIL" in rollbacks[0]["reason"]
    assert chain_events(store, "firmware_commit") == []
    vm.record_times("rollback")


def test_an_update_flashed_inside_the_vm_is_tried_and_committed(tmp_path: Path) -> None:
    vm = vm_unit(tmp_path)
    vm.flash_and_tryboot(bundle_disk(tmp_path, vm.keys, "0.2.0"), "B", "0.2.0")
    assert "root=PARTUUID=b0c0ca5e-06" in (vm.model.image.mtype(3, "cmdline.txt").decode()), (
        "the slot writer retargeted slot B's cmdline.txt"
    )
    console = vm.run_boot(tryboot=True)  # the bootloader's try-boot of p3
    assert vm.model.boots[-1].partition == 3
    assert any("on slot B (0.2.0)" in line for line in console.lines)
    assert any("firmware: committed slot B (0.2.0)" in line for line in console.lines)
    assert any("bootctl: slot B is now the primary" in line for line in console.lines)
    assert not any("commit or rollback failed" in line for line in console.lines)
    # Outside the VM: p1 names slot B as the primary; the next power-on boots it for good.
    assert vm.autoboot() == render_autoboot("B")
    assert (vm.model.power_on().partition, vm.model.boots[-1].tryboot) == (3, False)
    store = vm.chain()
    boots = [(e["slot"], e["tryboot"]) for e in chain_events(store, "boot")]
    assert boots == [("A", False), ("B", True)], boots
    installs = chain_events(store, "firmware_install")
    assert [(e["slot"], e["version"]) for e in installs] == [("B", "0.2.0")], installs
    assert [e["slot"] for e in chain_events(store, "firmware_commit")] == ["B"]
    assert chain_events(store, "firmware_rollback") == []
    vm.record_times("update")
