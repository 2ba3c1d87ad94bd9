"""Every name pattern is matched to the very end: ``$`` would also accept a final newline, which
would let an id or file name carry one into paths, exports and reports."""

from __future__ import annotations

import pytest

from evidence.format import parse_entry_name
from evidence.schema import RECORDING_ID
from firmware.bundle import _COMPATIBLE_RE, _SHA256_RE, _VERSION_RE
from firmware.identity import check_id
from hal.errors import UsageError
from report.render import _SAFE_ID


def test_entry_names() -> None:
    assert parse_entry_name("0000000001.json") == (1, "json")
    assert parse_entry_name("0000000001.json\n") is None
    assert parse_entry_name("0000000001.bin\n") is None


@pytest.mark.parametrize(
    ("pattern", "good"),
    [
        (RECORDING_ID, "rec-0001"),
        (_SAFE_ID, "CAM-1.x"),
        (_COMPATIBLE_RE, "bwc-pi"),
        (_VERSION_RE, "1.2.3"),
        (_SHA256_RE, "0" * 64),
    ],
)
def test_patterns_refuse_a_final_newline(pattern: object, good: str) -> None:
    import re

    assert isinstance(pattern, re.Pattern)
    assert pattern.match(good)
    assert not pattern.match(good + "\n")


def test_device_and_officer_ids() -> None:
    assert check_id("CAM-1", "--device-id") == "CAM-1"
    with pytest.raises(UsageError, match="--device-id"):
        check_id("CAM-1\n", "--device-id")
