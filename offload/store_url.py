"""Where the agency tools find a store: a directory, a ``file://`` URL or an ``s3://`` target.

Lives above ``evidence`` because an S3 store is read through the offload target's client; the
evidence package itself knows only the ``StoreReader`` protocol.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from evidence.store import DirectoryStoreReader, StoreReader
from hal.errors import UsageError


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
