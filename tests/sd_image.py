"""Build a real SD-card image for tests: MBR by sfdisk, FAT by mkfs.vfat + mcopy, ext4 by mkfs.ext4.

Small partitions (a few MiB) but the agreed layout of docs/unit-layout.md: p1 boot-select FAT with
autoboot.txt, p2/p3 FAT boot partitions with config.txt and cmdline.txt, p4 extended, p5/p6 ext4
roots, p7 ext4 data. No loop devices: every tool works on the image file at an offset.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from firmware.boot_control import render_autoboot

DISK_ID = 0x6277630A
MIB = 1 << 20
SECTOR = 512
# (partition, size in MiB); p4 is the extended partition holding p5..p7.
SIZES_MIB = {1: 2, 2: 4, 3: 4, 5: 6, 6: 6, 7: 4}
TOOLS = ("sfdisk", "mkfs.vfat", "mcopy", "mtype", "mkfs.ext4", "fsck.vfat")


def require_tools() -> None:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        pytest.fail(f"missing tools (installed by .ci/run): {', '.join(missing)}")


def run(*cmd: str, stdin: bytes | None = None) -> bytes:
    return subprocess.run(cmd, input=stdin, check=True, capture_output=True).stdout


def make_fat(path: Path, size_mib: int, files: Mapping[str, bytes], label: str) -> Path:
    """A FAT filesystem image holding ``files`` in its root directory."""
    path.unlink(missing_ok=True)
    run("mkfs.vfat", "-C", "-n", label, str(path), str(size_mib * 1024))
    for name, data in files.items():
        src = path.with_name(path.name + "." + name)
        src.write_bytes(data)
        run("mcopy", "-o", "-i", str(path), str(src), "::" + name)
        src.unlink()
    return path


def make_ext4(path: Path, size_mib: int, files: Mapping[str, bytes], label: str) -> Path:
    tree = path.with_name(path.name + ".d")
    tree.mkdir()
    for name, data in files.items():
        (tree / name).write_bytes(data)
    env_free = ["-E", "root_owner=0:0", "-U", "clear", "-T", "default"]
    run("mkfs.ext4", "-q", "-F", "-L", label, *env_free, "-d", str(tree), str(path), f"{size_mib}M")
    shutil.rmtree(tree)
    return path


def boot_files(slot_root_partition: int, version: str) -> dict[str, bytes]:
    return {
        "config.txt": f"# bwc test boot partition {version}\nkernel=kernel8.img\n".encode(),
        "cmdline.txt": (
            f"console=serial0,115200 root=PARTUUID={DISK_ID:08x}-{slot_root_partition:02x} "
            "rootfstype=ext4 ro rootwait\n"
        ).encode(),
        "kernel8.img": f"kernel {version}\n".encode() * 64,
        "start4.elf": b"firmware\n",
    }


@dataclass(frozen=True)
class SdImage:
    path: Path

    def partitions(self) -> dict[int, tuple[int, int]]:
        """(start, size) in bytes of each partition, as sfdisk reads the table."""
        table = json.loads(run("sfdisk", "--json", str(self.path)))["partitiontable"]
        out = {}
        for part in table["partitions"]:
            number = int(part["node"].rsplit(str(self.path), 1)[1])
            out[number] = (part["start"] * SECTOR, part["size"] * SECTOR)
        return out

    def mtype(self, partition: int, name: str) -> bytes:
        return self.mtype_at(self.partitions()[partition][0], name)

    def mtype_at(self, start: int, name: str) -> bytes:
        return run("mtype", "-i", f"{self.path}@@{start}", "::" + name)

    def fsck_fat(self, partition: int) -> None:
        """fsck.vfat -n on a copy of the partition: the filesystem must be clean."""
        start, size = self.partitions()[partition]
        copy = self.path.with_name(self.path.name + f".p{partition}")
        with self.path.open("rb") as f:
            f.seek(start)
            copy.write_bytes(f.read(size))
        try:
            run("fsck.vfat", "-n", str(copy))
        finally:
            copy.unlink()


def build_sd_image(path: Path, *, version: str = "0.1.0", primary: str = "A") -> SdImage:
    """A fresh card as the image build lays it out, slot A holding ``version``."""
    require_tools()
    work = path.with_name(path.name + ".parts")
    work.mkdir(exist_ok=True)
    total_mib = (
        1
        + SIZES_MIB[1]
        + SIZES_MIB[2]
        + SIZES_MIB[3]
        + 1
        + sum(SIZES_MIB[n] for n in (5, 6, 7))
        + 3
    )
    with path.open("wb") as f:
        f.truncate(total_mib * MIB)
    script = "\n".join(
        [
            "label: dos",
            f"label-id: 0x{DISK_ID:08x}",
            f"start=2048, size={SIZES_MIB[1] * 2048}, type=c",
            f"size={SIZES_MIB[2] * 2048}, type=c",
            f"size={SIZES_MIB[3] * 2048}, type=c",
            "type=5",
            f"size={SIZES_MIB[5] * 2048}, type=83",
            f"size={SIZES_MIB[6] * 2048}, type=83",
            f"size={SIZES_MIB[7] * 2048}, type=83",
            "",
        ]
    )
    run("sfdisk", "-q", str(path), stdin=script.encode())
    image = SdImage(path)
    parts = image.partitions()
    contents = {
        1: make_fat(
            work / "p1", SIZES_MIB[1], {"autoboot.txt": render_autoboot(primary)}, "BOOTSEL"
        ),
        2: make_fat(work / "p2", SIZES_MIB[2], boot_files(5, version), "BOOT_A"),
        3: make_fat(work / "p3", SIZES_MIB[3], {"README.txt": b"empty slot\n"}, "BOOT_B"),
        5: make_ext4(work / "p5", SIZES_MIB[5], {"VERSION": version.encode()}, "root_a"),
        7: make_ext4(work / "p7", SIZES_MIB[7], {}, "data"),
    }
    with path.open("r+b") as f:
        for number, part in contents.items():
            start, size = parts[number]
            data = part.read_bytes()
            assert len(data) <= size, (number, len(data), size)
            f.seek(start)
            f.write(data)
    shutil.rmtree(work)
    return image


def build_slot_image(out: Path, version: str, *, extra: Mapping[str, bytes] | None = None) -> Path:
    """A slot image directory as `make image` emits it: boot.vfat, root.ext4, packages.txt."""
    require_tools()
    out.mkdir(parents=True)
    make_fat(out / "boot.vfat", SIZES_MIB[2], boot_files(5, version), "BOOT")
    make_ext4(
        out / "root.ext4", SIZES_MIB[5], {"VERSION": version.encode(), **(extra or {})}, "root"
    )
    (out / "packages.txt").write_text(f"bwc {version}\npython3 3.11.2-1\n")
    return out


def build_two_slot_card(path: Path) -> SdImage:
    """A card whose slot B boot partition holds firmware files too, so either slot boots."""
    image = build_sd_image(path)
    start = image.partitions()[3][0]
    fat = make_fat(
        path.with_name(path.name + ".p3"), SIZES_MIB[3], boot_files(6, "0.2.0"), "BOOT_B"
    )
    with path.open("r+b") as f:
        f.seek(start)
        f.write(fat.read_bytes())
    fat.unlink()
    return image
