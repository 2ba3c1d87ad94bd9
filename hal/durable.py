"""Durable file writes: the one place the unit's storage rules are written down.

A file is durable when its bytes are fsync'd and the directory entry naming it is fsync'd too.
Replacing a file goes through a temporary name in the same directory and ``os.replace``, so a
power cut leaves either the old content or the new, never a mix. Nothing here deletes evidence;
``remove_durably`` is for state files and for payloads whose offload has been confirmed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
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


def write_atomic_group(
    directory: Path, files: Sequence[tuple[str, bytes | memoryview]], *, tmp_prefix: str
) -> None:
    """``write_atomic`` for several files of one directory, without the directory fsync (the
    caller does it once for the group). Every file is written under its temp name first and only
    then fsync'd: on a journalling filesystem (ext4 ``data=ordered``, the unit's store) the first
    fsync's journal commit carries the other files' data too, so the later fsyncs find nothing
    left to write. Each file is still fsync'd before its rename, so a power cut leaves temp files
    or complete files, never a complete name on incomplete bytes."""
    fds: list[tuple[int, Path, Path]] = []
    try:
        for name, data in files:
            tmp = directory / f"{tmp_prefix}{name}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            fds.append((fd, tmp, directory / name))
            _write_unsynced(fd, data)  # fsync'd below, after every file of the group is written
        for fd, _tmp, _path in fds:
            os.fsync(fd)
    finally:
        for fd, _tmp, _path in fds:
            os.close(fd)
    for _fd, tmp, path in fds:
        os.replace(tmp, path)


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
