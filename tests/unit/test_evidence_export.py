"""`bwc export`: MP4 without re-encoding from sealed H.264 MPEG-TS; refuses device-side keys."""

from __future__ import annotations

import io
import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from evidence.keys import generate_agency_keys, load_agency_public
from firmware.cli import main
from hal.software_key import SoftwareDeviceKey
from tests.vectors.evidence_store import build_store

FPS = 25


def make_ts(n_frames: int, start_frame: int) -> bytes:
    """A tiny real H.264 MPEG-TS (512x288, libx264 ultrafast), one keyframe per second."""
    buf = io.BytesIO()
    out = av.open(buf, "w", format="mpegts")
    st = out.add_stream("libx264", rate=FPS)
    st.width, st.height, st.pix_fmt = 512, 288, "yuv420p"
    st.options = {"preset": "ultrafast", "tune": "zerolatency", "g": str(FPS)}
    for i in range(n_frames):
        img = np.full((288, 512, 3), (start_frame + i) * 9 % 255, dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts = start_frame + i
        frame.time_base = Fraction(1, FPS)
        for p in st.encode(frame):
            out.mux(p)
    for p in st.encode():
        out.mux(p)
    out.close()
    return buf.getvalue()


@pytest.fixture
def unit(tmp_path: Path) -> Path:
    """A provisioned-looking unit directory with evidence: 2 segments of 2 units, 25 frames each."""
    root = tmp_path / "unit"
    ident = root / "identity"
    ident.mkdir(parents=True)
    key = SoftwareDeviceKey.generate(ident / "device-key.pem")
    (ident / "device-pub.pem").write_bytes(key.public_pem())
    (ident / "release-pub.pem").write_bytes(
        SoftwareDeviceKey.generate(tmp_path / "r.pem").public_pem()
    )
    generate_agency_keys(tmp_path / "agency")
    (ident / "agency-pub.pem").write_bytes((tmp_path / "agency" / "agency-pub.pem").read_bytes())
    pub = load_agency_public(ident / "agency-pub.pem")
    payloads = []
    for seg in range(2):
        ts = make_ts(2 * FPS, seg * 2 * FPS)
        cut = len(ts) // 2 // 188 * 188  # units split a segment's TS on packet boundaries
        payloads += [ts[:cut], ts[cut:]]
    build_store(root / "evidence", key, [pub], payloads)
    return root


def test_export_writes_playable_mp4_and_metadata(
    unit: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = main(
        [
            "export",
            str(unit / "evidence"),
            "--key",
            str(tmp_path / "agency" / "agency-key.pem"),
            "--out",
            str(out),
            "--trust",
            str(unit / "identity" / "device-pub.pem"),
        ]
    )
    assert code == 0, capsys.readouterr().err
    with av.open(str(out / "rec-0001.mp4")) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        frames = sum(1 for _ in c.decode(video=0))
        assert c.duration is not None
        assert abs(c.duration / 1e6 - 4 * FPS / FPS) < 0.1  # continuous timeline
    assert frames == 4 * FPS
    meta = json.loads((out / "rec-0001.json").read_text())
    assert meta["device"] == "bwc-test-0001"
    assert meta["officer"] == "officer-7"
    assert meta["firmware_version"] == "0.1.0"
    assert meta["verification"]["intact"] is True
    assert meta["verification"]["pinned"] is True
    assert meta["verification"]["origin"] == "pinned"
    assert meta["verification"]["pinned_key"] == meta["verification"]["signing_key"]
    assert [s["units"] for s in meta["segments"]] == [2, 2]
    assert len(meta["gnss_track"]) == 4
    assert meta["video_packets"] == 4 * FPS


@pytest.mark.parametrize(
    "name", ["device-key.pem", "device-pub.pem", "agency-pub.pem", "release-pub.pem"]
)
def test_export_refuses_device_side_key_files(
    unit: Path, tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "export",
            str(unit / "evidence"),
            "--key",
            str(unit / "identity" / name),
            "--out",
            str(tmp_path / "out"),
            "--trust",
            str(unit / "identity" / "device-pub.pem"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and name in err
    assert not (tmp_path / "out").exists()


def test_export_with_another_agencys_key_fails(
    unit: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    generate_agency_keys(tmp_path / "other")
    code = main(
        [
            "export",
            str(unit / "evidence"),
            "--key",
            str(tmp_path / "other" / "agency-key.pem"),
            "--out",
            str(tmp_path / "out"),
            "--trust",
            str(unit / "identity" / "device-pub.pem"),
        ]
    )
    assert code == 1
    assert "no recipient entry" in capsys.readouterr().err


def test_export_refuses_a_tampered_store(
    unit: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (unit / "evidence" / "0000000004.bin").write_bytes(b"\x00" * 10)
    code = main(
        [
            "export",
            str(unit / "evidence"),
            "--key",
            str(tmp_path / "agency" / "agency-key.pem"),
            "--out",
            str(tmp_path / "out"),
            "--trust",
            str(unit / "identity" / "device-pub.pem"),
        ]
    )
    assert code == 1
    assert "0000000004.bin" in capsys.readouterr().err
    assert not list((tmp_path / "out").glob("*.mp4"))
