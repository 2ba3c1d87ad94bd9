"""Offload benchmarks: the runner's throughput against a plain boto3 PUT loop of the same bytes,
and what that means for a 10-hour shift at 10 Mbit/s.

Needs an S3 server (BWC_TEST_S3_ENDPOINT and the AWS_* variables, as scripts/ceph-up.sh writes
them); without one only the directory-target figure is reported. Reports; never fails.
Run: .venv/bin/python -m bench.offload
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from evidence.keys import generate_agency_keys, load_agency_public
from evidence.sealer import Sealer
from evidence.sealing import UnitMeta
from hal.software_key import SoftwareDeviceKey
from hal.types import ClockSource
from offload.runner import offload
from offload.targets import DirectoryTarget, OffloadTarget, S3Settings, S3Target

UNIT_BYTES = 1_250_000  # about 1 s of 10 Mbit/s video
UNITS = 24
SHIFT_BYTES = 10 * 3600 * 10_000_000 // 8  # 10 hours at 10 Mbit/s = 45 GB


class _WallClock:
    def monotonic_us(self) -> int:
        return time.monotonic_ns() // 1000

    def utc_us(self) -> int:
        return time.time_ns() // 1000

    @property
    def source(self) -> ClockSource:
        return ClockSource.NTP

    def set_utc(self, utc_us: int, source: ClockSource) -> None:
        raise NotImplementedError


def _store(root: Path) -> tuple[Path, Sealer]:
    key_path = root / "device-key.pem"
    key = SoftwareDeviceKey.generate(key_path)
    _priv, pub = generate_agency_keys(root / "agency")
    store = root / "evidence"
    sealer = Sealer.open(
        store, key, [load_agency_public(pub)], "bench", "0" * 32, "ntp",
        device_pub_pem=key.public_pem(),
    )  # fmt: skip
    clock = _WallClock()
    payload = os.urandom(UNIT_BYTES)
    sealer.event("record_start", {"recording": "r"}, mono_us=0, utc_us=clock.utc_us())
    for i in range(UNITS):
        meta = UnitMeta("r", 0, i, i * 30, 30, i, i + 1, clock.utc_us(), "ntp")
        sealer.seal_unit(payload, meta, mono_us=i, utc_us=clock.utc_us())
    sealer.event("record_stop", {"recording": "r"}, mono_us=UNITS, utc_us=clock.utc_us())
    return store, sealer


def _store_bytes(store: Path) -> int:
    return sum(p.stat().st_size for p in store.iterdir() if p.is_file())


def _offload_rate(target_factory: Any) -> tuple[float, int]:
    """Bytes per second of one full offload round of a fresh store."""
    with tempfile.TemporaryDirectory() as tmp:
        store, sealer = _store(Path(tmp))
        total = _store_bytes(store)
        target: OffloadTarget = target_factory(Path(tmp))
        t0 = time.perf_counter()
        result = offload(store, target, sealer, _WallClock(), lambda: True)
        elapsed = time.perf_counter() - t0
        assert result.complete
        return total / elapsed, total


def _plain_put_rate(settings: S3Settings) -> float:
    """The same files with the plainest boto3 loop: one put_object each, no checks, no lock."""
    client = settings.client()
    bucket = f"bench-plain-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    with tempfile.TemporaryDirectory() as tmp:
        store, _sealer = _store(Path(tmp))
        files = sorted(p for p in store.iterdir() if p.is_file())
        total = sum(p.stat().st_size for p in files)
        t0 = time.perf_counter()
        for p in files:
            with p.open("rb") as f:
                client.put_object(Bucket=bucket, Key=f"plain/{p.name}", Body=f)
        return total / (time.perf_counter() - t0)


def run() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    dir_rate, total = _offload_rate(lambda tmp: DirectoryTarget(tmp / "dock"))
    out.append(
        {
            "name": "offload_directory_MBps",
            "value": round(dir_rate / 1e6, 1),
            "unit": "MB/s",
            "goal": None,
            "note": f"{UNITS} units of {UNIT_BYTES} B + manifests ({total} B), fsync + read-back",
        }
    )
    if not os.environ.get("BWC_TEST_S3_ENDPOINT"):
        out.append(
            {
                "name": "offload_s3_MBps",
                "value": None,
                "unit": "MB/s",
                "goal": None,
                "note": "skipped: no S3 server (run scripts/ceph-up.sh and source its env.sh)",
            }
        )
        return out
    settings = S3Settings.resolve(os.environ, endpoint_url=os.environ["BWC_TEST_S3_ENDPOINT"])
    client = settings.client()

    def s3_target(_tmp: Path) -> S3Target:
        bucket = f"bench-lock-{uuid.uuid4().hex[:8]}"
        client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
        return S3Target(f"s3://{bucket}/bench", settings)

    s3_rate, _ = _offload_rate(s3_target)
    plain = _plain_put_rate(settings)
    shift_h = SHIFT_BYTES / s3_rate / 3600
    out += [
        {
            "name": "offload_s3_MBps",
            "value": round(s3_rate / 1e6, 1),
            "unit": "MB/s",
            "goal": None,
            "note": "hash, PUT with MD5+SHA-256+COMPLIANCE lock, HeadObject receipt, events, free",
        },
        {
            "name": "plain_boto3_put_MBps",
            "value": round(plain / 1e6, 1),
            "unit": "MB/s",
            "goal": None,
            "note": "same files, bare put_object loop, no checks, no lock",
        },
        {
            "name": "offload_vs_boto3_put",
            "value": round(s3_rate / plain, 2),
            "unit": "x boto3 put_object throughput",
            "goal": ">= 0.8",
            "note": "runner throughput / a bare put_object loop of the same files into a bucket "
            "without versioning or lock, same server; the gap is the receipt HeadObject per file "
            "and Ceph's versioned, locked writes (see docs/offload.md)",
        },
        {
            "name": "shift_10h_10Mbps_offload_h",
            "value": round(shift_h, 2),
            "unit": "h",
            "goal": None,
            "note": f"{SHIFT_BYTES / 1e9:.0f} GB at the measured S3 offload rate (this machine)",
        },
    ]
    return out


if __name__ == "__main__":
    for row in run():
        print(f"{row['name']:32} {row['value']!s:>10} {row['unit']:6} {row['note']}")
