"""Bundles of signatures and manifests (offload/bundle.py): deterministic, self-checking by
name, strict about members, and plain tar for stock tools."""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from hal.errors import IntegrityError
from offload.bundle import build_bundle, bundle_key, is_bundle_key, read_bundle

MEMBERS = [("0000000002.sig", b"\x01" * 64), ("0000000002.json", b'{"kind": "x"}\n')]


def test_same_members_make_the_same_bytes_and_key() -> None:
    one, two = build_bundle(MEMBERS), build_bundle(list(MEMBERS))
    assert one == two and bundle_key(one) == bundle_key(two)
    assert is_bundle_key(bundle_key(one))
    assert read_bundle(one, bundle_key(one)) == dict(MEMBERS)
    other = build_bundle([MEMBERS[0], ("0000000002.json", b'{"kind": "y"}\n')])
    assert bundle_key(other) != bundle_key(one)


@pytest.mark.parametrize(
    "name", ["bundles/x.tar", "bundles/" + "A" * 64 + ".tar", "other/" + "a" * 64 + ".tar"]
)
def test_only_a_lowercase_sha256_under_bundles_is_a_bundle_key(name: str) -> None:
    assert not is_bundle_key(name)


def test_bytes_that_do_not_hash_to_the_name_are_refused() -> None:
    data = build_bundle(MEMBERS)
    with pytest.raises(IntegrityError, match="do not hash"):
        read_bundle(data, bundle_key(build_bundle(MEMBERS[:1])))
    with pytest.raises(IntegrityError, match="do not hash"):
        read_bundle(data[:-1] + b"\x01", bundle_key(data))


def _tar(add: list[tarfile.TarInfo]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for info in add:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isreg() else None)
    return out.getvalue()


@pytest.mark.parametrize(
    "info",
    [
        tarfile.TarInfo("../0000000002.json"),
        tarfile.TarInfo("0000000002.bin"),  # payloads are never bundled
        tarfile.TarInfo("notes.txt"),
    ],
)
def test_members_other_than_entry_signatures_and_manifests_are_refused(
    info: tarfile.TarInfo,
) -> None:
    info.size = 1
    data = _tar([info])
    with pytest.raises(IntegrityError, match="unexpected bundle member"):
        read_bundle(data, bundle_key(data))


def test_links_and_repeated_members_are_refused() -> None:
    link = tarfile.TarInfo("0000000002.json")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    again = [tarfile.TarInfo("0000000002.sig"), tarfile.TarInfo("0000000002.sig")]
    for info in again:
        info.size = 1
    for data in (_tar([link]), _tar(again)):
        with pytest.raises(IntegrityError, match="unexpected bundle member"):
            read_bundle(data, bundle_key(data))


@pytest.mark.skipif(shutil.which("tar") is None, reason="no tar on PATH")
def test_stock_tar_extracts_the_plain_files(tmp_path: Path) -> None:
    data = build_bundle(MEMBERS)
    (tmp_path / "b.tar").write_bytes(data)
    subprocess.run(["tar", "-xf", "b.tar"], cwd=tmp_path, check=True)
    for name, body in MEMBERS:
        assert (tmp_path / name).read_bytes() == body
