"""Agency key pairs for evidence encryption (HPKE recipients): generate, load, fingerprint, wrap.

Two KEMs: DHKEM(P-384) (default) and the ML-KEM-1024 + P-384 hybrid. A hybrid key file holds two
PEM blocks, ML-KEM-1024 first, then P-384. Never logs or prints private keys.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mlkem
from cryptography.hazmat.primitives.hpke import (
    AEAD,
    KDF,
    KEM,
    MLKEM1024P384PrivateKey,
    MLKEM1024P384PublicKey,
    Suite,
)

from evidence.format import SUITE_MLKEM1024_P384, SUITE_P384
from hal.durable import write_new
from hal.errors import IntegrityError, UsageError

KEM_P384 = "p384"
KEM_MLKEM1024_P384 = "mlkem1024-p384"
KEM_CHOICES = (KEM_P384, KEM_MLKEM1024_P384)

AGENCY_KEY_NAME = "agency-key.pem"
AGENCY_PUB_NAME = "agency-pub.pem"

_PEM_RE = re.compile(rb"-----BEGIN [A-Z ]+-----.+?-----END [A-Z ]+-----\s*", re.DOTALL)

_SUITES: dict[str, Suite] = {
    SUITE_P384: Suite(KEM.P384, KDF.HKDF_SHA384, AEAD.AES_256_GCM),
    SUITE_MLKEM1024_P384: Suite(KEM.MLKEM1024_P384, KDF.HKDF_SHA384, AEAD.AES_256_GCM),
}


def _spki_der(key: ec.EllipticCurvePublicKey | mlkem.MLKEM1024PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@dataclass(frozen=True)
class AgencyPublicKey:
    """One recipient: its HPKE suite, fingerprint (hex SHA-256 of the SPKI DER) and key object.

    For the hybrid the fingerprint covers the ML-KEM SPKI DER followed by the P-384 SPKI DER.
    """

    suite: str
    fingerprint: str
    key: ec.EllipticCurvePublicKey | MLKEM1024P384PublicKey
    spki_pem: bytes = b""  # re-serialised from the key objects: what a unit installs, never input

    def wrap(self, secret: bytes | bytearray, info: bytes) -> bytes:
        """HPKE single-shot seal of ``secret`` to this recipient (``enc || ct``): a unit's content
        key (``bwc-evidence/1``) or a segment secret (``bwc-evidence/2``)."""
        return _SUITES[self.suite].encrypt(secret, self.key, info=info)


@dataclass(frozen=True)
class AgencyPrivateKey:
    suite: str
    fingerprint: str
    key: ec.EllipticCurvePrivateKey | MLKEM1024P384PrivateKey

    def unwrap(self, enc_and_ct: bytes, info: bytes) -> bytes:
        """Open a wrapped content key or segment secret; ``IntegrityError`` if it does not open."""
        try:
            return _SUITES[self.suite].decrypt(enc_and_ct, self.key, info=info)
        except (InvalidTag, ValueError) as exc:
            raise IntegrityError("content key does not decrypt with the agency key") from exc


def generate_agency_keys(out_dir: Path, kem: str = KEM_P384) -> tuple[Path, Path]:
    """Write ``agency-key.pem`` (0600, never overwriting) and ``agency-pub.pem`` in ``out_dir``."""
    if kem not in KEM_CHOICES:
        raise UsageError(f"--kem: unknown KEM {kem!r} (choose {' or '.join(KEM_CHOICES)})")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{out_dir}: cannot create directory: {exc.strerror}") from exc
    priv_path, pub_path = out_dir / AGENCY_KEY_NAME, out_dir / AGENCY_PUB_NAME
    for p in (priv_path, pub_path):
        if p.exists():
            raise UsageError(f"{p}: already exists; refusing to overwrite an agency key")
    nop = serialization.NoEncryption()
    pkcs8, pem = serialization.PrivateFormat.PKCS8, serialization.Encoding.PEM
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    ec_key = ec.generate_private_key(ec.SECP384R1())
    priv_pem = b""
    pub_pem = b""
    if kem == KEM_MLKEM1024_P384:
        ml_key = mlkem.MLKEM1024PrivateKey.generate()
        priv_pem += ml_key.private_bytes(pem, pkcs8, nop)
        pub_pem += ml_key.public_key().public_bytes(pem, spki)
    priv_pem += ec_key.private_bytes(pem, pkcs8, nop)
    pub_pem += ec_key.public_key().public_bytes(pem, spki)
    write_new(priv_path, priv_pem, mode=0o600)
    write_new(pub_path, pub_pem, mode=0o644)
    return priv_path, pub_path


def _pem_blocks(path: Path, what: str) -> list[bytes]:
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise UsageError(f"{path}: {what} not found") from exc
    except OSError as exc:
        raise UsageError(f"{path}: cannot read {what}: {exc.strerror}") from exc
    blocks = _PEM_RE.findall(data)
    if not blocks:
        raise UsageError(f"{path}: not a PEM file (expected {what})")
    return list(blocks)


def public_key_blocks(data: bytes, source: str, what: str) -> list[object]:
    """The public keys of a PEM file that holds public keys and nothing else.

    Refuses, naming ``source``: private key material anywhere in the file (a ``PRIVATE KEY``
    block, even one this parser would not otherwise read), anything but whitespace outside the
    PEM blocks, and blocks other than ``PUBLIC KEY``. The caller checks count and type.
    """
    if re.search(rb"PRIVATE\s+KEY", data, re.IGNORECASE):
        raise UsageError(f"{source}: holds private key material; give the {what} only")
    blocks = _PEM_RE.findall(data)
    if not blocks:
        raise UsageError(f"{source}: not a PEM file (expected the {what})")
    if _PEM_RE.sub(b"", data).strip():
        raise UsageError(f"{source}: holds data outside its PEM blocks; give the {what} only")
    keys: list[object] = []
    for block in blocks:
        if not block.startswith(b"-----BEGIN PUBLIC KEY-----"):
            label = block.split(b"-----")[1].decode("ascii", "replace")
            raise UsageError(f"{source}: holds a {label} block; expected the {what} only")
        try:
            keys.append(serialization.load_pem_public_key(block))
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise UsageError(f"{source}: not a readable public key PEM") from exc
    return keys


def parse_agency_public(data: bytes, source: str) -> AgencyPublicKey:
    """Exactly one agency public key (P-384, or ML-KEM-1024 + P-384) from PEM bytes, strictly."""
    return _public_from(public_key_blocks(data, source, "agency public key"), Path(source))


def load_agency_public(path: Path) -> AgencyPublicKey:
    """Load an agency public key (P-384 SPKI PEM, or ML-KEM-1024 + P-384 SPKI PEMs)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise UsageError(f"{path}: agency public key not found") from exc
    except OSError as exc:
        raise UsageError(f"{path}: cannot read agency public key: {exc.strerror}") from exc
    return parse_agency_public(data, str(path))


def _public_from(keys: Sequence[object], path: Path) -> AgencyPublicKey:
    if any(isinstance(k, ed25519.Ed25519PublicKey) for k in keys):
        raise UsageError(
            f"{path}: is an Ed25519 signing key (device or release key), not an agency "
            "encryption key"
        )
    if len(keys) == 1 and isinstance(keys[0], ec.EllipticCurvePublicKey):
        k = keys[0]
        _require_p384(k.curve, path)
        fp = hashlib.sha256(_spki_der(k)).hexdigest()
        return AgencyPublicKey(SUITE_P384, fp, k, _spki_pem(k))
    if (
        len(keys) == 2
        and isinstance(keys[0], mlkem.MLKEM1024PublicKey)
        and isinstance(keys[1], ec.EllipticCurvePublicKey)
    ):
        ml, ek = keys[0], keys[1]
        _require_p384(ek.curve, path)
        fp = hashlib.sha256(_spki_der(ml) + _spki_der(ek)).hexdigest()
        pem = _spki_pem(ml) + _spki_pem(ek)
        return AgencyPublicKey(SUITE_MLKEM1024_P384, fp, MLKEM1024P384PublicKey(ml, ek), pem)
    raise UsageError(
        f"{path}: not an agency key (expected P-384, or ML-KEM-1024 followed by P-384)"
    )


def _spki_pem(key: ec.EllipticCurvePublicKey | mlkem.MLKEM1024PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _require_p384(curve: ec.EllipticCurve, path: Path) -> None:
    if not isinstance(curve, ec.SECP384R1):
        raise UsageError(f"{path}: EC key on {curve.name}; agency keys use P-384")


def load_agency_private(path: Path) -> AgencyPrivateKey:
    """Load an agency private key; one clear ``UsageError`` line for every wrong kind of file."""
    what = "agency private key"
    privs = []
    for block in _pem_blocks(path, what):
        if b"PRIVATE KEY" not in block:
            kind = "a public key"
            try:
                pub = serialization.load_pem_public_key(block)
                if isinstance(pub, ed25519.Ed25519PublicKey):
                    kind = "an Ed25519 public key (device or release key)"
            except (ValueError, UnsupportedAlgorithm):
                pass
            raise UsageError(f"{path}: is {kind}; expected the agency private key (agency-key.pem)")
        try:
            privs.append(serialization.load_pem_private_key(block, password=None))
        except TypeError as exc:
            raise UsageError(f"{path}: private key is password-protected; not supported") from exc
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise UsageError(f"{path}: not a readable private key PEM") from exc
    if any(isinstance(k, ed25519.Ed25519PrivateKey) for k in privs):
        raise UsageError(
            f"{path}: is an Ed25519 signing key (a device key?), not the agency decryption key"
        )
    if len(privs) == 1 and isinstance(privs[0], ec.EllipticCurvePrivateKey):
        k = privs[0]
        _require_p384(k.curve, path)
        fp = hashlib.sha256(_spki_der(k.public_key())).hexdigest()
        return AgencyPrivateKey(SUITE_P384, fp, k)
    if (
        len(privs) == 2
        and isinstance(privs[0], mlkem.MLKEM1024PrivateKey)
        and isinstance(privs[1], ec.EllipticCurvePrivateKey)
    ):
        ml, ek = privs[0], privs[1]
        _require_p384(ek.curve, path)
        fp = hashlib.sha256(_spki_der(ml.public_key()) + _spki_der(ek.public_key())).hexdigest()
        return AgencyPrivateKey(SUITE_MLKEM1024_P384, fp, MLKEM1024P384PrivateKey(ml, ek))
    raise UsageError(
        f"{path}: not an agency key (expected P-384, or ML-KEM-1024 followed by P-384)"
    )
