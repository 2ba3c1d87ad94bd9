"""The technician's firmware lines: downgrade policy, and commit or rollback reported as lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from firmware.cli import main
from tests.integration.conftest import SMALL, write_scenario


def _bundle(root: Path, version: str, security_version: int, *extra: str) -> Path:
    out = root / f"fw-{version}.bundle"
    payload = root / f"payload-{version}"
    payload.mkdir()
    (payload / "version.txt").write_text(version)
    for name in extra:
        (payload / name).write_text("")
    key = root / "rel" / "release-key.pem"
    build = ["fw", "build", str(payload), "--version", version, "--key", str(key)]
    rest = ["--security-version", str(security_version), "--compatible", "bwc-sim"]
    assert main([*build, *rest, "--out", str(out), "--build-utc", "1700000000"]) == 0
    return out


def test_an_older_version_at_the_same_security_version_is_refused_unless_allowed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keys", "agency", "--out", str(tmp_path / "ag")]) == 0
    assert main(["fw", "keygen", "--out", str(tmp_path / "rel")]) == 0
    device = tmp_path / "unit"
    assert (
        main(
            [
                "provision",
                str(device),
                "--agency-pub",
                str(tmp_path / "ag" / "agency-pub.pem"),
                "--device-id",
                "CAM-1",
                "--officer",
                "PC-1",
                "--release-pub",
                str(tmp_path / "rel" / "release-pub.pem"),
            ]
        )
        == 0
    )
    newer = _bundle(tmp_path, "1.2.0", 1)
    assert main(["fw", "flash", str(newer), "--device", str(device)]) == 0
    boot = write_scenario(tmp_path / "boot.toml", 1.0)
    assert main(["sim", str(boot), "--device", str(device), *SMALL]) == 0
    out = capsys.readouterr().out
    assert "bwc sim: firmware: committed slot B (1.2.0)" in out, "a first-class line"

    older = _bundle(tmp_path, "1.1.0", 1)
    capsys.readouterr()
    assert main(["fw", "flash", str(older), "--device", str(device), "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "1.1.0 is older than the installed 1.2.0" in err and "--allow-downgrade" in err
    before = json.loads((device / "update" / "state.json").read_text())

    assert main(["fw", "flash", str(older), "--device", str(device), "--json"]) == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[-1]["event"] == "refused" and "--allow-downgrade" in lines[-1]["reason"]
    assert json.loads((device / "update" / "state.json").read_text()) == before, "untouched"

    allow = ["fw", "flash", str(older), "--device", str(device), "--allow-downgrade"]
    assert main(allow) == 0
    out = capsys.readouterr().out
    assert "downgrade 1.2.0 -> 1.1.0 (allowed)" in out

    # A security update is never a "downgrade", whatever its number says; the floor still rules.
    security_fix = _bundle(tmp_path, "1.0.5", 2)
    assert main(["fw", "flash", str(security_fix), "--device", str(device), "--dry-run"]) == 0
    stale = _bundle(tmp_path, "9.0.0", 0)
    assert main(["fw", "flash", str(stale), "--device", str(device), "--dry-run"]) == 1


def test_fw_status_shows_the_last_signed_firmware_outcome(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keys", "agency", "--out", str(tmp_path / "ag")]) == 0
    assert main(["fw", "keygen", "--out", str(tmp_path / "rel")]) == 0
    device = tmp_path / "unit"
    pub = str(tmp_path / "ag" / "agency-pub.pem")
    release = str(tmp_path / "rel" / "release-pub.pem")
    ids = ["--device-id", "CAM-2", "--officer", "PC-2", "--release-pub", release]
    assert main(["provision", str(device), "--agency-pub", pub, *ids]) == 0
    assert main(["fw", "flash", str(_bundle(tmp_path, "2.0.0", 3)), "--device", str(device)]) == 0
    boot = write_scenario(tmp_path / "boot.toml", 1.0)
    assert main(["sim", str(boot), "--device", str(device), *SMALL]) == 0
    capsys.readouterr()
    assert main(["fw", "status", "--device", str(device)]) == 0
    out = capsys.readouterr().out
    assert "last      committed 2.0.0 in slot B at " in out and "(signed event seq" in out
    assert main(["fw", "status", "--device", str(device), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["last_firmware_event"]["kind"] == "firmware_commit"
    assert status["last_firmware_event"]["fields"]["version"] == "2.0.0"


def test_a_failed_try_boot_is_a_first_class_rollback_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keys", "agency", "--out", str(tmp_path / "ag")]) == 0
    assert main(["fw", "keygen", "--out", str(tmp_path / "rel")]) == 0
    device = tmp_path / "unit"
    pub = str(tmp_path / "ag" / "agency-pub.pem")
    release = str(tmp_path / "rel" / "release-pub.pem")
    ids = ["--device-id", "CAM-3", "--officer", "PC-3", "--release-pub", release]
    assert main(["provision", str(device), "--agency-pub", pub, *ids]) == 0
    # The simulator's fault knob: a payload holding HEALTH_FAIL fails its health check.
    bad = _bundle(tmp_path, "3.0.0", 1, "HEALTH_FAIL")
    assert main(["fw", "flash", str(bad), "--device", str(device)]) == 0
    boot = write_scenario(tmp_path / "boot.toml", 1.0)
    capsys.readouterr()
    assert main(["sim", str(boot), "--device", str(device), *SMALL, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["firmware_boot"]["action"] == "rolled_back"
    assert main(["sim", str(boot), "--device", str(device), *SMALL]) == 0
    out = capsys.readouterr().out
    assert "firmware: rolled back" not in out, "the rollback is reported once, by its boot"
    assert main(["fw", "status", "--device", str(device)]) == 0
    out = capsys.readouterr().out
    assert "last      rolled back 3.0.0 in slot B (health check failed: " in out


@pytest.mark.parametrize("channel", ["release", "development"])
def test_the_key_fw_keygen_writes_is_the_key_provision_takes(channel: str, tmp_path: Path) -> None:
    """README's technician steps in order: keygen, then provision with its public key."""
    from firmware.bundle import load_trusted_key
    from firmware.layout import UnitLayout

    assert main(["keys", "agency", "--out", str(tmp_path / "ag")]) == 0
    assert main(["fw", "keygen", "--out", str(tmp_path / "k"), "--channel", channel]) == 0
    device = tmp_path / "unit"
    pub = str(tmp_path / "ag" / "agency-pub.pem")
    release = str(tmp_path / "k" / f"{channel}-pub.pem")
    ids = ["--device-id", "CAM-4", "--officer", "PC-4", "--release-pub", release]
    assert main(["provision", str(device), "--agency-pub", pub, *ids]) == 0
    assert load_trusted_key(UnitLayout(device).release_pub).channel == channel
