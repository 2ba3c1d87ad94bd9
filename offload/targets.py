"""Offload targets: where sealed evidence files go when the unit is docked, and their receipts.

A target stores one file per ``put`` and answers with a ``Receipt``; ``confirm`` then checks that
the target really holds those bytes under the retention that was asked, and raises otherwise.
Only a confirmed receipt lets the runner free space on the unit. Targets never read the
environment or the profile themselves: ``S3Settings.resolve`` is handed both by the caller.
This module must not delete or overwrite anything on a target.
"""

from __future__ import annotations

import base64
import datetime as dt
import errno
import hashlib
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote, urlparse

from botocore.exceptions import BotoCoreError, ClientError

from hal.durable import fsync_dir
from hal.errors import BwcError, IntegrityError, RefusedError, StorageFullError, UsageError
from offload.bundle import build_bundle, bundle_key_for_digest
from offload.placement import LocalArea, file_id, refuse_overlap

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
"""Read/copy granularity: bounds memory per file and how long an undock takes to be noticed."""

FRESH_CONFIRM_US = 60_000_000
"""How old this round's own HeadObject of an exact, locked S3 version may be and still count as
the check before freeing (docs/offload.md, *Requests per file*)."""


class Readable(Protocol):
    """A seekable byte stream (an open file, or a wrapper that can stop a transfer)."""

    def read(self, n: int = -1, /) -> bytes: ...

    def seek(self, offset: int, whence: int = 0, /) -> int: ...

    def tell(self) -> int: ...


Body = bytes | Readable

S3_FAILURES = (BotoCoreError, ClientError)
"""What boto3 raises for a failed request; translated into ``OffloadError`` at this boundary."""


class OffloadError(BwcError):
    """The target could not take or confirm a file (link down, server error, bad credentials)."""


class TargetRefusedError(OffloadError, RefusedError):
    """The target is unfit for evidence (an S3 bucket without Object Lock); nothing was sent."""


class OffloadInterrupted(OffloadError):
    """The unit left the dock (``should_continue`` turned false) while a file was being sent."""


@dataclass(frozen=True)
class Receipt:
    """What a target answered for one stored file; goes, as ``to_json()``, into a signed event.

    ``sha256`` is hex, ``md5_b64`` base64 (the Content-MD5 form); ``retain_until_utc_us`` is the
    retention asked for (0: the target cannot enforce retention, e.g. a plain directory).
    """

    target: str
    name: str
    size: int
    sha256: str
    md5_b64: str
    retain_until_utc_us: int
    version_id: str = ""
    etag: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "target": self.target,
            "name": self.name,
            "size": self.size,
            "sha256": self.sha256,
            "md5_b64": self.md5_b64,
            "retain_until_utc_us": self.retain_until_utc_us,
        }
        if self.version_id:
            out["version_id"] = self.version_id
        if self.etag:
            out["etag"] = self.etag
        if self.extra:
            out["extra"] = dict(self.extra)
        return out


class OffloadTarget(Protocol):
    """A place that keeps offloaded evidence. ``url`` names it in receipts (no credentials)."""

    @property
    def url(self) -> str: ...

    @property
    def parallel_puts(self) -> int:
        """How many files a round may send at once (1: one after another). ``put``, ``confirm``
        and ``existing`` must be safe to call from that many threads."""
        ...

    def put(
        self,
        name: str,
        data: Body,
        size: int,
        sha256_hex: str,
        *,
        md5_b64: str,
        retain_until_utc_us: int,
    ) -> Receipt:
        """Store ``size`` bytes under ``name``; raise ``OffloadError`` or a subclass on failure."""
        ...

    def confirm(self, receipt: Receipt) -> None:
        """Check the target holds what ``receipt`` says; raise ``IntegrityError`` if not."""
        ...

    def confirm_before_free(
        self, receipt: Receipt, local_path: Path, *, confirmed_age_us: int | None = None
    ) -> None:
        """The check made immediately before ``local_path`` is freed, never an older one.

        Re-reads the target's copy (a directory) or heads the receipt's exact version (S3) and
        raises ``IntegrityError`` unless it holds the receipted bytes apart from ``local_path``.
        ``confirmed_age_us``: how long ago this round's own ``confirm`` of this very receipt
        succeeded (None: not in this round). A target whose confirmed copies cannot change
        (``S3Target``: an exact, COMPLIANCE-locked version) may take a confirmation younger
        than ``FRESH_CONFIRM_US`` as this check; a directory never does.
        """
        ...

    def keep_apart(self, local_dir: Path) -> None:
        """Refuse (``ConfigError``) a target that is, contains or lies inside ``local_dir``,
        now and on every later write and free."""
        ...

    def exists(self, name: str) -> bool: ...

    @property
    def bundles(self) -> bool:
        """Whether the round sends signatures and manifests through ``put_bundle``."""
        ...

    def put_bundle(
        self,
        members: list[tuple[str, bytes]],
        *,
        retain_until_utc_us: int,
        listed: Mapping[str, int],
    ) -> list[Receipt]:
        """Store small files together as one object (``offload.bundle``) and confirm it.

        Returns one confirmed receipt per member, in order. ``listed`` is the round's listing:
        a bundle already there with the same bytes is confirmed without being sent again.
        """
        ...

    def listing(self) -> dict[str, int]:
        """Every file the target holds for this store, with its size (one cheap listing)."""
        ...

    def existing(
        self, name: str, size: int, sha256_hex: str, md5_b64: str, retain_until_utc_us: int
    ) -> Receipt | None:
        """A receipt for ``name`` if the target already holds exactly these bytes, else None.

        Lets a re-run after a power cut skip files sent before the cut but never receipted.
        """
        ...


def hash_file(path: Path) -> tuple[int, str, str]:
    """``(size, sha256 hex, md5 base64)`` of a file, read in large chunks."""
    sha, md5 = hashlib.sha256(), hashlib.md5()  # noqa: S324  (Content-MD5 is what S3 checks)
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            sha.update(chunk)
            md5.update(chunk)
            size += len(chunk)
    return size, sha.hexdigest(), base64.b64encode(md5.digest()).decode()


def hash_bytes(data: bytes) -> tuple[int, str, str]:
    """``hash_file`` of bytes in memory: ``(size, sha256 hex, md5 base64)``."""
    md5 = hashlib.md5(data)  # noqa: S324  (Content-MD5 is what S3 checks)
    return len(data), hashlib.sha256(data).hexdigest(), base64.b64encode(md5.digest()).decode()


def _utc(utc_us: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(utc_us / 1e6, tz=dt.UTC)


def _utc_us(value: dt.datetime) -> int:
    return int(value.timestamp()) * 1_000_000 + value.microsecond


# --------------------------------------------------------------------------- directory target


class DirectoryTarget:
    """A mounted dock share or USB store: ``file:///path``. Files are written atomically.

    ``capacity_bytes`` caps what the target may hold (tests and small sticks); beyond it ``put``
    raises ``StorageFullError`` before writing. Retention cannot be enforced on a plain directory:
    files are made read-only and the receipt records the retention asked for.
    """

    def __init__(
        self,
        root: Path,
        *,
        capacity_bytes: int | None = None,
        apart_from: tuple[Path, ...] = (),
    ) -> None:
        self._root = root
        self._capacity_bytes = capacity_bytes
        self._areas: list[LocalArea] = []
        for local in apart_from:
            self.keep_apart(local)

    def keep_apart(self, local_dir: Path) -> None:
        area = LocalArea(local_dir)
        refuse_overlap(self._root, [area], self.url)
        self._areas.append(area)

    def _check_apart(self, directory: Path) -> None:
        # Again at every write and free: the share may be swapped for a link after the round began.
        refuse_overlap(directory, self._areas, self.url)

    @property
    def url(self) -> str:
        return self._root.absolute().as_uri()

    @property
    def parallel_puts(self) -> int:
        return 1  # one local disk: parallel writes only seek more (and share the capacity check)

    @property
    def root(self) -> Path:
        return self._root

    def _used_bytes(self) -> int:
        total = 0
        for dirpath, _dirs, files in os.walk(self._root):
            for f in files:
                total += (Path(dirpath) / f).stat().st_size
        return total

    def _path(self, name: str) -> Path:
        parts = Path(name).parts
        if not parts or any(p in ("", ".", "..") for p in parts) or Path(name).is_absolute():
            raise UsageError(f"offload: bad file name {name!r}")
        return self._root.joinpath(*parts)

    def put(
        self,
        name: str,
        data: Body,
        size: int,
        sha256_hex: str,
        *,
        md5_b64: str,
        retain_until_utc_us: int,
    ) -> Receipt:
        dest = self._path(name)
        self._check_apart(dest.parent)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            if (
                self._capacity_bytes is not None
                and self._used_bytes() + size > self._capacity_bytes
            ):
                raise StorageFullError(
                    f"offload target {self.url} is full ({size} more bytes would exceed "
                    f"{self._capacity_bytes})"
                )
            tmp = dest.with_name(f".tmp-{dest.name}")
            written = 0
            try:
                with tmp.open("wb") as out:
                    if isinstance(data, bytes):
                        out.write(data)
                        written = len(data)
                    else:
                        while chunk := data.read(CHUNK_BYTES):
                            out.write(chunk)
                            written += len(chunk)
                    out.flush()
                    os.fsync(out.fileno())
                if written != size:
                    raise OffloadError(f"{name}: sent {written} bytes, expected {size}")
                os.chmod(tmp, 0o444)
                os.replace(tmp, dest)
            except BaseException:
                # An interrupted transfer leaves no partial file under any name at the target.
                tmp.unlink(missing_ok=True)
                raise
            fsync_dir(dest.parent)
        except StorageFullError:
            raise
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise StorageFullError(f"offload target {self.url} is full") from exc
            raise OffloadError(f"offload target {self.url}: cannot write {name}: {exc}") from exc
        return Receipt(
            target=self.url,
            name=name,
            size=size,
            sha256=sha256_hex,
            md5_b64=md5_b64,
            retain_until_utc_us=retain_until_utc_us,
        )

    def confirm(self, receipt: Receipt) -> None:
        """Read the stored file back and hash it: the directory's only way to a real receipt."""
        path = self._path(receipt.name)
        try:
            size, sha, _md5 = hash_file(path)
        except OSError as exc:
            raise IntegrityError(f"not readable at the target: {exc}", path=str(path)) from exc
        if size != receipt.size or sha != receipt.sha256:
            raise IntegrityError(
                f"target copy differs (size {size}, sha256 {sha}; expected {receipt.size}, "
                f"{receipt.sha256})",
                path=str(path),
            )

    def confirm_before_free(
        self, receipt: Receipt, local_path: Path, *, confirmed_age_us: int | None = None
    ) -> None:
        # Always read again: anyone with write access to the share can change a copy at any
        # moment, so an earlier confirmation, however recent, proves nothing now.
        path = self._path(receipt.name)
        self._check_apart(path.parent)
        here, there = file_id(local_path), file_id(path)
        if there is not None and there == here:
            raise IntegrityError(
                f"the target's copy is the unit's own file {local_path} (a link or mount)",
                path=str(path),
            )
        self.confirm(receipt)

    def exists(self, name: str) -> bool:
        return self._path(name).is_file()

    @property
    def bundles(self) -> bool:
        return False  # a share holds the store's own files, one by one, as the unit does

    def put_bundle(
        self,
        members: list[tuple[str, bytes]],
        *,
        retain_until_utc_us: int,
        listed: Mapping[str, int],
    ) -> list[Receipt]:
        raise UsageError(f"offload target {self.url} keeps every file on its own")

    def listing(self) -> dict[str, int]:
        out: dict[str, int] = {}
        if not self._root.is_dir():
            return out
        for dirpath, _dirs, files in os.walk(self._root):
            for f in files:
                if f.startswith(".tmp-"):
                    continue
                path = Path(dirpath) / f
                out[path.relative_to(self._root).as_posix()] = path.stat().st_size
        return out

    def existing(
        self, name: str, size: int, sha256_hex: str, md5_b64: str, retain_until_utc_us: int
    ) -> Receipt | None:
        path = self._path(name)
        # A link (symbolic or hard) is never taken as the copy: it may be the unit's own file.
        # Sending again replaces the link itself with a file of its own.
        if path.is_symlink() or not path.is_file():
            return None
        st = path.stat()
        if st.st_size != size or st.st_nlink > 1:
            return None
        if hash_file(path)[1] != sha256_hex:
            return None
        return Receipt(self.url, name, size, sha256_hex, md5_b64, retain_until_utc_us)


# --------------------------------------------------------------------------- S3 target


@dataclass(frozen=True)
class S3Settings:
    """How to reach an S3 endpoint. Credentials never go into receipts, logs or ``repr``."""

    endpoint_url: str = ""
    region: str = "us-east-1"
    ca_bundle: str = ""
    access_key_id: str = field(default="", repr=False)
    secret_access_key: str = field(default="", repr=False)
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 60.0
    max_attempts: int = 2

    @classmethod
    def resolve(
        cls,
        env: Mapping[str, str],
        *,
        endpoint_url: str = "",
        region: str = "",
        ca_bundle: str = "",
    ) -> S3Settings:
        """The standard S3 variables win over the profile's ``[offload]`` keys (as in AWS tools)."""
        return cls(
            endpoint_url=env.get("AWS_ENDPOINT_URL_S3")
            or env.get("AWS_ENDPOINT_URL")
            or endpoint_url,
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or region or "us-east-1",
            ca_bundle=env.get("AWS_CA_BUNDLE") or ca_bundle,
            access_key_id=env.get("AWS_ACCESS_KEY_ID", ""),
            secret_access_key=env.get("AWS_SECRET_ACCESS_KEY", ""),
        )

    def client(self) -> S3Client:
        """A boto3 S3 client set up for evidence: single PUTs, signed payload, no chunked trailers.

        Ceph 16 rejects boto3's default aws-chunked checksum trailers over HTTPS, hence
        ``request_checksum_calculation="when_required"`` with the checksums sent as headers.
        """
        import boto3
        from botocore.config import Config

        config = Config(
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            s3={"payload_signing_enabled": True, "addressing_style": "path"},
            connect_timeout=self.connect_timeout_s,
            read_timeout=self.read_timeout_s,
            retries={"max_attempts": self.max_attempts, "mode": "standard"},
        )
        kwargs: dict[str, Any] = {"region_name": self.region, "config": config}
        if self.endpoint_url:
            kwargs["endpoint_url"] = self.endpoint_url
        if self.ca_bundle:
            kwargs["verify"] = self.ca_bundle
        if self.access_key_id:
            kwargs["aws_access_key_id"] = self.access_key_id
            kwargs["aws_secret_access_key"] = self.secret_access_key
        return boto3.session.Session().client("s3", **kwargs)


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ``("bucket", "some/prefix")`` (prefix without slashes)."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise UsageError(f"not an S3 URL (expected s3://bucket/prefix): {url!r}")
    return parsed.netloc, parsed.path.strip("/")


def client_error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


class _ChunkedBody:
    """Wraps a stream so botocore reads it in bounded chunks; nothing else is added."""

    def __init__(self, stream: Readable) -> None:
        self._stream = stream

    def read(self, n: int = -1) -> bytes:
        return self._stream.read(CHUNK_BYTES if n is None or n < 0 else min(n, CHUNK_BYTES))

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._stream.seek(offset, whence)

    def tell(self) -> int:
        return self._stream.tell()


PARALLEL_PUTS = 8
"""Default files in flight per S3 round (see ``S3Target.parallel_puts``)."""


class S3Target:
    """``s3://bucket/prefix`` on AWS, Ceph RGW or any S3 store with Object Lock.

    Each file is one PUT with Content-MD5, a SHA-256 checksum, and a COMPLIANCE lock: the locked
    version can be neither deleted nor have its retention shortened, not even by its owner.
    Multipart uploads are never used, because Ceph 16 drops their Object Lock headers.
    """

    def __init__(
        self,
        url: str,
        settings: S3Settings,
        *,
        client: S3Client | None = None,
        parallel_puts: int = PARALLEL_PUTS,
        bundles: bool = True,
    ) -> None:
        if parallel_puts < 1:
            raise ValueError("parallel_puts must be at least 1")
        self._bucket, self._prefix = parse_s3_url(url)
        self._settings = settings
        self._client = client or settings.client()
        self._lock_checked = False
        # One GetObjectLockConfiguration per target, not one per sending thread.
        self._lock_check_lock = threading.Lock()
        self._parallel_puts = parallel_puts
        self._bundles = bundles

    @property
    def parallel_puts(self) -> int:
        """Files in flight at once: a dock uplink's latency is paid per request (a PUT and the
        receipt's HeadObject per file), so a few requests in flight keep the link busy. botocore
        clients are thread-safe; its connection pool (10) is larger than this."""
        return self._parallel_puts

    @property
    def url(self) -> str:
        return f"s3://{self._bucket}/{self._prefix}" if self._prefix else f"s3://{self._bucket}"

    def key(self, name: str) -> str:
        return f"{self._prefix}/{name}" if self._prefix else name

    def _fail(self, what: str, exc: Exception) -> OffloadError:
        code = client_error_code(exc)
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403"):
            return OffloadError(f"{self.url}: {what}: credentials refused ({code})")
        if code in ("NoSuchBucket", "404") and what.startswith("checking"):
            return TargetRefusedError(f"{self.url}: bucket {self._bucket} does not exist")
        return OffloadError(f"{self.url}: {what}: {code or type(exc).__name__}: {exc}")

    def check_object_lock(self) -> None:
        """Refuse a bucket without Object Lock: evidence there could be deleted or overwritten."""
        if self._lock_checked:
            return
        with self._lock_check_lock:
            if not self._lock_checked:
                self._check_object_lock()

    def _check_object_lock(self) -> None:
        try:
            conf = self._client.get_object_lock_configuration(Bucket=self._bucket)
        except S3_FAILURES as exc:
            if client_error_code(exc) == "ObjectLockConfigurationNotFoundError":
                raise TargetRefusedError(
                    f"{self.url}: bucket {self._bucket} does not have Object Lock enabled; "
                    "evidence must go to a bucket created with Object Lock"
                ) from None
            raise self._fail("checking Object Lock", exc) from exc
        if conf.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") != "Enabled":
            raise TargetRefusedError(
                f"{self.url}: bucket {self._bucket} does not have Object Lock enabled"
            )
        self._lock_checked = True

    def put(
        self,
        name: str,
        data: Body,
        size: int,
        sha256_hex: str,
        *,
        md5_b64: str,
        retain_until_utc_us: int,
    ) -> Receipt:
        self.check_object_lock()
        # S3 keeps retain-until to the second; ask for a whole second so confirm compares exactly.
        retain_s = -(-retain_until_utc_us // 1_000_000)
        body: Any = data if isinstance(data, bytes) else _ChunkedBody(data)
        try:
            resp = self._client.put_object(
                Bucket=self._bucket,
                Key=self.key(name),
                Body=body,
                ContentLength=size,
                ContentMD5=md5_b64,
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=base64.b64encode(bytes.fromhex(sha256_hex)).decode(),
                ObjectLockMode="COMPLIANCE",
                ObjectLockRetainUntilDate=_utc(retain_s * 1_000_000),
            )
        except S3_FAILURES as exc:
            if client_error_code(exc) == "BadDigest":
                raise IntegrityError(
                    "the server received bytes whose MD5 differs from the file's", path=name
                ) from exc
            raise self._fail(f"uploading {name}", exc) from exc
        version = resp.get("VersionId", "")
        if not version:
            raise TargetRefusedError(
                f"{self.url}: the server returned no version id for {name}: versioning is off"
            )
        return Receipt(
            target=self.url,
            name=name,
            size=size,
            sha256=sha256_hex,
            md5_b64=md5_b64,
            retain_until_utc_us=retain_s * 1_000_000,
            version_id=version,
            etag=resp.get("ETag", "").strip('"'),
        )

    def _head(self, name: str, version_id: str = "") -> Any:
        kwargs: dict[str, Any] = {
            "Bucket": self._bucket,
            "Key": self.key(name),
            "ChecksumMode": "ENABLED",
        }
        if version_id:
            kwargs["VersionId"] = version_id
        return self._client.head_object(**kwargs)

    def confirm(self, receipt: Receipt) -> None:
        """HeadObject on the exact version: size, COMPLIANCE lock, retain-until, checksum."""
        path = f"{self.url}/{receipt.name}"
        try:
            head = self._head(receipt.name, receipt.version_id)
        except S3_FAILURES as exc:
            if client_error_code(exc) in ("404", "NoSuchKey", "NoSuchVersion"):
                raise IntegrityError("object version not found at the target", path=path) from exc
            raise self._fail(f"confirming {receipt.name}", exc) from exc
        _check_head(head, receipt, path)

    def confirm_before_free(
        self, receipt: Receipt, local_path: Path, *, confirmed_age_us: int | None = None
    ) -> None:
        """HeadObject of the receipt's exact version, unless this round headed it moments ago.

        A version confirmed under a COMPLIANCE lock can be neither deleted nor overwritten, nor
        have its retention shortened, by anyone until its retain-until (years away): a second
        HeadObject of the same version a few seconds later can only repeat the first answer.
        So a confirmation this round made of this exact version, younger than
        ``FRESH_CONFIRM_US``, is the check; an older one, or a receipt from an earlier round,
        is headed again.
        """
        if not receipt.version_id:
            raise IntegrityError(
                "the receipt names no version id, so the exact copy cannot be checked",
                path=f"{self.url}/{receipt.name}",
            )
        if confirmed_age_us is not None and 0 <= confirmed_age_us <= FRESH_CONFIRM_US:
            return
        self.confirm(receipt)

    def keep_apart(self, local_dir: Path) -> None:
        """An S3 target never shares storage with the unit's directory."""

    @property
    def bundles(self) -> bool:
        return self._bundles

    def put_bundle(
        self,
        members: list[tuple[str, bytes]],
        *,
        retain_until_utc_us: int,
        listed: Mapping[str, int],
    ) -> list[Receipt]:
        """One locked PUT and one HeadObject for all ``members``: ``bundles/<sha256>.tar``.

        Each member's receipt carries its own size and hashes, and the bundle's version id,
        ETag and name (``extra["bundle"]``): the exact, locked object that holds it.
        """
        data = build_bundle(members)
        size, sha, md5 = hash_bytes(data)
        name = bundle_key_for_digest(sha)
        receipt = None
        if listed.get(name) == size:
            receipt = self.existing(name, size, sha, md5, retain_until_utc_us)
        if receipt is None:
            receipt = self.put(
                name, data, size, sha, md5_b64=md5, retain_until_utc_us=retain_until_utc_us
            )
        self.confirm(receipt)
        out = []
        for member, body in members:
            m_size, m_sha, m_md5 = hash_bytes(body)
            out.append(
                Receipt(
                    target=self.url,
                    name=member,
                    size=m_size,
                    sha256=m_sha,
                    md5_b64=m_md5,
                    retain_until_utc_us=receipt.retain_until_utc_us,
                    version_id=receipt.version_id,
                    etag=receipt.etag,
                    extra={"bundle": name},
                )
            )
        return out

    def exists(self, name: str) -> bool:
        try:
            self._head(name)
        except S3_FAILURES as exc:
            if client_error_code(exc) in ("404", "NoSuchKey"):
                return False
            raise self._fail(f"looking up {name}", exc) from exc
        return True

    def listing(self) -> dict[str, int]:
        prefix = f"{self._prefix}/" if self._prefix else ""
        out: dict[str, int] = {}
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self._bucket, Prefix=prefix
            )
            for page in pages:
                for obj in page.get("Contents", []):
                    out[obj["Key"][len(prefix) :]] = int(obj.get("Size", 0))
        except S3_FAILURES as exc:
            raise self._fail("listing the target", exc) from exc
        return out

    def existing(
        self, name: str, size: int, sha256_hex: str, md5_b64: str, retain_until_utc_us: int
    ) -> Receipt | None:
        self.check_object_lock()
        try:
            head = self._head(name)
        except S3_FAILURES as exc:
            if client_error_code(exc) in ("404", "NoSuchKey"):
                return None
            raise self._fail(f"looking up {name}", exc) from exc
        version = str(head.get("VersionId", ""))
        receipt = Receipt(
            target=self.url,
            name=name,
            size=size,
            sha256=sha256_hex,
            md5_b64=md5_b64,
            retain_until_utc_us=0,
            version_id=version,
            etag=str(head.get("ETag", "")).strip('"'),
        )
        until = head.get("ObjectLockRetainUntilDate")
        try:
            _check_head(head, receipt, name)
        except IntegrityError:
            return None  # different bytes or no lock: send the file again as a new version
        have_us = _utc_us(until) if isinstance(until, dt.datetime) else 0
        want_s = -(-retain_until_utc_us // 1_000_000)
        if have_us < want_s * 1_000_000 and version:
            # Extending a COMPLIANCE retention is allowed; shortening it is not.
            try:
                self._client.put_object_retention(
                    Bucket=self._bucket,
                    Key=self.key(name),
                    VersionId=version,
                    Retention={"Mode": "COMPLIANCE", "RetainUntilDate": _utc(want_s * 1_000_000)},
                )
            except S3_FAILURES as exc:
                raise self._fail(f"extending retention of {name}", exc) from exc
            have_us = want_s * 1_000_000
        return Receipt(
            target=self.url,
            name=name,
            size=size,
            sha256=sha256_hex,
            md5_b64=md5_b64,
            retain_until_utc_us=have_us,
            version_id=version,
            etag=receipt.etag,
        )


def _check_head(head: Mapping[str, Any], receipt: Receipt, path: str) -> None:
    if int(head.get("ContentLength", -1)) != receipt.size:
        raise IntegrityError(
            f"size at the target is {head.get('ContentLength')}, expected {receipt.size}", path=path
        )
    if head.get("ObjectLockMode") != "COMPLIANCE":
        raise IntegrityError(
            f"object is not under a COMPLIANCE lock (mode {head.get('ObjectLockMode')!r})",
            path=path,
        )
    until = head.get("ObjectLockRetainUntilDate")
    if not isinstance(until, dt.datetime) or _utc_us(until) < receipt.retain_until_utc_us:
        raise IntegrityError(
            f"retention at the target ends {until}, earlier than asked "
            f"({_utc(receipt.retain_until_utc_us).isoformat()})",
            path=path,
        )
    checksum = head.get("ChecksumSHA256")
    if checksum:
        if base64.b64decode(checksum).hex() != receipt.sha256:
            raise IntegrityError("SHA-256 at the target differs from the file's", path=path)
        return
    etag = str(head.get("ETag", "")).strip('"')
    if etag != base64.b64decode(receipt.md5_b64).hex():
        raise IntegrityError(
            f"ETag at the target ({etag}) is not the MD5 of the file's bytes", path=path
        )


# --------------------------------------------------------------------------- choosing a target


def open_target(
    url: str,
    *,
    env: Mapping[str, str] | None = None,
    endpoint_url: str = "",
    region: str = "",
    ca_bundle: str = "",
    base_dir: Path | None = None,
) -> OffloadTarget:
    """The target a profile's ``offload.target`` names: ``file:///path`` or ``s3://bucket/prefix``.

    ``file://../dock`` (no leading slash after ``//``) is a path relative to ``base_dir``, the
    unit's directory for the simulated unit; ``file:///abs`` and ``file://localhost/abs`` are
    absolute. The caller refuses (``keep_apart``) a directory that overlaps the unit.
    """
    if url.startswith("file://"):
        rest = url[len("file://") :]
        if rest.startswith("localhost/"):
            rest = rest[len("localhost") :]
        if not rest:
            raise UsageError(f"offload target {url!r}: no path (config key offload.target)")
        if rest.startswith("/"):
            return DirectoryTarget(Path(os.path.normpath(unquote(rest))))
        if base_dir is None:
            raise UsageError(f"offload target {url!r}: a relative path needs the unit's directory")
        # Normalised (``file://../dock`` is the unit's sibling), so receipts name a plain path.
        return DirectoryTarget(Path(os.path.normpath(base_dir.absolute() / unquote(rest))))
    if url.startswith("s3://"):
        settings = S3Settings.resolve(
            env or {}, endpoint_url=endpoint_url, region=region, ca_bundle=ca_bundle
        )
        return S3Target(url, settings)
    raise UsageError(
        f"offload target {url!r}: expected file:///path or s3://bucket/prefix "
        "(config key offload.target)"
    )


def target_for_device(url: str, device_id: str) -> str:
    """Each unit offloads into its own folder of the target, so a fleet can share one target."""
    if not device_id or "/" in device_id or device_id in (".", ".."):
        raise UsageError(f"device id {device_id!r} cannot name a folder at the offload target")
    return url.rstrip("/") + "/" + device_id
