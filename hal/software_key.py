"""A device signing key in a PEM file (Ed25519, PKCS8): the ``DeviceKey`` backend without a TPM.

It must never log, print or copy the private key; the file is created 0600 and refused if others
can read it. A secure-element backend implements the same ``DeviceKey`` protocol.
"""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hal.durable import write_new
from hal.errors import UsageError


def fingerprint_raw(public_raw: bytes) -> str:
    """The evidence format's key fingerprint: hex SHA-256 of the raw 32-byte Ed25519 public key."""
    return hashlib.sha256(public_raw).hexdigest()


class SoftwareDeviceKey:
    """An Ed25519 private key loaded from a file. Thread-safe: signing holds no mutable state."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self._public_raw = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @classmethod
    def generate(cls, path: Path) -> SoftwareDeviceKey:
        """Create a new key at ``path`` (mode 0600, refusing to overwrite) and fsync it."""
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        try:
            write_new(path, pem, mode=0o600)
        except FileExistsError as exc:
            raise UsageError(f"{path}: a key already exists; refusing to overwrite it") from exc
        except OSError as exc:
            raise UsageError(f"{path}: cannot create the device key: {exc.strerror}") from exc
        return cls(key)

    @classmethod
    def load(cls, path: Path) -> SoftwareDeviceKey:
        """Load the key at ``path``; one clear ``UsageError`` line for every way it can be wrong."""
        try:
            st = path.stat()
        except FileNotFoundError as exc:
            raise UsageError(f"{path}: device key not found") from exc
        except OSError as exc:
            raise UsageError(f"{path}: cannot read the device key: {exc.strerror}") from exc
        if not stat.S_ISREG(st.st_mode):
            raise UsageError(f"{path}: device key is not a regular file")
        if st.st_mode & 0o077:
            raise UsageError(
                f"{path}: device key is readable by group or others "
                f"(mode {stat.S_IMODE(st.st_mode):04o}); it must be 0600"
            )
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise UsageError(f"{path}: cannot read the device key: {exc.strerror}") from exc
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise UsageError(f"{path}: not a readable unencrypted PEM private key") from exc
        except UnsupportedAlgorithm as exc:
            raise UsageError(f"{path}: not a supported private key") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise UsageError(f"{path}: not an Ed25519 private key (the device key must be Ed25519)")
        return cls(key)

    def public_key_raw(self) -> bytes:
        return self._public_raw

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)

    def public_pem(self) -> bytes:
        """The public half as SubjectPublicKeyInfo PEM (what ``openssl pkeyutl -pubin`` reads)."""
        return self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def fingerprint(self) -> str:
        return fingerprint_raw(self._public_raw)
