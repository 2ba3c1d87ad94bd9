"""Assemble the unit's tiny initramfs natively, from the arm64 root tree the image build made.

Debian's arm64 kernel builds the SD-card (sdhci-iproc, bcm2835), virtio and ext4 drivers as
modules, so the root filesystem cannot be mounted without an initramfs. Generating one with
initramfs-tools runs under qemu-user and took most of a 33-minute build; this one is a
busybox-static binary, the listed modules with their dependencies (from the kernel's own
``modules.dep``, decompressed here) and ``image/initramfs-init``, packed as a newc cpio with
sorted names, root ownership and one fixed mtime, gzipped without a timestamp: the same root
tree always gives the same bytes. It never runs anything from the arm64 tree.

Usage: initramfs.py ROOT KERNEL_VERSION INIT OUT EPOCH MODULE...
"""

from __future__ import annotations

import gzip
import lzma
import stat
import sys
from pathlib import Path

NEWC_MAGIC = b"070701"


def module_index(modules_dir: Path) -> dict[str, tuple[str, list[str]]]:
    """Map each module name (``ext4``, dashes as underscores) to (path, dependency paths)."""
    index: dict[str, tuple[str, list[str]]] = {}
    for line in (modules_dir / "modules.dep").read_text().splitlines():
        path, _, deps = line.partition(":")
        name = Path(path).name.split(".ko")[0].replace("-", "_")
        index[name] = (path, deps.split())
    return index


def load_order(index: dict[str, tuple[str, list[str]]], wanted: list[str]) -> list[str]:
    """Module paths in an order insmod accepts: every dependency before its user.

    ``modules.dep`` lists a module's dependencies deepest last, so loading them reversed, each
    once, then the module itself is enough. Names missing from this kernel (a driver built in,
    say) are skipped.
    """
    by_path = {path: deps for path, deps in index.values()}
    order: list[str] = []

    def visit(path: str) -> None:
        if path in order:
            return
        for dep in reversed(by_path.get(path, [])):
            visit(dep)
        order.append(path)

    for name in wanted:
        entry = index.get(name.replace("-", "_"))
        if entry is not None:
            visit(entry[0])
    return order


def _module_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    if path.suffix == ".xz":
        return lzma.decompress(data)
    if path.suffix == ".zst":
        raise SystemExit(f"{path}: zstd-compressed modules are not supported")
    return data


def _newc_entry(
    name: str, mode: int, data: bytes, ino: int, mtime: int, rdev: tuple[int, int] = (0, 0)
) -> bytes:
    encoded = name.encode() + b"\0"
    fields = [ino, mode, 0, 0, 1, mtime, len(data), 0, 0, *rdev, len(encoded), 0]
    header = NEWC_MAGIC + b"".join(f"{value:08x}".encode() for value in fields)
    out = header + encoded
    out += b"\0" * (-len(out) % 4)
    out += data
    out += b"\0" * (-len(out) % 4)
    return out


def build(root: Path, kernel: str, init: Path, modules: list[str], epoch: int) -> bytes:
    """The gzipped newc archive for ``kernel`` from the arm64 tree at ``root``."""
    modules_dir = root / "lib" / "modules" / kernel
    order = load_order(module_index(modules_dir), modules)
    dirs = {"bin", "dev", "etc", "lib", "mnt", "proc", "root", "sys", "lib/modules"}
    files: dict[str, tuple[int, bytes]] = {
        "init": (0o755, init.read_bytes()),
        "bin/busybox": (0o755, (root / "bin" / "busybox").read_bytes()),
    }
    names = []
    for rel in order:
        name = Path(rel).name.removesuffix(".xz")
        names.append(name)
        files[f"lib/modules/{name}"] = (0o644, _module_bytes(modules_dir / rel))
    files["etc/modules.order"] = (0o644, "".join(f"{n}\n" for n in names).encode())
    entries = [(d, stat.S_IFDIR | 0o755, b"") for d in dirs]
    entries += [(path, stat.S_IFREG | mode, data) for path, (mode, data) in files.items()]
    # /dev/console must exist before the kernel runs /init, or init has no stdout.
    archive = [_newc_entry("dev/console", stat.S_IFCHR | 0o600, b"", 1, epoch, (5, 1))]
    for ino, (path, mode, data) in enumerate(sorted(entries), start=2):
        archive.append(_newc_entry(path, mode, data, ino, epoch))
    archive.append(_newc_entry("TRAILER!!!", 0, b"", 0, 0))
    return gzip.compress(b"".join(archive), compresslevel=9, mtime=0)


def main(argv: list[str]) -> int:
    if len(argv) < 6:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    root, kernel, init, out, epoch, *modules = argv[1:]
    Path(out).write_bytes(build(Path(root), kernel, Path(init), modules, int(epoch)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
