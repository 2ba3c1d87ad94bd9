"""PyAV's ALSA input as ``AlsaMicrophone`` drives it, on this machine's real alsa-lib.

No sound card is needed: a card that does not exist shows whether alsa-lib found its
configuration (``Cannot get card index``) or not (``Unknown PCM``: PyPI's av wheels look under
their build prefix unless ``ALSA_CONFIG_DIR`` is set), and ALSA's ``null`` PCM captures silence
through the whole path. alsa-lib reads its configuration once per process, so the first case runs
in a fresh interpreter.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from firmware.daemon import Daemon
from hal.alsa import SYSTEM_ALSA_DIR, AlsaMicrophone, input_options, use_system_alsa_config
from hal.errors import ConfigError, HardwareError
from hal.system_clock import SystemClock
from hal.types import AudioChunk
from recorder.core import Recorder
from recorder.feedback import FeedbackController
from tests.unit.fakes import FakeClock, FakeEvidence, RecordingIndicator
from tests.unit.test_recorder_core import IDENTITY, make_profile

ROOT = Path(__file__).resolve().parents[2]
NO_CARD = "plughw:CARD=bwcnosuchcard,DEV=0"
needs_alsa_conf = pytest.mark.skipif(
    not (SYSTEM_ALSA_DIR / "alsa.conf").is_file(), reason="no /usr/share/alsa (libasound2-data)"
)


@needs_alsa_conf
def test_a_named_card_is_looked_up_with_the_system_alsa_configuration() -> None:
    code = (
        "from hal.alsa import AlsaMicrophone\n"
        "from hal.errors import HardwareError\n"
        "from hal.system_clock import SystemClock\n"
        f"mic = AlsaMicrophone({NO_CARD!r}, 48000, 1, SystemClock())\n"
        "try:\n    mic.start(lambda chunk: None)\n"
        "except HardwareError as exc:\n    print('HardwareError:', exc)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "ALSA_CONFIG_DIR"}
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert f"HardwareError: ALSA capture device {NO_CARD!r}" in result.stdout
    assert "ALSA_CONFIG_DIR=/usr/share/alsa" in result.stdout
    # alsa-lib's own words on stderr: it read the configuration and looked for the card...
    assert "Cannot get card index for bwcnosuchcard" in result.stderr
    # ...rather than failing to find its configuration and not knowing "plughw" at all.
    assert "Unknown PCM" not in result.stderr
    assert "Cannot access file" not in result.stderr


def test_alsa_config_dir_is_set_only_when_unset(tmp_path: Path) -> None:
    (tmp_path / "alsa.conf").write_text("")
    environ: dict[str, str] = {}
    assert use_system_alsa_config(environ, tmp_path) == str(tmp_path)
    assert environ == {"ALSA_CONFIG_DIR": str(tmp_path)}
    kept = {"ALSA_CONFIG_DIR": "/opt/alsa"}
    assert use_system_alsa_config(kept, tmp_path) == "/opt/alsa"
    assert use_system_alsa_config({}, tmp_path / "missing") is None


def test_the_demuxer_options() -> None:
    assert input_options(48_000, 1) == {"sample_rate": "48000", "ch_layout": "mono"}
    assert input_options(16_000, 2) == {"sample_rate": "16000", "ch_layout": "stereo"}


@pytest.mark.parametrize("device", ["hw:1,0", "plughw:1,0", "plughw:CARD=1,DEV=0"])
def test_card_numbers_are_refused(device: str) -> None:
    with pytest.raises(ConfigError, match=r"audio\.device .*card numbers change between boots"):
        AlsaMicrophone(device, 48_000, 1, SystemClock())


@needs_alsa_conf
def test_the_null_pcm_captures_mono_s16_at_the_asked_rate() -> None:
    chunks: list[AudioChunk] = []
    lock = threading.Lock()

    def sink(chunk: AudioChunk) -> None:
        with lock:
            chunks.append(chunk)

    mic = AlsaMicrophone("null", 16_000, 1, SystemClock())
    mic.start(sink)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with lock:
            if len(chunks) >= 3:
                break
        time.sleep(0.02)
    mic.stop()
    assert mic.error is None
    assert len(chunks) >= 3
    for c in chunks:
        assert (c.codec, c.sample_rate_hz, c.channels) == ("pcm_s16le", 16_000, 1)
        assert len(c.data) == 2 * round(c.duration_us * 16_000 / 1e6)


def test_a_microphone_that_cannot_open_is_a_sealed_fault_and_video_goes_on() -> None:
    clock = FakeClock()
    evidence = FakeEvidence()
    indicators = (RecordingIndicator(n) for n in ("led", "hap", "buz"))
    recorder = Recorder(clock, evidence, FeedbackController(*indicators), make_profile(), IDENTITY)
    recorder.start()
    daemon = Daemon(recorder)
    assert not daemon.start_microphone(AlsaMicrophone(NO_CARD, 48_000, 1, SystemClock()))
    daemon.drain()
    faults = [f for kind, f in evidence.entries if kind == "event" and f[0] == "fault"]
    assert len(faults) == 1
    fields = faults[0][1]
    assert (fields["component"], fields["code"]) == ("microphone", "open_failed")
    assert NO_CARD in str(fields["reason"])
    assert recorder.status()["hardware_faults"] == ["microphone/open_failed"]
    assert recorder.state.value == "buffering"


def test_hardware_error_is_what_start_raises_for_a_missing_card() -> None:
    with pytest.raises(HardwareError, match="bwcnosuchcard"):
        AlsaMicrophone(NO_CARD, 48_000, 1, SystemClock()).start(lambda _c: None)


def test_the_daemon_hears_the_faults_of_backends_that_report_them() -> None:
    clock = FakeClock()
    evidence = FakeEvidence()
    indicators = (RecordingIndicator(n) for n in ("led", "hap", "buz"))
    recorder = Recorder(clock, evidence, FeedbackController(*indicators), make_profile(), IDENTITY)
    daemon = Daemon(recorder)
    mic = AlsaMicrophone(NO_CARD, 48_000, 1, SystemClock())
    daemon.hear_faults(mic, None, object())
    assert mic.on_fault is not None
    mic.on_fault("microphone", "capture_stopped", "read error")
    daemon.drain()
    fault = next(f for kind, f in evidence.entries if kind == "event" and f[0] == "fault")
    assert fault[1] == {
        "component": "microphone",
        "reason": "read error",
        "code": "capture_stopped",
    }
