"""Offload to a real S3 server with Object Lock (single-node Ceph RGW over HTTPS, started by
.ci/run or scripts/ceph-up.sh): receipts, locks, refusals and faults.

Skipped with a reason when BWC_TEST_S3_ENDPOINT is unset, except under CI (CI=true), where a
missing or unreachable server fails the run so these tests can never be skipped silently.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import ClientError

from evidence.sealing import JsonValue
from evidence.verify import verify_store
from firmware.cli import main
from hal.errors import IntegrityError, RefusedError
from hal.software_key import SoftwareDeviceKey
from offload.bundle import build_bundle, bundle_key, is_bundle_key, read_bundle
from offload.runner import OffloadResult, ReceiptSink
from offload.s3_reader import S3StoreReader
from offload.store_url import open_store_reader
from offload.targets import (
    OffloadError,
    OffloadTarget,
    Receipt,
    S3Settings,
    S3Target,
    TargetRefusedError,
)
from tests.offload_store import (
    CuttingSink,
    PowerCut,
    StepClock,
    TargetProbe,
    Unit,
    WatchingSink,
    always,
    chain_events,
    freed,
    make_unit,
    receipted,
    record,
    run_round,
    store_files,
)

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

    from evidence.sealer import Sealer

pytestmark = pytest.mark.s3


def _settings() -> S3Settings:
    endpoint = os.environ.get("BWC_TEST_S3_ENDPOINT", "")
    in_ci = os.environ.get("CI", "").lower() == "true"
    if not endpoint:
        if in_ci:
            pytest.fail("CI=true but BWC_TEST_S3_ENDPOINT is unset: .ci/run must start Ceph")
        pytest.skip("no S3 server: set BWC_TEST_S3_ENDPOINT (scripts/ceph-up.sh writes env.sh)")
    settings = S3Settings.resolve(os.environ, endpoint_url=endpoint)
    try:
        settings.client().list_buckets()
    except Exception as exc:  # any failure here means the test server is not usable
        pytest.fail(f"S3 server at {endpoint} is not reachable: {exc}")
    return settings


@pytest.fixture(scope="module")
def s3() -> S3Settings:
    return _settings()


@pytest.fixture
def client(s3: S3Settings) -> S3Client:
    return s3.client()


@pytest.fixture
def bucket(client: S3Client) -> str:
    """A fresh bucket with Object Lock. Never emptied: its locked versions cannot be deleted."""
    name = f"bwc-test-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return name


@pytest.fixture
def unit(tmp_path: Path) -> Unit:
    u = make_unit(tmp_path / "unit")
    sealer = u.open_sealer()
    clock = StepClock()
    record(sealer, clock, "rec-a", units=3)
    record(sealer, clock, "rec-b", units=2, marked=True, first_frame=90)
    u.shutdown(sealer)
    return u


def run(
    unit: Unit,
    target: OffloadTarget,
    *,
    wrap: Callable[[Sealer], ReceiptSink] | None = None,
    should_continue: Callable[[], bool] = always,
) -> OffloadResult:
    # Host time: a real S3 server judges retention dates by its own clock.
    return run_round(
        unit, target, clock=StepClock.now(), wrap=wrap, should_continue=should_continue
    )


def test_offload_to_s3_locks_confirms_frees_and_verifies_there(
    s3: S3Settings, client: S3Client, bucket: str, unit: Unit
) -> None:
    before = store_files(unit.store)
    target = S3Target(f"s3://{bucket}/units/{unit.device_id}", s3)
    result = run(unit, target)
    assert result.complete
    assert not list(unit.store.glob("*.bin"))
    # Every object is locked and whole; payloads are objects of their own, and signatures and
    # manifests of the units are in bundles (one here) named by their SHA-256.
    prefix = f"units/{unit.device_id}/"
    held: dict[str, bytes] = {}
    bundles = []
    for obj in client.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]:
        head = client.head_object(Bucket=bucket, Key=obj["Key"])
        data = client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
        assert head["ContentLength"] == len(data)
        assert head["ObjectLockMode"] == "COMPLIANCE"
        assert head["ObjectLockRetainUntilDate"] > dt.datetime.now(dt.UTC) + dt.timedelta(days=1000)
        assert head["ETag"].strip('"') == hashlib.md5(data).hexdigest()
        name = obj["Key"][len(prefix) :]
        if is_bundle_key(name):
            bundles.append(name)
            held.update(read_bundle(data, obj["Key"]))
        else:
            held[name] = data
    assert len(bundles) == 1
    assert "0000000002.json" in read_bundle(
        client.get_object(Bucket=bucket, Key=prefix + bundles[0])["Body"].read(), bundles[0]
    )
    for name, data in before.items():
        assert held[name] == data
    # The agency verifies what arrived, where it arrived; the prefix above one unit works too.
    report = verify_store(S3StoreReader(f"s3://{bucket}/units", s3), unpinned=True)
    assert report.intact, report.all_findings
    assert report.entries >= len([n for n in before if n.endswith(".json")])
    reader = open_store_reader(f"s3://{bucket}/units/{unit.device_id}")
    assert reader.read("0000000002.bin") == before["0000000002.bin"]


def test_locked_evidence_cannot_be_deleted_or_retention_shortened(
    s3: S3Settings, client: S3Client, bucket: str, unit: Unit
) -> None:
    run(unit, S3Target(f"s3://{bucket}/u", s3))
    key = "u/0000000002.bin"
    version = client.head_object(Bucket=bucket, Key=key)["VersionId"]
    with pytest.raises(ClientError) as deleted:
        client.delete_object(Bucket=bucket, Key=key, VersionId=version)
    assert deleted.value.response["Error"]["Code"] == "AccessDenied"
    with pytest.raises(ClientError):
        client.delete_object(
            Bucket=bucket, Key=key, VersionId=version, BypassGovernanceRetention=True
        )
    with pytest.raises(ClientError):
        client.put_object_retention(
            Bucket=bucket,
            Key=key,
            VersionId=version,
            Retention={
                "Mode": "COMPLIANCE",
                "RetainUntilDate": dt.datetime.now(dt.UTC) + dt.timedelta(days=1),
            },
        )
    # A delete without a version only adds a marker; the locked version is still there.
    client.delete_object(Bucket=bucket, Key=key)
    assert client.head_object(Bucket=bucket, Key=key, VersionId=version)["ContentLength"] > 0


def test_bucket_without_object_lock_is_refused_before_sending(
    s3: S3Settings, client: S3Client, unit: Unit
) -> None:
    plain = f"bwc-test-plain-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=plain)
    with pytest.raises(TargetRefusedError, match="Object Lock") as refused:
        run(unit, S3Target(f"s3://{plain}/u", s3))
    assert isinstance(refused.value, RefusedError)
    assert client.list_objects_v2(Bucket=plain).get("KeyCount", 0) == 0
    assert len(list(unit.store.glob("*.bin"))) == 5 and not receipted(unit.store)


def test_wrong_credentials_fail_clearly_and_touch_nothing(
    s3: S3Settings, bucket: str, unit: Unit
) -> None:
    bad = S3Settings(
        endpoint_url=s3.endpoint_url,
        region=s3.region,
        ca_bundle=s3.ca_bundle,
        access_key_id=s3.access_key_id,
        secret_access_key="not-the-secret",
    )
    with pytest.raises(OffloadError, match="credentials refused"):
        run(unit, S3Target(f"s3://{bucket}/u", bad))
    assert len(list(unit.store.glob("*.bin"))) == 5 and not receipted(unit.store)


class SwitchingTarget:
    """The real target for the first ``n`` puts, then one whose server is gone (a dead port)."""

    def __init__(self, good: S3Target, dead: S3Target, n: int) -> None:
        self.good, self.dead, self.n, self.puts = good, dead, n, 0

    @property
    def url(self) -> str:
        return self.good.url

    @property
    def parallel_puts(self) -> int:
        return 1  # the n-th put is the switch: keep puts in plan order

    def _now(self) -> S3Target:
        return self.good if self.puts <= self.n else self.dead

    def put(self, name: str, data: Any, size: int, sha256_hex: str, **kw: Any) -> Receipt:
        self.puts += 1
        return self._now().put(name, data, size, sha256_hex, **kw)

    def confirm(self, receipt: Receipt) -> None:
        self._now().confirm(receipt)

    def confirm_before_free(
        self, receipt: Receipt, local_path: Path, *, confirmed_age_us: int | None = None
    ) -> None:
        self._now().confirm_before_free(receipt, local_path, confirmed_age_us=confirmed_age_us)

    @property
    def bundles(self) -> bool:
        return False  # every file its own put, so the n-th put is a file of the plan

    def put_bundle(self, members: Any, **kw: Any) -> list[Receipt]:
        return self._now().put_bundle(members, **kw)

    def keep_apart(self, local_dir: Path) -> None:
        self._now().keep_apart(local_dir)

    def exists(self, name: str) -> bool:
        return self._now().exists(name)

    def listing(self) -> dict[str, int]:
        return self._now().listing()

    def existing(self, *args: Any) -> Receipt | None:
        return self._now().existing(*args)


def test_server_gone_mid_offload_keeps_confirmed_and_resumes_without_resending(
    s3: S3Settings, bucket: str, unit: Unit
) -> None:
    url = f"s3://{bucket}/u"
    dead = S3Settings(
        endpoint_url="http://127.0.0.1:9",
        access_key_id=s3.access_key_id,
        secret_access_key=s3.secret_access_key,
        connect_timeout_s=1,
        max_attempts=1,
    )
    switching = SwitchingTarget(S3Target(url, s3), S3Target(url, dead), n=9)
    with pytest.raises(OffloadError):
        run(unit, switching)
    done = receipted(unit.store)
    assert done and freed(unit.store) <= done
    bins = {p.name for p in unit.store.glob("*.bin")}
    assert bins and not bins & freed(unit.store)  # unconfirmed payloads stay on the unit
    probe = TargetProbe(S3Target(url, s3))
    assert run(unit, probe).complete
    assert probe.puts() and not set(probe.puts()) & done
    assert verify_store(S3StoreReader(url, s3), unpinned=True).intact


def test_server_side_digest_check_rejects_altered_bytes(
    s3: S3Settings, bucket: str, unit: Unit
) -> None:
    target = S3Target(f"s3://{bucket}/u", s3)

    class Altering:
        url = target.url

        def put(self, name: str, data: Any, size: int, sha: str, **kw: Any) -> Receipt:
            body = bytearray(data.read(size))
            body[0] ^= 1  # one bit flipped on the way; Content-MD5 still names the original
            return target.put(name, bytes(body), size, sha, **kw)

        def __getattr__(self, attr: str) -> Any:
            return getattr(target, attr)

    with pytest.raises(IntegrityError, match="MD5"):
        run(unit, Altering())  # type: ignore[arg-type]
    assert len(list(unit.store.glob("*.bin"))) == 5


def test_receipt_not_holding_at_the_server_is_not_confirmed(
    s3: S3Settings, bucket: str, unit: Unit
) -> None:
    # The server kept the object for less time than the receipt claims: confirm must refuse.
    def stretch(name: str, r: Receipt) -> Receipt:
        return Receipt(
            r.target,
            r.name,
            r.size,
            r.sha256,
            r.md5_b64,
            r.retain_until_utc_us + 86_400_000_000,
            r.version_id,
            r.etag,
        )

    probe = TargetProbe(S3Target(f"s3://{bucket}/u", s3), after_put=stretch)
    with pytest.raises(IntegrityError, match="earlier than asked"):
        run(unit, probe)
    assert len(list(unit.store.glob("*.bin"))) == 5 and not receipted(unit.store)


def test_undock_mid_file_stops_the_transfer(s3: S3Settings, bucket: str, unit: Unit) -> None:
    sealer = unit.open_sealer()
    record(sealer, StepClock(), "rec-big", units=1, payload_bytes=4 << 20, first_frame=900)
    unit.shutdown(sealer)
    big = max(unit.store.glob("*.bin"), key=lambda p: p.stat().st_size).name
    budget = {"reads": 0}

    def docked() -> bool:
        budget["reads"] += 1
        return budget["reads"] < 60

    probe = TargetProbe(S3Target(f"s3://{bucket}/u", s3))
    result = run(unit, probe, should_continue=docked)
    assert result.stopped == "undocked" and not result.complete
    assert (unit.store / big).exists()
    assert freed(unit.store) <= receipted(unit.store)
    assert run(unit, S3Target(f"s3://{bucket}/u", s3)).complete
    assert not list(unit.store.glob("*.bin"))


@pytest.mark.parametrize("cut_at_put", [4, 11])
def test_power_cut_then_rerun_finds_sent_files_instead_of_resending(
    s3: S3Settings, client: S3Client, bucket: str, unit: Unit, cut_at_put: int
) -> None:
    url = f"s3://{bucket}/u"

    def cut(op: str, name: str) -> None:
        if op == "confirm" and len(probe.puts()) == cut_at_put:
            raise PowerCut(name)  # sent, not yet receipted

    probe = TargetProbe(S3Target(url, s3), before=cut)
    with pytest.raises(PowerCut):
        run(unit, probe, wrap=lambda s: CuttingSink(s, 10**9))
    sent = set(probe.puts()) - receipted(unit.store)  # sent, but the cut came before a receipt
    assert sent
    second = TargetProbe(S3Target(url, s3))
    result = run(unit, second)
    assert result.complete and result.found_files >= len(sent)
    assert not set(second.puts()) & sent  # found at the server, not sent again
    versions = client.list_object_versions(Bucket=bucket, Prefix="u/").get("Versions", [])
    keys = [v["Key"] for v in versions]
    assert len(keys) == len(set(keys))  # one version per file: nothing uploaded twice
    assert verify_store(S3StoreReader(url, s3), unpinned=True).intact


def test_bwc_offload_and_verify_through_the_cli(
    s3: S3Settings, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.offload_store import provisioned

    layout = provisioned(tmp_path)
    capsys.readouterr()
    code = main(
        ["offload", "--device", str(layout.root), "--set", f"offload.target=s3://{bucket}/fleet"]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "complete" in out.out
    assert not list(layout.evidence.glob("*.bin"))
    trust = ["--trust", str(layout.device_pub)]
    assert main(["verify", f"s3://{bucket}/fleet/unit-7", "--json", *trust]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["intact"] is True and report["recordings"]
    # The next session receipts the first one's closing entry where it lies (an object of its
    # own, sent after that round): found, not sent again inside a bundle.
    argv = ["offload", "--device", str(layout.root), "--set", f"offload.target=s3://{bucket}/fleet"]
    assert main(argv) == 0
    client = s3.client()
    prefix = "fleet/unit-7/"
    keys = [
        o["Key"][len(prefix) :]
        for o in client.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]
    ]
    members: set[str] = set()
    for key in (k for k in keys if is_bundle_key(k)):
        body = client.get_object(Bucket=bucket, Key=prefix + key)["Body"].read()
        members |= set(read_bundle(body, key))
    assert members and not members & set(keys)
    assert main(["verify", f"s3://{bucket}/fleet/unit-7", *trust]) == 0


def test_put_request_carries_md5_sha256_and_lock(
    s3: S3Settings, client: S3Client, bucket: str
) -> None:
    data = b"x" * 1000
    target = S3Target(f"s3://{bucket}/raw", s3)
    md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
    receipt = target.put(
        "f.bin",
        data,
        len(data),
        hashlib.sha256(data).hexdigest(),
        md5_b64=md5,
        retain_until_utc_us=int((dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).timestamp() * 1e6),
    )
    target.confirm(receipt)
    assert receipt.version_id and receipt.etag == hashlib.md5(data).hexdigest()
    assert target.exists("f.bin") and not target.exists("g.bin")
    assert target.listing() == {"f.bin": 1000}


SCENARIO = """
duration_s = 8.0
[[events]]
at_s = 1.0
action = "double_press"
button = "event"
[[events]]
at_s = 3.0
action = "press"
button = "function"
[[events]]
at_s = 4.0
action = "hold"
button = "event"
hold_s = 3.5
"""


def test_simulated_recording_offloaded_then_verified_and_exported_from_s3(
    s3: S3Settings, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import av

    agency = tmp_path / "agency"
    device = tmp_path / "device"
    assert main(["keys", "agency", "--out", str(agency)]) == 0
    pub = str(agency / "agency-pub.pem")
    args = ["provision", str(device), "--agency-pub", pub, "--device-id", "u9", "--officer", "o"]
    assert main(args) == 0
    scenario = tmp_path / "s.toml"
    scenario.write_text(SCENARIO)
    small = ["--set", "camera.width=512", "--set", "camera.height=288"]
    assert main(["sim", str(scenario), "--device", str(device), *small]) == 0
    target = ["--set", f"offload.target=s3://{bucket}/fleet"]
    assert main(["offload", "--device", str(device), *target]) == 0
    assert not list((device / "evidence").glob("*.bin"))
    capsys.readouterr()
    store = f"s3://{bucket}/fleet/u9"
    trust = ["--trust", str(device / "identity" / "device-pub.pem")]
    assert main(["verify", store]) == 1  # origin not established without --trust
    assert "[origin-not-established]" in capsys.readouterr().out
    assert main(["verify", store, *trust]) == 0
    assert "marker" in capsys.readouterr().out
    # The target's root as a whole: every unit under it, against the registry.
    assert main(["verify", f"s3://{bucket}/fleet", *trust]) == 0
    assert "result: every unit INTACT" in capsys.readouterr().out
    out = tmp_path / "out"
    key = str(agency / "agency-key.pem")
    assert main(["export", store, "--key", key, "--out", str(out), *trust]) == 0
    (mp4,) = out.glob("*.mp4")
    with av.open(str(mp4)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames > 90


# ---------------------------------------------------------------------- attacks on the S3 copy


def _device_raw(unit: Unit) -> bytes:
    """The unit's public key: origin is pinned, as the agency's registry would."""
    return SoftwareDeviceKey.load(unit.key_path).public_key_raw()


def _plant_over(client: S3Client, bucket: str, key: str) -> None:
    """What anyone allowed to write the bucket can do to a locked object: put a newer version."""
    client.put_object(Bucket=bucket, Key=key, Body=b"planted")


def test_planted_newer_versions_neither_block_the_free_nor_fool_the_reader(
    s3: S3Settings, client: S3Client, bucket: str, unit: Unit
) -> None:
    """The receipted version is locked and intact, so freeing is sound; the reader reads that
    version, not the planted one (it used to read the latest and report a bad copy)."""
    url = f"s3://{bucket}/u"
    victims = ["0000000002.bin", "0000000002.json"]

    def plant(kind: str, fields: Mapping[str, JsonValue]) -> None:
        files = fields.get("files")
        if kind == "offload_receipt" and isinstance(files, list):
            for row in files:
                if isinstance(row, dict) and row.get("file") in victims:
                    _plant_over(client, bucket, f"u/{row['file']}")

    result = run(unit, S3Target(url, s3), wrap=lambda s: WatchingSink(s, plant))
    assert result.complete and not result.mismatched
    assert not (unit.store / victims[0]).exists()
    latest = client.get_object(Bucket=bucket, Key=f"u/{victims[0]}")["Body"].read()
    assert latest == b"planted"
    report = verify_store(S3StoreReader(url, s3), trusted_keys=[_device_raw(unit)])
    assert report.intact, report.all_findings


def test_delete_marker_over_a_receipted_object_does_not_hide_it(
    s3: S3Settings, client: S3Client, bucket: str, unit: Unit
) -> None:
    url = f"s3://{bucket}/u"
    original = (unit.store / "0000000003.bin").read_bytes()
    assert run(unit, S3Target(url, s3)).complete
    client.delete_object(Bucket=bucket, Key="u/0000000003.bin")  # a marker; the lock holds
    reader = S3StoreReader(url, s3)
    # Read from the receipted version (not merely excused as freed by the copied events).
    assert reader.exists("0000000003.bin") and reader.read("0000000003.bin") == original
    report = verify_store(reader, trusted_keys=[_device_raw(unit)])
    assert report.intact, report.all_findings


def test_receipt_without_a_version_id_frees_nothing(
    s3: S3Settings, bucket: str, unit: Unit
) -> None:
    def forget_version(name: str, r: Receipt) -> Receipt:
        return Receipt(r.target, r.name, r.size, r.sha256, r.md5_b64, r.retain_until_utc_us)

    probe = TargetProbe(S3Target(f"s3://{bucket}/u", s3), after_put=forget_version)
    result = run(unit, probe)
    assert not result.freed_files and len(list(unit.store.glob("*.bin"))) == 5
    assert {f for f, _ in result.mismatched} == {p.name for p in unit.store.glob("*.bin")}
    assert all("no version id" in why for _, why in result.mismatched)


def test_target_root_with_several_units_is_verified_unit_by_unit_against_the_registry(
    s3: S3Settings, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from hal.software_key import SoftwareDeviceKey

    registry = tmp_path / "registry"
    registry.mkdir()
    for i in (1, 2):
        u = make_unit(tmp_path / f"unit-{i}")
        u.device_id = f"cam-{i}"
        sealer = u.open_sealer()
        record(sealer, StepClock(), f"rec-{i}", units=2)
        u.shutdown(sealer)
        assert run(u, S3Target(f"s3://{bucket}/fleet/cam-{i}", s3)).complete
        pem = SoftwareDeviceKey.load(u.key_path).public_pem()
        (registry / f"cam-{i}.pem").write_bytes(pem)
    root = f"s3://{bucket}/fleet"
    capsys.readouterr()
    assert main(["verify", root, "--trust", str(registry), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["intact"] and [u["device"] for u in report["units"]] == ["cam-1", "cam-2"]
    # Without a trust anchor: each unit says origin was not established.
    assert main(["verify", root, "--json"]) == 1
    units = json.loads(capsys.readouterr().out)["units"]
    assert [u["finding_counts"] for u in units] == [{"origin-not-established": 1}] * 2
    # A unit the registry does not know fails the whole root.
    (registry / "cam-2.pem").unlink()
    assert main(["verify", root, "--trust", str(registry)]) == 1
    assert "[key-not-trusted]" in capsys.readouterr().out


def _counting_target(url: str, s3: S3Settings) -> tuple[S3Target, list[tuple[str, str]]]:
    """An S3 target whose client notes every HeadObject as (key, version id asked)."""
    client = s3.client()
    heads: list[tuple[str, str]] = []

    def note(params: Mapping[str, Any], **_: Any) -> None:
        heads.append((str(params["Key"]), str(params.get("VersionId", ""))))

    client.meta.events.register("before-parameter-build.s3.HeadObject", note)
    return S3Target(url, s3, client=client), heads


def _receipted_versions(store: Path) -> dict[str, str]:
    rows = [f for e in chain_events(store, "offload_receipt") for f in e["files"]]
    return {str(f["file"]): str(f["receipt"]["version_id"]) for f in rows}


def test_a_round_heads_each_sent_version_once_and_frees_on_that_check(
    s3: S3Settings, bucket: str, unit: Unit
) -> None:
    """The receipt's HeadObject of the exact, locked version is the check before freeing when
    it is this round's own and fresh: one HeadObject per file sent, none repeated."""
    target, heads = _counting_target(f"s3://{bucket}/u", s3)
    result = run(unit, target)
    assert result.complete and len(result.freed_files) == 5
    assert len(heads) == len(target.listing())  # each object sent: one HeadObject
    assert len(set(heads)) == len(heads) and all(version for _key, version in heads)
    versions = _receipted_versions(unit.store)
    for name in result.freed_files:
        assert (f"u/{name}", versions[name]) in heads


def test_a_receipt_from_an_earlier_round_is_headed_again_before_freeing(
    s3: S3Settings, bucket: str, unit: Unit
) -> None:
    url = f"s3://{bucket}/u"
    with pytest.raises(PowerCut):  # right after the receipt event, before anything is freed
        run(unit, S3Target(url, s3), wrap=lambda s: CuttingSink(s, 1))
    bins = {p.name for p in unit.store.glob("*.bin")}
    assert len(bins) == 5 and bins <= receipted(unit.store) and not freed(unit.store)
    versions = _receipted_versions(unit.store)
    target, heads = _counting_target(url, s3)
    result = run(unit, target)
    assert result.complete and set(result.freed_files) == bins
    for name in bins:  # the old receipt's exact version, headed in this round
        assert (f"u/{name}", versions[name]) in heads


class _SlowClock(StepClock):
    """A minute and a bit passes between any two readings: no confirmation is ever fresh."""

    def monotonic_us(self) -> int:
        self.mono += 61_000_000
        return self.mono


def test_a_stale_confirmation_of_this_round_is_headed_again(
    s3: S3Settings, bucket: str, unit: Unit
) -> None:
    target, heads = _counting_target(f"s3://{bucket}/u", s3)
    result = run_round(unit, target, clock=_SlowClock(time.time_ns() // 1000))
    assert result.complete and len(result.freed_files) == 5
    versions = _receipted_versions(unit.store)
    for name in result.freed_files:
        assert heads.count((f"u/{name}", versions[name])) == 2


class _CutBeforeReceipt:
    """A sink that cuts the power just before the first receipt event is written."""

    def __init__(self, inner: Sealer) -> None:
        self.inner = inner

    def event(
        self,
        kind: str,
        fields: Mapping[str, JsonValue],
        *,
        mono_us: int,
        utc_us: int,
        reserve_ok: bool = False,
    ) -> int:
        if kind == "offload_receipt":
            raise PowerCut("before the receipt")
        return self.inner.event(kind, fields, mono_us=mono_us, utc_us=utc_us, reserve_ok=reserve_ok)


def test_a_bundle_sent_before_a_power_cut_is_found_not_sent_again(
    s3: S3Settings, client: S3Client, bucket: str, unit: Unit
) -> None:
    url = f"s3://{bucket}/u"
    with pytest.raises(PowerCut):
        run(unit, S3Target(url, s3), wrap=_CutBeforeReceipt)
    assert not receipted(unit.store)
    sent = S3Target(url, s3).listing()
    assert [n for n in sent if is_bundle_key(n)]
    again = s3.client()
    puts: list[str] = []
    again.meta.events.register(
        "before-parameter-build.s3.PutObject",
        lambda params, **_: puts.append(str(params["Key"])),
    )
    result = run(unit, S3Target(url, s3, client=again))
    assert result.complete and len(result.freed_files) == 5
    assert not {k[len("u/") :] for k in puts} & set(sent)  # found at the server, not resent
    versions = client.list_object_versions(Bucket=bucket, Prefix="u/").get("Versions", [])
    keys = [v["Key"] for v in versions]
    assert len(keys) == len(set(keys))
    report = verify_store(S3StoreReader(url, s3), trusted_keys=[_device_raw(unit)])
    assert report.intact, report.all_findings


def test_planted_bundles_neither_replace_receipted_files_nor_hide_them(
    s3: S3Settings, client: S3Client, bucket: str, unit: Unit
) -> None:
    """A bundle someone else put under the prefix, with a forged manifest, is not read in place
    of the receipted bundle's; one whose bytes do not hash to its name is not read at all."""
    url = f"s3://{bucket}/u"
    before = store_files(unit.store)
    assert run(unit, S3Target(url, s3)).complete
    victim = "0000000002.json"
    assert b"rec-a" in before[victim]
    (real,) = [n for n in S3Target(url, s3).listing() if is_bundle_key(n)]
    for tag in range(1000):  # a forgery whose name sorts first: order alone must not decide
        forged = build_bundle([(victim, before[victim].replace(b"rec-a", b"rec-%d" % tag))])
        if bundle_key(forged) < real:
            break
    client.put_object(Bucket=bucket, Key=f"u/{bundle_key(forged)}", Body=forged)
    client.put_object(Bucket=bucket, Key=f"u/bundles/{'0' * 64}.tar", Body=forged)
    reader = S3StoreReader(url, s3)
    assert reader.read(victim) == before[victim]
    assert not reader.exists(bundle_key(forged))  # read (not the receipted one), then unlisted
    report = verify_store(reader, trusted_keys=[_device_raw(unit)])
    assert report.intact, report.all_findings
    assert any(
        f"bundles/{'0' * 64}.tar: not part of the evidence format" in n for n in report.notes
    )
