"""The pre-event buffer: the last ``pre_event_s`` seconds of encoded video, in RAM only.

Nothing held here reaches flash unless a recording starts and drains it. It must not write files,
log frame contents or keep audio when ``pre_event_audio`` is off.

Invariants, checked by the property tests:

* the buffer always starts on a keyframe (frames before the first keyframe are dropped at once);
* time bound: a whole GOP is dropped only when the rest still starts at a keyframe at least
  ``pre_event_s + lookback_s`` before the newest frame, so the pre-roll is never shorter than
  asked when that much history exists (picamera2's ``CircularOutput2`` may be up to one GOP
  short) and never longer than ``pre_event_s`` plus one GOP. ``lookback_s`` covers a press that
  is recognised after later frames arrived (a double press is known only at its second press,
  after debounce): the pre-roll counts back from the first press, not from the newest frame;
* byte bound: above ``max_bytes`` the oldest GOPs are dropped even if the time bound wanted them
  (recorded as ``byte_limited``); the one newest GOP is always kept, so a single GOP larger than
  the ceiling is the only way to exceed it.

``pre_event_s = 0`` means: keep only the current GOP, so a recording starts at the latest keyframe
at or before the press and the press frame itself is always in the recording.

Zeroisation: each frame's bytes are copied into a ``bytearray`` this buffer owns and overwritten
with zeros when the frame is dropped or drained. Python cannot guarantee that no other copy exists
(the encoder's ``bytes`` object, a drained copy handed to the segmenter, freed heap pages), so this
minimises copies rather than proving there are none.

Threading: single-threaded; the owner calls it from the recorder's loop.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import cast

from hal.types import AudioChunk, EncodedFrame


@dataclass(slots=True)
class _Slot:
    data: bytearray
    pts_us: int
    is_keyframe: bool
    frame_index: int


@dataclass(slots=True)
class _AudioSlot:
    data: bytearray
    chunk: AudioChunk  # carries the metadata; its own ``data`` is replaced by b"" on entry


@dataclass(slots=True)
class _Gop:
    frames: list[_Slot] = field(default_factory=list)
    nbytes: int = 0

    @property
    def start_pts_us(self) -> int:
        return self.frames[0].pts_us


@dataclass(frozen=True, slots=True)
class PreRoll:
    """What a drain hands to the recording: frames from a keyframe on, and audio if kept."""

    frames: list[EncodedFrame]
    audio: list[AudioChunk]
    captured_s: float
    """Seconds of video before the press actually captured (press - first frame's pts)."""
    byte_limited: bool
    """True if the byte ceiling dropped frames the time bound would have kept."""


_ZEROS = memoryview(bytes(256 * 1024))  # most frames fit: zeroise without allocating


def _zeroise(buf: bytearray) -> None:
    n = len(buf)
    buf[:] = _ZEROS[:n] if n <= len(_ZEROS) else bytes(n)


def zeroise_frame(frame: EncodedFrame) -> None:
    """Overwrite a frame's bytes if they are a buffer's own storage (from ``hand_over``)."""
    data: object = frame.data
    if isinstance(data, bytearray):
        _zeroise(data)


def detach_frame(frame: EncodedFrame) -> EncodedFrame:
    """The frame with immutable bytes of its own; a handed-over buffer's storage is zeroised.

    Needed before muxing: PyAV's ``Packet`` references the caller's memory rather than copying
    it, and the TS muxer may hold packets (to interleave audio) after ``mux`` returns.
    """
    data: object = frame.data
    if not isinstance(data, bytearray):
        return frame
    out = EncodedFrame(bytes(data), frame.pts_us, frame.is_keyframe, frame.frame_index)
    _zeroise(data)
    return out


class PreEventBuffer:
    """A RAM ring of whole GOPs bounded by time (``pre_event_s`` + one GOP) and by bytes."""

    def __init__(
        self,
        pre_event_s: float,
        keyframe_interval_s: float,
        max_bytes: int,
        *,
        keep_audio: bool = False,
        lookback_s: float = 0.0,
    ) -> None:
        if pre_event_s < 0 or keyframe_interval_s <= 0 or max_bytes <= 0 or lookback_s < 0:
            raise ValueError(
                "pre_event_s >= 0, keyframe_interval_s > 0, max_bytes > 0 and lookback_s >= 0"
            )
        self.pre_event_us = round(pre_event_s * 1_000_000)
        self.lookback_us = round(lookback_s * 1_000_000)
        self.keyframe_interval_us = round(keyframe_interval_s * 1_000_000)
        self.max_bytes = max_bytes
        self.keep_audio = keep_audio
        self._gops: deque[_Gop] = deque()
        self._audio: deque[_AudioSlot] = deque()
        self._nbytes = 0
        self._byte_limited = False
        self.dropped_frames = 0

    @staticmethod
    def max_bytes_for(bitrate_bps: int, pre_event_s: float, keyframe_interval_s: float) -> int:
        """The default byte ceiling: 1.5 x the bitrate over pre_event_s plus two GOPs."""
        return int(bitrate_bps / 8 * (pre_event_s + 2 * keyframe_interval_s) * 1.5)

    # -- feeding -----------------------------------------------------------------------------

    def push(self, frame: EncodedFrame) -> None:
        """Keep ``frame``; drop whole old GOPs that neither bound needs any more."""
        if frame.is_keyframe:
            self._gops.append(_Gop())
        elif not self._gops:
            self.dropped_frames += 1  # undecodable without its keyframe: never kept
            return
        slot = _Slot(bytearray(frame.data), frame.pts_us, frame.is_keyframe, frame.frame_index)
        gop = self._gops[-1]
        gop.frames.append(slot)
        gop.nbytes += len(slot.data)
        self._nbytes += len(slot.data)
        self._trim(frame.pts_us)

    def push_audio(self, chunk: AudioChunk) -> bool:
        """Keep ``chunk`` if pre-event audio is on; returns whether it was kept."""
        if not self.keep_audio or not self._gops:
            return False
        slot = _AudioSlot(bytearray(chunk.data), _strip(chunk))
        self._audio.append(slot)
        self._nbytes += len(slot.data)
        self._trim_audio()
        return True

    def _trim(self, newest_pts_us: int) -> None:
        keep_from_us = newest_pts_us - self.pre_event_us - self.lookback_us
        # Time bound: the second GOP still starts early enough, so the first is not needed.
        while len(self._gops) >= 2 and self._gops[1].start_pts_us <= keep_from_us:
            self._drop_oldest_gop()
        # Byte bound: drop more, but never the newest GOP (the one frames are appended to).
        while self._nbytes > self.max_bytes and len(self._gops) >= 2:
            self._drop_oldest_gop()
            self._byte_limited = True
        self._trim_audio()

    def _trim_audio(self) -> None:
        oldest_us = self._gops[0].start_pts_us if self._gops else None
        while self._audio and (
            oldest_us is None
            or self._audio[0].chunk.pts_us + self._audio[0].chunk.duration_us <= oldest_us
        ):
            slot = self._audio.popleft()
            self._nbytes -= len(slot.data)
            _zeroise(slot.data)

    def _drop_oldest_gop(self, *, count: bool = True) -> None:
        gop = self._gops.popleft()
        for slot in gop.frames:
            _zeroise(slot.data)
        self._nbytes -= gop.nbytes
        if count:
            self.dropped_frames += len(gop.frames)

    # -- reading -----------------------------------------------------------------------------

    @property
    def nbytes(self) -> int:
        return self._nbytes

    @property
    def frame_count(self) -> int:
        return sum(len(g.frames) for g in self._gops)

    @property
    def audio_count(self) -> int:
        return len(self._audio)

    @property
    def byte_limited(self) -> bool:
        return self._byte_limited

    def duration_s(self) -> float:
        """Seconds from the oldest kept keyframe to the newest frame."""
        if not self._gops:
            return 0.0
        return (self._gops[-1].frames[-1].pts_us - self._gops[0].start_pts_us) / 1e6

    def keyframe_pts(self) -> list[int]:
        return [g.start_pts_us for g in self._gops]

    def drain(self, press_pts_us: int) -> PreRoll:
        """Hand over everything from the latest keyframe at or before ``press - pre_event_s``
        (or the oldest keyframe when there is not that much history), then empty the buffer."""
        return self._take(press_pts_us, move=False)

    def hand_over(self, press_pts_us: int) -> PreRoll:
        """``drain`` without copying the video: the frames carry this buffer's own storage
        (a ``bytearray`` where ``EncodedFrame`` says bytes), which the caller now owns and must
        pass to ``detach_frame`` before use (or ``zeroise_frame`` if unused). The press then
        does not pay for copying and zeroising 30 s of 1080p (~37 MB, ~50 ms) at once."""
        return self._take(press_pts_us, move=True)

    def _take(self, press_pts_us: int, *, move: bool) -> PreRoll:
        target_us = press_pts_us - self.pre_event_us
        start = 0
        for i, gop in enumerate(self._gops):
            if gop.start_pts_us <= target_us:
                start = i
        for _ in range(start):
            self._drop_oldest_gop()
        frames = [
            EncodedFrame(
                cast(bytes, s.data) if move else bytes(s.data),
                s.pts_us,
                s.is_keyframe,
                s.frame_index,
            )
            for g in self._gops
            for s in g.frames
        ]
        if move:
            self._gops.clear()  # handed over: the caller zeroises them
        first_us = frames[0].pts_us if frames else press_pts_us
        audio = [
            _with_data(a.chunk, bytes(a.data)) for a in self._audio if a.chunk.pts_us >= first_us
        ]
        result = PreRoll(
            frames=frames,
            audio=audio,
            captured_s=max(0, press_pts_us - first_us) / 1e6,
            byte_limited=self._byte_limited,
        )
        self.clear()
        return result

    def drain_from(self, press_pts_us: int) -> list[EncodedFrame]:
        """The frames of ``drain``; any kept audio is zeroised and discarded."""
        return self.drain(press_pts_us).frames

    def clear(self) -> None:
        """Zeroise and forget everything (also resets ``byte_limited``)."""
        while self._gops:
            self._drop_oldest_gop(count=False)
        while self._audio:
            slot = self._audio.popleft()
            _zeroise(slot.data)
        self._nbytes = 0
        self._byte_limited = False


def _strip(chunk: AudioChunk) -> AudioChunk:
    return _with_data(chunk, b"")


def _with_data(chunk: AudioChunk, data: bytes) -> AudioChunk:
    return AudioChunk(
        data, chunk.pts_us, chunk.duration_us, chunk.codec, chunk.sample_rate_hz, chunk.channels
    )
