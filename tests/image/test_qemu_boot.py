"""The firmware image boots under qemu-system-aarch64 and records evidence that verifies outside it.

Not part of `make test`: `make image` first (root, minutes), then `make image-test` (sets
``BWC_IMAGE_TEST=1``). No emulator runs the Raspberry Pi bootloader, so the test boots slot A's
own kernel and initramfs (read out of the image's boot partition p2) with slot A's
``cmdline.txt`` on the ``virt`` machine, the whole SD-card image as its virtio disk. The data
partition p7 is replaced by a unit provisioned here on the QEMU profile (simulated backends) and
a scenario that presses record; afterwards p7 is copied out with debugfs (nothing is mounted)
and ``bwc verify`` checks the chain on this machine.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.integration.conftest import Bwc, provision_unit, write_scenario

REPO = Path(__file__).resolve().parents[2]
IMAGE_DIR = Path(os.environ.get("BWC_IMAGE_DIR", REPO / "build" / "image"))
BWC_UID = 900
BOOT_TIMEOUT_S = float(os.environ.get("BWC_IMAGE_BOOT_TIMEOUT_S", "900"))

pytestmark = [
    pytest.mark.image,
    pytest.mark.skipif("BWC_IMAGE_TEST" not in os.environ, reason="make image-test only"),
]


@dataclass(frozen=True)
class Partition:
    number: int
    start_b: int
    size_b: int


def partitions(image: Path) -> dict[int, Partition]:
    table = json.loads(
        subprocess.run(
            ["sfdisk", "--json", str(image)], capture_output=True, text=True, check=True
        ).stdout
    )["partitiontable"]
    assert table["unit"] == "sectors"
    parts = {}
    for p in table["partitions"]:
        n = int(re.sub(r".*?(\d+)$", r"\1", p["node"]))
        parts[n] = Partition(n, p["start"] * 512, p["size"] * 512)
    return parts


def fat_read(image: Path, part: Partition, name: str, out: Path) -> Path:
    subprocess.run(
        ["mcopy", "-n", "-i", f"{image}@@{part.start_b}", f"::{name}", str(out)], check=True
    )
    return out


@dataclass
class Console:
    """The VM's serial console, read line by line on a thread and kept for the report."""

    proc: subprocess.Popen[bytes]
    log: Path
    lines: list[str] = field(default_factory=list)
    eof: bool = False
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def start(self) -> None:
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        with self.log.open("a") as log:
            for raw in self.proc.stdout:
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                log.write(line + "\n")
                log.flush()
                self._append(line)
        with self._cond:
            self.eof = True
            self._cond.notify_all()

    def _append(self, line: str) -> None:
        with self._cond:
            self.lines.append(line)
            self._cond.notify_all()

    def wait_for(self, pattern: str, timeout_s: float, start: int = 0) -> tuple[int, str]:
        """Index and text of the first line from ``start`` matching ``pattern``."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout_s
        with self._cond:
            i = start
            while True:
                while i < len(self.lines):
                    if rx.search(self.lines[i]):
                        return i, self.lines[i]
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0 or self.eof:  # every line the VM printed has been read
                    tail = "\n".join(self.lines[-60:])
                    raise AssertionError(
                        f"no console line matching {pattern!r}; last lines:\n{tail}"
                    )
                self._cond.wait(min(left, 1.0))


@pytest.fixture
def vm_disk(tmp_path: Path) -> Iterator[tuple[Path, Path, Partition]]:
    """A copy of the built SD card whose p7 holds a freshly provisioned QEMU-profile unit."""
    scenario = write_scenario(
        tmp_path / "qemu-scenario.toml",
        40.0,
        {"at_s": 15.0, "action": "double_press", "button": "event"},
        {"at_s": 30.0, "action": "hold", "button": "event", "hold_s": 3.5},
    )
    yield provisioned_card(tmp_path, {"qemu-scenario.toml": scenario.read_text()})


def provisioned_card(
    tmp_path: Path, files: dict[str, str], *, release_pub: Path | None = None
) -> tuple[Path, Path, Partition]:
    """The built card, copied, with p7 holding a unit provisioned here (and ``files`` beside
    ``unit/``, owned by the service user); returns the disk, the keys' directory and p7."""
    card = IMAGE_DIR / "bwc-sdcard.img"
    assert card.is_file(), f"{card} is missing: run `make image` first"
    disk = tmp_path / "sdcard.img"
    subprocess.run(["cp", "--sparse=always", str(card), str(disk)], check=True)
    parts = partitions(disk)
    data = parts[7]
    # The unit directory, as a technician's `bwc provision` would leave it on the data partition.
    keys = tmp_path / "keys"
    keys.mkdir()
    unit = provision_unit(keys, device_id="CAM-QEMU-1")
    shutil.rmtree(unit.device)
    tree = tmp_path / "data"
    tree.mkdir()
    # The QEMU profile on the Pi boot control: provisioning records slot A through the privileged
    # boot control on the card (here its copy), then the unit's profile names the VM's disk.
    profile = tmp_path / "qemu-pi.toml"
    text = (REPO / "configs" / "qemu.toml").read_text()
    assert 'boot = "sim"\n' in text
    profile.write_text(text.replace('boot = "sim"\n', f'boot = "pi"\ndisk = "{disk}"\n'))
    Bwc(keys)(
        "provision",
        tree / "unit",
        "--agency-pub",
        unit.agency_pub,
        "--device-id",
        "CAM-QEMU-1",
        "--officer",
        "PC-QEMU",
        "--profile",
        profile,
        *(("--release-pub", release_pub) if release_pub else ()),
    )
    unit_profile = tree / "unit" / "config" / "profile.toml"
    unit_profile.write_text(
        unit_profile.read_text().replace(f'disk = "{disk}"', 'disk = "/dev/vda"')
    )
    for name, text in files.items():
        (tree / name).write_text(text)
    for path in [tree, *tree.rglob("*")]:
        os.chown(path, BWC_UID, BWC_UID, follow_symlinks=False)
    tree.chmod(0o700)
    data_img = tmp_path / "data.ext4"
    subprocess.run(
        [
            "mke2fs",
            "-q",
            "-t",
            "ext4",
            "-L",
            "data",
            "-d",
            str(tree),
            str(data_img),
            f"{data.size_b // 1024}k",
        ],
        check=True,
    )
    subprocess.run(
        [
            "dd",
            f"if={data_img}",
            f"of={disk}",
            "bs=1M",
            f"seek={data.start_b // 2**20}",
            "conv=notrunc,sparse",
            "status=none",
        ],
        check=True,
    )
    return disk, keys, data


def virt_dtb(tmp_path: Path, tryboot: bool, partition: int) -> Path:
    """The virt machine's device tree plus what the Pi bootloader adds for Linux to read:
    ``/chosen/bootloader/{tryboot,partition}`` (32-bit cells), as the bootloader model says."""
    raw = tmp_path / "virt.dtb"
    subprocess.run(
        ["qemu-system-aarch64", "-M", f"virt,dumpdtb={raw}", "-cpu", "cortex-a72",
         "-smp", "2", "-m", "1024", "-nographic"],
        check=True, capture_output=True,
    )  # fmt: skip
    dts = subprocess.run(
        ["dtc", "-q", "-I", "dtb", "-O", "dts", str(raw)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    start = dts.index("\tchosen {\n")
    end = dts.index("\t};\n", start)
    node = (
        f"\t\tbootloader {{\n\t\t\ttryboot = <{int(tryboot)}>;\n"
        f"\t\t\tpartition = <{partition}>;\n\t\t}};\n"
    )
    out = tmp_path / "virt-bootloader.dtb"
    subprocess.run(
        ["dtc", "-q", "-I", "dts", "-O", "dtb", "-o", str(out)],
        input=dts[:end] + node + dts[end:],
        text=True,
        check=True,
    )
    return out


def boot(
    disk: Path,
    tmp_path: Path,
    extra_cmdline: str,
    *,
    partition: int = 2,
    tryboot: bool = False,
    drives: tuple[str, ...] = (),
) -> Console:
    """Power on: the kernel, initramfs and ``cmdline.txt`` of boot partition ``partition`` (the
    one the bootloader chose), and the bootloader's device-tree cells for it."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    parts = partitions(disk)
    kernel = fat_read(disk, parts[partition], "vmlinuz", tmp_path / "vmlinuz")
    initrd = fat_read(disk, parts[partition], "initrd.img", tmp_path / "initrd.img")
    cmdline = fat_read(disk, parts[partition], "cmdline.txt", tmp_path / "cmdline.txt").read_text()
    # The slot's own command line, with the console on the virt machine's UART instead of HDMI.
    args = [a for a in cmdline.split() if not a.startswith("console=") and a != "quiet"]
    append = " ".join([*args, "console=ttyAMA0", extra_cmdline])
    cmd = [
        "qemu-system-aarch64",
        "-M",
        "virt",
        "-cpu",
        "cortex-a72",
        "-smp",
        "2",
        "-m",
        "1024",
        "-nographic",
        "-monitor",
        "none",
        # A reboot ends QEMU: the test plays the bootloader for the next power-on.
        "-no-reboot",
        "-dtb",
        str(virt_dtb(tmp_path, tryboot=tryboot, partition=partition)),
        "-kernel",
        str(kernel),
        "-initrd",
        str(initrd),
        "-append",
        append,
        "-drive",
        f"file={disk},format=raw,if=virtio",
    ]
    for drive in drives:
        cmd += ["-drive", drive]
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    console = Console(proc, tmp_path / "console.log")
    console.start()
    return console


def copy_out_data(disk: Path, data: Partition, tmp_path: Path) -> Path:
    """p7 out of the disk image, its journal replayed by e2fsck, its unit directory by debugfs."""
    part = tmp_path / "p7.ext4"
    subprocess.run(
        [
            "dd",
            f"if={disk}",
            f"of={part}",
            "bs=1M",
            f"skip={data.start_b // 2**20}",
            f"count={data.size_b // 2**20}",
            "status=none",
        ],
        check=True,
    )
    fsck = subprocess.run(["e2fsck", "-fy", str(part)], check=False, capture_output=True, text=True)
    assert fsck.returncode in (0, 1), fsck.stdout + fsck.stderr
    out = tmp_path / "copied"
    out.mkdir()
    subprocess.run(
        ["debugfs", "-R", f"rdump /unit {out}", str(part)], check=True, capture_output=True
    )
    return out / "unit"


def test_image_boots_to_buffering_records_and_the_evidence_verifies_outside(
    vm_disk: tuple[Path, Path, Partition], tmp_path: Path
) -> None:
    disk, keys, data = vm_disk
    t0 = time.monotonic()
    console = boot(
        disk,
        tmp_path,
        "systemd.setenv=BWC_SCENARIO=/var/lib/bwc/qemu-scenario.toml "
        "systemd.journald.forward_to_console=1 systemd.show_status=1",
    )
    try:
        i, _ = console.wait_for(r"initramfs: root PARTUUID=\S+-05 is /dev/vda5", BOOT_TIMEOUT_S)
        # The root helper (root, before the recorder) read p1's autoboot.txt through FAT.
        i, _ = console.wait_for(r"bootctl: nothing to do", BOOT_TIMEOUT_S, i)
        i, _ = console.wait_for(r"Finished bwc-bootsel\.service", BOOT_TIMEOUT_S, i)
        i, _ = console.wait_for(r"bwc run: simulated unit CAM-QEMU-1 on slot A", BOOT_TIMEOUT_S, i)
        # Type=notify: systemd says "Started" only after the unit's READY=1 (sent once buffering).
        i, _ = console.wait_for(r"Started bwc-recorder\.service", BOOT_TIMEOUT_S, i)
        ready_s = time.monotonic() - t0
        _, done = console.wait_for(
            r"bwc run: powered off; 1 recording this boot; \d+ watchdog ping", 600, i
        )
        pings = int(re.search(r"(\d+) watchdog ping", done).group(1))  # type: ignore[union-attr]
        console.wait_for(r"bwc-recorder\.service: Deactivated successfully", 120, i)
        total_s = time.monotonic() - t0
    finally:
        console.proc.kill()
        console.proc.wait()
        shutil.copyfile(tmp_path / "console.log", IMAGE_DIR / "qemu-console.log")
    assert pings >= 2
    assert not any("Watchdog timeout" in line for line in console.lines)
    assert not any(
        re.search(r"bwc-recorder\.service: Main process exited, code=(?!exited, status=0)", line)
        for line in console.lines
    )
    unit = copy_out_data(disk, data, tmp_path)
    # The recorder ran as the service user: what it wrote inside the VM belongs to bwc.
    sealed = sorted((unit / "evidence").rglob("*"))
    assert sealed and {p.stat().st_uid for p in sealed} == {BWC_UID}, "written by uid 900"
    bwc = Bwc(tmp_path)
    report = bwc.json(
        "verify", unit / "evidence", "--trust", unit / "identity" / "device-pub.pem", "--json"
    )
    assert report["intact"] is True, report
    assert report["all_findings"] == [], "no boot-control fault, nothing unexplained"
    assert report["boots"][-1]["clean"] is True and report["boots"][-1]["device_id"] == "CAM-QEMU-1"
    exported = tmp_path / "export"
    agency_key = keys / "agency" / "agency-key.pem"
    trust = ("--trust", unit / "identity" / "device-pub.pem")  # strict export: origin pinned
    bwc("export", unit / "evidence", "--key", agency_key, "--out", exported, *trust)
    assert list(exported.rglob("*.mp4")), "one recording exported as MP4"
    times = IMAGE_DIR / "qemu-times.txt"
    times.write_text(
        f"boot_to_ready_s {ready_s:.0f}\nscenario_done_s {total_s:.0f}\npings {pings}\n"
    )
    print(
        f"QEMU: READY after {ready_s:.0f} s, scenario done after {total_s:.0f} s, {pings} pings",
        file=sys.stderr,
    )


def test_the_slot_image_wraps_into_a_bundle_that_inspects(tmp_path: Path) -> None:
    """What technicians flash is exactly what was built: `bwc fw build` takes build/image/slot."""
    slot = IMAGE_DIR / "slot"
    assert sorted(p.name for p in slot.iterdir()) == ["boot.vfat", "packages.txt", "root.ext4"]
    packages = (slot / "packages.txt").read_text().splitlines()
    assert any(line.startswith("deb linux-image-") for line in packages)
    assert any(line.startswith("python openbwc ") for line in packages)
    bwc = Bwc(tmp_path)
    bwc("fw", "keygen", "--out", tmp_path / "keys")
    bundle = tmp_path / "fw.bundle"
    manifest = bwc.json(
        "fw", "build", slot, "--version", "0.1.0", "--security-version", "1",
        "--compatible", "bwc-pi5-v1", "--key", tmp_path / "keys" / "release-key.pem",
        "--out", bundle, "--json",
    )  # fmt: skip
    assert manifest["manifest"]["payload"]["kind"] == "tar"
    out = bwc("fw", "inspect", bundle, "--trust", tmp_path / "keys" / "release-pub.pem").stdout
    assert "bwc-pi5-v1" in out
