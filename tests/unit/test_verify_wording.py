"""The verify report's words for a person: plurals, and a copy's last boot is not a power loss."""

from __future__ import annotations

from evidence.verify import BootReport, RecordingReport, Report


def test_a_copy_ending_mid_shift_is_not_worded_as_a_fault() -> None:
    report = Report(
        store="dock/CAM-1",
        boots=[
            BootReport("a" * 32, 0, 9, clean=False),
            BootReport("b" * 32, 10, 19, clean=True),
            BootReport("c" * 32, 20, 29, clean=False),
        ],
        recordings=[RecordingReport("r1", units=1, segments=1), RecordingReport("r2", 12, 2)],
    )
    text = report.format_text()
    assert "entries 0-9, ended without a clean shutdown (power lost; see the next boot)" in text
    assert "entries 10-19, clean shutdown" in text
    assert "entries 20-29, no shutdown entry yet: the store ends while the unit was on" in text
    assert "1 unit in 1 segment," in text and "12 units in 2 segments," in text
