"""Simulated time: a ``hal.protocols.Clock`` plus a deterministic event scheduler.

Every simulated backend schedules its work here, and the scenario player advances time with
``run_until``. Nothing in simulated logic reads the wall clock; the one exception is the optional
``realtime`` pacing inside ``run_until``, which only sleeps so simulated time tracks wall time.

Threading: the scheduler is single-threaded. Only ``call_soon_threadsafe`` may be called from
another thread (e.g. a keyboard reader in ``bwc run``); everything else runs on the thread that
calls ``run_until``.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable

from hal.types import ClockSource

_REALTIME_SLICE_S = 0.02
"""Longest single sleep in realtime mode, so thread-safe calls are picked up promptly."""


class Handle:
    """A scheduled call. ``cancel()`` stops it (and, for a periodic call, every later run)."""

    __slots__ = ("_cancelled", "fn", "period_us")

    def __init__(self, fn: Callable[[], None], period_us: int | None = None) -> None:
        self.fn = fn
        self.period_us = period_us
        self._cancelled = False

    def cancel(self) -> None:
        self._cancelled = True

    @property
    def cancelled(self) -> bool:
        return self._cancelled


class VirtualClock:
    """Monotonic time from 0, UTC as an offset from it, and an ordered queue of scheduled calls.

    Invariants: ``monotonic_us`` never decreases; calls run in (time, insertion) order; a call
    scheduled in the past runs at the current time, after the calls already due.
    """

    def __init__(
        self,
        start_utc_us: int,
        source: ClockSource = ClockSource.RTC,
        realtime: bool = False,
        *,
        sleep: Callable[[float], None] = time.sleep,
        wall_monotonic_s: Callable[[], float] = time.monotonic,
    ) -> None:
        self._now_us = 0
        self._utc_offset_us = start_utc_us
        self._source = source
        self._realtime = realtime
        self._sleep = sleep
        self._wall_monotonic_s = wall_monotonic_s
        # (wall seconds, simulated µs) at the first realtime step; pacing is relative to it.
        self._wall_anchor: tuple[float, int] | None = None
        self._queue: list[tuple[int, int, Handle]] = []
        self._seq = 0
        self._running = False
        self._inbox: list[Callable[[], None]] = []
        self._inbox_lock = threading.Lock()

    # -- hal.protocols.Clock ------------------------------------------------------------------

    def monotonic_us(self) -> int:
        return self._now_us

    def utc_us(self) -> int:
        return self._now_us + self._utc_offset_us

    @property
    def source(self) -> ClockSource:
        return self._source

    def set_utc(self, utc_us: int, source: ClockSource) -> None:
        """Step UTC; monotonic time is unaffected."""
        self._utc_offset_us = utc_us - self._now_us
        self._source = source

    # -- scheduler ----------------------------------------------------------------------------

    @property
    def realtime(self) -> bool:
        return self._realtime

    def call_at(self, t_us: int, fn: Callable[[], None]) -> Handle:
        handle = Handle(fn)
        self._push(t_us, handle)
        return handle

    def call_later(self, delay_us: int, fn: Callable[[], None]) -> Handle:
        return self.call_at(self._now_us + delay_us, fn)

    def call_every(
        self, period_us: int, fn: Callable[[], None], start_us: int | None = None
    ) -> Handle:
        """Call ``fn`` at ``start_us`` (default: now + period) and every ``period_us`` after."""
        if period_us <= 0:
            raise ValueError("period_us must be positive")
        handle = Handle(fn, period_us)
        self._push(self._now_us + period_us if start_us is None else start_us, handle)
        return handle

    def call_soon_threadsafe(self, fn: Callable[[], None]) -> None:
        """Queue ``fn`` from any thread; it runs at the current simulated time in ``run_until``."""
        with self._inbox_lock:
            self._inbox.append(fn)

    def next_event_us(self) -> int | None:
        """Time of the earliest pending call, or None when nothing is scheduled."""
        self._drop_cancelled_head()
        return self._queue[0][0] if self._queue else None

    def run_until(self, t_us: int, after_each: Callable[[], None] | None = None) -> None:
        """Run every call due up to and including ``t_us`` in order; end with now == ``t_us``.

        ``after_each`` runs after every call (the daemon drains its queues there). A call may
        schedule further calls, including at the current time; they run in this same pass.
        """
        if self._running:
            raise RuntimeError("run_until is not re-entrant")
        if t_us < self._now_us:
            raise ValueError(f"cannot run backwards to {t_us} from {self._now_us}")
        self._running = True
        try:
            while True:
                self._take_inbox()
                self._drop_cancelled_head()
                due = bool(self._queue) and self._queue[0][0] <= t_us
                target_us = self._queue[0][0] if due else t_us
                if not self._pace(target_us):
                    continue  # a thread-safe call arrived while pacing: run it first
                if not due:
                    break
                when_us, _, handle = heapq.heappop(self._queue)
                self._now_us = max(self._now_us, when_us)
                if handle.period_us is not None:
                    self._push(when_us + handle.period_us, handle)
                handle.fn()
                if after_each is not None:
                    after_each()
            self._now_us = t_us
        finally:
            self._running = False

    def advance(self, delta_us: int, after_each: Callable[[], None] | None = None) -> None:
        self.run_until(self._now_us + delta_us, after_each)

    # -- internals ----------------------------------------------------------------------------

    def _push(self, t_us: int, handle: Handle) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (max(t_us, self._now_us), self._seq, handle))

    def _drop_cancelled_head(self) -> None:
        while self._queue and self._queue[0][2].cancelled:
            heapq.heappop(self._queue)

    def _take_inbox(self) -> bool:
        with self._inbox_lock:
            pending, self._inbox = self._inbox, []
        for fn in pending:
            self._push(self._now_us, Handle(fn))
        return bool(pending)

    def _pace(self, target_us: int) -> bool:
        """In realtime mode, sleep until the wall clock reaches simulated ``target_us``.

        Returns False, with simulated time moved up to the wall clock, when a thread-safe call
        arrived during the wait; True once ``target_us`` is reached.
        """
        if not self._realtime:
            return True
        if self._wall_anchor is None:
            self._wall_anchor = (self._wall_monotonic_s(), self._now_us)
        wall0_s, sim0_us = self._wall_anchor
        while True:
            elapsed_us = int((self._wall_monotonic_s() - wall0_s) * 1e6)
            behind_us = target_us - (sim0_us + elapsed_us)
            if behind_us <= 0:
                return True
            self._sleep(min(behind_us / 1e6, _REALTIME_SLICE_S))
            with self._inbox_lock:
                interrupted = bool(self._inbox)
            if interrupted:
                elapsed_us = int((self._wall_monotonic_s() - wall0_s) * 1e6)
                self._now_us = max(self._now_us, min(target_us, sim0_us + elapsed_us))
                return False
