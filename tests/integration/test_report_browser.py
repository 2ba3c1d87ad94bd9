"""`bwc report` end to end, read by a real browser: a recording with a pre-event part, two markers,
a mute, low battery, a GNSS track and a power cut, then docked at the next start, reported from the
dock's copy and opened in headless Chromium, which must show the timeline, both markers, every
thumbnail decoded, the track, the offload receipt, and no console error or fetch.

Skipped with a reason when Chromium is not installed, except under CI (CI=true), where a missing
browser fails the run (.ci/run installs Debian's ``chromium``). ``BWC_REPORT_SCREENSHOT=FILE``
keeps the full-page screenshot for a person to look at.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from firmware import __version__
from tests.integration.chromium import Chromium, find_chromium
from tests.integration.conftest import SMALL, Bwc, ProvisionedUnit, provision_unit, write_scenario
from tests.tsa import openssl_ts_available, start_tsa

SETS = [
    *SMALL,
    *("--set", "camera.fps=10"),
    *("--set", "recorder.pre_event_s=4"),
    *("--set", "recorder.segment_s=6"),
    *("--set", "recorder.gnss_interval_s=1"),
]
PRESS_S, MARKERS_S, MUTE_S, UNMUTE_S, LOW_S, CUT_S = 6.0, (9.0, 17.0), 11.0, 14.5, 19.0, 22.0

CHECKS_JS = """(() => {
  const visible = (el) => !!el && el.getBoundingClientRect().width > 0
      && el.getBoundingClientRect().height > 0;
  const imgs = [...document.querySelectorAll('#pictures img')];
  const path = document.querySelector('#gnss-path');
  return {
    timeline: visible(document.querySelector('#timeline svg.tl')),
    timeline_markers: document.querySelectorAll('#timeline .tl-marker').length,
    visible_markers: [...document.querySelectorAll('#timeline .tl-marker circle')]
        .filter(visible).length,
    pre_event: document.querySelectorAll('#timeline rect[data-kind="pre-event"]').length,
    mute: [...document.querySelectorAll('#timeline rect[data-kind="mute"]')]
        .filter(visible).length,
    power_loss: document.querySelectorAll('#timeline .tl-powerloss').length,
    marker_thumbnails: document.querySelectorAll('figure.thumb.marker').length,
    thumbnails: imgs.length,
    thumbnails_decoded: imgs.filter((i) => i.complete && i.naturalWidth > 0
        && i.naturalHeight > 0).length,
    thumbnails_visible: imgs.filter(visible).length,
    gnss_path_px: path ? path.getTotalLength() : 0,
    scale_bar: visible(document.querySelector('#scale-bar')),
    events_marker: document.querySelectorAll('#events tr[data-kind="marker"]').length,
    events_power_loss: document.querySelectorAll('#events tr[data-kind="power-loss"]').length,
    events_offload: document.querySelectorAll('#events tr[data-kind="offload"]').length,
    events_anchor: document.querySelectorAll('#events tr[data-kind="anchor"]').length,
    anchor_rows: document.querySelectorAll('#anchors tbody tr').length,
    unit_events: [...document.querySelectorAll('#timeline .tl-unit text')]
        .map((t) => t.textContent.trim()),
    verdict: document.querySelector('#verdict').textContent.trim(),
    no_findings: visible(document.querySelector('#no-findings')),
    fetched: performance.getEntriesByType('resource').map((e) => e.name),
    text: document.body.innerText,
  };
})()"""


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[ProvisionedUnit, Path]:
    """A unit that recorded with markers and a mute, lost power, booted again and docked.

    Returns the unit and the dock's copy of its evidence (the unit's own store has freed the
    offloaded video, so only the copy can be opened)."""
    root = tmp_path_factory.mktemp("report")
    unit = provision_unit(root, "CAM-0042", "PC-1234")
    bwc = Bwc(root)
    first = write_scenario(
        root / "shift.toml",
        CUT_S + 4,
        {"at_s": PRESS_S, "action": "double_press", "button": "event"},
        {"at_s": MARKERS_S[0], "action": "press", "button": "function"},
        {"at_s": MUTE_S, "action": "double_press", "button": "function"},
        {"at_s": UNMUTE_S, "action": "double_press", "button": "function"},
        {"at_s": MARKERS_S[1], "action": "press", "button": "function"},
        {"at_s": LOW_S, "action": "battery", "level_pct": 12.0},
        {"at_s": CUT_S, "action": "power_cut"},
    )
    bwc("sim", first, "--device", unit.device, *SETS, check=137)
    docked = write_scenario(root / "boot.toml", 8.0, {"at_s": 1.0, "action": "dock"})
    # With a time-stamping authority where `openssl ts` can play one, the dock anchors the chain.
    tsa = start_tsa(root / "tsa") if openssl_ts_available() is None else None
    try:
        tsa_set = ["--set", f"offload.tsa_url={tsa.url}"] if tsa else []
        bwc("sim", docked, "--device", unit.device, *SETS, *tsa_set)
    finally:
        if tsa:
            tsa.stop()
    return unit, unit.device.parent / "dock" / "CAM-0042"  # the dock share beside the unit


def _chromium() -> str:
    path = find_chromium()
    if path is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but no chromium on PATH: .ci/run must install Debian's chromium")
        pytest.skip("no chromium on PATH (apt-get install chromium) to render the report")
    return path


def test_report_shows_timeline_markers_thumbnails_and_track_in_chromium(
    recorded: tuple[ProvisionedUnit, Path], tmp_path: Path
) -> None:
    browser = _chromium()
    unit, copy = recorded
    out = tmp_path / "reports"
    run = Bwc(tmp_path)(
        "report",
        copy,
        "--key",
        unit.agency_key,
        "--trust",
        unit.device / "identity" / "device-pub.pem",
        "--out",
        out,
    )
    (page,) = sorted(out.glob("*.html"))
    assert run.stdout.split() == [str(page)]
    html = page.read_text(encoding="utf-8")
    # Self-contained: nothing that would reach for a network or another file.
    for needle in ("http://", "https://", 'src="file:', "<script", "<link"):
        assert needle not in html, needle

    with Chromium(browser, tmp_path / "profile") as chrome:
        chrome.open(page.as_uri())
        checks = chrome.evaluate(CHECKS_JS)
        shot = tmp_path / "report.png"
        chrome.screenshot(shot)
        pdf = chrome.pdf()
        errors = chrome.errors()

    assert errors == []
    assert checks["fetched"] == []
    assert checks["timeline"]
    assert checks["timeline_markers"] == len(MARKERS_S)
    assert checks["visible_markers"] == len(MARKERS_S)
    assert checks["pre_event"] == 1
    assert checks["mute"] == 1
    assert checks["power_loss"] == 1
    assert checks["events_marker"] == len(MARKERS_S)
    # The loss as the video shows it, and the signed discovery at the next start.
    assert checks["events_power_loss"] == 2
    assert checks["events_offload"] >= 1
    assert checks["unit_events"] == ["Low battery"]
    if openssl_ts_available() is None:
        assert checks["anchor_rows"] >= 1
        assert checks["events_anchor"] >= 1
    # Start, press, both markers, end and some regular ones: each decoded and on screen.
    assert checks["marker_thumbnails"] == len(MARKERS_S)
    assert checks["thumbnails"] >= 5
    assert checks["thumbnails_decoded"] == checks["thumbnails"]
    assert checks["thumbnails_visible"] == checks["thumbnails"]
    assert checks["gnss_path_px"] > 50
    assert checks["scale_bar"]
    assert checks["verdict"].startswith("✔ Verified intact")
    assert checks["no_findings"]
    text = checks["text"]
    facts = ("CAM-0042", "PC-1234", "Power lost", "Microphone muted", "Marker 2", "Offloaded")
    for fact in (*facts, f"Unit started\tfirmware {__version__}; slot A"):
        assert fact in text, fact
    assert "T09:00:" in text or "Z" in text  # ISO 8601 UTC times are shown

    assert shot.stat().st_size > 50_000  # a real picture, not an empty page
    assert pdf.startswith(b"%PDF")
    # Printed on A4 (210 x 297 mm = 595 x 842 pt, the page size @media print asks for), on more
    # than one page.
    boxes = re.findall(rb"/MediaBox \[0 0 ([0-9.]+) ([0-9.]+)\]", pdf)
    assert len(boxes) >= 2
    assert all(abs(float(w) - 595) < 2 and abs(float(h) - 842) < 2 for w, h in boxes), boxes
    keep = os.environ.get("BWC_REPORT_SCREENSHOT")
    if keep:
        shutil.copyfile(shot, keep)
        Path(keep).with_suffix(".pdf").write_bytes(pdf)


def test_report_of_tampered_evidence_decrypts_nothing_and_lists_findings(
    recorded: tuple[ProvisionedUnit, Path], tmp_path: Path
) -> None:
    unit, dock_copy = recorded
    bwc = Bwc(tmp_path)
    trust = unit.device / "identity" / "device-pub.pem"
    out = tmp_path / "reports"
    args: list[str | Path] = ["--key", unit.agency_key, "--trust", trust, "--out", out]
    bwc("report", dock_copy, *args)
    again = bwc("report", dock_copy, *args, check=2)
    assert "never overwritten" in again.stderr
    assert again.stderr.count("\n") == 1

    bad = bwc("report", dock_copy, *args, "--every-s", "0", check=2)
    assert "--every-s" in bad.stderr

    copy = tmp_path / "copy"
    shutil.copytree(dock_copy, copy)
    victim = next(p for p in sorted(copy.glob("*.bin")))
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 1
    victim.write_bytes(bytes(data))
    tampered_out = tmp_path / "tampered"
    run = bwc(
        "report", copy, "--key", unit.agency_key, "--trust", trust, "--out", tampered_out, check=1
    )
    assert "integrity failure" in run.stderr and victim.name in run.stderr
    assert run.stderr.count("\n") == 1
    assert "Traceback" not in run.stderr
    # Nothing decrypted, but a page that leads with the findings, for the investigator.
    (page,) = tampered_out.glob("*.html")
    assert run.stdout.split() == [str(page)]
    html = page.read_text(encoding="utf-8")
    assert "NOT intact" in html and "did NOT verify" in html
    assert victim.name in html
    assert "<img" not in html and 'class="tl"' not in html


def test_report_is_strict_about_origin_and_covers_a_share_root(
    recorded: tuple[ProvisionedUnit, Path], tmp_path: Path
) -> None:
    unit, dock_copy = recorded
    bwc = Bwc(tmp_path)
    registry = tmp_path / "registry"
    registry.mkdir()
    shutil.copyfile(unit.device / "identity" / "device-pub.pem", registry / "CAM-0042.pem")
    key: list[str | Path] = ["--key", unit.agency_key]

    # The dock share's root holds one unit's store; the registry directory pins its key.
    share = bwc("report", dock_copy.parent, *key, "--trust", registry, "--out", tmp_path / "a")
    (page,) = (tmp_path / "a").glob("*.html")
    assert share.stdout.split() == [str(page)]
    assert "Verified intact" in page.read_text(encoding="utf-8")

    # Without a trust anchor origin is not established: nothing decrypted, exit 1.
    bare = bwc("report", dock_copy, *key, "--out", tmp_path / "b", check=1)
    assert "origin-not-established" in bare.stderr
    (page,) = (tmp_path / "b").glob("*.html")
    html = page.read_text(encoding="utf-8")
    assert "origin-not-established" in html and "<img" not in html

    # --unpinned is the explicit weaker claim, said on stdout and on the page.
    loose = bwc("report", dock_copy, *key, "--unpinned", "--out", tmp_path / "c")
    assert "origin NOT checked (--unpinned)" in loose.stdout
    (page,) = (tmp_path / "c").glob("*.html")
    html = page.read_text(encoding="utf-8")
    assert "origin NOT checked (--unpinned)" in html and "<img" in html
    machine = json.loads(
        bwc("report", dock_copy, *key, "--unpinned", "--json", "--out", tmp_path / "e").stdout
    )
    assert machine["intact"] is True and machine["origin_checked"] is False
    assert [Path(p).name for p in machine["written"]] == [page.name]
    both = bwc(
        "report",
        dock_copy,
        *key,
        "--unpinned",
        "--trust",
        registry,
        "--out",
        tmp_path / "d",
        check=2,
    )
    assert "--unpinned" in both.stderr
