"""`bwc offload` end to end on a provisioned unit with the simulated unit's dock share (file://),
then `bwc verify` on the unit and on the copy at the target (CONTRACT §9)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from firmware.cli import main
from tests.offload_store import provisioned


def test_bwc_offload_to_dock_share_then_verify_both_copies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = provisioned(tmp_path)
    capsys.readouterr()  # what provisioning printed
    payloads = sorted(p.name for p in layout.evidence.glob("*.bin"))
    assert len(payloads) == 5

    assert main(["offload", "--device", str(layout.root), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["complete"] is True and result["freed_files"] == 5
    # The simulated unit's profile says target = "file://../dock": DEVICE/../dock/<device-id>/.
    copy = layout.root.parent / "dock" / "unit-7"
    assert result["target"] == copy.as_uri()
    assert sorted(p.name for p in copy.glob("*.bin")) == payloads
    assert not list(layout.evidence.glob("*.bin"))

    trust = ["--trust", str(layout.device_pub)]
    assert main(["verify", str(layout.evidence), *trust]) == 1  # strict: payloads were freed
    assert "[payload-freed]" in capsys.readouterr().out
    assert main(["verify", str(layout.evidence), *trust, "--allow-freed"]) == 0
    assert "freed on the unit after offload" in capsys.readouterr().out
    assert main(["verify", copy.as_uri(), *trust]) == 0
    capsys.readouterr()

    # The round's own events and the session's closing shutdown went too: the target holds
    # every file of the unit's chain, up to its head.
    on_unit = {p.name for p in layout.evidence.iterdir() if p.is_file()}
    assert on_unit <= {p.name for p in copy.iterdir()}

    # A second run finds the closing shutdown there and receipts it; it sends only that new
    # receipt event (sig and manifest).
    assert main(["offload", "--device", str(layout.root), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["complete"] is True
    assert again["freed_files"] == 0
    assert again["found_files"] == 2 and again["uploaded_files"] == 2
    assert main(["verify", copy.as_uri(), *trust]) == 0


def test_bwc_offload_without_target_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = provisioned(tmp_path)
    capsys.readouterr()
    code = main(["offload", "--device", str(layout.root), "--set", "offload.target="])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "offload.target" in err[0]
    assert len(list(layout.evidence.glob("*.bin"))) == 5


def test_bwc_offload_to_unwritable_share_fails_and_keeps_everything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = provisioned(tmp_path)
    capsys.readouterr()
    share = tmp_path / "share"
    share.write_bytes(b"a file where the share's directory should be")
    code = main(
        ["offload", "--device", str(layout.root), "--set", f"offload.target={share.as_uri()}"]
    )
    assert code == 1
    assert "cannot write" in capsys.readouterr().err
    assert len(list(layout.evidence.glob("*.bin"))) == 5
    assert main(["verify", str(layout.evidence), "--trust", str(layout.device_pub)]) == 0
