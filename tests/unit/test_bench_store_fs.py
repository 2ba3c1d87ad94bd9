"""bench.store_fs: the benchmarks' store sits on a unit-like ext4 where the machine allows one,
says where it sits, and leaves no mount behind."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from bench.store_fs import store_fs


def _mounted(path: Path) -> bool:
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == str(path) for line in f)


def test_host_fs_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BWC_BENCH_HOST_FS", "1")
    with store_fs() as place:
        (place.path / "x").write_bytes(b"1")
        assert place.kind.startswith("host filesystem")
        assert "store on host filesystem" in place.describe()
    assert not place.path.exists()


def test_unit_like_ext4_or_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BWC_BENCH_HOST_FS", raising=False)
    with store_fs() as place:
        (place.path / "x").write_bytes(b"1")
        fs = subprocess.run(
            ["stat", "-f", "-c", "%T", str(place.path)], capture_output=True, text=True, check=True
        ).stdout.strip()
        if place.kind.startswith("unit-like ext4"):
            assert fs == "ext2/ext3"  # how stat names any ext filesystem
            assert _mounted(place.path)
        else:
            assert place.kind.startswith("host filesystem")
            if os.geteuid() == 0:
                pytest.skip(f"running as root but no loop mount here: {place.kind}")
    assert not _mounted(place.path)
    assert not place.path.exists()


def test_no_mount_is_left_behind_while_a_descriptor_is_still_open() -> None:
    with store_fs() as place:
        fd = os.open(place.path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert not _mounted(place.path)
    finally:
        os.close(fd)
