"""Where the benchmarks put an evidence store: a filesystem made like the unit's data partition.

The unit seals into its own ext4 partition (``image/build.sh``: ``mke2fs -t ext4 -b 4096``, journal
on, mounted ``noatime``). A benchmark that seals into the build machine's temporary directory
measures that machine's filesystem instead, and those differ by an order of magnitude in what a
sealer does most often, creating a file: on the development VM (a large ext4 without a journal)
``open(O_CREAT)`` costs 190 to 730 µs of CPU, on a fresh journalled ext4 of the unit's kind about
35 µs. So, where it can (root, ``mke2fs`` and loop devices available), ``store_fs`` makes a small
ext4 image like the unit's, loop-mounts it and yields a directory on it; elsewhere it yields a
temporary directory on the host and says so. ``describe()`` of the yielded place goes into every
note, so a figure always names the filesystem it was taken on.

The writes are as durable there as on the unit (fsync reaches the loop device's backing file).
"""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

IMAGE_MIB = 8192
"""Room for every store one benchmark makes (``bench.press`` seals about 1 GB); a sparse file, so
the host only gives it the blocks written."""


@dataclass(frozen=True)
class StorePlace:
    path: Path
    kind: str
    """``"unit-like ext4 (loop)"`` or ``"host filesystem (<type>)"``."""

    def describe(self) -> str:
        return f"store on {self.kind}"


def _fs_type(path: Path) -> str:
    try:
        out = subprocess.run(
            ["stat", "-f", "-c", "%T", str(path)], capture_output=True, text=True, check=True
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _can_loop_mount() -> bool:
    return (
        hasattr(os, "geteuid")
        and os.geteuid() == 0
        and shutil.which("mke2fs") is not None
        and shutil.which("mount") is not None
        and os.environ.get("BWC_BENCH_HOST_FS") is None
    )


def _unmount(mnt: Path) -> None:
    """Unmount, even while something still holds a descriptor on it (a sealer not yet
    collected): then lazily, so the filesystem goes when the last descriptor does."""
    gc.collect()  # sealers hold their store's directory open until collected
    if subprocess.run(["umount", str(mnt)], capture_output=True, check=False).returncode:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, check=False)


@contextlib.contextmanager
def store_fs(prefix: str = "bench-") -> Iterator[StorePlace]:
    """A directory for stores, on a unit-like ext4 if this machine allows one (see the module
    docstring); ``BWC_BENCH_HOST_FS=1`` forces the host's temporary directory."""
    with tempfile.TemporaryDirectory(prefix=prefix) as d:
        root = Path(d)
        if _can_loop_mount():
            image, mnt = root / "store.ext4", root / "mnt"
            mnt.mkdir()
            with open(image, "wb") as f:
                f.truncate(IMAGE_MIB << 20)
            made = subprocess.run(
                ["mke2fs", "-q", "-F", "-t", "ext4", "-b", "4096", str(image)],
                capture_output=True,
                check=False,
            )
            mounted = made.returncode == 0 and (
                subprocess.run(
                    ["mount", "-o", "loop,noatime,nodev,nosuid", str(image), str(mnt)],
                    capture_output=True,
                    check=False,
                ).returncode
                == 0
            )
            if mounted:
                try:
                    yield StorePlace(mnt, "unit-like ext4 (loop, 4 KiB blocks, journal, noatime)")
                finally:
                    _unmount(mnt)
                return
        yield StorePlace(root, f"host filesystem ({_fs_type(root)}, {root.parent})")
