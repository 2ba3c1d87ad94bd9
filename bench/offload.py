"""Offload benchmarks: the runner's throughput against a plain boto3 PUT loop of the same bytes,
and what that means for a 10-hour shift at 10 Mbit/s.

Needs an S3 server (BWC_TEST_S3_ENDPOINT and the AWS_* variables, as scripts/ceph-up.sh writes
them); without one only the directory-target figure is reported. Reports; never fails.
Run: .venv/bin/python -m bench.offload
"""

from __future__ import annotations

import os
import queue
import socket
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.rig import machine
from evidence.keys import generate_agency_keys, load_agency_public
from evidence.sealer import Sealer
from evidence.sealing import UnitMeta
from hal.software_key import SoftwareDeviceKey
from hal.types import ClockSource
from offload.runner import offload
from offload.targets import PARALLEL_PUTS, DirectoryTarget, OffloadTarget, S3Settings, S3Target

UNIT_BYTES = 1_250_000  # about 1 s of 10 Mbit/s video
UNITS = 24
SHIFT_BYTES = 10 * 3600 * 10_000_000 // 8  # 10 hours at 10 Mbit/s = 45 GB
RTT_S = 0.020  # the latency-injected variant: a dock uplink 20 ms round trip from its S3 store
RUNS = 5
"""Measured pairs (runner round, then the plain loop) after one warm-up pair; medians reported.
Interleaved so that a burst of load from other jobs hits both sides of a ratio alike."""
LATENCY_RUNS = 3


class DelayProxy:
    """A TCP proxy on loopback that delays every chunk by ``one_way_s`` in each direction.

    Latency without a bandwidth cap: a reader thread stamps each chunk, a writer thread sends it
    once its time has come, so a connection keeps streaming while chunks are in flight. Stands in
    for ``tc netem`` (which needs a network namespace and privileges the CI may not have).
    """

    def __init__(self, upstream: tuple[str, int], one_way_s: float) -> None:
        self._upstream, self._delay = upstream, one_way_s
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self._upstream)
            for src, dst in ((client, server), (server, client)):
                self._pipe(src, dst)

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        chunks: queue.Queue[tuple[float, bytes]] = queue.Queue()

        def read() -> None:
            while True:
                try:
                    data = src.recv(1 << 16)
                except OSError:
                    data = b""
                chunks.put((time.monotonic() + self._delay, data))
                if not data:
                    return

        def write() -> None:
            while True:
                due, data = chunks.get()
                time.sleep(max(0.0, due - time.monotonic()))
                try:
                    if not data:
                        dst.shutdown(socket.SHUT_WR)
                        return
                    dst.sendall(data)
                except OSError:
                    return

        threading.Thread(target=read, daemon=True).start()
        threading.Thread(target=write, daemon=True).start()

    def close(self) -> None:
        self._closed = True
        self._listener.close()


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


def _plain_put_rate(settings: S3Settings, bucket_client: Any = None) -> float:
    """The same files with the plainest boto3 loop: one put_object each, no checks, no lock."""
    client = settings.client()
    bucket = f"bench-plain-{uuid.uuid4().hex[:8]}"
    (bucket_client or client).create_bucket(Bucket=bucket)
    with tempfile.TemporaryDirectory() as tmp:
        store, _sealer = _store(Path(tmp))
        files = sorted(p for p in store.iterdir() if p.is_file())
        total = sum(p.stat().st_size for p in files)
        t0 = time.perf_counter()
        for p in files:
            with p.open("rb") as f:
                client.put_object(Bucket=bucket, Key=f"plain/{p.name}", Body=f)
        return total / (time.perf_counter() - t0)


def _s3_factory(settings: S3Settings, admin: Any, parallel: int) -> Callable[[Path], S3Target]:
    def make(_tmp: Path) -> S3Target:
        bucket = f"bench-lock-{uuid.uuid4().hex[:8]}"
        admin.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
        return S3Target(f"s3://{bucket}/bench", settings, parallel_puts=parallel)

    return make


def _pairs(settings: S3Settings, admin: Any, parallel: int, runs: int) -> dict[str, float]:
    """Median runner rate, median plain rate and the median of the per-pair ratios."""
    runner, plain, ratios = [], [], []
    for i in range(runs + 1):
        r, _ = _offload_rate(_s3_factory(settings, admin, parallel))
        p = _plain_put_rate(settings, admin)
        if i:  # the first pair warms imports, connections and the server's caches
            runner.append(r)
            plain.append(p)
            ratios.append(r / p)
    return {
        "runner": statistics.median(runner),
        "plain": statistics.median(plain),
        "ratio": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
    }


def _http_endpoint() -> str:
    """The server's plain-HTTP endpoint, which the proxy relays (it does not speak TLS)."""
    for var in ("BWC_TEST_S3_HTTP_ENDPOINT", "BWC_TEST_S3_ENDPOINT"):
        if os.environ.get(var, "").startswith("http://"):
            return os.environ[var]
    return ""


def _with_latency(settings: S3Settings, admin: Any) -> dict[str, float]:
    """Runner (parallel and one file at a time) and the plain loop through a DelayProxy."""
    endpoint = _http_endpoint()
    host, _, port = endpoint.split("://", 1)[1].rstrip("/").partition(":")
    proxy = DelayProxy((host, int(port or 80)), RTT_S / 2)
    try:
        # Without AWS_ENDPOINT_URL*, which would win over the proxy's address (as in AWS tools).
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
        far = S3Settings.resolve(env, endpoint_url=f"http://127.0.0.1:{proxy.port}")
        out = _pairs(far, admin, PARALLEL_PUTS, LATENCY_RUNS)
        out["serial"], _ = _offload_rate(_s3_factory(far, admin, 1))
    finally:
        proxy.close()
    return out


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
    load_before = os.getloadavg()[0]
    near = _pairs(settings, client, PARALLEL_PUTS, RUNS)
    load = f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
    s3_rate, plain = near["runner"], near["plain"]
    latency = os.environ.get("BWC_BENCH_NO_LATENCY") != "1" and _http_endpoint()
    far = _with_latency(settings, client) if latency else None
    shift_h = SHIFT_BYTES / s3_rate / 3600
    out += [
        {
            "name": "offload_s3_MBps",
            "value": round(s3_rate / 1e6, 1),
            "unit": "MB/s",
            "goal": None,
            "note": "hash, PUTs with MD5+SHA-256+COMPLIANCE lock (a payload each, a bundle of "
            "signatures and manifests per 64 units), HeadObject receipt of each version, events, "
            f"free; median of {RUNS} after a warm-up",
        },
        {
            "name": "plain_boto3_put_MBps",
            "value": round(plain / 1e6, 1),
            "unit": "MB/s",
            "goal": None,
            "note": f"same files, bare put_object loop, no checks, no lock; median of {RUNS}",
        },
        {
            "name": "offload_vs_boto3_put",
            "value": round(near["ratio"], 2),
            "unit": "x boto3 put_object throughput",
            "goal": ">= 0.8",
            "note": f"median of {RUNS} interleaved pairs after a warm-up (range "
            f"{near['ratio_min']:.2f}-{near['ratio_max']:.2f}): runner round ({PARALLEL_PUTS} "
            "objects in flight, a locked PUT and a HeadObject receipt per object) / a bare "
            "put_object loop of the same files into a bucket without versioning or lock, same "
            f"local Ceph over HTTPS; {load}; {machine()}",
        },
        {
            "name": "shift_10h_10Mbps_offload_h",
            "value": round(shift_h, 2),
            "unit": "h",
            "goal": None,
            "note": f"{SHIFT_BYTES / 1e9:.0f} GB at the measured S3 offload rate (this machine)",
        },
    ]
    if far is not None:
        out.append(
            {
                "name": "offload_vs_boto3_put_20ms_rtt",
                "value": round(far["ratio"], 2),
                "unit": "x boto3 put_object throughput",
                "goal": ">= 0.8",
                "note": f"through a loopback proxy adding {RTT_S * 1e3:g} ms round trip, median "
                f"of {LATENCY_RUNS} pairs: runner "
                f"{far['runner'] / 1e6:.1f} MB/s with {PARALLEL_PUTS} files in flight "
                f"({far['serial'] / 1e6:.1f} MB/s one at a time) vs plain put_object loop "
                f"{far['plain'] / 1e6:.1f} MB/s",
            }
        )
    return out


if __name__ == "__main__":
    for row in run():
        print(f"{row['name']:32} {row['value']!s:>10} {row['unit']:6} {row['note']}")
