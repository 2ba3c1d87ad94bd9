"""RFC 3161 time anchoring end to end: a real `openssl ts` TSA on loopback, the simulated unit in
its dock, `bwc offload`, and `bwc verify --tsa-ca` on the unit and at the target; forged, foreign
and truncated anchors are findings; a TSA that is down never stops recording or offload."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from evidence.format import entry_name
from evidence.sealer import Sealer
from evidence.timestamp import FAILED_KIND, TOKEN_KIND, anchor_head
from firmware.evidence_access import open_unit_sealer
from firmware.identity import load_assignment, read_profile
from firmware.layout import UnitLayout
from hal.software_key import SoftwareDeviceKey
from hal.system_clock import SystemClock
from tests.integration.conftest import SMALL, Bwc, ProvisionedUnit, ScenarioWriter
from tests.tsa import LocalTsa, openssl_ts_available, start_tsa

_skip = openssl_ts_available()
pytestmark = pytest.mark.skipif(_skip is not None, reason=f"no openssl ts: {_skip}")

RECORD = (
    {"at_s": 2.0, "action": "double_press"},
    {"at_s": 6.0, "action": "hold", "hold_s": 3.5},
)


@pytest.fixture
def tsa(tmp_path: Path) -> Iterator[LocalTsa]:
    server = start_tsa(tmp_path / "tsa")
    yield server
    server.stop()


def events(store: Path, kind: str) -> list[dict[str, Any]]:
    out = []
    for p in sorted(store.glob("*.json")):
        m = json.loads(p.read_bytes())
        if m["type"] == "event" and m["kind"] == kind:
            out.append(m)
    return out


def device_sealer(device: Path) -> Sealer:
    """The unit's own sealer, opened as a (buggy or compromised) device would: it can sign."""
    layout = UnitLayout(device)
    return open_unit_sealer(
        layout,
        read_profile(layout.profile),
        load_assignment(layout),
        SoftwareDeviceKey.load(layout.device_key),
        "rtc",
    )


def verify(
    bwc: Bwc, store: Path | str, *extra: str | Path, check: int | None = 0
) -> dict[str, Any]:
    # These tests are about anchors: without an explicit --trust they check integrity only
    # (--unpinned), and a unit's own store (a Path) may have payloads freed after offload.
    if "--trust" not in extra:
        extra = (*extra, "--unpinned")
    if isinstance(store, Path):
        extra = (*extra, "--allow-freed")
    proc = bwc("verify", store, "--json", *extra, check=check)
    report: dict[str, Any] = json.loads(proc.stdout)
    return report


def recorded(bwc: Bwc, unit: ProvisionedUnit, scenario: ScenarioWriter) -> Path:
    bwc("sim", scenario(10.0, *RECORD), "--device", unit.device, *SMALL)
    return unit.device / "evidence"


# ---------------------------------------------------------------------- the dock, end to end


def test_docked_unit_anchors_its_head_and_verify_shows_the_anchor(
    bwc: Bwc, unit: ProvisionedUnit, scenario: ScenarioWriter, tsa: LocalTsa, tmp_path: Path
) -> None:
    target = tmp_path / "dock-share"
    s = scenario(20.0, *RECORD, {"at_s": 12.0, "action": "dock"})
    bwc(
        "sim", s, "--device", unit.device, *SMALL,
        "--set", f"offload.target=file://{target}", "--set", f"offload.tsa_url={tsa.url}",
    )  # fmt: skip
    store = unit.device / "evidence"
    (token,) = events(store, TOKEN_KIND)
    anchored = token["fields"]["head_seq"]
    assert anchored == token["seq"] - 1, "the token follows the head it anchors"
    head_bytes = (store / entry_name(anchored, "json")).read_bytes()
    assert token["fields"]["head_hash"] == hashlib.sha256(head_bytes).hexdigest()
    stop_seqs = [m["seq"] for m in events(store, "record_stop")]
    assert stop_seqs and max(stop_seqs) <= anchored, "the recording is inside the anchor"

    trust: list[str | Path] = ["--trust", unit.device / "identity" / "device-pub.pem"]
    report = verify(bwc, store, *trust, "--tsa-ca", tsa.ca_cert)
    assert report["intact"] is True
    assert report["anchored_seq"] == anchored
    assert report["anchored_at"] == token["fields"]["gen_time"]
    assert report["anchor_verified"] is True
    (a,) = report["anchors"]
    assert a["status"] == "verified" and a["seq"] == token["seq"]
    assert a["tsa_name"] and "Test TSA" in a["tsa_name"]
    text = bwc("verify", store, *trust, "--allow-freed", "--tsa-ca", tsa.ca_cert).stdout
    assert f"chain anchored up to seq {anchored} at {token['fields']['gen_time']}" in text

    # The token went out in the same round: the agency's copy at the target carries the anchor.
    arrived = f"file://{target / 'CAM-TEST-1'}"
    at_target = verify(bwc, arrived, *trust, "--tsa-ca", tsa.ca_cert)
    assert at_target["intact"] is True and at_target["anchored_seq"] == anchored

    # Without --tsa-ca the token is still checked against the chain, but called unverified.
    plain = verify(bwc, store)
    assert plain["intact"] is True and plain["anchors"][0]["status"] == "unverified"
    assert "TSA signature not checked" in bwc("verify", store, "--unpinned", "--allow-freed").stdout


def test_bwc_offload_anchors_the_head_before_sending(
    bwc: Bwc, unit: ProvisionedUnit, scenario: ScenarioWriter, tsa: LocalTsa, tmp_path: Path
) -> None:
    store = recorded(bwc, unit, scenario)
    head_before = max(int(p.stem) for p in store.glob("*.json"))
    target = tmp_path / "share"
    bwc(
        "offload", "--device", unit.device,
        "--set", f"offload.target=file://{target}", "--set", f"offload.tsa_url={tsa.url}",
    )  # fmt: skip
    (token,) = events(target / "CAM-TEST-1", TOKEN_KIND)
    # The offload session seals no boot event of its own: the anchor is the last recorded entry.
    assert token["fields"]["head_seq"] == head_before
    report = verify(bwc, f"file://{target / 'CAM-TEST-1'}", "--tsa-ca", tsa.ca_cert)
    assert report["intact"] is True and report["anchored_seq"] == head_before


# ---------------------------------------------------------------------- a TSA that fails


def test_tsa_down_dock_offload_still_completes_and_recording_is_unaffected(
    bwc: Bwc, unit: ProvisionedUnit, scenario: ScenarioWriter, tmp_path: Path
) -> None:
    with socket.socket() as s:  # a port that nobody listens on: connection refused
        s.bind(("127.0.0.1", 0))
        dead_url = f"http://127.0.0.1:{s.getsockname()[1]}/"
    target = tmp_path / "dock-share"
    sc = scenario(20.0, *RECORD, {"at_s": 12.0, "action": "dock"})
    proc = bwc(
        "sim", sc, "--device", unit.device, *SMALL,
        "--set", f"offload.target=file://{target}", "--set", f"offload.tsa_url={dead_url}",
    )  # fmt: skip
    assert "time anchor" in proc.stderr and "unreachable" in proc.stderr
    store = unit.device / "evidence"
    assert not list(store.glob("*.bin")), "offload completed and freed confirmed payloads"
    assert list((target / "CAM-TEST-1").glob("*.bin"))
    assert not events(store, TOKEN_KIND)
    (failed,) = events(store, FAILED_KIND)  # one per dock session, not one per retry
    assert failed["fields"]["tsa_url"] == dead_url and "unreachable" in failed["fields"]["reason"]
    report = verify(bwc, store)
    assert report["intact"] is True and report["anchored_seq"] is None
    (rec,) = report["recordings"]
    assert rec["intact"] and rec["units"] > 0 and rec["stop_trigger"] is not None
    assert "chain not anchored" in bwc("verify", store, "--unpinned", "--allow-freed").stdout


@pytest.mark.parametrize("mode", ["error", "garbage", "other-imprint"])
def test_bad_tsa_answers_are_warnings_not_tokens(
    bwc: Bwc,
    unit: ProvisionedUnit,
    scenario: ScenarioWriter,
    tsa: LocalTsa,
    tmp_path: Path,
    mode: str,
) -> None:
    store = recorded(bwc, unit, scenario)
    tsa.mode = mode
    target = tmp_path / "share"
    proc = bwc(
        "offload", "--device", unit.device,
        "--set", f"offload.target=file://{target}", "--set", f"offload.tsa_url={tsa.url}",
    )  # fmt: skip
    assert "warning: time anchor failed" in proc.stderr
    expected = {
        "error": "HTTP 500",
        "garbage": "not a TimeStampResp",
        "other-imprint": "another message imprint",
    }[mode]
    assert expected in proc.stderr
    assert not events(store, TOKEN_KIND)
    (failed,) = events(store, FAILED_KIND)
    assert expected in failed["fields"]["reason"]
    assert verify(bwc, store)["intact"] is True


# ---------------------------------------------------------------------- forged and foreign tokens


def anchored_store(
    bwc: Bwc, unit: ProvisionedUnit, scenario: ScenarioWriter, tsa: LocalTsa
) -> tuple[Path, Sealer]:
    """A recorded store whose head was anchored in-process, as the dock does, and the sealer
    (one session: a second one would be a new boot after an unclean end)."""
    store = recorded(bwc, unit, scenario)
    sealer = device_sealer(unit.device)
    outcome = anchor_head(sealer, tsa.url, SystemClock())
    assert outcome.anchored, outcome.error
    return store, sealer


def test_wrong_tsa_ca_is_a_finding(
    bwc: Bwc, unit: ProvisionedUnit, scenario: ScenarioWriter, tsa: LocalTsa, tmp_path: Path
) -> None:
    store, _ = anchored_store(bwc, unit, scenario, tsa)
    other = start_tsa(tmp_path / "other-tsa", name="Other TSA")
    other.stop()
    report = verify(bwc, store, "--tsa-ca", other.ca_cert, check=1)
    (f,) = report["all_findings"]
    assert "does not verify against --tsa-ca" in f["reason"]
    assert report["anchors"][0]["status"] == "invalid" and report["anchored_seq"] is None
    assert verify(bwc, store, "--tsa-ca", tsa.ca_cert)["intact"] is True


def test_a_modified_token_is_a_finding(
    bwc: Bwc, unit: ProvisionedUnit, scenario: ScenarioWriter, tsa: LocalTsa
) -> None:
    store = recorded(bwc, unit, scenario)

    def tampering_post(url: str, body: bytes, timeout_s: float) -> bytes:
        from evidence.timestamp import http_post

        der = bytearray(http_post(url, body, timeout_s))
        der[-5] ^= 0x01  # inside the TSA's signature value, at the end of the SignerInfo
        return bytes(der)

    outcome = anchor_head(device_sealer(unit.device), tsa.url, SystemClock(), post=tampering_post)
    assert outcome.anchored, "the unit does not check the TSA signature; the verifier does"
    report = verify(bwc, store, "--tsa-ca", tsa.ca_cert, check=1)
    (f,) = report["all_findings"]
    assert "does not verify against --tsa-ca" in f["reason"]
    assert f["file"].endswith(entry_name(outcome.seq or 0, "json"))


def test_editing_the_token_in_a_sealed_manifest_breaks_the_device_signature(
    bwc: Bwc, unit: ProvisionedUnit, scenario: ScenarioWriter, tsa: LocalTsa
) -> None:
    store, _ = anchored_store(bwc, unit, scenario, tsa)
    (token,) = events(store, TOKEN_KIND)
    path = store / entry_name(token["seq"], "json")
    der = bytearray(base64.b64decode(token["fields"]["token_b64"]))
    der[-5] ^= 0x01
    edited = path.read_text().replace(
        token["fields"]["token_b64"], base64.b64encode(bytes(der)).decode()
    )
    path.write_text(edited)
    report = verify(bwc, store, check=1)
    assert any("signature" in f["reason"] for f in report["all_findings"])


def _forge(sealer: Sealer, fields: dict[str, Any]) -> int:
    clock = SystemClock()
    return sealer.event(TOKEN_KIND, fields, mono_us=clock.monotonic_us(), utc_us=clock.utc_us())


def test_a_token_over_another_head_is_a_finding(
    bwc: Bwc, unit: ProvisionedUnit, scenario: ScenarioWriter, tsa: LocalTsa
) -> None:
    store, sealer = anchored_store(bwc, unit, scenario, tsa)
    (good,) = events(store, TOKEN_KIND)
    earlier = good["fields"]["head_seq"] - 1
    earlier_hash = hashlib.sha256((store / entry_name(earlier, "json")).read_bytes()).hexdigest()
    # The same token claimed for an earlier entry (right hash of that entry, wrong imprint) ...
    moved = _forge(sealer, dict(good["fields"], head_seq=earlier, head_hash=earlier_hash))
    # ... and the right entry with a head_hash that is not that entry's hash.
    wrong_hash = _forge(sealer, dict(good["fields"], head_hash="ab" * 32))
    report = verify(bwc, store, "--tsa-ca", tsa.ca_cert, check=1)
    by_file = {f["file"]: f["reason"] for f in report["all_findings"]}
    assert len(by_file) == 2
    assert "message imprint is not the sha256" in by_file[str(store / entry_name(moved, "json"))]
    assert "a token over another head" in by_file[str(store / entry_name(wrong_hash, "json"))]
    statuses = {a["seq"]: a["status"] for a in report["anchors"]}
    assert statuses == {good["seq"]: "verified", moved: "invalid", wrong_hash: "invalid"}
    assert report["anchored_seq"] == good["fields"]["head_seq"]


# ---------------------------------------------------------------------- truncation


def test_entries_up_to_the_anchor_cannot_be_cut_but_later_ones_can(
    bwc: Bwc, unit: ProvisionedUnit, scenario: ScenarioWriter, tsa: LocalTsa, tmp_path: Path
) -> None:
    store, sealer = anchored_store(bwc, unit, scenario, tsa)
    (token,) = events(store, TOKEN_KIND)
    n = token["fields"]["head_seq"]
    # Something after the anchor, sealed in the same session.
    clock = SystemClock()
    later = sealer.event("shutdown", {"reason": "test"}, mono_us=1, utc_us=clock.utc_us())

    def copy_without(seqs: range) -> Path:
        dst = tmp_path / f"cut-{seqs.start}-{seqs.stop}"
        shutil.copytree(store, dst)
        for seq in seqs:
            for ext in ("json", "sig", "bin"):
                (dst / entry_name(seq, ext)).unlink(missing_ok=True)
        return dst

    # Cutting the tail after the token is not detectable from the store alone (the documented
    # limit), but the report still proves 0..n complete and says where the anchor ends.
    after = verify(bwc, copy_without(range(token["seq"] + 1, later + 1)), "--tsa-ca", tsa.ca_cert)
    assert after["intact"] is True and after["anchored_seq"] == n

    # Cutting the anchored head itself (or anything before it) while the token remains is found:
    # the token names entry n's hash, and the chain from n to the token is broken.
    for cut in (range(n, n + 1), range(n - 2, n + 1), range(1, 2)):
        report = verify(bwc, copy_without(cut), "--tsa-ca", tsa.ca_cert, check=1)
        reasons = " | ".join(f["reason"] for f in report["all_findings"])
        assert re.search(rf"entr(y|ies) {cut.start}\b.* missing", reasons), reasons
        if n in cut:
            assert f"anchors entry {n}, which the chain does not hold" in reasons

    # Cutting everything from the head on, token included, leaves a shorter chain without that
    # anchor: the report's anchored_seq drops (None here), which an agency holding the earlier
    # report, or the target's copy, sees at once.
    gone = verify(bwc, copy_without(range(n, later + 1)), "--tsa-ca", tsa.ca_cert, check=None)
    assert gone["anchored_seq"] is None


# ---------------------------------------------------------------------- stock tools


def test_the_documented_openssl_recipe_verifies_the_anchor(
    bwc: Bwc, unit: ProvisionedUnit, scenario: ScenarioWriter, tsa: LocalTsa, tmp_path: Path
) -> None:
    doc = (Path(__file__).parents[2] / "docs" / "evidence-format.md").read_text()
    match = re.search(r"```sh timestamp-recipe\n(.*?)```", doc, re.S)
    assert match is not None, "docs/evidence-format.md lost its timestamp-recipe block"
    store, _ = anchored_store(bwc, unit, scenario, tsa)
    shutil.copy(tsa.ca_cert, store / "ca.pem")
    ok = subprocess.run(
        ["sh", "-e", "-c", match.group(1)], cwd=store, capture_output=True, text=True, check=False
    )
    assert ok.returncode == 0 and "Verification: OK" in ok.stdout, ok.stdout + ok.stderr
    other = start_tsa(tmp_path / "other-tsa", name="Other TSA")
    other.stop()
    shutil.copy(other.ca_cert, store / "ca.pem")
    bad = subprocess.run(
        ["sh", "-e", "-c", match.group(1)], cwd=store, capture_output=True, text=True, check=False
    )
    assert bad.returncode != 0 and "Verification: OK" not in bad.stdout


def test_a_replayed_reply_is_refused_by_the_unit(tsa: LocalTsa) -> None:
    from evidence.timestamp import TimestampError, http_post, request_token

    first = request_token(tsa.url, b"head manifest bytes")
    with pytest.raises(TimestampError, match="another nonce"):
        request_token(tsa.url, b"head manifest bytes", post=lambda url, body, t: first.response_der)
    with pytest.raises(TimestampError, match="another message imprint"):
        request_token(tsa.url, b"another head", post=lambda url, body, t: first.response_der)
    with pytest.raises(TimestampError, match="only http"):
        http_post("file:///etc/passwd", b"", 1.0)


def test_mangled_tokens_are_findings_never_tracebacks(tsa: LocalTsa) -> None:
    """Seeded byte flips and cuts of a real token: each is invalid (an IntegrityError) or, for
    bytes outside the signed content, still verifies; nothing else escapes the verifier."""
    import random

    from cryptography import x509

    from evidence.timestamp import check_anchor, request_token
    from hal.errors import IntegrityError

    message = b"head manifest bytes"
    der = request_token(tsa.url, message).response_der
    roots = [x509.load_pem_x509_certificate(tsa.ca_cert.read_bytes())]
    head_hash = hashlib.sha256(message).hexdigest()
    rnd = random.Random(3161)
    outcomes = {"invalid": 0, "verified": 0}
    for _ in range(1500):
        b = bytearray(der)
        if rnd.random() < 0.2:
            b = b[: rnd.randrange(len(b))]
        else:
            for _ in range(rnd.randrange(1, 4)):
                b[rnd.randrange(len(b))] = rnd.randrange(256)
        fields = {
            "head_seq": 0,
            "head_hash": head_hash,
            "hash_alg": "sha256",
            "token_b64": base64.b64encode(bytes(b)).decode(),
        }
        try:
            check_anchor(1, fields, 0, lambda seq: message, roots, "token")
            outcomes["verified"] += 1
        except IntegrityError:
            outcomes["invalid"] += 1
    assert outcomes["invalid"] > 1400


def test_tsa_ca_that_is_not_a_certificate_is_a_usage_error(
    bwc: Bwc, unit: ProvisionedUnit, tmp_path: Path
) -> None:
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate\n")
    proc = bwc("verify", unit.device / "evidence", "--tsa-ca", bogus, check=2)
    assert "--tsa-ca" in proc.stderr and "Traceback" not in proc.stderr
    missing = bwc("verify", unit.device / "evidence", "--tsa-ca", tmp_path / "nope.pem", check=2)
    assert "--tsa-ca" in missing.stderr
