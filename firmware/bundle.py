"""Firmware bundles: one signed file holding a manifest and one payload, plus the signing keys.

Layout of a bundle (all integers big-endian; see docs/firmware.md):

    offset 0   8 bytes   magic b"BWCFWBDL"
    offset 8   u16       format version (1)
    offset 10  u16       reserved, zero
    offset 12  u32       manifest length M (1 .. 65536)
    offset 16  M bytes   manifest: canonical JSON (sorted keys, no spaces, ASCII)
    16+M       64 bytes  Ed25519 signature over the manifest bytes
    80+M       size      payload (a file as is, or a directory as a deterministic tar)

The manifest names the payload's size and SHA-256, so the signature covers the payload too.
Parsing treats every bundle as hostile: lengths are bounded, unknown or mistyped manifest keys
are refused, and every problem is one clear error, never a traceback. This module must not
touch a unit: installing is ``firmware.flash``.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import struct
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from firmware.update_state import canonical_json
from hal.durable import fsync_dir, write_new
from hal.errors import IntegrityError, UsageError
from hal.software_key import fingerprint_raw

MAGIC = b"BWCFWBDL"
FORMAT_VERSION = 1
MANIFEST_FORMAT = "bwc-bundle/1"
HEADER = struct.Struct(">8sHHI")
SIGNATURE_BYTES = 64
MAX_MANIFEST_BYTES = 64 * 1024
MAX_PAYLOAD_BYTES = 1 << 40
CHUNK_BYTES = 1 << 20
CHANNELS = ("development", "release")
PAYLOAD_KINDS = ("file", "tar")
CHANNEL_LABEL = "bwc-firmware-channel:"
MAX_KEY_FILE_BYTES = 16 * 1024

_VERSION_RE = re.compile(r"^(0|[1-9]\d{0,5})\.(0|[1-9]\d{0,5})\.(0|[1-9]\d{0,5})\Z")
_COMPATIBLE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}\Z")


class BundleFormatError(UsageError):
    """The file is not a bundle, or not a well-formed one (exit 2 for ``inspect``)."""


# ---------------------------------------------------------------------------------------------
# Keys


def key_file_names(channel: str) -> tuple[str, str]:
    """(private, public) file names for a channel's key pair. Release names are CONTRACT §7."""
    if channel not in CHANNELS:
        raise UsageError(f"--channel: must be one of {', '.join(CHANNELS)}, not {channel!r}")
    return f"{channel}-key.pem", f"{channel}-pub.pem"


@dataclass(frozen=True)
class SigningKey:
    private: Ed25519PrivateKey
    channel: str

    @property
    def fingerprint(self) -> str:
        return fingerprint_raw(_raw_public(self.private.public_key()))


@dataclass(frozen=True)
class TrustedKey:
    public: Ed25519PublicKey
    channel: str

    @property
    def fingerprint(self) -> str:
        return fingerprint_raw(_raw_public(self.public))


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _labelled(channel: str, pem: bytes) -> bytes:
    # Explanatory text before the PEM block is allowed by RFC 7468 and ignored by OpenSSL.
    return f"{CHANNEL_LABEL} {channel}\n".encode() + pem


def _read_key_file(path: Path) -> tuple[str, bytes]:
    """(channel, PEM bytes) of a key file; an unlabelled key counts as a release key."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the key ({exc.strerror})") from None
    if len(data) > MAX_KEY_FILE_BYTES:
        raise UsageError(f"{path}: too large to be a key file")
    channel = "release"
    begin = data.find(b"-----BEGIN")
    if begin < 0:
        raise UsageError(f"{path}: not a PEM key file")
    for line in data[:begin].decode("ascii", "replace").splitlines():
        if line.startswith(CHANNEL_LABEL):
            channel = line[len(CHANNEL_LABEL) :].strip()
    if channel not in CHANNELS:
        raise UsageError(f"{path}: unknown firmware channel {channel!r}")
    return channel, data[begin:]


def generate_key_pair(out_dir: Path, channel: str = "release") -> tuple[Path, Path]:
    """Create ``<channel>-key.pem`` (0600) and ``<channel>-pub.pem``; never overwrite a key."""
    private_name, public_name = key_file_names(channel)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {out_dir}: cannot create directory: {exc.strerror}") from None
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    paths = (out_dir / private_name, out_dir / public_name)
    for path in paths:
        if path.exists():
            raise UsageError(f"{path}: already exists; refusing to overwrite a key")
    for path, data, mode in (
        (paths[0], _labelled(channel, private_pem), 0o600),
        (paths[1], _labelled(channel, public_pem), 0o644),
    ):
        write_new(path, data, mode=mode)
    return paths


def load_signing_key(path: Path) -> SigningKey:
    channel, pem = _read_key_file(path)
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise UsageError(f"{path}: not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UsageError(f"{path}: not an Ed25519 key")
    return SigningKey(key, channel)


def load_trusted_key(path: Path) -> TrustedKey:
    channel, pem = _read_key_file(path)
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError):
        raise UsageError(f"{path}: not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise UsageError(f"{path}: not an Ed25519 public key")
    return TrustedKey(key, channel)


# ---------------------------------------------------------------------------------------------
# Manifest


@dataclass(frozen=True)
class Manifest:
    version: str
    security_version: int
    compatible: str
    min_battery_pct: int
    payload_size: int
    payload_sha256: str
    payload_kind: str
    channel: str
    key_fingerprint: str
    build_utc_s: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": MANIFEST_FORMAT,
            "version": self.version,
            "security_version": self.security_version,
            "compatible": self.compatible,
            "min_battery_pct": self.min_battery_pct,
            "payload": {
                "size": self.payload_size,
                "sha256": self.payload_sha256,
                "kind": self.payload_kind,
            },
            "channel": self.channel,
            "key_fingerprint": self.key_fingerprint,
            "build_utc_s": self.build_utc_s,
        }

    def encode(self) -> bytes:
        return canonical_json(self.to_dict())


def check_version(version: str) -> str:
    if not _VERSION_RE.match(version):
        raise UsageError(f"--version: {version!r} is not X.Y.Z")
    return version


def check_compatible(compatible: str) -> str:
    if not _COMPATIBLE_RE.match(compatible):
        raise UsageError(
            f"--compatible: {compatible!r} must be 1-64 of letters, digits, '.', '_', '-'"
        )
    return compatible


def _field(table: dict[str, Any], key: str, kind: type[Any], where: str) -> Any:
    if key not in table:
        raise BundleFormatError(f"manifest: missing {where}{key}")
    value = table[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise BundleFormatError(f"manifest: {where}{key} must be {kind.__name__}")
    return value


def _only(table: dict[str, Any], keys: set[str], where: str) -> None:
    unknown = sorted(set(table) - keys)
    if unknown:
        raise BundleFormatError(f"manifest: unknown key {where}{unknown[0]}")


def parse_manifest(data: bytes) -> Manifest:
    """Parse and check manifest bytes; they must be the canonical encoding of what they say."""
    import json

    try:
        raw = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise BundleFormatError("manifest: not valid JSON") from None
    if not isinstance(raw, dict):
        raise BundleFormatError("manifest: not a JSON object")
    if raw.get("format") != MANIFEST_FORMAT:
        raise BundleFormatError(f"manifest: format is not {MANIFEST_FORMAT!r}")
    top = {"format", "version", "security_version", "compatible", "min_battery_pct", "payload"}
    _only(raw, top | {"channel", "key_fingerprint", "build_utc_s"}, "")
    payload = _field(raw, "payload", dict, "")
    _only(payload, {"size", "sha256", "kind"}, "payload.")
    try:
        manifest = Manifest(
            version=check_version(_field(raw, "version", str, "")),
            security_version=_field(raw, "security_version", int, ""),
            compatible=check_compatible(_field(raw, "compatible", str, "")),
            min_battery_pct=_field(raw, "min_battery_pct", int, ""),
            payload_size=_field(payload, "size", int, "payload."),
            payload_sha256=_field(payload, "sha256", str, "payload."),
            payload_kind=_field(payload, "kind", str, "payload."),
            channel=_field(raw, "channel", str, ""),
            key_fingerprint=_field(raw, "key_fingerprint", str, ""),
            build_utc_s=_field(raw, "build_utc_s", int, ""),
        )
    except BundleFormatError:
        raise
    except UsageError as exc:
        raise BundleFormatError(f"manifest: {str(exc).removeprefix('--')}") from None
    checks = (
        (0 <= manifest.security_version < 2**31, "security_version out of range"),
        (0 <= manifest.min_battery_pct <= 100, "min_battery_pct out of range 0..100"),
        (0 <= manifest.payload_size <= MAX_PAYLOAD_BYTES, "payload.size out of range"),
        (bool(_SHA256_RE.match(manifest.payload_sha256)), "payload.sha256 is not hex SHA-256"),
        (manifest.payload_kind in PAYLOAD_KINDS, "payload.kind must be file or tar"),
        (manifest.channel in CHANNELS, "channel must be development or release"),
        (bool(_SHA256_RE.match(manifest.key_fingerprint)), "key_fingerprint is not hex"),
        (0 <= manifest.build_utc_s < 2**40, "build_utc_s out of range"),
    )
    for ok, reason in checks:
        if not ok:
            raise BundleFormatError(f"manifest: {reason}")
    if manifest.encode() != data:
        raise BundleFormatError("manifest: not in canonical form")
    return manifest


# ---------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class BundleHeader:
    manifest: Manifest
    manifest_bytes: bytes
    signature: bytes
    payload_offset: int


def _read_exact(f: BinaryIO, n: int, what: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise BundleFormatError(f"truncated: {what} needs {n} bytes, found {len(data)}")
    return data


def read_header(f: BinaryIO) -> BundleHeader:
    """Read and check the fixed header, the manifest and the signature; checks the file's length.

    Does not check the signature (``verify_signature``) nor the payload (``iter_payload``).
    """
    head = f.read(HEADER.size)
    if len(head) < HEADER.size or not head.startswith(MAGIC):
        raise BundleFormatError("not a firmware bundle (bad magic)")
    _magic, fmt, reserved, manifest_len = HEADER.unpack(head)
    if fmt != FORMAT_VERSION:
        raise BundleFormatError(f"unsupported bundle format version {fmt}")
    if reserved != 0:
        raise BundleFormatError("reserved header field is not zero")
    if not 1 <= manifest_len <= MAX_MANIFEST_BYTES:
        raise BundleFormatError(f"manifest length {manifest_len} out of range")
    manifest_bytes = _read_exact(f, manifest_len, "manifest")
    signature = _read_exact(f, SIGNATURE_BYTES, "signature")
    manifest = parse_manifest(manifest_bytes)
    payload_offset = HEADER.size + manifest_len + SIGNATURE_BYTES
    end = f.seek(0, os.SEEK_END)
    expected = payload_offset + manifest.payload_size
    if end < expected:
        raise BundleFormatError(f"truncated: payload needs {expected} bytes in all, file has {end}")
    if end > expected:
        raise BundleFormatError(f"{end - expected} unexpected bytes after the payload")
    f.seek(payload_offset)
    return BundleHeader(manifest, manifest_bytes, signature, payload_offset)


def verify_signature(header: BundleHeader, trusted: TrustedKey) -> None:
    """Raise ``IntegrityError`` unless ``trusted`` signed this manifest for its own channel."""
    manifest = header.manifest
    if manifest.channel != trusted.channel:
        raise IntegrityError(
            f"bundle is signed for the {manifest.channel} channel; "
            f"the trusted key is a {trusted.channel} key"
        )
    if manifest.key_fingerprint != trusted.fingerprint:
        raise IntegrityError(
            f"bundle names signing key {manifest.key_fingerprint[:16]}…, "
            f"the trusted key is {trusted.fingerprint[:16]}…"
        )
    try:
        trusted.public.verify(header.signature, header.manifest_bytes)
    except InvalidSignature:
        raise IntegrityError("manifest signature does not verify") from None


def iter_payload(
    f: BinaryIO, header: BundleHeader, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[bytes]:
    """Yield the payload in chunks; raises ``IntegrityError`` at the end if its SHA-256 differs.

    A consumer must treat what it received as unverified until the generator is exhausted.
    """
    f.seek(header.payload_offset)
    digest = hashlib.sha256()
    remaining = header.manifest.payload_size
    while remaining:
        chunk = f.read(min(chunk_bytes, remaining))
        if not chunk:
            raise IntegrityError("payload truncated")
        digest.update(chunk)
        remaining -= len(chunk)
        yield chunk
    if digest.hexdigest() != header.manifest.payload_sha256:
        raise IntegrityError("payload SHA-256 does not match the manifest")


def verify_payload(f: BinaryIO, header: BundleHeader) -> None:
    for _chunk in iter_payload(f, header):
        pass


def open_bundle(path: Path) -> BinaryIO:
    """The bundle file, open for reading; a missing or unreadable file is a usage error."""
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            raise UsageError(f"{path}: not a regular file")
        return path.open("rb")
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read ({exc.strerror})") from None


# ---------------------------------------------------------------------------------------------
# Building


def _tar_directory(root: Path, out: BinaryIO) -> None:
    """A deterministic tar of ``root``: sorted names, zero times and owners, normalised modes."""
    entries: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(dirpath)
        entries.extend(base / d for d in dirnames)
        entries.extend(base / n for n in sorted(filenames))
    entries.sort(key=lambda p: p.relative_to(root).as_posix())
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in entries:
            st = path.lstat()
            info = tarfile.TarInfo(path.relative_to(root).as_posix())
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if stat.S_ISDIR(st.st_mode):
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            elif stat.S_ISREG(st.st_mode):
                info.size = st.st_size
                info.mode = 0o755 if st.st_mode & 0o111 else 0o644
                with path.open("rb") as src:
                    tar.addfile(info, src)
            else:
                raise UsageError(f"{path}: only regular files and directories can go in a payload")


def _hash_stream(f: BinaryIO) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    f.seek(0)
    while chunk := f.read(CHUNK_BYTES):
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


def build_bundle(
    payload: Path,
    out: Path,
    *,
    version: str,
    security_version: int,
    compatible: str,
    key: SigningKey,
    build_utc_s: int,
    min_battery_pct: int = 30,
) -> Manifest:
    """Write one signed bundle for ``payload`` (a file, or a directory as a tar) to ``out``."""
    if not 0 <= security_version < 2**31:
        raise UsageError("--security-version: must be 0 .. 2^31-1")
    if not 0 <= min_battery_pct <= 100:
        raise UsageError("--min-battery: must be 0 .. 100")
    check_version(version)
    check_compatible(compatible)
    if not payload.exists():
        raise UsageError(f"{payload}: payload not found")
    with tempfile.TemporaryFile(dir=out.parent if out.parent.exists() else None) as spool:
        if payload.is_dir():
            kind = "tar"
            _tar_directory(payload, spool)
            source: BinaryIO = spool
        elif payload.is_file():
            kind = "file"
            source = payload.open("rb")
        else:
            raise UsageError(f"{payload}: payload must be a regular file or a directory")
        try:
            size, sha256 = _hash_stream(source)
            if size > MAX_PAYLOAD_BYTES:
                raise UsageError(f"{payload}: payload larger than {MAX_PAYLOAD_BYTES} bytes")
            manifest = Manifest(
                version=version,
                security_version=security_version,
                compatible=compatible,
                min_battery_pct=min_battery_pct,
                payload_size=size,
                payload_sha256=sha256,
                payload_kind=kind,
                channel=key.channel,
                key_fingerprint=key.fingerprint,
                build_utc_s=build_utc_s,
            )
            manifest_bytes = manifest.encode()
            signature = key.private.sign(manifest_bytes)
            _write_bundle(out, manifest_bytes, signature, source)
        finally:
            if source is not spool:
                source.close()
    return manifest


def _write_bundle(out: Path, manifest_bytes: bytes, signature: bytes, source: BinaryIO) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with tmp.open("wb") as f:
        f.write(HEADER.pack(MAGIC, FORMAT_VERSION, 0, len(manifest_bytes)))
        f.write(manifest_bytes)
        f.write(signature)
        source.seek(0)
        while chunk := source.read(CHUNK_BYTES):
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, out)
    fsync_dir(out.parent)


def tar_member_names(data: BinaryIO) -> list[str]:
    """Names in a tar payload (for the simulator's fault knobs); empty if it is not a tar."""
    try:
        with tarfile.open(fileobj=data, mode="r:") as tar:
            return [m.name for m in tar.getmembers()]
    except (tarfile.TarError, OSError):
        return []


def payload_bytes_tar(files: dict[str, bytes]) -> bytes:
    """A deterministic tar of ``files`` (name -> content): the factory firmware's payload."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size = len(files[name])
            info.mtime = 0
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(files[name]))
    return buf.getvalue()
