"""Read access to an evidence store wherever it lives: a directory now, object stores later.

Readers only read: nothing here writes, moves or deletes evidence.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO, Protocol

from evidence.format import ORPHANS_DIR


class StoreReader(Protocol):
    """The verifier's and opener's view of a store. Names are relative (``0000000001.json``,
    ``orphans/<name>``); ``describe`` turns one into what a finding should print."""

    def names(self) -> list[str]: ...

    def read(self, name: str) -> bytes: ...

    def open(self, name: str) -> BinaryIO: ...

    def exists(self, name: str) -> bool: ...

    def size(self, name: str) -> int:
        """Bytes in ``name`` without reading it (``OSError`` if absent or not a regular file),
        so sizes are compared before anything is hashed or parsed."""
        ...

    def describe(self, name: str) -> str: ...


class DirectoryStoreReader:
    """A store in a local directory (DEVICE/evidence, a dock share, a USB copy)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def names(self) -> list[str]:
        # Every name but orphans/ itself: a directory, FIFO or dangling symlink named like an
        # entry must reach the verifier (and fail its read) rather than vanish from the listing.
        out = [
            e.name
            for e in os.scandir(self.root)
            if not (e.name == ORPHANS_DIR and e.is_dir(follow_symlinks=False))
        ]
        orphans = self.root / ORPHANS_DIR
        if orphans.is_dir():
            out += [f"{ORPHANS_DIR}/{e.name}" for e in os.scandir(orphans)]
        return sorted(out)

    def read(self, name: str) -> bytes:
        return self._regular(name).read_bytes()

    def open(self, name: str) -> BinaryIO:
        return self._regular(name).open("rb")

    def _regular(self, name: str) -> Path:
        """The path of ``name`` if it is a regular file; ``OSError`` otherwise (a FIFO would
        block a reader forever, a directory or symlink loop is not evidence)."""
        path = self.root / name
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        return path

    def exists(self, name: str) -> bool:
        return (self.root / name).is_file()

    def size(self, name: str) -> int:
        st = os.stat(self.root / name)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(self.root / name))
        return st.st_size

    def describe(self, name: str) -> str:
        return str(self.root / name)
