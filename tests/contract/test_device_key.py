"""Contract suite for ``DeviceKey``: every backend that loads here (the software key; a TPM or
secure-element backend joins the parametrisation where fitted)."""

from __future__ import annotations

import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from hal.errors import UsageError
from hal.protocols import DeviceKey
from hal.software_key import SoftwareDeviceKey


def _software(tmp: Path) -> DeviceKey:
    SoftwareDeviceKey.generate(tmp / "device-key.pem")
    return SoftwareDeviceKey.load(tmp / "device-key.pem")


BACKENDS: dict[str, Callable[[Path], DeviceKey]] = {"software": _software}


@pytest.fixture(params=sorted(BACKENDS))
def key(request: pytest.FixtureRequest, tmp_path: Path) -> DeviceKey:
    return BACKENDS[request.param](tmp_path)


def test_is_a_device_key(key: DeviceKey) -> None:
    assert isinstance(key, DeviceKey)


def test_signatures_verify_with_the_raw_public_key_and_bind_the_message(key: DeviceKey) -> None:
    raw = key.public_key_raw()
    assert len(raw) == 32
    pub = Ed25519PublicKey.from_public_bytes(raw)
    sig = key.sign(b"manifest bytes")
    assert len(sig) == 64
    pub.verify(sig, b"manifest bytes")
    with pytest.raises(InvalidSignature):
        pub.verify(sig, b"manifest bytez")


def test_software_key_is_private_to_its_owner(tmp_path: Path) -> None:
    path = tmp_path / "device-key.pem"
    SoftwareDeviceKey.generate(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(UsageError):
        SoftwareDeviceKey.generate(path)  # never overwrites an identity
    path.chmod(0o644)
    with pytest.raises(UsageError, match=r"device-key\.pem"):
        SoftwareDeviceKey.load(path)


def test_two_units_have_different_identities(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert _software(tmp_path / "a").public_key_raw() != _software(tmp_path / "b").public_key_raw()
