"""Where the agency tools find a store: a directory, a ``file://`` URL or an ``s3://`` target.

Lives above ``evidence`` because an S3 store is read through the offload target's client; the
evidence package itself knows only the ``StoreReader`` protocol.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from evidence.format import DEVICE_PUB_NAME, ORPHANS_DIR, parse_entry_name
from evidence.store import DirectoryStoreReader, StoreReader
from hal.errors import UsageError

MAX_UNITS = 10_000
"""Stores one share root may hold; a listing beyond that is refused rather than walked."""


def open_store_reader(spec: str) -> StoreReader:
    """A reader for ``spec``: a directory path or a ``file://`` URL. ``UsageError`` if unusable."""
    parsed = urlparse(spec)
    if parsed.scheme == "file":
        path = Path(unquote(parsed.path))
    elif parsed.scheme == "":
        path = Path(spec)
    elif parsed.scheme == "s3":
        # An offloaded copy in S3; endpoint, credentials and CA come the standard S3 way
        # (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_CA_BUNDLE). Loaded
        # only here: boto3 costs a noticeable share of start-up time.
        from offload.s3_reader import S3StoreReader
        from offload.targets import S3Settings

        return S3StoreReader(spec, S3Settings())
    else:
        raise UsageError(f"{spec}: unsupported store URL scheme {parsed.scheme!r}")
    if not path.exists():
        raise UsageError(f"{spec}: store not found")
    if not path.is_dir():
        raise UsageError(f"{spec}: store is not a directory")
    return DirectoryStoreReader(path)


@dataclass(frozen=True)
class StoreSet:
    """What a STORE argument names: one unit's store, or a share root and the stores below it."""

    stores: list[StoreReader]
    share: bool


def open_store_readers(spec: str) -> StoreSet:
    """Every unit's store that ``spec`` names: one store, or each store directly below a dock share
    or offload target root (``file://`` and ``s3://`` alike). An existing place that holds no store
    gives an empty list (not intact, exit 1); a path that does not exist is a ``UsageError``."""
    parsed = urlparse(spec)
    if parsed.scheme == "s3":
        from offload.s3_reader import s3_store_readers
        from offload.targets import S3Settings

        found = s3_store_readers(spec, S3Settings())
        return StoreSet(list(found.stores), found.share)
    if parsed.scheme not in ("", "file"):
        raise UsageError(f"{spec}: unsupported store URL scheme {parsed.scheme!r}")
    path = Path(unquote(parsed.path)) if parsed.scheme == "file" else Path(spec)
    if not path.exists():
        raise UsageError(f"{spec}: store not found")
    if not path.is_dir():
        raise UsageError(f"{spec}: store is not a directory")
    if looks_like_store(path):
        return StoreSet([DirectoryStoreReader(path)], share=False)
    try:
        children = sorted(e.path for e in os.scandir(path) if e.is_dir(follow_symlinks=False))
    except OSError as exc:
        raise UsageError(f"{spec}: cannot list: {exc.strerror}") from exc
    stores: list[StoreReader] = []
    for child in children:
        if looks_like_store(Path(child)):
            stores.append(DirectoryStoreReader(Path(child)))
            if len(stores) > MAX_UNITS:
                raise UsageError(f"{spec}: more than {MAX_UNITS} stores below this root")
    return StoreSet(stores, share=True)


def looks_like_store(path: Path) -> bool:
    """Whether ``path`` directly holds evidence: entry files, a device key, or orphans."""
    try:
        with os.scandir(path) as it:
            return any(
                parse_entry_name(e.name) is not None or e.name in (DEVICE_PUB_NAME, ORPHANS_DIR)
                for e in it
            )
    except OSError:
        return False
