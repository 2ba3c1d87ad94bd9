"""Where a directory target may lie: never on top of, around, or inside the unit's own storage.

A target that resolves into the unit's directory (a symlinked share, a bind mount, ``file://.``)
would make freeing delete the only copy: the receipt confirms the unit's own file. So a directory
target is checked against every local directory it must stay apart from, by path after resolving
symlinks and by device and inode number (a bind mount has a different path but the same
``st_dev``/``st_ino``), before anything is written and again before anything is freed.
This module only reads metadata (``stat``); it never writes.
"""

from __future__ import annotations

import os
from pathlib import Path

from hal.errors import ConfigError

MAX_TREE_DIRS = 20_000
"""Directories of the unit's tree whose identities are collected (a unit holds a few dozen)."""

FileId = tuple[int, int]


def file_id(path: Path) -> FileId | None:
    """``(st_dev, st_ino)`` of ``path`` following symlinks, or None if it does not exist."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def ancestor_ids(path: Path) -> list[FileId]:
    """Identities of ``path`` (if it exists) and of every existing directory above it."""
    out = []
    for p in (path, *path.parents):
        fid = file_id(p)
        if fid is not None:
            out.append(fid)
    return out


def tree_dir_ids(root: Path) -> set[FileId]:
    """Identities of ``root`` and of the directories below it (symlinks not followed)."""
    out: set[FileId] = set()
    rid = file_id(root)
    if rid is None:
        return out
    out.add(rid)
    for dirpath, dirs, _files in os.walk(root):
        for d in dirs:
            try:
                st = os.lstat(os.path.join(dirpath, d))
            except OSError:
                continue
            out.add((st.st_dev, st.st_ino))
        if len(out) >= MAX_TREE_DIRS:
            break
    return out


class LocalArea:
    """One local directory (the unit's directory, its evidence store) a target must stay apart
    from; its tree's identities are collected once, when the guard is made."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.resolved = root.resolve()
        self.ids = tree_dir_ids(self.resolved)
        self.ancestors = ancestor_ids(self.resolved)

    def overlap(self, target: Path) -> str:
        """Why ``target`` (a directory, existing or not) overlaps this area; "" if it does not."""
        t = target.resolve()
        if t == self.resolved:
            return f"is the unit's own directory {self.root}"
        if t.is_relative_to(self.resolved):
            return f"lies inside the unit's own directory {self.root}"
        if self.resolved.is_relative_to(t):
            return f"contains the unit's own directory {self.root}"
        # A bind mount (or a second mount of the same file system) has another path but the
        # same identity: walk up from the target and compare with the unit's whole tree.
        if any(fid in self.ids for fid in ancestor_ids(t)):
            return f"lies inside the unit's own directory {self.root} (same directory by inode)"
        tid = file_id(t)
        if tid is not None and tid in self.ancestors:
            return f"contains the unit's own directory {self.root} (same directory by inode)"
        return ""


def refuse_overlap(target: Path, areas: list[LocalArea], url: str) -> None:
    """``ConfigError`` (exit 2) if ``target`` is, contains or lies inside any of ``areas``."""
    for area in areas:
        why = area.overlap(target)
        if why:
            raise ConfigError(
                f"offload target {url} {why}: freeing would delete the only copy; "
                "set offload.target to a directory outside the unit"
            )
