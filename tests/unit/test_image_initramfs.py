"""image/initramfs.py: module load order from modules.dep, and a byte-stable newc archive."""

from __future__ import annotations

import gzip
import importlib.util
import lzma
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]
KERNEL = "6.1.0-99-arm64"


def load_initramfs() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "image_initramfs", REPO / "image" / "initramfs.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def fake_root(tmp_path: Path) -> Path:
    """A tree shaped like the arm64 root: busybox, and ext4 needing jbd2 and mbcache (xz)."""
    root = tmp_path / "root"
    mods = root / "lib" / "modules" / KERNEL
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "busybox").write_bytes(b"\x7fELF busybox")
    for rel, body in {
        "kernel/fs/ext4/ext4.ko.xz": b"ext4",
        "kernel/fs/jbd2/jbd2.ko.xz": b"jbd2",
        "kernel/fs/mbcache.ko.xz": b"mbcache",
        "kernel/lib/crc16.ko.xz": b"crc16",
        "kernel/drivers/block/virtio_blk.ko": b"virtio_blk",
    }.items():
        (mods / rel).parent.mkdir(parents=True, exist_ok=True)
        (mods / rel).write_bytes(lzma.compress(body) if rel.endswith(".xz") else body)
    (mods / "modules.dep").write_text(
        "kernel/fs/ext4/ext4.ko.xz: kernel/fs/mbcache.ko.xz kernel/fs/jbd2/jbd2.ko.xz "
        "kernel/lib/crc16.ko.xz\n"
        "kernel/fs/jbd2/jbd2.ko.xz:\n"
        "kernel/fs/mbcache.ko.xz:\n"
        "kernel/lib/crc16.ko.xz:\n"
        "kernel/drivers/block/virtio_blk.ko:\n"
    )
    return root


def read_newc(archive: bytes) -> dict[str, tuple[int, bytes, int, int]]:
    """name -> (mode, data, rdev major, rdev minor) of a newc cpio."""
    out: dict[str, tuple[int, bytes, int, int]] = {}
    pos = 0
    while True:
        header = archive[pos : pos + 110]
        assert header[:6] == b"070701"
        fields = [int(header[6 + 8 * i : 14 + 8 * i], 16) for i in range(13)]
        namesize, filesize = fields[11], fields[6]
        name_end = pos + 110 + namesize
        name = archive[pos + 110 : name_end - 1].decode()
        data_start = name_end + (-name_end % 4)
        data = archive[data_start : data_start + filesize]
        pos = data_start + filesize + (-(data_start + filesize) % 4)
        if name == "TRAILER!!!":
            return out
        assert fields[5] == 1767225600 and fields[2] == fields[3] == 0, name  # mtime, uid, gid
        out[name] = (fields[1], data, fields[9], fields[10])


def test_dependencies_load_first_and_missing_modules_are_skipped(tmp_path: Path) -> None:
    initramfs = load_initramfs()
    index = initramfs.module_index(fake_root(tmp_path) / "lib" / "modules" / KERNEL)
    order = initramfs.load_order(index, ["virtio_blk", "ext4", "sdhci_iproc", "jbd2"])
    names = [Path(p).name for p in order]
    assert names == ["virtio_blk.ko", "crc16.ko.xz", "jbd2.ko.xz", "mbcache.ko.xz", "ext4.ko.xz"]


def test_the_archive_is_byte_stable_and_holds_init_busybox_modules_and_console(
    tmp_path: Path,
) -> None:
    initramfs = load_initramfs()
    root = fake_root(tmp_path)
    init = REPO / "image" / "initramfs-init"
    first = initramfs.build(root, KERNEL, init, ["ext4", "virtio_blk"], 1767225600)
    (root / "bin" / "busybox").touch()  # a newer mtime on this machine changes nothing
    assert initramfs.build(root, KERNEL, init, ["ext4", "virtio_blk"], 1767225600) == first
    files = read_newc(gzip.decompress(first))
    assert files["init"][1] == init.read_bytes() and files["init"][0] & 0o777 == 0o755
    assert files["bin/busybox"][1] == b"\x7fELF busybox"
    assert files["lib/modules/ext4.ko"][1] == b"ext4", "modules are stored decompressed"
    assert files["etc/modules.order"][1].decode().split() == [
        "crc16.ko",
        "jbd2.ko",
        "mbcache.ko",
        "ext4.ko",
        "virtio_blk.ko",
    ]
    assert files["dev/console"][2:] == (5, 1)
    assert list(files) == ["dev/console", *sorted(n for n in files if n != "dev/console")]
