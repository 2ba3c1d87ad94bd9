"""Firmware bundles: build, read, verify; keys and channels; hostile input never crashes."""

from __future__ import annotations

import io
import stat
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.bundle import (
    HEADER,
    MAGIC,
    BundleFormatError,
    build_bundle,
    generate_key_pair,
    load_signing_key,
    load_trusted_key,
    parse_manifest,
    read_header,
    verify_payload,
    verify_signature,
)
from hal.errors import BwcError, IntegrityError, UsageError


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    root = tmp_path_factory.mktemp("keys")
    return {
        "release": generate_key_pair(root / "release", "release"),
        "other": generate_key_pair(root / "other", "release"),
        "development": generate_key_pair(root / "dev", "development"),
    }


@pytest.fixture(scope="module")
def small_bundle(
    tmp_path_factory: pytest.TempPathFactory, keys: dict[str, tuple[Path, Path]]
) -> bytes:
    root = tmp_path_factory.mktemp("b")
    src = root / "payload.bin"
    src.write_bytes(b"firmware image " * 20)
    out = root / "b.bwc"
    build_bundle(
        src,
        out,
        version="1.2.3",
        security_version=4,
        compatible="bwc-sim",
        key=load_signing_key(keys["release"][0]),
        build_utc_s=1_700_000_000,
        min_battery_pct=40,
    )
    return out.read_bytes()


def test_keygen_writes_private_key_0600_and_refuses_to_overwrite(tmp_path: Path) -> None:
    private, public = generate_key_pair(tmp_path, "release")
    assert (private.name, public.name) == ("release-key.pem", "release-pub.pem")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert load_trusted_key(public).fingerprint == load_signing_key(private).fingerprint
    with pytest.raises(UsageError, match="refusing to overwrite"):
        generate_key_pair(tmp_path, "release")


def test_development_keys_are_named_and_labelled_apart(tmp_path: Path) -> None:
    private, public = generate_key_pair(tmp_path, "development")
    assert private.name == "development-key.pem"
    assert load_signing_key(private).channel == "development"
    assert load_trusted_key(public).channel == "development"


def test_round_trip_reads_back_the_signed_manifest(
    small_bundle: bytes, keys: dict[str, tuple[Path, Path]]
) -> None:
    f = io.BytesIO(small_bundle)
    header = read_header(f)
    m = header.manifest
    assert (m.version, m.security_version, m.compatible, m.min_battery_pct) == (
        "1.2.3",
        4,
        "bwc-sim",
        40,
    )
    assert (m.payload_kind, m.payload_size, m.channel) == ("file", 300, "release")
    verify_signature(header, load_trusted_key(keys["release"][1]))
    verify_payload(f, header)


def test_directory_payload_is_a_deterministic_tar(
    tmp_path: Path, keys: dict[str, tuple[Path, Path]]
) -> None:
    src = tmp_path / "root"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "b.conf").write_text("b")
    (src / "a.bin").write_bytes(b"\x00" * 3000)
    key = load_signing_key(keys["release"][0])
    digests = []
    for name in ("one.bwc", "two.bwc"):
        (src / "a.bin").touch()  # a new mtime must not change the payload
        build_bundle(
            src,
            tmp_path / name,
            version="1.0.0",
            security_version=1,
            compatible="bwc-sim",
            key=key,
            build_utc_s=0,
        )
        digests.append(read_header(io.BytesIO((tmp_path / name).read_bytes())).manifest)
    assert digests[0].payload_kind == "tar"
    assert digests[0].payload_sha256 == digests[1].payload_sha256


def test_payload_tamper_is_an_integrity_error(
    small_bundle: bytes, keys: dict[str, tuple[Path, Path]]
) -> None:
    data = bytearray(small_bundle)
    data[-1] ^= 0x01
    f = io.BytesIO(bytes(data))
    header = read_header(f)
    verify_signature(header, load_trusted_key(keys["release"][1]))  # the manifest is intact
    with pytest.raises(IntegrityError, match="SHA-256"):
        verify_payload(f, header)


def test_signature_tamper_is_an_integrity_error(
    small_bundle: bytes, keys: dict[str, tuple[Path, Path]]
) -> None:
    data = bytearray(small_bundle)
    manifest_len = struct.unpack(">I", data[12:16])[0]
    data[HEADER.size + manifest_len] ^= 0x80
    header = read_header(io.BytesIO(bytes(data)))
    with pytest.raises(IntegrityError, match="signature does not verify"):
        verify_signature(header, load_trusted_key(keys["release"][1]))


def test_manifest_value_tamper_is_caught_by_the_signature(
    small_bundle: bytes, keys: dict[str, tuple[Path, Path]]
) -> None:
    data = small_bundle.replace(b'"security_version":4', b'"security_version":9')
    assert data != small_bundle
    header = read_header(io.BytesIO(data))
    with pytest.raises(IntegrityError):
        verify_signature(header, load_trusted_key(keys["release"][1]))


def test_wrong_key_is_named(small_bundle: bytes, keys: dict[str, tuple[Path, Path]]) -> None:
    header = read_header(io.BytesIO(small_bundle))
    with pytest.raises(IntegrityError, match="names signing key"):
        verify_signature(header, load_trusted_key(keys["other"][1]))


def test_development_bundle_is_refused_by_a_release_key(
    tmp_path: Path, keys: dict[str, tuple[Path, Path]]
) -> None:
    src = tmp_path / "p"
    src.write_bytes(b"x")
    build_bundle(
        src,
        tmp_path / "dev.bwc",
        version="9.9.9",
        security_version=9,
        compatible="bwc-sim",
        key=load_signing_key(keys["development"][0]),
        build_utc_s=0,
    )
    header = read_header((tmp_path / "dev.bwc").open("rb"))
    assert header.manifest.channel == "development"
    with pytest.raises(IntegrityError, match="development channel"):
        verify_signature(header, load_trusted_key(keys["release"][1]))
    verify_signature(header, load_trusted_key(keys["development"][1]))


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda b: b"NOTABNDL" + b[8:], "bad magic"),
        (lambda b: b[:8] + struct.pack(">H", 2) + b[10:], "format version 2"),
        (lambda b: b[:12] + struct.pack(">I", 10**9) + b[16:], "out of range"),
        (lambda b: b + b"extra", "unexpected bytes"),
        (lambda b: b[:-1], "truncated"),
        (lambda b: b"", "bad magic"),
    ],
)
def test_structural_damage_is_a_clear_format_error(
    small_bundle: bytes, mutate: object, reason: str
) -> None:
    data = mutate(small_bundle)  # type: ignore[operator]
    with pytest.raises(BundleFormatError, match=reason):
        read_header(io.BytesIO(data))


def test_every_truncation_is_a_format_error(small_bundle: bytes) -> None:
    for n in range(len(small_bundle)):
        with pytest.raises(BundleFormatError):
            read_header(io.BytesIO(small_bundle[:n]))


@pytest.mark.parametrize(
    ("manifest", "reason"),
    [
        (b"[1]", "not a JSON object"),
        (b"\xff\xfe", "not valid JSON"),
        (b'{"format":"other"}', "format"),
        (b'{"format":"bwc-bundle/1"}', "missing"),
        (b"[" * 100_000, "not valid JSON"),
    ],
)
def test_hostile_manifests_are_refused(manifest: bytes, reason: str) -> None:
    with pytest.raises(BundleFormatError, match=reason):
        parse_manifest(manifest)


def test_non_canonical_and_unknown_keys_are_refused(small_bundle: bytes) -> None:
    header = read_header(io.BytesIO(small_bundle))
    spaced = header.manifest_bytes.replace(b":", b": ", 1)
    with pytest.raises(BundleFormatError, match="canonical"):
        parse_manifest(spaced)
    extra = header.manifest_bytes.replace(b'{"build_utc_s"', b'{"a":1,"build_utc_s"', 1)
    with pytest.raises(BundleFormatError, match="unknown key a"):
        parse_manifest(extra)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_random_corruption_raises_only_project_errors(
    small_bundle: bytes, data: st.DataObject
) -> None:
    buf = bytearray(small_bundle)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(buf) - 1))
        buf[i] = data.draw(st.integers(0, 255))
    f = io.BytesIO(bytes(buf))
    try:
        header = read_header(f)
        verify_payload(f, header)
    except BwcError:
        pass


def test_build_refuses_bad_arguments(tmp_path: Path, keys: dict[str, tuple[Path, Path]]) -> None:
    src = tmp_path / "p"
    src.write_bytes(b"x")
    key = load_signing_key(keys["release"][0])

    def build(payload: Path, version: str, security_version: int) -> None:
        build_bundle(
            payload,
            tmp_path / "o",
            version=version,
            security_version=security_version,
            compatible="bwc-sim",
            key=key,
            build_utc_s=0,
        )

    with pytest.raises(UsageError, match="--version"):
        build(src, "1.2", 1)
    with pytest.raises(UsageError, match="--security-version"):
        build(src, "1.2.3", -1)
    with pytest.raises(UsageError, match="not found"):
        build(tmp_path / "nope", "1.2.3", 1)
    assert not (tmp_path / "o").exists()
    assert MAGIC == b"BWCFWBDL"
