"""A bundle: several small evidence files (signatures and manifests) in one S3 object.

An S3 round sends each payload as its own object but packs the signatures and manifests of up
to ``BUNDLE_FILES`` entries into one POSIX tar (ustar) under ``bundles/<sha256>.tar``: a locked
PUT and a HeadObject per bundle instead of two of each per entry. The tar is deterministic (no
times, owners or modes of the unit), so the same members make the same bytes and the same key,
and the key names the SHA-256 of the bytes, so a reader checks a bundle against its own name.
``tar -xf`` extracts the plain files the stock-tool recipe reads. This module does no IO.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Iterable

from evidence.format import parse_entry_name
from hal.errors import IntegrityError

BUNDLE_DIR = "bundles"
BUNDLE_FILES = 128
"""Most files in one bundle (the signatures and manifests of 64 units, about 100 kB)."""
MAX_MEMBER_BYTES = 1 << 20


def bundle_key(data: bytes) -> str:
    """The name (below the store's prefix) a bundle of these bytes is stored under."""
    return bundle_key_for_digest(hashlib.sha256(data).hexdigest())


def bundle_key_for_digest(sha256_hex: str) -> str:
    """``bundle_key`` of bytes whose SHA-256 (hex) is already known."""
    return f"{BUNDLE_DIR}/{sha256_hex}.tar"


def is_bundle_key(name: str) -> bool:
    head, _, tail = name.partition("/")
    digest = tail.removesuffix(".tar")
    return (
        head == BUNDLE_DIR
        and tail.endswith(".tar")
        and len(digest) == 64
        and all(c in "0123456789abcdef" for c in digest)
    )


def build_bundle(members: Iterable[tuple[str, bytes]]) -> bytes:
    """A deterministic ustar archive of ``(name, bytes)`` in the order given."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o444
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def read_bundle(data: bytes, where: str) -> dict[str, bytes]:
    """The members of a bundle whose bytes hash to the name ``where`` ends with.

    Raises ``IntegrityError`` for bytes that are not this bundle (the name's hash differs), an
    unreadable archive, or a member that is not a plain entry file (``NNNNNNNNNN.sig|json``).
    """
    name = where.rsplit("/", 1)[-1]
    if name != f"{hashlib.sha256(data).hexdigest()}.tar":
        raise IntegrityError("bundle bytes do not hash to the bundle's name", path=where)
    members: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for info in tar:
                parsed = parse_entry_name(info.name)
                if (
                    not info.isreg()
                    or parsed is None
                    or parsed[1] not in ("sig", "json")
                    or info.size > MAX_MEMBER_BYTES
                    or info.name in members
                ):
                    raise IntegrityError(f"unexpected bundle member {info.name!r}", path=where)
                f = tar.extractfile(info)
                if f is None:
                    raise IntegrityError(f"unreadable bundle member {info.name!r}", path=where)
                members[info.name] = f.read()
    except tarfile.TarError as exc:
        raise IntegrityError(f"not a readable bundle: {exc}", path=where) from exc
    return members
