"""The stock-tools recipe in docs/evidence-format.md accepts good entries, rejects altered ones."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.vectors.evidence_store import build_store, fixed_device_key, write_agency_pair

DOC = Path(__file__).resolve().parents[2] / "docs" / "evidence-format.md"

pytestmark = pytest.mark.skipif(
    shutil.which("openssl") is None or shutil.which("sha256sum") is None,
    reason="needs the openssl and sha256sum binaries",
)


def recipe() -> str:
    m = re.search(r"```sh evidence-recipe\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    assert m is not None, "the recipe block is missing from docs/evidence-format.md"
    return "set -e\n" + m.group(1)


def run_recipe(store: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", recipe()], cwd=store, capture_output=True, text=True, check=False
    )


@pytest.fixture
def store(tmp_path: Path) -> Path:
    pub, _ = write_agency_pair(tmp_path / "agency", 0xA6E1C7)
    path = tmp_path / "evidence"
    build_store(path, fixed_device_key(1), [pub], [os.urandom(5000), os.urandom(6000)])
    return path


def test_recipe_accepts_a_good_entry(store: Path) -> None:
    result = run_recipe(store)
    assert result.returncode == 0, result.stderr
    assert "Signature Verified Successfully" in result.stdout


@pytest.mark.parametrize(
    "name", ["0000000002.json", "0000000002.sig", "0000000002.bin", "0000000001.json"]
)
def test_recipe_rejects_a_flipped_byte(store: Path, name: str) -> None:
    data = bytearray((store / name).read_bytes())
    # Flip inside a hex digest or the binary, never in the JSON syntax the recipe greps for.
    i = len(data) // 2
    data[i] ^= 0x01
    (store / name).write_bytes(bytes(data))
    assert run_recipe(store).returncode != 0


def test_recipe_rejects_another_devices_key(store: Path) -> None:
    (store / "device-pub.pem").write_bytes(fixed_device_key(2).public_pem())
    assert run_recipe(store).returncode != 0
