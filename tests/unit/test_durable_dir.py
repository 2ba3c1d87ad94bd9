"""hal.durable.DurableDir: the sealer's write path. The commit file's name appears only after the
other files are complete under theirs; planted links are never followed; one descriptor."""

from __future__ import annotations

import errno
import fcntl
import os
import tempfile
from pathlib import Path

import pytest

from hal.durable import PAGE, Direct, DurableDir, PageBuffer

FILES = [("0000000001.bin", b"payload" * 1000), ("0000000001.sig", b"s" * 64)]
COMMIT = ("0000000001.json", b'{"seq":1}')


def test_commit_entry_writes_every_file_and_leaves_no_temp(tmp_path: Path) -> None:
    d = DurableDir(tmp_path)
    d.commit_entry(FILES, COMMIT, tmp_prefix=".tmp-")
    d.close()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == dict([*FILES, COMMIT])


@pytest.mark.parametrize("cut_after", [0, 1, 2])
def test_a_cut_at_any_rename_never_shows_the_commit_before_the_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cut_after: int
) -> None:
    """A failure (the process dying) at the n-th rename: the commit name exists only if every
    other final name does, and whatever has a final name is complete."""
    d = DurableDir(tmp_path)
    real_replace = os.replace
    calls: list[tuple[object, ...]] = []

    def replace(*args: object, **kwargs: object) -> None:
        if len(calls) == cut_after:
            raise OSError("cut")
        calls.append(args)
        real_replace(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="cut"):
        d.commit_entry(FILES, COMMIT, tmp_prefix=".tmp-")
    names = {p.name for p in tmp_path.iterdir()}
    assert COMMIT[0] not in names
    for name, data in FILES:
        if name in names:
            assert (tmp_path / name).read_bytes() == data
        else:
            assert (tmp_path / f".tmp-{name}").read_bytes() == data
    assert (tmp_path / f".tmp-{COMMIT[0]}").read_bytes() == COMMIT[1]


def test_a_planted_link_at_a_temp_name_is_not_followed(tmp_path: Path) -> None:
    store, victim = tmp_path / "store", tmp_path / "victim"
    store.mkdir()
    victim.write_bytes(b"keep me")
    (store / ".tmp-0000000001.sig").symlink_to(victim)
    d = DurableDir(store)
    with pytest.raises(OSError):
        d.commit_entry(FILES, COMMIT, tmp_prefix=".tmp-")
    assert victim.read_bytes() == b"keep me"
    assert not (store / COMMIT[0]).exists()


def test_writes_go_to_the_directory_opened_not_one_put_in_its_place(tmp_path: Path) -> None:
    store, moved = tmp_path / "store", tmp_path / "moved"
    store.mkdir()
    d = DurableDir(store)
    store.rename(moved)
    (tmp_path / "elsewhere").mkdir()
    store.symlink_to(tmp_path / "elsewhere")
    d.commit_entry(FILES, COMMIT, tmp_prefix=".tmp-")
    assert (moved / COMMIT[0]).read_bytes() == COMMIT[1]
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_close_releases_the_descriptor(tmp_path: Path) -> None:
    before = len(os.listdir("/proc/self/fd"))
    d = DurableDir(tmp_path)
    assert len(os.listdir("/proc/self/fd")) == before + 1
    d.close()
    d.close()  # idempotent
    assert len(os.listdir("/proc/self/fd")) == before


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, 3 * 4096 + 17, 1_300_016])
@pytest.mark.parametrize("offset", [0, 1])
def test_direct_data_lands_byte_for_byte(tmp_path: Path, size: int, offset: int) -> None:
    """Page-aligned views go out with O_DIRECT for their whole pages; a view that is not
    aligned (offset 1) is refused by the kernel (EINVAL) and written through the page cache.
    Either way the file holds exactly the bytes."""
    buf = PageBuffer()
    view = buf.view(size + offset)[offset:]
    data = os.urandom(size)
    view[:] = data
    d = DurableDir(tmp_path)
    d.commit_entry([("a.bin", Direct(view))], ("a.json", b"{}"), tmp_prefix=".tmp-")
    assert (tmp_path / "a.bin").read_bytes() == data
    fd = os.open(tmp_path / "a.json", os.O_RDONLY)
    try:
        assert not fcntl.fcntl(fd, fcntl.F_GETFL) & getattr(os, "O_DIRECT", 0)
    finally:
        os.close(fd)


def test_direct_write_on_a_filesystem_without_o_direct(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where switching O_DIRECT on fails with EINVAL (a filesystem without it), the bytes are
    written through the page cache; any other error is not swallowed."""
    shm = Path("/dev/shm")
    if not shm.is_dir():
        pytest.skip("no /dev/shm")
    real_fcntl = fcntl.fcntl

    def no_direct(fd: int, cmd: int, arg: int = 0) -> int:
        if cmd == fcntl.F_SETFL and arg & getattr(os, "O_DIRECT", 0):
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_fcntl(fd, cmd, arg)

    monkeypatch.setattr(fcntl, "fcntl", no_direct)
    buf = PageBuffer()
    data = os.urandom(10_000)
    view = buf.view(len(data))
    view[:] = data
    with tempfile.TemporaryDirectory(dir=shm) as d:
        DurableDir(Path(d)).commit_entry(
            [("a.bin", Direct(view))], ("a.json", b"{}"), tmp_prefix=".tmp-"
        )
        assert (Path(d) / "a.bin").read_bytes() == data

    def broken(fd: int, cmd: int, arg: int = 0) -> int:
        if cmd == fcntl.F_SETFL and arg & getattr(os, "O_DIRECT", 0):
            raise OSError(errno.EIO, "I/O error")
        return real_fcntl(fd, cmd, arg)

    monkeypatch.setattr(fcntl, "fcntl", broken)
    with tempfile.TemporaryDirectory(dir=shm) as d, pytest.raises(OSError, match="I/O"):
        DurableDir(Path(d)).commit_entry(
            [("a.bin", Direct(view))], ("a.json", b"{}"), tmp_prefix=".tmp-"
        )


def test_whole_pages_go_out_with_o_direct_where_the_filesystem_has_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    o_direct = getattr(os, "O_DIRECT", 0)
    try:
        os.close(os.open(tmp_path / "probe", os.O_WRONLY | os.O_CREAT | o_direct))
    except OSError:
        pytest.skip("this filesystem has no O_DIRECT")
    if not o_direct:
        pytest.skip("no O_DIRECT on this platform")
    writes: list[tuple[int, bool]] = []
    real_write = os.write

    def write(fd: int, data: bytes | memoryview) -> int:
        writes.append((len(data), bool(fcntl.fcntl(fd, fcntl.F_GETFL) & o_direct)))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    view = PageBuffer().view(3 * PAGE + 17)
    DurableDir(tmp_path).commit_entry(
        [("a.bin", Direct(view))], ("a.json", b"{}"), tmp_prefix=".t-"
    )
    assert writes == [(3 * PAGE, True), (17, False), (2, False)]
