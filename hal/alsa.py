"""The ALSA microphone: PyAV (FFmpeg's ``alsa`` input) capturing raw PCM on its own thread.

This is picamera2's own audio path (its encoders open the capture device with ``av.open`` and
decode frames on an audio thread), minus its fixed ``audio_sync`` fudge: here every chunk is
stamped on the unit's monotonic ``Clock`` by counting samples from an anchor. It delivers raw
``pcm_s16le`` chunks; the recorder's segmenter encodes them. Only this module opens an ALSA
device, and only when ``start`` is called: importing it touches no hardware.

PyPI's av wheels carry their own alsa-lib, which looks for its configuration under the wheel's
build-time prefix: without ``ALSA_CONFIG_DIR`` every named PCM (``default``, ``plughw:...``) is an
"Unknown PCM". ``start`` points it at the system's ``/usr/share/alsa`` when the variable is unset,
before the first ``av.open`` of the process (alsa-lib reads its configuration once). Card numbers
change between boots, so devices are named by card id: ``plughw:CARD=<id>,DEV=0`` (``plughw``
also converts formats: I2S MEMS microphones often offer only S32 stereo).

Timestamps: ALSA hands over a period once its last sample is captured, so the first period's
first sample is at ``now - duration``. Later chunks continue by sample count (no jitter from
thread scheduling). If the count and the clock disagree by more than ``resync_us`` (an overrun
dropped samples, or the device's clock drifts from the unit's) the anchor is reset to the clock,
and ``resyncs`` counts it.

Threading: ``start`` and ``stop`` run on the caller's thread; the sink is called on the capture
thread and must not block (``firmware.daemon.Daemon.audio_sink`` only enqueues).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import av
import numpy as np

from hal.errors import ConfigError, HardwareError
from hal.protocols import AudioSink, Clock, FaultSink
from hal.types import AudioChunk

log = logging.getLogger(__name__)

CODEC = "pcm_s16le"
_LAYOUTS = {1: "mono", 2: "stereo"}
PROC_PCM = Path("/proc/asound/pcm")
SYSTEM_ALSA_DIR = Path("/usr/share/alsa")
_CARD_NUMBER = re.compile(r"^(plug)?hw:\d+(,\d+)?$|CARD=\d+")


def use_system_alsa_config(
    environ: MutableMapping[str, str], alsa_dir: Path = SYSTEM_ALSA_DIR
) -> str | None:
    """Set ``ALSA_CONFIG_DIR`` to the system's ALSA configuration if it is unset and that
    directory holds ``alsa.conf``; returns the value in force (None: left to alsa-lib)."""
    if "ALSA_CONFIG_DIR" not in environ and (alsa_dir / "alsa.conf").is_file():
        environ["ALSA_CONFIG_DIR"] = str(alsa_dir)
    return environ.get("ALSA_CONFIG_DIR")


def input_options(sample_rate_hz: int, channels: int) -> dict[str, str]:
    """FFmpeg's ``alsa`` demuxer options: ``ch_layout`` is the FFmpeg >= 5.1 name (the old
    ``channels`` gives a layout-less stream)."""
    return {"sample_rate": str(sample_rate_hz), "ch_layout": _LAYOUTS[channels]}


def capture_devices(proc_pcm: Path = PROC_PCM) -> list[str]:
    """ALSA ``hw:C,D`` names of every PCM with a capture side, from ``/proc/asound/pcm``."""
    try:
        lines = proc_pcm.read_text().splitlines()
    except OSError:
        return []
    found: list[str] = []
    for line in lines:
        ident, _, rest = line.partition(":")
        card, _, dev = ident.strip().partition("-")
        if "capture" in rest and card.isdigit() and dev.isdigit():
            found.append(f"hw:{int(card)},{int(dev)}")
    return found


class AlsaMicrophone:
    """A ``Microphone`` on an ALSA capture device (``"plughw:CARD=<id>,DEV=0"``, ``"default"``).

    A device named by card number (``hw:1,0``) is refused unless ``allow_card_numbers``: the
    number changes with USB and HDMI enumeration between boots. ``on_fault`` hears a capture
    thread that stopped (``capture_stopped``), so the unit can seal it; video goes on.
    """

    def __init__(
        self,
        device: str,
        sample_rate_hz: int,
        channels: int,
        clock: Clock,
        *,
        resync_us: int = 50_000,
        on_fault: FaultSink | None = None,
        allow_card_numbers: bool = False,
    ) -> None:
        if channels not in _LAYOUTS:
            raise HardwareError(f"ALSA microphone: channels must be 1 or 2 (got {channels})")
        if _CARD_NUMBER.search(device) and not allow_card_numbers:
            raise ConfigError(
                f"audio.device {device!r}: card numbers change between boots; name the card, "
                "e.g. plughw:CARD=<id>,DEV=0 (ids in /proc/asound/cards)"
            )
        self.on_fault = on_fault
        self.device = device
        self.sample_rate_hz = sample_rate_hz
        self.channels = channels
        self._clock = clock
        self._resync_us = resync_us
        self._container: Any = None
        self._thread: threading.Thread | None = None
        self._running = threading.Event()
        # The sink is read by the capture thread and cleared by stop(); a lock keeps "nothing is
        # delivered after stop() returns" true even if a chunk is being handed over right then.
        self._sink_lock = threading.Lock()
        self._sink: AudioSink | None = None
        self.chunks_delivered = 0
        self.resyncs = 0
        self.error: BaseException | None = None

    def start(self, sink: AudioSink) -> None:
        if self._thread is not None:
            raise RuntimeError("microphone already started")
        config_dir = use_system_alsa_config(os.environ)
        try:
            self._container = av.open(
                self.device,
                format="alsa",
                options=input_options(self.sample_rate_hz, self.channels),
            )
        except (OSError, av.error.FFmpegError) as exc:
            raise HardwareError(
                f"ALSA capture device {self.device!r}: {exc} (ALSA_CONFIG_DIR={config_dir})"
            ) from exc
        with self._sink_lock:
            self._sink = sink
        self._running.set()
        self._thread = threading.Thread(target=self._capture, name="alsa-capture", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop capture; no chunk is delivered after this returns."""
        self._running.clear()
        with self._sink_lock:
            self._sink = None
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=2.0)  # a read returns within one ALSA period
        if self._container is not None:
            self._container.close()
            self._container = None

    # -- the capture thread --------------------------------------------------------------------

    def _capture(self) -> None:
        resampler = av.AudioResampler(
            format="s16", layout=_LAYOUTS[self.channels], rate=self.sample_rate_hz
        )
        anchor_us: int | None = None
        samples = 0
        try:
            for frame in self._container.decode(audio=0):
                if not self._running.is_set():
                    break
                for out in resampler.resample(frame):
                    pcm = out.to_ndarray().astype("<i2", copy=False)
                    count = out.samples
                    now_us = self._clock.monotonic_us()
                    duration_us = count * 1_000_000 // self.sample_rate_hz
                    expected_end_us = (
                        None
                        if anchor_us is None
                        else anchor_us + (samples + count) * 1_000_000 // self.sample_rate_hz
                    )
                    if expected_end_us is None or abs(now_us - expected_end_us) > self._resync_us:
                        if expected_end_us is not None:
                            self.resyncs += 1
                        anchor_us, samples = now_us - duration_us, 0
                    assert anchor_us is not None
                    pts_us = anchor_us + samples * 1_000_000 // self.sample_rate_hz
                    samples += count
                    self._deliver(
                        AudioChunk(
                            np.ascontiguousarray(pcm).tobytes(),
                            pts_us,
                            duration_us,
                            CODEC,
                            self.sample_rate_hz,
                            self.channels,
                        )
                    )
        except (OSError, av.error.FFmpegError) as exc:
            # A capture thread has no caller to raise to: keep the error for the supervisor
            # (health/status) and end; the recorder keeps recording video.
            self.error = exc
            log.error("ALSA capture on %s stopped: %s", self.device, exc)
            if self.on_fault is not None:
                self.on_fault("microphone", "capture_stopped", f"{self.device}: {exc}")

    def _deliver(self, chunk: AudioChunk) -> None:
        with self._sink_lock:
            sink = self._sink
            if sink is None:
                return
            sink(chunk)
        self.chunks_delivered += 1
