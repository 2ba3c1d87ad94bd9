"""hal.durable.DurableDir: the sealer's write path. The commit file's name appears only after the
other files are complete under theirs; planted links are never followed; one descriptor."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hal.durable import DurableDir

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
