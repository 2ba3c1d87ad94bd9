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
from pathlib import Path

import pytest

from firmware.boot_control import render_autoboot
from tests.image.test_qemu_boot import (
    BOOT_TIMEOUT_S,
    IMAGE_DIR,
    Console,
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


def bundle_disk(tmp_path: Path, keys: Path, version: str) -> Path:
    """A bundle of build/image/slot (the same slot image, a newer version), on an ext4 disk."""
    bwc = Bwc(tmp_path)
    folder = tmp_path / "bundle"
    folder.mkdir()
    epoch = next(
        line.split()[1]
        for line in (IMAGE_DIR / "build-info.txt").read_text().splitlines()
        if line.startswith("source_date_epoch ")
    )
    bwc(
        "fw", "build", IMAGE_DIR / "slot", "--version", version, "--security-version", "1",
        "--compatible", COMPATIBLE, "--key", keys / "release-key.pem",
        "--out", folder / "fw.bundle", "--build-utc", epoch,
    )  # fmt: skip
    size_mib = (folder / "fw.bundle").stat().st_size // 2**20 + 64
    disk = tmp_path / "bundle.ext4"
    subprocess.run(
        ["mke2fs", "-q", "-t", "ext4", "-L", "bundle", "-d", str(folder), str(disk),
         f"{size_mib}M"],
        check=True,
    )  # fmt: skip
    (folder / "fw.bundle").unlink()
    return disk


def finish(console: Console, name: str) -> None:
    console.proc.kill()
    console.proc.wait()
    shutil.copyfile(console.log, IMAGE_DIR / f"qemu-update-{name}.log")


def test_an_update_flashed_inside_the_vm_is_tried_and_committed(tmp_path: Path) -> None:
    keys = tmp_path / "fwkeys"
    Bwc(tmp_path)("fw", "keygen", "--out", keys)
    idle = write_scenario(tmp_path / "idle.toml", 20.0)
    disk, _agency_keys, data = provisioned_card(
        tmp_path,
        {"qemu-update.sh": UPDATE_SCRIPT, "qemu-idle.toml": idle.read_text()},
        release_pub=keys / "release-pub.pem",
    )
    bundle = bundle_disk(tmp_path, keys, "0.2.0")
    model = PiBootloaderModel(SdImage(disk), tmp_path / "proc")
    times: dict[str, float] = {}

    # 1. Slot A, normal boot: the technician's update as root, then reboot "0 tryboot".
    first = model.power_on()
    assert (first.partition, first.tryboot) == (2, False)
    t0 = time.monotonic()
    console = boot(
        disk,
        tmp_path / "boot1",
        'systemd.run="/bin/sh /var/lib/bwc/qemu-update.sh" systemd.run_success_action=none '
        "systemd.run_failure_action=none systemd.journald.forward_to_console=1",
        partition=first.partition,
        tryboot=first.tryboot,
        drives=(f"file={bundle},format=raw,if=virtio,readonly=on",),
    )
    try:
        i, _ = console.wait_for(r"initramfs: root PARTUUID=\S+-05 is /dev/vda5", BOOT_TIMEOUT_S)
        i, _ = console.wait_for(r"qemu-update: recorder ready", BOOT_TIMEOUT_S, i)
        times["boot1_ready_s"] = time.monotonic() - t0
        i, _ = console.wait_for(r'"event": "plan"', BOOT_TIMEOUT_S, i)
        t_flash = time.monotonic()
        i, staged = console.wait_for(r'"event": "staged"', FLASH_TIMEOUT_S, i)
        times["flash_s"] = time.monotonic() - t_flash
        assert '"slot": "B"' in staged and '"version": "0.2.0"' in staged, staged
        i, _ = console.wait_for(r"Restarting system with command '0 tryboot'", 600, i)
        times["boot1_total_s"] = time.monotonic() - t0
        console.proc.wait(timeout=120)
    finally:
        finish(console, "boot1")
    # What the kernel was asked for is what the bootloader model gets.
    model.reboot(["reboot", "0 tryboot"])

    # 2. The bootloader's try-boot: p1's [tryboot] names slot B's boot partition.
    tried = model.power_on()
    assert (tried.partition, tried.tryboot) == (3, True)
    assert "root=PARTUUID=b0c0ca5e-06" in tried.cmdline, "the slot writer retargeted cmdline.txt"
    t0 = time.monotonic()
    console = boot(
        disk,
        tmp_path / "boot2",
        "systemd.setenv=BWC_SCENARIO=/var/lib/bwc/qemu-idle.toml "
        "systemd.journald.forward_to_console=1",
        partition=tried.partition,
        tryboot=tried.tryboot,
    )
    try:
        i, _ = console.wait_for(r"initramfs: root PARTUUID=\S+-06 is /dev/vda6", BOOT_TIMEOUT_S)
        i, _ = console.wait_for(r"on slot B \(0\.2\.0\)", BOOT_TIMEOUT_S, i)
        i, _ = console.wait_for(r"Started bwc-recorder\.service", BOOT_TIMEOUT_S, i)
        times["boot2_ready_s"] = time.monotonic() - t0
        i, _ = console.wait_for(r"bwc run: powered off", 600, i)
        console.wait_for(r"bwc-recorder\.service: Deactivated successfully", 120, i)
        times["boot2_total_s"] = time.monotonic() - t0
    finally:
        finish(console, "boot2")
    assert any("bootctl: slot B is now the primary" in line for line in console.lines)
    assert not any("commit or rollback failed" in line for line in console.lines)

    # Outside the VM: p1 names slot B as the primary, and the next power-on boots it for good.
    parts = partitions(disk)
    autoboot = fat_read(disk, parts[1], "autoboot.txt", tmp_path / "autoboot.txt").read_bytes()
    assert autoboot == render_autoboot("B")
    after = model.power_on()
    assert (after.partition, after.tryboot) == (3, False)

    unit = copy_out_data(disk, data, tmp_path)
    report = Bwc(tmp_path).json(
        "verify", unit / "evidence", "--trust", unit / "identity" / "device-pub.pem", "--json"
    )
    assert report["intact"] is True, report
    assert report["all_findings"] == [], report["all_findings"]
    store = unit / "evidence"
    boots = [(e["slot"], e["tryboot"]) for e in chain_events(store, "boot")]
    assert boots == [("A", False), ("B", True)], boots
    installs = chain_events(store, "firmware_install")
    assert [(e["slot"], e["version"]) for e in installs] == [("B", "0.2.0")], installs
    assert [e["slot"] for e in chain_events(store, "firmware_commit")] == ["B"]
    assert chain_events(store, "firmware_rollback") == []

    (IMAGE_DIR / "qemu-update-times.txt").write_text(
        "".join(f"{name} {value:.0f}\n" for name, value in times.items())
    )
    print(f"QEMU update: {times}", file=sys.stderr)
