"""The report's pure parts: times as text, the timeline's geometry and events, the GNSS drawing,
which frames become pictures, and the HTML that signed strings cannot break out of."""

from __future__ import annotations

import dataclasses
import io
import os
import re
from pathlib import Path
from typing import Any

import pytest

from evidence.format import entry_name
from evidence.sealer import Sealer
from evidence.sealing import UnitMeta
from evidence.store import DirectoryStoreReader
from hal.errors import UsageError
from report.chain import recording_events
from report.clock_text import clock_offset_text, duration_text, iso_utc, offset_text, parse_iso_us
from report.model import Anchor, Fix, Gap, Interval, Marker, RecordingFacts, UnitSpan
from report.page import build_page
from report.render import _write_exclusive, _write_new, render_html
from report.thumbnails import Thumbnail, Wanted, interval_for, render_thumbnails, wanted_frames
from report.timeline import PLOT_X0, PLOT_X1, build_events, build_timeline
from report.track import build_track
from tests.vectors.evidence_store import fixed_device_key, write_agency_pair

T0 = 1_767_258_000_000_000  # 2026-01-01T09:00:00Z
FPS = 10


def _units(seconds: int, *, pre_s: int = 2, skip: tuple[int, ...] = ()) -> list[UnitSpan]:
    """One-second units of FPS frames from T0; units in ``skip`` are missing (a gap)."""
    out = []
    for i in range(seconds):
        if i in skip:
            continue
        out.append(
            UnitSpan(
                seq=10 + i,
                segment=i // 4,
                first_frame=100 + i * FPS,
                frame_count=FPS,
                start_utc_us=T0 + i * 1_000_000,
                end_utc_us=T0 + (i + 1) * 1_000_000,
                pre_event=i < pre_s,
            )
        )
    return out


def _facts(**over: object) -> RecordingFacts:
    base: dict[str, object] = {
        "id": "rec-1",
        "device": "CAM-7",
        "officer": "PC-9",
        "press_utc_us": T0 + 2_000_000,
        "stop_utc_us": T0 + 10_500_000,
        "utc_source": "gnss",
        "start_trigger": "double_press",
        "stop_trigger": "hold",
        "pre_event_s": 2.0,
        "pre_event_captured_s": 2.0,
        "pre_event_audio": False,
        "duration_s": 10.0,
        "firmware_version": "1.2.3",
        "profile_digest": None,
        "power_losses": 0,
        "offloaded_units": 0,
        "units": _units(10),
        "intact": True,
        "pinned": True,
        "signing_key": "ab" * 32,
    }
    base.update(over)
    return RecordingFacts(**base)  # type: ignore[arg-type]


def test_times_are_iso_utc_with_milliseconds_never_rounded_up() -> None:
    assert iso_utc(T0) == "2026-01-01T09:00:00.000Z"
    assert iso_utc(T0 + 1_999_999) == "2026-01-01T09:00:01.999Z"
    assert duration_text(4.04) == "4.0 s"
    assert duration_text(65.3) == "1 min 05.3 s"
    assert duration_text(7390) == "2 h 03 min 10 s"
    assert offset_text(-2.0) == "-2.0 s"
    assert offset_text(12.5) == "+12.5 s"


def test_timeline_places_pre_event_recording_markers_mute_and_gaps_in_time() -> None:
    facts = _facts(
        units=_units(10, skip=(6,)),
        markers=[Marker(1, T0 + 5_000_000, 150)],
        mute=[Interval(T0 + 3_000_000, T0 + 4_000_000)],
        stealth=[Interval(T0 + 8_000_000, None)],
        gaps=[Gap(160, 169, True, T0 + 6_000_000, T0 + 7_000_000)],
    )
    tl = build_timeline(facts)
    assert tl is not None
    span_x = (PLOT_X1 - PLOT_X0) / 10.5  # the hold's stop event comes 0.5 s after the last frame

    def at(seconds: float) -> float:
        return PLOT_X0 + seconds * span_x

    kinds = {s.kind.split()[0]: s for s in tl.spans}
    pre, rec = kinds["pre-event"], kinds["recording"]
    assert pre.x == pytest.approx(at(0), abs=0.1)
    assert pre.x + pre.width == pytest.approx(at(2), abs=0.1)
    assert rec.x == pytest.approx(at(2), abs=0.1)
    assert kinds["mute"].x == pytest.approx(at(3), abs=0.1)
    assert kinds["mute"].width == pytest.approx(span_x, abs=0.1)
    assert kinds["gap"].x == pytest.approx(at(6), abs=0.1)
    assert kinds["stealth"].x + kinds["stealth"].width == pytest.approx(PLOT_X1, abs=0.1)
    assert len([s for s in tl.spans if s.kind.startswith("segment")]) == 3
    (marker,) = [m for m in tl.marks if m.kind == "marker"]
    assert marker.x == pytest.approx(at(5), abs=0.1)
    assert [m.kind for m in tl.marks if m.kind in ("stop", "power-loss")] == ["stop"]
    xs = [t.x for t in tl.ticks]
    assert xs == sorted(xs) and len(xs) >= 3
    assert all(PLOT_X0 <= x <= PLOT_X1 for x in xs)


def test_unexplained_gap_and_power_loss_are_called_out() -> None:
    facts = _facts(
        units=_units(8, skip=(5,)),
        gaps=[Gap(150, 159, False, T0 + 5_000_000, T0 + 6_000_000)],
        power_losses=1,
        stop_trigger="power_loss_recovery",
        stop_utc_us=T0 + 3_600_000_000,  # closed at the next boot, an hour later
    )
    tl = build_timeline(facts)
    assert tl is not None
    assert any(s.kind == "unexplained" for s in tl.spans)
    (loss,) = [m for m in tl.marks if m.kind == "power-loss"]
    assert loss.x == pytest.approx(PLOT_X1)  # the axis ends with the video, not an hour later
    events = build_events(facts)
    kinds = [e.kind for e in events]
    assert kinds.index("power-loss") < kinds.index("stop")
    assert "unexplained" in kinds
    assert [e.sort_us for e in events] == sorted(e.sort_us for e in events)
    page = build_page(facts, [], T0, "0.1.0")
    alerts = {f.label for f in page.key_facts if f.alert}
    assert {"Ended by", "Gaps in the video", "Power losses"} <= alerts


def test_wanted_frames_start_press_markers_intervals_end_each_once() -> None:
    facts = _facts(units=_units(30), markers=[Marker(1, T0 + 7_000_000, 170)])
    wanted = wanted_frames(facts, interval_s=5)
    by_kind = {w.kind: [x.frame for x in wanted if x.kind == w.kind] for w in wanted}
    assert by_kind["start"] == [100]
    assert by_kind["press"] == [120]
    assert by_kind["marker"] == [170]  # the marker wins over the +5 s picture on the same frame
    assert by_kind["interval"] == [220, 270, 320, 370]
    assert by_kind["end"] == [399]
    frames = [w.frame for w in wanted]
    assert frames == sorted(set(frames))
    assert interval_for(19.0) == 5
    assert interval_for(8 * 3600) == 3600


def test_track_is_to_scale_with_a_round_scale_bar_and_markers_on_it() -> None:
    # Walking north-east at about 1.4 m/s for 20 s near London.
    fixes = [Fix(T0 + i * 1_000_000, 51.5 + i * 0.00001, -0.12 + i * 0.000014) for i in range(21)]
    track = build_track(fixes, [Marker(1, T0 + 10_000_000, None)])
    assert track is not None
    assert track.fixes == 21
    assert 25 < track.distance_m < 35
    assert re.fullmatch(r"(1|2|5)(0*) (m|km)", track.scale_label)
    numbers = [float(n) for n in re.findall(r"-?\d+\.?\d*", track.path_d)]
    xs, ys = numbers[0::2], numbers[1::2]
    assert all(0 <= x <= track.width for x in xs) and all(0 <= y <= track.height for y in ys)
    assert xs[-1] > xs[0] and ys[-1] < ys[0]  # east is right, north is up
    kinds = [p.kind for p in track.points]
    assert kinds.count("start") == 1 and kinds.count("end") == 1 and kinds.count("marker") == 1
    assert build_track([]) is None


def test_signed_strings_are_escaped_and_the_page_loads_nothing() -> None:
    facts = _facts(officer='<script>alert("x")</script>', device="CAM&<b>")
    jpeg = "data:image/jpeg;base64,AA"
    thumb = Thumbnail(100, "start", "Start", iso_utc(T0), "-2.0 s", jpeg, 4, 2)
    html = render_html(build_page(facts, [thumb], T0, "0.1.0"))
    assert "<script" not in html
    assert "&lt;script&gt;" in html
    assert "CAM&amp;&lt;b&gt;" in html
    assert "default-src 'none'" in html
    assert not re.search(r"(src|href)=\"(?!data:)", html)
    assert "@media print" in html and "@page" in html


def test_a_recording_without_video_still_renders() -> None:
    facts = _facts(units=[], duration_s=0.0, stop_trigger="storage_full")
    html = render_html(build_page(facts, [], T0, "0.1.0", note="No video was sealed."))
    assert "No video was sealed." in html
    assert 'class="tl"' not in html
    assert build_timeline(facts) is None
    assert wanted_frames(facts) == []


def test_chain_events_of_a_recording_are_selected_and_worded(tmp_path: Path) -> None:
    """Events of the unit while it recorded, its power-loss discovery and the receipts and frees
    that name its files; another recording's events and unrelated receipts are left out."""
    # Real signed entries: the report reads them as the verifier does, strictly.
    agency, _ = write_agency_pair(tmp_path / "agency", 7)
    store = tmp_path / "store"
    sealer = Sealer.open(store, fixed_device_key(1), [agency], "dev-1", "ab" * 16, "rtc")
    units: list[dict[str, Any]] = []

    def event(kind: str, utc_s: float, **fields: Any) -> None:
        sealer.event(kind, fields, mono_us=0, utc_us=T0 + int(utc_s * 1e6))

    def unit(utc_s: float) -> None:
        utc = T0 + int(utc_s * 1e6)
        meta = UnitMeta("r1", 0, len(units), 0, 1, 0, 1, utc, "rtc")
        seq = sealer.seal_unit(b"ts", meta, mono_us=0, utc_us=utc)
        units.append({"seq": seq, "payload": {"file": entry_name(seq, "bin")}})

    event("record_start", 0, recording="r1")
    unit(1)
    event("low_battery", 1.5, level_pct=12.4)
    event("marker", 1.6, recording="r1")
    event("frame_gap", 1.7, recording="r2", reason="not ours")
    unit(2)
    event("power_loss_discovered", 9, open_recording="r1", lost_note="power lost after entry 5")
    event("power_loss_discovered", 9, open_recording="r0")
    event("low_battery", 10, level_pct=3)  # after the recording: not drawn as "during"
    event("offload_receipt", 20, target="s3://b/p", files=[{"file": entry_name(1, "bin")},
          {"file": entry_name(5, "json")}, {"file": "unrelated"}])  # fmt: skip
    event("offload_receipt", 21, target="s3://b/p", files=[{"file": "0000000099.bin"}])
    event("offload_freed", 22, target="s3://b/p", files=[entry_name(1, "bin")])
    assert [u["seq"] for u in units] == [1, 5]

    got = recording_events(DirectoryStoreReader(store), "r1", units, sealer.head_seq)
    assert [(e.title, e.during) for e in got] == [
        ("Low battery", True),
        ("Power loss discovered at the next start", False),
        ("Offloaded", False),
        ("Freed on the unit", False),
    ]
    assert got[0].detail == "Battery at 12 %."
    assert "power lost after entry 5" in got[1].detail
    assert "s3://b/p confirmed receipt of 2 of this recording's 6 unit files" in got[2].detail
    assert got[3].detail.startswith("1 of this recording's files freed")
    facts = _facts(chain_events=got, unit_seqs=(1, 5))
    tl = build_timeline(facts)
    assert tl is not None and tl.rows[-1] == "Unit events"
    assert [m.label for m in tl.marks if m.kind == "unit"] == ["Low battery"]
    kinds = [e.kind for e in build_events(facts)]
    assert kinds.index("power-loss") < kinds.index("offload")


def test_time_anchors_covering_the_recording_are_events_with_the_clock_offset() -> None:
    anchors = [
        Anchor(40, 30, "2026-01-01T10:00:05Z", "CN=Test TSA", "unverified", 3600.5),
        Anchor(12, 8, "2026-01-01T09:00:05Z", "CN=Test TSA", "verified", 0.2),  # before its end
    ]
    facts = _facts(anchors=anchors, unit_seqs=(10, 19))
    (anchor,) = [e for e in build_events(facts) if e.kind == "anchor"]
    assert anchor.at_iso == "2026-01-01T10:00:05.000Z"
    assert "up to entry 30" in anchor.detail and "signature not checked" in anchor.detail
    assert parse_iso_us("2026-01-01T09:00:00Z") == T0
    assert parse_iso_us("not a time") is None
    assert clock_offset_text(3600.5) == "1 h 00 min 00 s ahead"
    assert clock_offset_text(-2.0) == "2.0 s behind"
    assert clock_offset_text(0.4) == "within 1 s"
    html = render_html(build_page(facts, [], T0, "0.1.0"))
    assert "1 h 00 min 00 s ahead" in html and "2026-01-01T10:00:05.000Z" in html


def test_report_files_are_written_whole_never_over_a_file_or_through_a_link(
    tmp_path: Path,
) -> None:
    page = tmp_path / "rec.html"
    _write_new(page, "one")
    assert page.read_text() == "one"
    assert [p.name for p in tmp_path.iterdir()] == ["rec.html"]  # no temp file left
    with pytest.raises(UsageError, match="never overwritten"):
        _write_new(page, "two")
    assert page.read_text() == "one"
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    planted = tmp_path / "planted.html"
    planted.symlink_to(victim)
    with pytest.raises(UsageError, match="never overwritten"):
        _write_new(planted, "evil")
    assert victim.read_text() == "keep"
    # Where hard links are not available the name itself is created exclusively.
    with pytest.raises(UsageError, match="never overwritten"):
        _write_exclusive(planted, "evil", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW)
    _write_exclusive(tmp_path / "new.html", "three", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    assert (tmp_path / "new.html").read_text() == "three"


def test_segment_starts_are_listed_only_while_few() -> None:
    few = [e.kind for e in build_events(_facts(units=_units(12)))]
    assert few.count("segment") == 2  # segments 2 and 3 of 3
    many = _units(100)
    many = [dataclasses.replace(u, segment=i) for i, u in enumerate(many)]
    assert "segment" not in [e.kind for e in build_events(_facts(units=many))]
    tl = build_timeline(_facts(units=many))
    assert tl is not None and len([s for s in tl.spans if s.kind.startswith("segment")]) == 100


def _ts_of_grey_frames(count: int, fps: int) -> bytes:
    """An H.264 MPEG-TS whose frame k is a flat grey of level 20 * k + 10."""
    import av
    import numpy as np

    buf = io.BytesIO()
    out: Any = av.open(buf, mode="w", format="mpegts")
    stream = out.add_stream("libx264", rate=fps)
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
    stream.options = {"preset": "ultrafast", "tune": "zerolatency", "bf": "0"}
    for k in range(count):
        img = np.full((48, 64, 3), 20 * k + 10, dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts = k
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
    out.close()
    return buf.getvalue()


def _grey(thumb: Thumbnail) -> float:
    import base64

    import cv2
    import numpy as np

    jpeg = base64.b64decode(thumb.data_uri.split(",", 1)[1])
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert img is not None
    return float(img.mean())


@pytest.mark.parametrize("claimed_fps", [10, 5])
def test_thumbnails_are_the_frames_the_units_name_and_say_when_timing_disagrees(
    claimed_fps: int,
) -> None:
    ts = _ts_of_grey_frames(10, fps=10)
    step = 1_000_000 // claimed_fps * 5
    units = [
        UnitSpan(1, 0, 100, 5, T0, T0 + step, True),
        UnitSpan(2, 0, 105, 5, T0 + step, T0 + 2 * step, False),
    ]
    facts = _facts(units=units, press_utc_us=T0 + step, markers=[Marker(1, T0, 107)])
    wanted = [
        Wanted(100, "start", "Start"),
        Wanted(104, "interval", "+x"),
        Wanted(107, "marker", "Marker 1"),
    ]
    thumbs = render_thumbnails(facts, wanted, lambda _segment: [ts])
    assert [t.frame for t in thumbs] == [100, 104, 107]
    for t in thumbs:
        assert _grey(t) == pytest.approx(20 * (t.frame - 100) + 10, abs=4)
        assert t.width == 320 and t.height == 240
    assert thumbs[2].at_iso == iso_utc(T0 + step + 2 * step // 5)
    approximate = ["approximate" in t.label for t in thumbs]
    assert approximate == ([False] * 3 if claimed_fps == 10 else [False, True, True])
