"""Builds small real evidence stores (real Sealer, real keys) for the offload tests, and the
target wrappers those tests inject faults with. Test support only."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evidence.keys import generate_agency_keys, load_agency_public
from evidence.sealer import Sealer
from evidence.sealing import JsonValue, UnitMeta
from firmware.cli import main
from firmware.evidence_access import open_unit_sealer
from firmware.identity import load_assignment, read_profile
from firmware.layout import UnitLayout
from hal.software_key import SoftwareDeviceKey
from hal.types import ClockSource
from offload.runner import OffloadResult, ReceiptSink, offload
from offload.targets import Body, OffloadTarget, Receipt

T0_UTC_US = 1_780_000_000_000_000


class StepClock:
    """A clock that moves 1 ms per reading: enough to order events, no wall time involved."""

    def __init__(self, utc_us: int = T0_UTC_US) -> None:
        self.mono = 0
        self.offset = utc_us

    @classmethod
    def now(cls) -> StepClock:
        """Starting at the host's time: a real S3 server judges retention dates by its clock."""
        return cls(time.time_ns() // 1000)

    def monotonic_us(self) -> int:
        self.mono += 1000
        return self.mono

    def utc_us(self) -> int:
        return self.offset + self.monotonic_us()

    @property
    def source(self) -> ClockSource:
        return ClockSource.SIMULATED

    def set_utc(self, utc_us: int, source: ClockSource) -> None:
        self.offset = utc_us - self.mono


@dataclass
class Unit:
    root: Path
    key_path: Path
    agency_pub: Path
    agency_key: Path
    device_id: str = "unit-0001"
    boots: int = 0

    @property
    def store(self) -> Path:
        return self.root / "evidence"

    def open_sealer(self) -> Sealer:
        """A new boot of the unit: reopening the store finds the head and any leftovers."""
        self.boots += 1
        key = SoftwareDeviceKey.load(self.key_path)
        sealer = Sealer.open(
            self.store,
            key,
            [load_agency_public(self.agency_pub)],
            self.device_id,
            f"{self.boots:032x}",
            "simulated",
            device_pub_pem=key.public_pem(),
        )
        now = T0_UTC_US + self.boots * 3_600_000_000
        if sealer.recovery is not None:
            sealer.event(
                "power_loss_discovered", sealer.recovery.event_fields(), mono_us=1, utc_us=now
            )
        sealer.event("boot", {"firmware_version": "0.1.0"}, mono_us=2, utc_us=now)
        return sealer

    def shutdown(self, sealer: Sealer) -> None:
        now = T0_UTC_US + self.boots * 3_600_000_000 + 1_000_000_000
        sealer.event("shutdown", {"reason": "test"}, mono_us=10**12, utc_us=now)


def make_unit(tmp: Path) -> Unit:
    (tmp / "identity").mkdir(parents=True)
    key_path = tmp / "identity" / "device-key.pem"
    SoftwareDeviceKey.generate(key_path)
    agency_key, agency_pub = generate_agency_keys(tmp / "agency")
    return Unit(root=tmp, key_path=key_path, agency_pub=agency_pub, agency_key=agency_key)


def record(
    sink: Sealer,
    clock: StepClock,
    recording: str,
    *,
    units: int = 3,
    marked: bool = False,
    payload_bytes: int = 2000,
    first_frame: int = 0,
) -> None:
    """One closed recording of ``units`` one-second units (random bytes), optionally marked."""

    def ev(kind: str, fields: Mapping[str, JsonValue]) -> None:
        sink.event(kind, fields, mono_us=clock.monotonic_us(), utc_us=clock.utc_us())

    ev(
        "record_start",
        {
            "recording": recording,
            "trigger": "double_press",
            "pre_event_s": 0.0,
            "pre_event_captured_s": 0.0,
            "first_frame": first_frame,
        },
    )
    frame = first_frame
    for i in range(units):
        meta = UnitMeta(
            recording_id=recording,
            segment=0,
            unit=i,
            first_frame=frame,
            frame_count=30,
            start_pts_us=i * 1_000_000,
            end_pts_us=(i + 1) * 1_000_000,
            start_utc_us=T0_UTC_US + i * 1_000_000,
            utc_source="simulated",
            final=i == units - 1,
        )
        sink.seal_unit(
            os.urandom(payload_bytes), meta, mono_us=clock.monotonic_us(), utc_us=clock.utc_us()
        )
        frame += 30
        if marked and i == 0:
            ev("marker", {"recording": recording, "frame": frame})
    ev(
        "record_stop",
        {"recording": recording, "trigger": "hold", "segments": 1, "units": units},
    )


def store_files(store: Path) -> dict[str, bytes]:
    """Every file of a store (or a target folder), by store-relative name."""
    out = {}
    for dirpath, _dirs, files in os.walk(store):
        for f in files:
            p = Path(dirpath) / f
            out[p.relative_to(store).as_posix()] = p.read_bytes()
    return out


@dataclass
class TargetProbe:
    """Wraps a target: records each call and can run a fault hook before or after a call."""

    inner: OffloadTarget
    calls: list[tuple[str, str]] = field(default_factory=list)
    before: Any = None  # callable(op, name) -> None, may raise
    after_put: Any = None  # callable(name, receipt) -> Receipt
    parallel: int = 1  # files in flight; 1 keeps ``calls`` in plan order for the assertions
    bundling: bool = False  # let an S3 target bundle signatures and manifests (put_bundle)

    @property
    def url(self) -> str:
        return self.inner.url

    @property
    def parallel_puts(self) -> int:
        return self.parallel

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
        self.calls.append(("put", name))
        if self.before:
            self.before("put", name)
        receipt = self.inner.put(
            name, data, size, sha256_hex, md5_b64=md5_b64, retain_until_utc_us=retain_until_utc_us
        )
        if self.after_put:
            receipt = self.after_put(name, receipt)
        return receipt

    def confirm(self, receipt: Receipt) -> None:
        self.calls.append(("confirm", receipt.name))
        if self.before:
            self.before("confirm", receipt.name)
        self.inner.confirm(receipt)

    def confirm_before_free(
        self, receipt: Receipt, local_path: Path, *, confirmed_age_us: int | None = None
    ) -> None:
        self.calls.append(("confirm_before_free", receipt.name))
        if self.before:
            self.before("confirm_before_free", receipt.name)
        self.inner.confirm_before_free(receipt, local_path, confirmed_age_us=confirmed_age_us)

    @property
    def bundles(self) -> bool:
        return self.bundling and self.inner.bundles

    def put_bundle(
        self,
        members: list[tuple[str, bytes]],
        *,
        retain_until_utc_us: int,
        listed: Mapping[str, int],
    ) -> list[Receipt]:
        for name, _data in members:
            self.calls.append(("put", name))
            if self.before:
                self.before("put", name)
        return self.inner.put_bundle(
            members, retain_until_utc_us=retain_until_utc_us, listed=listed
        )

    def keep_apart(self, local_dir: Path) -> None:
        self.inner.keep_apart(local_dir)

    def exists(self, name: str) -> bool:
        return self.inner.exists(name)

    def listing(self) -> dict[str, int]:
        return self.inner.listing()

    def existing(
        self, name: str, size: int, sha256_hex: str, md5_b64: str, retain_until_utc_us: int
    ) -> Receipt | None:
        self.calls.append(("existing", name))
        return self.inner.existing(name, size, sha256_hex, md5_b64, retain_until_utc_us)

    def puts(self) -> list[str]:
        return [n for op, n in self.calls if op == "put"]


class PowerCut(BaseException):
    """Ends a run where it stands, like a pulled battery: the runner's error path must not run.

    A BaseException on purpose: ``except Exception`` cleanup code is skipped, as on a real cut.
    """


@dataclass
class CuttingSink:
    """A Sealer wrapper that cuts the power after its n-th event became durable."""

    inner: Sealer
    cut_after: int
    count: int = 0

    def event(
        self,
        kind: str,
        fields: Mapping[str, JsonValue],
        *,
        mono_us: int,
        utc_us: int,
        reserve_ok: bool = False,
    ) -> int:
        seq = self.inner.event(kind, fields, mono_us=mono_us, utc_us=utc_us, reserve_ok=reserve_ok)
        self.count += 1
        if self.count == self.cut_after:
            raise PowerCut(f"after event {kind}")
        return seq


@dataclass
class WatchingSink:
    """A Sealer wrapper that runs ``on_event(kind, fields)`` right after an event is durable:
    the moment between a receipt and the free, and the moment just before the unlinks."""

    inner: Sealer
    on_event: Callable[[str, Mapping[str, JsonValue]], None]
    kinds: list[str] = field(default_factory=list)

    def event(
        self,
        kind: str,
        fields: Mapping[str, JsonValue],
        *,
        mono_us: int,
        utc_us: int,
        reserve_ok: bool = False,
    ) -> int:
        seq = self.inner.event(kind, fields, mono_us=mono_us, utc_us=utc_us, reserve_ok=reserve_ok)
        self.kinds.append(kind)
        self.on_event(kind, fields)
        return seq


def always() -> bool:
    return True


def chain_events(store: Path, kind: str) -> list[dict[str, Any]]:
    """The fields of every ``kind`` event in the store, in chain order."""
    out = []
    for p in sorted(store.glob("*.json")):
        m = json.loads(p.read_bytes())
        if m.get("kind") == kind:
            out.append(m["fields"])
    return out


def receipted(store: Path) -> set[str]:
    """Files the chain shows as confirmed at a target."""
    return {str(f["file"]) for e in chain_events(store, "offload_receipt") for f in e["files"]}


def freed(store: Path) -> set[str]:
    """Payloads the chain shows as freed after their receipts."""
    return {str(f) for e in chain_events(store, "offload_freed") for f in e["files"]}


def run_round(
    unit: Unit,
    target: OffloadTarget,
    *,
    clock: StepClock | None = None,
    wrap: Callable[[Sealer], ReceiptSink] | None = None,
    should_continue: Callable[[], bool] = always,
) -> OffloadResult:
    """One boot of the unit that runs an offload round and shuts down cleanly, unless cut."""
    sealer = unit.open_sealer()
    sink = wrap(sealer) if wrap else sealer
    try:
        result = offload(unit.store, target, sink, clock or StepClock(), should_continue)
    except Exception:
        unit.shutdown(sealer)  # an error is not a power cut: the unit still shuts down cleanly
        raise
    unit.shutdown(sealer)
    return result


def provisioned(
    tmp_path: Path, device_id: str = "unit-7", device: Path | None = None
) -> UnitLayout:
    """A unit provisioned through `bwc` in ``tmp_path/device`` (or ``device``) with two
    recordings (one marked) sealed by its own key; agency keys in ``tmp_path/agency``."""
    if not (tmp_path / "agency" / "agency-pub.pem").exists():
        assert main(["keys", "agency", "--out", str(tmp_path / "agency")]) == 0
    device = device or tmp_path / "device"
    code = main(
        [
            "provision",
            str(device),
            "--agency-pub",
            str(tmp_path / "agency" / "agency-pub.pem"),
            "--device-id",
            device_id,
            "--officer",
            "officer-1",
        ]
    )
    assert code == 0
    layout = UnitLayout(device)
    sealer = open_unit_sealer(
        layout,
        read_profile(layout.profile),
        load_assignment(layout),
        SoftwareDeviceKey.load(layout.device_key),
        "simulated",
    )
    clock = StepClock()
    sealer.event("boot", {"firmware_version": "0.1.0"}, mono_us=1, utc_us=clock.utc_us())
    record(sealer, clock, "rec-1", units=3, marked=True)
    record(sealer, clock, "rec-2", units=2, first_frame=90)
    sealer.event(
        "shutdown", {"reason": "test"}, mono_us=clock.monotonic_us(), utc_us=clock.utc_us()
    )
    return layout
