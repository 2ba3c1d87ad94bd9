"""Read access to an evidence store offloaded to S3, for `bwc verify` and `bwc export`.

``s3://bucket/prefix/<device-id>`` names one unit's store. ``s3://bucket/prefix`` works too
when exactly one unit's store lies under it. Never writes, deletes or changes retention.

Which version is read: anyone allowed to write the bucket can put a newer version over a locked
object, or a delete marker, without touching the locked one. So where a key has more than one
version (or a delete marker), the reader reads the version the unit's signed ``offload_receipt``
events name for it (the last receipt wins, as a resend after a bad copy is receipted again); keys
no receipt names are read at their latest version, and the verifier judges those bytes.

Bundles (``offload.bundle``: signatures and manifests packed in ``bundles/<sha256>.tar``) are
read whole, checked against the hash in their name, and their members listed as files of the
store. A file a receipt names inside a bundle is read from that bundle (at the receipted
version); any other file from its own object if there is one, else from the first bundle that
holds it.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from evidence.format import DEVICE_PUB_NAME, parse_entry_name
from evidence.records import MAX_MANIFEST_BYTES, EventManifest, read_record
from hal.errors import IntegrityError, UsageError
from offload.bundle import is_bundle_key, read_bundle
from offload.plan import RECEIPT_KIND
from offload.targets import S3_FAILURES, S3Settings, client_error_code, parse_s3_url

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client


class S3StoreReader:
    """A ``evidence.store.StoreReader`` over the objects under an S3 prefix."""

    def __init__(
        self,
        url: str,
        settings: S3Settings,
        *,
        client: S3Client | None = None,
        listing: Mapping[str, int] | None = None,
    ) -> None:
        self._bucket, prefix = parse_s3_url(url)
        self._client = client or settings.client()
        if listing is None:
            listing = self._list(prefix)
        if not _looks_like_store(listing) and (only := _single_store_below(listing)) is not None:
            prefix = f"{prefix}/{only}" if prefix else only
            listing = {
                k[len(only) + 1 :]: v for k, v in listing.items() if k.startswith(only + "/")
            }
        if not listing:
            raise UsageError(f"{url}: no evidence objects under this prefix")
        self._prefix = prefix
        self._names = {k: v for k, v in listing.items() if not is_bundle_key(k)}
        bundles = {k: v for k, v in listing.items() if is_bundle_key(k)}
        self._pinned: dict[str, str] = {}  # name -> the receipted version id
        self._in_bundle: dict[str, str] = {}  # file -> the bundle its receipt names
        self._members: dict[str, tuple[str, bytes]] = {}  # file -> (bundle, bytes)
        self._pin_receipted_versions(bool(bundles))
        self._read_bundles(bundles)

    def _read_bundles(self, bundles: Mapping[str, int]) -> None:
        receipted = set(self._in_bundle.values())
        for bundle in sorted(bundles, key=lambda b: (b not in receipted, b)):
            try:
                members = read_bundle(self.read(bundle), self.describe(bundle))
            except IntegrityError:
                # Not this bundle's bytes: none of it is read, and it stays listed so the
                # verifier notes it as a file outside the format.
                self._names[bundle] = bundles[bundle]
                continue
            for name, data in members.items():
                if self._in_bundle.get(name, bundle) != bundle:
                    continue  # the receipt names another bundle for this file
                if name in self._members or (name in self._names and name not in self._in_bundle):
                    continue
                self._members[name] = (bundle, data)
                self._names[name] = len(data)

    def _pin_receipted_versions(self, bundles: bool) -> None:
        versions: dict[str, dict[str, int]] = {}  # name -> version id -> size
        markers: set[str] = set()
        base = f"{self._prefix}/" if self._prefix else ""
        try:
            pages = self._client.get_paginator("list_object_versions").paginate(
                Bucket=self._bucket, Prefix=base
            )
            for page in pages:
                for v in page.get("Versions", []):
                    name = v["Key"][len(base) :]
                    versions.setdefault(name, {})[v.get("VersionId", "")] = int(v.get("Size", 0))
                for m in page.get("DeleteMarkers", []):
                    markers.add(m["Key"][len(base) :])
        except S3_FAILURES as exc:
            raise UsageError(
                f"{self.describe('')}: cannot list object versions ({client_error_code(exc)})"
            ) from exc
        if not bundles and not markers and all(len(v) <= 1 for v in versions.values()):
            return  # one version of everything: the latest is the only one there is
        named = self._receipted_versions()
        for name, version in named.items():
            sizes = versions.get(name, {})
            if version in sizes:
                self._pinned[name] = version
                if not is_bundle_key(name):
                    self._names[name] = sizes[version]  # also one hidden behind a delete marker

    def _receipted_versions(self) -> dict[str, str]:
        """Version id per file from the receipts in the store's manifests, in chain order."""
        out: dict[str, str] = {}
        for name in sorted(self._names):
            parsed = parse_entry_name(name)
            if parsed is None or parsed[1] != "json" or self._names[name] > MAX_MANIFEST_BYTES:
                continue
            try:
                record = read_record(self.read(name), self.describe(name))
            except IntegrityError:
                continue  # the verifier reports it when it reads the same object
            if not isinstance(record, EventManifest) or record.kind != RECEIPT_KIND:
                continue
            rows = record.fields.get("files")
            for row in rows if isinstance(rows, list) else []:
                detail = row.get("receipt") if isinstance(row, dict) else None
                version = detail.get("version_id") if isinstance(detail, dict) else None
                if not isinstance(row, dict) or not isinstance(row.get("file"), str) or not version:
                    continue
                extra = detail.get("extra") if isinstance(detail, dict) else None
                bundle = extra.get("bundle") if isinstance(extra, dict) else None
                if isinstance(bundle, str) and is_bundle_key(bundle):
                    self._in_bundle[row["file"]] = bundle
                    out[bundle] = str(version)
                else:
                    out[row["file"]] = str(version)
        return out

    def _list(self, prefix: str) -> dict[str, int]:
        return _list_prefix(self._client, self._bucket, prefix)

    def _key(self, name: str) -> str:
        return f"{self._prefix}/{name}" if self._prefix else name

    def names(self) -> list[str]:
        return sorted(self._names)

    def read(self, name: str) -> bytes:
        if name in self._members:
            return self._members[name][1]
        kwargs: dict[str, Any] = {"Bucket": self._bucket, "Key": self._key(name)}
        if name in self._pinned:
            kwargs["VersionId"] = self._pinned[name]
        try:
            resp = self._client.get_object(**kwargs)
            return resp["Body"].read()
        except S3_FAILURES as exc:
            raise IntegrityError(
                f"cannot read the object ({client_error_code(exc) or exc})",
                path=self.describe(name),
            ) from exc

    def open(self, name: str) -> BinaryIO:
        # Evidence payloads are about one second of video (~1 MB): reading one whole is fine,
        # and a BytesIO gives the verifier the seekable stream it expects.
        return io.BytesIO(self.read(name))

    def exists(self, name: str) -> bool:
        return name in self._names

    def size(self, name: str) -> int:
        if name not in self._names:
            raise FileNotFoundError(name)
        return self._names[name]

    def describe(self, name: str) -> str:
        if name in self._members:
            return f"s3://{self._bucket}/{self._key(self._members[name][0])}[{name}]"
        return f"s3://{self._bucket}/{self._key(name)}"


@dataclass(frozen=True)
class S3Stores:
    stores: list[S3StoreReader]
    share: bool


def s3_store_readers(url: str, settings: S3Settings, *, client: S3Client | None = None) -> S3Stores:
    """Every unit's store at ``url``: the store itself, or each store one level below it (an
    offload target's root holding several units). Empty if nothing there looks like a store."""
    bucket, prefix = parse_s3_url(url)
    client = client or settings.client()
    listing = _list_prefix(client, bucket, prefix)
    if _looks_like_store(listing):
        return S3Stores([S3StoreReader(url, settings, client=client, listing=listing)], False)
    tops = sorted({k.split("/", 1)[0] for k in listing if "/" in k})
    out = []
    for top in tops:
        below = {k[len(top) + 1 :]: v for k, v in listing.items() if k.startswith(top + "/")}
        if _looks_like_store(below):
            sub = f"s3://{bucket}/{prefix}/{top}" if prefix else f"s3://{bucket}/{top}"
            out.append(S3StoreReader(sub, settings, client=client, listing=below))
    return S3Stores(out, True)


def _list_prefix(client: S3Client, bucket: str, prefix: str) -> dict[str, int]:
    """Name (relative to ``prefix``) -> size of every object under ``prefix``."""
    base = f"{prefix}/" if prefix else ""
    out: dict[str, int] = {}
    try:
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=base):
            for obj in page.get("Contents", []):
                out[obj["Key"][len(base) :]] = int(obj.get("Size", 0))
    except S3_FAILURES as exc:
        code = client_error_code(exc)
        raise UsageError(f"s3://{bucket}/{prefix}: cannot list the store ({code or exc})") from exc
    return out


def _looks_like_store(listing: Mapping[str, int]) -> bool:
    return any(parse_entry_name(k) is not None or k == DEVICE_PUB_NAME for k in listing)


def _single_store_below(listing: Mapping[str, int]) -> str | None:
    tops = {k.split("/", 1)[0] for k in listing if "/" in k}
    stores = [
        t
        for t in tops
        if _looks_like_store({k[len(t) + 1 :]: 0 for k in listing if k.startswith(t + "/")})
    ]
    if len(stores) > 1:
        raise UsageError(
            "several units' stores under this prefix; name one: " + ", ".join(sorted(stores))
        )
    return stores[0] if stores else None
