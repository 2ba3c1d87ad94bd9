"""The protocols the recorder and the firmware see. One backend per technology implements each.

Threading: every callback documented here may run on a backend's own thread (the encoder
thread of picamera2, gpiozero's pin-event thread, an ALSA capture thread). Callbacks must not
block: they hand the value to a queue and return. Simulated backends call them on the thread
that advances the virtual clock, which is the same thread that drains the queue, so simulated
runs are deterministic.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from hal.types import AudioChunk, BatteryStatus, ClockSource, EncodedFrame, GnssFix, Pattern

FrameSink = Callable[[EncodedFrame], None]
"""Receives each encoded frame; called on the encoder's thread; must not block."""

AudioSink = Callable[[AudioChunk], None]
"""Receives each audio chunk; called on the capture thread; must not block."""

FaultSink = Callable[[str, str, str], None]
"""Receives ``(source, code, detail)`` when a backend hits a fault it contains (an overlay that
raised, a microphone that could not open) so the unit can seal it as signed evidence and show it.
Called on the backend's thread; must not block. ``code`` is a stable identifier, ``detail`` prose.
"""

EdgeSink = Callable[[str, bool, int], None]
"""Receives ``(input_name, active, t_us)`` for every debounced edge of a button or trigger line.

``t_us`` is the time of the edge itself on the injected ``Clock``: the pin factory's tick of the
edge (the kernel's event timestamp on lgpio), not the moment the callback ran, which is later by
the debounce period and thread scheduling. Gesture timing works the same on simulated time.
Called on the GPIO event thread; must not block.
"""


@runtime_checkable
class Clock(Protocol):
    """Monotonic (boot-time) and UTC time. Logic reads time only through this."""

    def monotonic_us(self) -> int:
        """Microseconds since an arbitrary point of this boot; never goes backwards."""
        ...

    def utc_us(self) -> int:
        """Best estimate of UTC, microseconds since the epoch. May step (see ``set_utc``)."""
        ...

    @property
    def source(self) -> ClockSource: ...

    def set_utc(self, utc_us: int, source: ClockSource) -> None:
        """Step UTC to a better source (GNSS, NTP). The caller records the step as evidence."""
        ...


@runtime_checkable
class ReportsFaults(Protocol):
    """A backend that contains some failures itself and reports them (``FaultSink``). The
    composition root sets ``on_fault`` before starting it; None: logged only."""

    on_fault: FaultSink | None


@runtime_checkable
class Camera(Protocol):
    """A source of encoded H.264 frames."""

    @property
    def width(self) -> int: ...

    @property
    def height(self) -> int: ...

    @property
    def fps(self) -> float: ...

    def start(self, sink: FrameSink) -> None:
        """Start capture and encoding; ``sink`` receives every frame on the encoder thread."""
        ...

    def stop(self) -> None:
        """Stop capture; no frame is delivered after this returns."""
        ...


@runtime_checkable
class Microphone(Protocol):
    """A source of audio chunks on the same monotonic clock as the camera."""

    def start(self, sink: AudioSink) -> None: ...

    def stop(self) -> None: ...


@runtime_checkable
class Button(Protocol):
    """A momentary input (the ``event`` and ``function`` buttons, an auto-activation line).

    Backends report raw debounced edges only; gestures (double-press, 3 s hold) are recognised
    by the recorder from edge timestamps, so they work the same on simulated time.
    """

    @property
    def name(self) -> str: ...

    @property
    def is_active(self) -> bool: ...

    def on_edge(self, sink: EdgeSink) -> None:
        """Register the one sink for this input's edges (replacing any earlier one)."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class Indicator(Protocol):
    """An LED, haptic motor or buzzer that plays ``Pattern`` values."""

    @property
    def name(self) -> str: ...

    def play(self, pattern: Pattern) -> None:
        """Start ``pattern`` (replacing the current one) and return at once."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class Gnss(Protocol):
    """A GNSS receiver. ``poll`` never blocks: it returns the fixes completed since last call."""

    def poll(self) -> list[GnssFix]: ...

    @property
    def bad_sentences(self) -> int:
        """Sentences ignored because they were malformed, truncated or failed their checksum."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class Battery(Protocol):
    def status(self) -> BatteryStatus: ...


@runtime_checkable
class DeviceKey(Protocol):
    """The unit's Ed25519 signing identity. The private half never leaves the backend."""

    def public_key_raw(self) -> bytes:
        """The 32-byte raw Ed25519 public key."""
        ...

    def sign(self, data: bytes) -> bytes:
        """A 64-byte Ed25519 signature over ``data``."""
        ...


@runtime_checkable
class Power(Protocol):
    """The unit's power: orderly shutdown, and a reboot that can request the one-shot try-boot."""

    def shutdown(self) -> None: ...

    def reboot(self, *, tryboot: bool = False) -> None: ...


@runtime_checkable
class Dock(Protocol):
    """The charging/offload dock: whether the unit sits in it and the network link is up."""

    def docked(self) -> bool: ...

    def link_up(self) -> bool: ...
