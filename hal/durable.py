"""Durable file writes: the one place the unit's storage rules are written down.

A file is durable when its bytes are fsync'd and the directory entry naming it is fsync'd too.
Replacing a file goes through a temporary name in the same directory and ``os.replace``, so a
power cut leaves either the old content or the new, never a mix. Nothing here deletes evidence;
``remove_durably`` is for state files and for payloads whose offload has been confirmed.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


def fsync_dir(directory: Path) -> None:
    """Make a create, rename or unlink in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_unsynced(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


PAGE = mmap.PAGESIZE
_O_DIRECT = getattr(os, "O_DIRECT", 0)  # Linux; elsewhere every write is buffered


class PageBuffer:
    """A reusable byte buffer whose views start on a page boundary (an anonymous mapping), so
    its bytes can be written with ``O_DIRECT``: straight from this memory to the device, without
    a copy into the page cache that the fsync right after would then have to write back. Grows
    (with headroom) and never shrinks; a view is valid until the next, larger ``view``."""

    def __init__(self) -> None:
        self._map: mmap.mmap | None = None

    def view(self, n: int) -> memoryview:
        if self._map is None or len(self._map) < n:
            size = -(-(n + n // 4) // PAGE) * PAGE  # headroom: units vary with the scene
            self._map = mmap.mmap(-1, max(size, PAGE))
        return memoryview(self._map)[:n]


@dataclass(frozen=True, slots=True)
class Direct:
    """Data for ``DurableDir.commit_entry`` to write with ``O_DIRECT`` where it can: a view from a
    ``PageBuffer``. Where the filesystem or the alignment does not allow it (``EINVAL``), it is
    written through the page cache instead; the bytes on disk are the same either way."""

    view: memoryview


def _write_direct(fd: int, view: memoryview) -> None:
    """Write ``view``: its whole pages with ``O_DIRECT`` (switched on for this descriptor only
    while they are written), the rest through the page cache. Not synced."""
    whole = len(view) // PAGE * PAGE
    done = 0
    if _O_DIRECT and whole:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        try:
            fcntl.fcntl(fd, fcntl.F_SETFL, flags | _O_DIRECT)
            while done < whole:
                n = os.write(fd, view[done:whole])
                done += n
                if n % PAGE:
                    break  # a short write leaves the rest unaligned: finish it buffered
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # no O_DIRECT here, or not aligned: write buffered
                raise
        finally:
            fcntl.fcntl(fd, fcntl.F_SETFL, flags)
    _write_unsynced(fd, view[done:])


def _write_all(fd: int, data: bytes | memoryview) -> None:
    _write_unsynced(fd, data)
    os.fsync(fd)


def write_atomic(
    path: Path,
    data: bytes | memoryview,
    *,
    mode: int = 0o644,
    tmp_name: str | None = None,
    sync_dir: bool = True,
) -> None:
    """Replace ``path`` with ``data``: temp file, fsync, rename, then (unless told not to, when
    the caller fsyncs the directory once for several renames) fsync the directory. Creates the
    parent directory if it is missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(tmp_name or f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        _write_all(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if sync_dir:
        fsync_dir(path.parent)


class DurableDir:
    """A directory held open for a run of durable writes into it: the sealer's store.

    Files are created, renamed and fsync'd by name relative to the directory's descriptor, so a
    unit costs no directory opens (the directory is fsync'd through the one descriptor) and no
    path walks, and a store directory renamed away or replaced by a symbolic link after opening
    is never written through. The descriptor is closed by ``close`` or when the object is
    collected.
    """

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._finalizer = weakref.finalize(self, os.close, self._fd)

    def close(self) -> None:
        self._finalizer()

    def sync(self) -> None:
        """fsync the directory: its creates and renames so far are durable."""
        os.fsync(self._fd)

    def commit_entry(
        self,
        files: Sequence[tuple[str, bytes | memoryview | Direct]],
        commit: tuple[str, bytes | memoryview],
        *,
        tmp_prefix: str,
    ) -> None:
        """Write ``files`` and then ``commit`` so that ``commit``'s name appearing is the commit
        point: a power cut before it leaves only temp files or complete ``files``, after it all
        of them, complete.

        1. Every file, ``commit`` included, is written under ``tmp_prefix + name``; only then is
           each fsync'd (on the unit's journalled ext4 the first fsync's journal commit carries
           the others' data and inodes, so the later ones find nothing left to flush). ``Direct``
           data goes to the device with ``O_DIRECT``; its fsync still follows.
        2. ``files`` are renamed to their names and the directory is fsync'd: their names are
           durable before the commit's can be, on any filesystem (POSIX orders nothing).
        3. ``commit`` is renamed to its name and the directory fsync'd: durable on return.
        """
        written: list[tuple[int, str]] = []
        try:
            for name, data in (*files, commit):
                fd = os.open(
                    tmp_prefix + name,
                    os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW,
                    0o644,
                    dir_fd=self._fd,
                )
                written.append((fd, name))
                if isinstance(data, Direct):
                    _write_direct(fd, data.view)
                else:
                    _write_unsynced(fd, data)
            for fd, _name in written:
                os.fsync(fd)
        finally:
            for fd, _name in written:
                os.close(fd)
        for name, _data in files:
            os.replace(tmp_prefix + name, name, src_dir_fd=self._fd, dst_dir_fd=self._fd)
        self.sync()
        name = commit[0]
        os.replace(tmp_prefix + name, name, src_dir_fd=self._fd, dst_dir_fd=self._fd)
        self.sync()


def write_new(path: Path, data: bytes, *, mode: int) -> None:
    """Create ``path`` (raising ``FileExistsError`` rather than overwriting) durably.

    For keys: created with their final mode, so a private key is never readable by others,
    not even for a moment.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        _write_all(fd, data)
    finally:
        os.close(fd)
    fsync_dir(path.parent)


def remove_durably(path: Path) -> None:
    """Unlink ``path`` if present and make the removal durable."""
    try:
        path.unlink()
    except FileNotFoundError:
        return
    fsync_dir(path.parent)
