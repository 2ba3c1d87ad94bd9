"""The recorder daemon's hand-off: backend callbacks enqueue, one loop thread drains.

Backend callbacks (encoder thread, GPIO thread, capture thread) only put a tuple on a
``SimpleQueue`` and return, so they never block the hardware. ``drain`` runs on the daemon's
own thread and is the only caller of the recorder, which is therefore single-threaded. On the
simulator the virtual clock calls ``drain`` after each scheduled callback, so the same path runs
deterministically on simulated time.
"""

from __future__ import annotations

import queue
from typing import Any

from hal.errors import HardwareError
from hal.protocols import Microphone, ReportsFaults
from hal.types import AudioChunk, EncodedFrame
from recorder.core import Recorder


class Daemon:
    """Queue between the backends' threads and the single-threaded ``Recorder``."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self._queue: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self.frames_in = 0

    # -- sinks handed to the backends (any thread, never block) --------------------------------

    def frame_sink(self, frame: EncodedFrame) -> None:
        self._queue.put(("frame", frame))

    def audio_sink(self, chunk: AudioChunk) -> None:
        self._queue.put(("audio", chunk))

    def edge_sink(self, name: str, active: bool, t_us: int) -> None:
        self._queue.put(("edge", (name, active, t_us)))

    def fault_sink(self, source: str, code: str, detail: str) -> None:
        self._queue.put(("fault", (source, code, detail)))

    def hear_faults(self, *backends: object) -> None:
        """Route the faults of every backend that reports its own (``ReportsFaults``) here, to
        be sealed on the daemon's thread. Call before starting them."""
        for backend in backends:
            if isinstance(backend, ReportsFaults):
                backend.on_fault = self.fault_sink

    def start_microphone(self, microphone: Microphone) -> bool:
        """Start ``microphone`` into this daemon. One that cannot open is a sealed ``fault``
        (and shows in the recorder's status), never a silent video-only run; the video goes on
        either way. Returns whether it started."""
        try:
            microphone.start(self.audio_sink)
        except HardwareError as exc:
            self.fault_sink("microphone", "open_failed", str(exc))
            return False
        return True

    # -- the daemon thread ---------------------------------------------------------------------

    def drain(self) -> int:
        """Hand everything queued to the recorder, in arrival order; returns how many items."""
        handled = 0
        while True:
            try:
                kind, item = self._queue.get_nowait()
            except queue.Empty:
                return handled
            self._dispatch(kind, item)
            handled += 1

    def wait_and_drain(self, timeout_s: float) -> int:
        """Block up to ``timeout_s`` for the first item (real-time loop), then drain the rest."""
        try:
            kind, item = self._queue.get(timeout=timeout_s)
        except queue.Empty:
            return 0
        self._dispatch(kind, item)
        return 1 + self.drain()

    def _dispatch(self, kind: str, item: Any) -> None:
        if kind == "frame":
            self.frames_in += 1
            self.recorder.handle_frame(item)
        elif kind == "audio":
            self.recorder.handle_audio(item)
        elif kind == "fault":
            self.recorder.record_fault(*item)
        else:
            self.recorder.handle_edge(*item)
