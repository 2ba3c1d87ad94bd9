"""The recorder: turns frames, button edges and time into sealed units and signed events.

Driven synchronously by its owner (the composition root in ``firmware``): every handler runs on
one thread, to completion, in the order the owner calls them, so the recorder is deterministic.
On a real unit backend callbacks queue values and a loop drains them into these handlers; on the
simulator the virtual clock's scheduler does. The recorder never reads the wall clock (time comes
from the injected ``Clock`` and from frame/edge timestamps), never touches files (the
``EvidenceSink`` does), and never imports a concrete backend.

Decisions worth knowing (also in docs/feedback.md and the README):

* The press time of a double press is its FIRST press; the pre-roll counts back from it.
* A ``function`` press adds a marker only while recording; while buffering it does nothing
  (there is no recording to attach it to) and writes no event.
* A ``function`` hold toggles stealth only when ``recorder.stealth_allowed``; otherwise the wearer
  feels the short ``haptic:refused`` pattern and no event is written.
* Below ``recorder.critical_battery_pct`` a recording is stopped (trigger ``low_battery``) and new
  ones are refused until the level rises above it again.
* After ``StorageFullError`` the recording is stopped with events that may use the reserve; the
  unit stays in FAULT (still buffering in RAM) until the sink reports room for ``_RESUME_S``
  seconds of video again.
* Audio (docs/audio.md): raw chunks from the microphone are muxed (as AAC) into the same TS
  and the same sealed units as the video; ``UnitMeta.audio`` says whether a unit carries any.
  A recording has an audio track when the microphone has delivered audio since boot. With
  ``recorder.pre_event_audio`` false the buffer holds no audio and the recording's audio starts
  when the recording starts (the gesture's completion, never before the press); with it true
  the pre-roll carries the buffered audio from the pre-roll's first video frame.
* Mute: where ``recorder.mute_allowed``, a double press of ``function`` while recording toggles
  mute (signed ``mute`` event ``{on, recording}``; ``haptic:muted`` / ``haptic:unmuted``).
  While muted the audio track carries silence, so it stays continuous and in sync. A recording
  always starts unmuted, and its stop ends any mute. Stealth does not mute. Not allowed, or not
  recording: ``haptic:refused`` and no event.
"""

from __future__ import annotations

import logging
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from evidence.sealing import EvidenceSink, JsonValue, RecordError, UnitMeta
from hal.errors import StorageFullError
from hal.protocols import Battery, Clock, Gnss
from hal.types import AudioChunk, ClockSource, EncodedFrame, GnssFix
from recorder.config import Profile
from recorder.feedback import Feedback, FeedbackController
from recorder.gestures import Gesture, GestureRecogniser
from recorder.pre_event_buffer import PreEventBuffer, detach_frame, zeroise_frame
from recorder.segmenter import PCM_CODEC, AudioTrack, Segmenter, TsUnit
from recorder.state_machine import (
    Booted,
    Event,
    Faulted,
    PowerOff,
    Recovered,
    StartRequested,
    State,
    Stopped,
    StopRequested,
    transition,
)

log = logging.getLogger(__name__)

_CLOCK_STEP_THRESHOLD_US = 1_000_000
_GNSS_FRESH_US = 10_000_000  # a fix older than this is not attached to a unit
_SPACE_CHECK_US = 1_000_000
_RESUME_S = 10.0
_START_ROOM_S = 2.0  # a press needs room for its pre-roll and about two more seconds
_BATTERY_CHECK_US = 1_000_000
_GESTURE_SLACK_S = 0.25  # the owner's tick interval and queue latency, with margin
# Pre-roll units sealed per frame or tick after a press. The press itself only seals
# record_start (so the officer gets feedback at once); the pre-roll, still in RAM, is then sealed
# this many units per step, before any live frame. A power cut in that window loses the unsealed
# part of the pre-roll, so the window must be short: at 8 units per step a 30 s buffer is sealed
# within 4 frames (~0.13 s of camera time at 30 fps), a 120 s buffer within 15 frames.
_BACKLOG_UNITS_PER_CALL = 8


def _new_id() -> str:
    return uuid.uuid4().hex


class _Recording:
    """What the recorder tracks about the recording in progress."""

    def __init__(self, rec_id: str, trigger: str, press_mono_us: int, press_utc_us: int) -> None:
        self.id = rec_id
        self.trigger = trigger
        self.press_mono_us = press_mono_us
        self.press_utc_us = press_utc_us
        self.started = False  # record_start written (waits for a keyframe if none is buffered)
        self.units = 0
        self.last_index: int | None = None  # last frame index given to the segmenter
        self.last_pts_us = 0  # and its capture time
        # Pre-roll frames drained at the press and not muxed yet, then the live frames that
        # arrived meanwhile (in camera order): see ``Recorder._work_backlog``.
        self.backlog: deque[EncodedFrame] = deque()
        self.last_sealed_frame: int | None = None
        self.end_pts_us: int | None = None
        self.next_reminder_us = 0
        self.gnss_last_attached_us: int | None = None
        self.frames_awaiting_keyframe = 0
        self.pre_event_captured_s: float | None = None  # set with record_start
        self.markers = 0


class Recorder:
    """The unit's recorder. See the module docstring for threading and decisions."""

    def __init__(
        self,
        clock: Clock,
        evidence: EvidenceSink,
        feedback: FeedbackController,
        profile: Profile,
        identity: Mapping[str, Any],
        gnss: Gnss | None = None,
        battery: Battery | None = None,
        *,
        id_factory: Callable[[], str] = _new_id,
    ) -> None:
        self._clock = clock
        self._evidence = evidence
        self._feedback = feedback
        self._profile = profile
        self._rc = profile.recorder
        self._identity = dict(identity)
        self._gnss = gnss
        self._battery = battery
        self._new_id = id_factory
        cam = profile.camera
        # A start is known only after its gesture completes (second press + debounce + the
        # loop's next tick), while frames keep trimming the buffer; keep that much extra history
        # so the pre-roll, counted back from the first press, is never short.
        lookback_s = (
            self._rc.double_press_window_s + profile.gpio.bounce_ms / 1000 + _GESTURE_SLACK_S
        )
        self._buffer = PreEventBuffer(
            self._rc.pre_event_s,
            cam.keyframe_interval_s,
            PreEventBuffer.max_bytes_for(
                cam.bitrate_bps, self._rc.pre_event_s + lookback_s, cam.keyframe_interval_s
            ),
            keep_audio=self._rc.pre_event_audio,
            lookback_s=lookback_s,
        )
        self._gestures = GestureRecogniser(
            self._rc.double_press_window_s,
            self._rc.hold_s,
            profile.gpio.bounce_ms,
            # Function's double press is the mute gesture only where mute is allowed; elsewhere
            # a function press stays immediate (a marker), as it was.
            double_buttons=("event", "function") if self._rc.mute_allowed else ("event",),
        )
        self._state = State.BOOTING
        self._rec: _Recording | None = None
        self._segmenter: Segmenter | None = None
        self._last_frame_index: int | None = None
        self._latest_fix: GnssFix | None = None
        self._battery_status: dict[str, JsonValue] | None = None
        self._low_battery_reported = False
        self._critical = False
        self._next_battery_check_us = 0
        self._next_space_check_us = 0
        self._storage_blocked = False
        self._ignored_transitions = 0
        self._audio_track: AudioTrack | None = None  # set by the first chunk the mic delivers
        self._muted = False
        self.audio_chunks_dropped = 0
        self.events_lost = 0
        self.recordings: list[str] = []
        self.hardware_faults: dict[str, str] = {}
        """The latest detail of every hardware fault seen this run, by ``source/code``."""

    # -- public surface ------------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def stealth(self) -> bool:
        return self._feedback.stealth

    @property
    def recording_id(self) -> str | None:
        return self._rec.id if self._rec else None

    def start(self) -> None:
        """BOOTING -> BUFFERING; writes the ``buffering`` event."""
        if self._fire(Booted(self._clock.monotonic_us())):
            self._event(
                "buffering",
                {"pre_event_s": self._rc.pre_event_s, "pre_event_audio": self._rc.pre_event_audio},
            )
            self._feedback.show(Feedback.BUFFERING)

    def handle_frame(self, frame: EncodedFrame) -> None:
        last = self._last_frame_index
        self._last_frame_index = frame.frame_index
        if self._state is State.RECORDING and self._rec is not None:
            self._record_frame(frame)
            return
        if last is not None and frame.frame_index != last + 1:
            log.info("camera frame gap while buffering: %s -> %s", last, frame.frame_index)
        if self._state in (State.BUFFERING, State.FAULT):
            self._buffer.push(frame)

    def handle_audio(self, chunk: AudioChunk) -> None:
        if chunk.codec != PCM_CODEC:
            self.audio_chunks_dropped += 1  # backends deliver raw s16le (docs/audio.md)
            return
        if self._audio_track is None:
            self._audio_track = AudioTrack(
                chunk.sample_rate_hz, chunk.channels, self._profile.audio.bitrate_bps
            )
        if self._state in (State.BUFFERING, State.FAULT):
            self._buffer.push_audio(chunk)  # a no-op unless pre_event_audio
            return
        rec, seg = self._rec, self._segmenter
        if self._state is not State.RECORDING or rec is None or seg is None:
            return
        if not self._rc.pre_event_audio and chunk.pts_us < rec.press_mono_us:
            return  # the policy: no sound from before the press
        if self._muted:
            chunk = replace(chunk, data=bytes(len(chunk.data)))  # silence keeps the track in sync
        seg.push_audio(chunk)

    def handle_edge(self, name: str, active: bool, t_us: int) -> None:
        for gesture in self._gestures.feed(name, active, t_us):
            self._on_gesture(gesture)

    def tick(self, now_us: int) -> None:
        """Timers: gesture holds and windows, reminders, GNSS, battery and free space."""
        # Backlog first: the tick that completes a press then returns right after record_start.
        if self._state is State.RECORDING and self._rec is not None and self._rec.backlog:
            self._work_backlog(_BACKLOG_UNITS_PER_CALL)
        for gesture in self._gestures.tick(now_us):
            self._on_gesture(gesture)
        rec = self._rec
        if (
            self._state is State.RECORDING
            and rec is not None
            and self._rc.reminder_interval_s > 0
            and now_us >= rec.next_reminder_us
        ):
            self._feedback.show(Feedback.REMINDER)
            rec.next_reminder_us = now_us + round(self._rc.reminder_interval_s * 1e6)
        self._poll_gnss(now_us)
        self._poll_battery(now_us)
        if self._state is State.FAULT and self._storage_blocked:
            self._check_space(now_us)

    def shutdown(self, reason: str) -> None:
        """Stop any recording cleanly, write ``shutdown`` and go OFF."""
        if self._state is State.OFF:
            return
        if self._state is State.RECORDING:
            self._stop("shutdown")
        self._fire(PowerOff(self._clock.monotonic_us(), reason))
        try:
            self._event("shutdown", {"reason": reason})
        finally:
            self._state = State.OFF
            self._buffer.clear()
            self._feedback.close()

    def record_fault(self, source: str, code: str, detail: str) -> None:
        """Seal a ``fault`` event {component, reason, code} (a backend contained a failure: a
        microphone that did not open, an overlay that raised) and keep it in ``status()``. The
        recording goes on."""
        self.hardware_faults[f"{source}/{code}"] = detail
        self._event("fault", {"component": source, "reason": detail, "code": code})

    def indicate(self, feedback: Feedback) -> None:
        """Show unit-level feedback that is not the recorder's own (the dock's offload state)."""
        self._feedback.show(feedback)

    @property
    def feedback_shown(self) -> Sequence[Feedback]:
        """Every feedback shown since boot, in order, stealth or not (the officer's view reads
        the new ones after each step; callers must not change it)."""
        return self._feedback.history

    def status(self) -> dict[str, JsonValue]:
        """A snapshot for status displays. ``buffer_s`` is the RAM pre-event buffer, which is
        handed to a recording when it starts and refills after it stops; while recording,
        ``recording_since_mono_us`` (the press) and ``pre_event_captured_s`` describe the
        recording. ``holding`` is each button held now, in seconds, towards ``hold_s``."""
        fix = self._latest_fix
        rec = self._rec
        now_us = self._clock.monotonic_us()
        return {
            "state": self._state.value,
            "buffer_s": round(self._buffer.duration_s(), 3),
            "buffer_bytes": self._buffer.nbytes,
            "buffer_audio_chunks": self._buffer.audio_count,
            "pre_event_s": self._rc.pre_event_s,
            "recording": rec.id if rec else None,
            "recording_since_mono_us": rec.press_mono_us if rec else None,
            "recording_started": bool(rec and rec.started),
            "pre_event_captured_s": rec.pre_event_captured_s if rec else None,
            "markers": rec.markers if rec else 0,
            "holding": dict(self._gestures.holding(now_us)),
            "hold_s": self._rc.hold_s,
            "gnss": _fix_json(fix, now_us) if fix else None,
            "battery": self._battery_status,
            "stealth": self._feedback.stealth,
            "muted": self._muted,
            "storage_blocked": self._storage_blocked,
            "clock_source": self._clock.source.value,
            "hardware_faults": sorted(self.hardware_faults),
        }

    # -- gestures ------------------------------------------------------------------------------

    def _on_gesture(self, g: Gesture) -> None:
        log.debug("gesture %s %s at %s", g.kind, g.button, g.t_us)
        if (g.kind, g.button) == ("double_press", "event") or g.kind == "trigger":
            trigger = "double_press" if g.kind == "double_press" else "trigger"
            self._request_start(trigger, g.t_us)
        elif (g.kind, g.button) == ("hold", "event"):
            if self._state is State.RECORDING:
                self._stop("hold")
        elif (g.kind, g.button) == ("press", "function"):
            if self._state is State.RECORDING:
                self._marker(g.t_us)
        elif (g.kind, g.button) == ("hold", "function"):
            self._toggle_stealth()
        elif (g.kind, g.button) == ("double_press", "function"):
            self._toggle_mute(g.t_us)

    def _request_start(self, trigger: str, press_mono_us: int) -> None:
        if self._state is State.RECORDING:
            return
        if self._state is State.FAULT and self._storage_blocked:
            self._check_space(self._clock.monotonic_us(), force=True)
        if self._state is not State.BUFFERING or self._critical:
            self._feedback.show(Feedback.REFUSED)
            log.warning("recording refused in state %s (critical=%s)", self._state, self._critical)
            return
        now_mono = self._clock.monotonic_us()
        if self._evidence.free_bytes() < self._room_to_start():
            # No room for the pre-roll and a couple of live units: refuse before record_start,
            # so the officer is never told "recording" by a start the store would end at once.
            self._refuse_for_space(now_mono)
            return
        press_utc_us = self._clock.utc_us() - (now_mono - press_mono_us)
        if not self._fire(StartRequested(now_mono, trigger)):
            return
        rec = _Recording(self._new_id(), trigger, press_mono_us, press_utc_us)
        rec.next_reminder_us = now_mono + round(self._rc.reminder_interval_s * 1e6)
        self._rec = rec
        self.recordings.append(rec.id)
        cam = self._profile.camera
        self._muted = False
        self._segmenter = Segmenter(
            cam.width, cam.height, self._rc.unit_s, self._rc.segment_s, self._audio_track
        )
        preroll = self._buffer.hand_over(press_mono_us)  # no copy yet: see _work_backlog
        for chunk in preroll.audio:  # empty unless pre_event_audio; from the first frame on
            self._segmenter.push_audio(chunk)
        if not preroll.frames:
            log.warning("no keyframe buffered yet; recording starts at the next keyframe")
            return
        if not self._write_record_start(rec, preroll.frames[0], preroll.byte_limited):
            for frame in preroll.frames:
                zeroise_frame(frame)
            return
        # The press returns as soon as record_start is sealed: sealing a 30 s pre-roll at once
        # would hold the loop for about a second at 1080p. The pre-roll is muxed and sealed a
        # unit at a time on the following frames and ticks, before any live frame, so the chain
        # holds exactly the units (and order) it would have held; a stop seals the rest first.
        rec.backlog.extend(preroll.frames)

    def _write_record_start(self, rec: _Recording, first: EncodedFrame, byte_limited: bool) -> bool:
        captured_s = max(0, rec.press_mono_us - first.pts_us) / 1e6
        rec.pre_event_captured_s = round(captured_s, 3)
        fields: dict[str, JsonValue] = {
            "recording": rec.id,
            "trigger": rec.trigger,
            "press_mono_us": rec.press_mono_us,
            "press_utc_us": rec.press_utc_us,
            "pre_event_s": self._rc.pre_event_s,
            "pre_event_captured_s": round(captured_s, 6),
            "pre_event_byte_limited": byte_limited,
            "first_frame": first.frame_index,
            "pre_event_audio": self._rc.pre_event_audio,
            "officer_id": self._identity.get("officer_id"),
            "profile_digest": self._profile.digest(),
        }
        try:
            # The only event that may not use the reserve: units that would follow cannot.
            self._event("record_start", fields, reserve_ok=False, strict=True)
        except StorageFullError:
            self._abort("storage_full", record_started=False)
            return False
        except OSError as exc:
            log.error("record_start of %s not written: %s", rec.id, exc)
            self._abort("storage_error", record_started=False)
            return False
        rec.started = True
        self._feedback.show(Feedback.RECORDING_START)
        return True

    # -- recording -----------------------------------------------------------------------------

    def _record_frame(self, frame: EncodedFrame) -> None:
        rec = self._rec
        assert rec is not None
        if not rec.started:
            if not frame.is_keyframe:
                rec.frames_awaiting_keyframe += 1
                return
            if not self._write_record_start(rec, frame, False):
                return
        if rec.backlog:
            rec.backlog.append(frame)  # after the pre-roll still waiting, in camera order
            self._work_backlog(_BACKLOG_UNITS_PER_CALL)
            return
        self._feed_segmenter(frame)

    def _work_backlog(self, max_units: int | None) -> bool:
        """Mux queued frames in order until ``max_units`` more units are sealed (all if None).

        False if the recording had to stop (``_abort`` has then written the stop).
        """
        rec = self._rec
        assert rec is not None
        target = None if max_units is None else rec.units + max_units
        while rec.backlog and (target is None or rec.units < target):
            # Copied out of the buffer's storage (zeroised) one frame at a time, off the press.
            if not self._feed_segmenter(detach_frame(rec.backlog.popleft())):
                return False  # _end_recording zeroised the rest
        return True

    def _feed_segmenter(self, frame: EncodedFrame) -> bool:
        """Mux one frame and seal the units it completes; False if recording had to stop."""
        rec, seg = self._rec, self._segmenter
        assert rec is not None and seg is not None
        if rec.last_index is not None and frame.frame_index != rec.last_index + 1:
            self._event(
                "frame_gap",
                {
                    "recording": rec.id,
                    # The missing frames, inclusive (what the verifier matches units against).
                    "from_frame": rec.last_index + 1,
                    "to_frame": frame.frame_index - 1,
                    "reason": "camera_drop",
                },
            )
        rec.last_index = frame.frame_index
        rec.last_pts_us = frame.pts_us
        return all(self._seal(unit, final=False) for unit in seg.push(frame))

    def _seal(self, unit: TsUnit, *, final: bool) -> bool:
        rec = self._rec
        assert rec is not None
        mono_us = self._clock.monotonic_us()
        utc_us = self._clock.utc_us()
        extra: dict[str, JsonValue] = {}
        if unit.segment_final:
            extra["segment_final"] = True
        if unit.unit == 0:
            # Each segment's first unit declares the streams its TS carries, so an export
            # declares them from signed facts rather than from a probe of the first bytes.
            extra["streams"] = self._stream_declaration()
        meta = UnitMeta(
            recording_id=rec.id,
            segment=unit.segment,
            unit=unit.unit,
            first_frame=unit.first_frame,
            frame_count=unit.frame_count,
            start_pts_us=unit.start_pts_us,
            end_pts_us=unit.end_pts_us,
            start_utc_us=utc_us - (mono_us - unit.start_pts_us),
            utc_source=self._clock.source.value,
            final=final,
            pre_event=unit.start_pts_us < rec.press_mono_us,
            audio=unit.audio_packets > 0,
            gnss=self._gnss_for_unit(rec, mono_us),
            extra=extra,
        )
        try:
            try:
                self._evidence.seal_unit(unit.payload, meta, mono_us=mono_us, utc_us=utc_us)
            except RecordError as exc:
                # The sealer refused the unit's metadata (a bug: say a field the verifier would
                # refuse). The video must still be sealed: again without the optional metadata,
                # and the refusal itself becomes a signed fault.
                log.error("unit %s/%s of %s: metadata refused (%s)", unit.segment, unit.unit,
                          rec.id, exc)  # fmt: skip
                bare = replace(meta, gnss=None, extra={})
                self._evidence.seal_unit(unit.payload, bare, mono_us=mono_us, utc_us=utc_us)
                self.record_fault("sealer", "unit_metadata_refused", str(exc))
        except StorageFullError:
            log.error("storage full: unit %s/%s of %s not sealed", unit.segment, unit.unit, rec.id)
            self._abort("storage_full", record_started=True)
            return False
        except (OSError, RecordError) as exc:
            log.error("unit %s/%s of %s not sealed: %s", unit.segment, unit.unit, rec.id, exc)
            self._abort("storage_error", record_started=True)
            return False
        rec.units += 1
        rec.last_sealed_frame = unit.first_frame + unit.frame_count - 1
        rec.end_pts_us = unit.end_pts_us
        return True

    def _stream_declaration(self) -> dict[str, JsonValue]:
        cam = self._profile.camera
        streams: dict[str, JsonValue] = {
            "video": {"codec": "h264", "width": cam.width, "height": cam.height, "fps": cam.fps}
        }
        audio = self._segmenter.audio if self._segmenter is not None else None
        if audio is not None:
            streams["audio"] = {
                "codec": audio.codec,
                "sample_rate_hz": audio.sample_rate_hz,
                "channels": audio.channels,
                "bitrate_bps": audio.bitrate_bps,
            }
        return streams

    def _marker(self, t_us: int) -> None:
        rec = self._rec
        assert rec is not None
        now_mono = self._clock.monotonic_us()
        self._event(
            "marker",
            {
                "recording": rec.id,
                "at_mono_us": t_us,
                "at_utc_us": self._clock.utc_us() - (now_mono - t_us),
                "frame": self._frame_at(rec, t_us),
            },
        )
        rec.markers += 1
        self._feedback.show(Feedback.MARKER)

    def _frame_at(self, rec: _Recording, t_us: int) -> int | None:
        """The index of the frame captured at ``t_us`` (a gesture completes after it began)."""
        newest = rec.backlog[-1] if rec.backlog else None  # newer than what was muxed
        last_index = newest.frame_index if newest else rec.last_index
        last_pts_us = newest.pts_us if newest else rec.last_pts_us
        if last_index is None:
            return None
        back = round((last_pts_us - t_us) * self._profile.camera.fps / 1_000_000)
        return max(0, last_index - max(0, back))

    def _stop(self, trigger: str) -> None:
        """Seal the partial unit as final, write ``record_stop``, go back to BUFFERING."""
        rec, seg = self._rec, self._segmenter
        if rec is None or seg is None or not self._fire(StopRequested(0, trigger)):
            return
        if rec.backlog and not self._work_backlog(None):
            return  # _abort already wrote the stop
        sealed_all = True
        units = seg.flush()
        for i, unit in enumerate(units):
            if not self._seal(unit, final=i == len(units) - 1):
                sealed_all = False  # _abort already wrote the stop
                break
        if sealed_all:
            self._write_record_stop(rec, trigger)
            self._feedback.show(Feedback.STOP)
            self._end_recording()
            self._fire(Stopped(self._clock.monotonic_us()))

    def _write_record_stop(self, rec: _Recording, trigger: str) -> None:
        seg = self._segmenter
        self._event(
            "record_stop",
            {
                "recording": rec.id,
                "trigger": trigger,
                "segments": (seg.segment + 1) if seg is not None and rec.units else 0,
                "units": rec.units,
                "last_frame": rec.last_sealed_frame,
                "end_pts_us": rec.end_pts_us,
            },
        )

    def _end_recording(self) -> None:
        if self._rec is not None:
            for frame in self._rec.backlog:  # pre-roll never sealed (the store refused)
                zeroise_frame(frame)
            self._rec.backlog.clear()
        self._muted = False  # record_stop ends any mute interval (the verifier closes it there)
        self._rec = None
        self._segmenter = None
        self._buffer.clear()

    def _abort(self, trigger: str, *, record_started: bool) -> None:
        """End the recording after the store refused a write; block new ones (FAULT).

        Everything sealed before stays sealed; the events here may use the reserve, and if even
        they fail the verifier reports the recording as not closed rather than losing anything.
        """
        rec = self._rec
        assert rec is not None
        self._storage_blocked = True
        if self._state is State.RECORDING:
            self._fire(StopRequested(self._clock.monotonic_us(), trigger))
        if trigger == "storage_full":
            self._event(
                "storage_full", {"free_bytes": self._evidence.free_bytes(), "recording": rec.id}
            )
        if record_started:  # a recording whose record_start was never written has no stop
            self._write_record_stop(rec, trigger)
        self._end_recording()
        self._fire(Faulted(self._clock.monotonic_us(), trigger))
        self._feedback.show(Feedback.FAULT)
        self._next_space_check_us = self._clock.monotonic_us() + _SPACE_CHECK_US

    def _room_to_start(self) -> float:
        """Bytes a start needs: the buffered pre-roll plus ``_START_ROOM_S`` at the rate the
        camera is actually producing (measured from the buffer, not the nominal bitrate)."""
        buffered_s = self._buffer.duration_s()
        rate = self._buffer.nbytes / buffered_s if buffered_s > 0 else 0.0
        return self._buffer.nbytes + rate * _START_ROOM_S

    def _refuse_for_space(self, now_us: int) -> None:
        """A start asked for with the store (nearly) full: signed storage_full, FAULT, no start."""
        self._storage_blocked = True
        self._event("storage_full", {"free_bytes": self._evidence.free_bytes(), "recording": None})
        self._fire(Faulted(now_us, "storage_full"))
        self._feedback.show(Feedback.FAULT)
        self._next_space_check_us = now_us + _SPACE_CHECK_US

    def _check_space(self, now_us: int, *, force: bool = False) -> None:
        if not force and now_us < self._next_space_check_us:
            return
        self._next_space_check_us = now_us + _SPACE_CHECK_US
        need = self._profile.camera.bitrate_bps / 8 * _RESUME_S
        if self._evidence.free_bytes() >= need and self._fire(Recovered(now_us)):
            self._storage_blocked = False
            self._event(
                "buffering",
                {"pre_event_s": self._rc.pre_event_s, "pre_event_audio": self._rc.pre_event_audio},
            )
            self._feedback.show(Feedback.BUFFERING)

    def _toggle_mute(self, t_us: int) -> None:
        rec = self._rec
        if not self._rc.mute_allowed or self._state is not State.RECORDING or rec is None:
            self._feedback.show(Feedback.REFUSED)
            return
        self._muted = not self._muted
        now_mono = self._clock.monotonic_us()
        self._event(
            "mute",
            {
                "on": self._muted,
                "recording": rec.id,
                # The gesture began at t_us; silence starts with the audio handled from now on.
                "press_mono_us": t_us,
                "press_utc_us": self._clock.utc_us() - (now_mono - t_us),
            },
        )
        self._feedback.show(Feedback.MUTED if self._muted else Feedback.UNMUTED)

    def _toggle_stealth(self) -> None:
        if not self._rc.stealth_allowed:
            self._feedback.show(Feedback.REFUSED)
            return
        on = not self._feedback.stealth
        self._event("stealth", {"on": on})
        self._feedback.show(Feedback.STEALTH_ON if on else Feedback.STEALTH_OFF)

    # -- sensors -------------------------------------------------------------------------------

    def _poll_gnss(self, now_us: int) -> None:
        if self._gnss is None:
            return
        for fix in self._gnss.poll():
            if fix.has_position or self._latest_fix is None:
                self._latest_fix = fix
            self._maybe_step_clock(fix)

    def _maybe_step_clock(self, fix: GnssFix) -> None:
        if fix.utc_us is None or fix.quality == 0:
            return
        if self._clock.source not in (ClockSource.UNSET, ClockSource.RTC):
            return
        now_mono = self._clock.monotonic_us()
        gnss_now_us = fix.utc_us + (now_mono - fix.received_mono_us)
        old_utc_us = self._clock.utc_us()
        if abs(gnss_now_us - old_utc_us) <= _CLOCK_STEP_THRESHOLD_US:
            return
        self._clock.set_utc(gnss_now_us, ClockSource.GNSS)
        self._event(
            "clock_step",
            {"old_utc_us": old_utc_us, "new_utc_us": gnss_now_us, "source": "gnss"},
        )

    def _gnss_for_unit(self, rec: _Recording, mono_us: int) -> dict[str, JsonValue] | None:
        """A track point every ``recorder.gnss_interval_s`` (not on every unit)."""
        fix = self._latest_fix
        if fix is None or not fix.has_position or mono_us - fix.received_mono_us > _GNSS_FRESH_US:
            return None
        last = rec.gnss_last_attached_us
        if last is not None and mono_us - last < round(self._rc.gnss_interval_s * 1e6):
            return None
        rec.gnss_last_attached_us = mono_us
        return _fix_json(fix, mono_us)

    def _poll_battery(self, now_us: int) -> None:
        if self._battery is None or now_us < self._next_battery_check_us:
            return
        self._next_battery_check_us = now_us + _BATTERY_CHECK_US
        status = self._battery.status()
        level = status.level_pct
        self._battery_status = {"level_pct": level, "charging": status.charging}
        if level < self._rc.low_battery_pct and not self._low_battery_reported:
            self._low_battery_reported = True
            self._event("low_battery", {"level_pct": level})
            self._feedback.show(Feedback.LOW_BATTERY)
        elif level >= self._rc.low_battery_pct + 1.0 or status.charging:
            self._low_battery_reported = level < self._rc.low_battery_pct
        self._critical = level < self._rc.critical_battery_pct and not status.charging
        if self._critical and self._state is State.RECORDING:
            self._stop("low_battery")

    # -- plumbing ------------------------------------------------------------------------------

    def _fire(self, event: Event) -> bool:
        result = transition(self._state, event)
        if result.ignored:
            self._ignored_transitions += 1
            log.info("ignored %s in state %s", type(event).__name__, self._state)
            return False
        self._state = result.state
        return True

    def _event(
        self,
        kind: str,
        fields: Mapping[str, JsonValue],
        *,
        reserve_ok: bool = True,
        strict: bool = False,
    ) -> int:
        """Seal one event. Events may use the storage reserve (units may not).

        A store that refuses even that is logged, counted and otherwise ignored unless ``strict``:
        a handler must not die half-way because a marker could not be written. So is an event
        the sealer refuses to write (``RecordError``: fields the verifier would refuse), which
        a bug could cause; tests/unit/test_event_kinds.py keeps the kinds themselves right.
        """
        try:
            return self._evidence.event(
                kind,
                fields,
                mono_us=self._clock.monotonic_us(),
                utc_us=self._clock.utc_us(),
                reserve_ok=reserve_ok,
            )
        except (OSError, RecordError) as exc:
            if strict:
                raise
            self.events_lost += 1
            log.error("%s event not written: %s", kind, exc)
            return -1

    @property
    def ignored_transitions(self) -> int:
        return self._ignored_transitions


def _fix_json(fix: GnssFix, now_mono_us: int) -> dict[str, JsonValue]:
    return {
        "lat_deg": fix.lat_deg,
        "lon_deg": fix.lon_deg,
        "alt_m": fix.alt_m,
        "utc_us": fix.utc_us,
        "quality": int(fix.quality),
        "satellites": fix.satellites,
        "hdop": fix.hdop,
        "age_s": round(max(0, now_mono_us - fix.received_mono_us) / 1e6, 3),
    }
