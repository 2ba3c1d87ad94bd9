"""VirtualClock: ordering, cancellation, periodic calls, run_until's end state, realtime pacing."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from hal.types import ClockSource
from simulator.clock import VirtualClock


def test_calls_run_in_time_order_ties_by_insertion() -> None:
    clock = VirtualClock(0)
    seen: list[tuple[str, int]] = []

    def record(name: str) -> Callable[[], None]:
        return lambda: seen.append((name, clock.monotonic_us()))

    for name, t in [("c", 300), ("a", 100), ("b1", 200), ("b2", 200), ("b3", 200)]:
        clock.call_at(t, record(name))
    clock.run_until(1_000)
    assert seen == [("a", 100), ("b1", 200), ("b2", 200), ("b3", 200), ("c", 300)]
    assert clock.monotonic_us() == 1_000


def test_run_until_stops_at_the_target_and_leaves_later_calls() -> None:
    clock = VirtualClock(0)
    seen: list[int] = []
    clock.call_at(500, lambda: seen.append(500))
    clock.call_at(501, lambda: seen.append(501))
    clock.run_until(500)
    assert seen == [500]
    assert clock.next_event_us() == 501
    clock.run_until(600)
    assert seen == [500, 501]
    assert clock.next_event_us() is None


def test_after_each_runs_after_every_call() -> None:
    clock = VirtualClock(0)
    log: list[str] = []
    clock.call_at(1, lambda: log.append("a"))
    clock.call_at(2, lambda: log.append("b"))
    clock.run_until(10, after_each=lambda: log.append("drain"))
    assert log == ["a", "drain", "b", "drain"]


def test_cancel_and_call_later_and_past_times() -> None:
    clock = VirtualClock(0)
    seen: list[str] = []
    handle = clock.call_later(100, lambda: seen.append("cancelled"))
    handle.cancel()
    clock.call_later(50, lambda: seen.append("later"))
    clock.run_until(200)
    clock.call_at(10, lambda: seen.append(f"past@{clock.monotonic_us()}"))
    clock.run_until(200)
    assert seen == ["later", "past@200"]


def test_call_every_repeats_until_cancelled_and_calls_can_schedule_now() -> None:
    clock = VirtualClock(0)
    ticks: list[int] = []
    handle = clock.call_every(1_000, lambda: ticks.append(clock.monotonic_us()), start_us=500)
    clock.run_until(3_500)
    assert ticks == [500, 1_500, 2_500, 3_500]
    handle.cancel()
    nested: list[int] = []

    def schedule_nested() -> None:
        clock.call_later(0, lambda: nested.append(clock.monotonic_us()))

    clock.call_later(0, schedule_nested)
    clock.run_until(10_000)
    assert ticks == [500, 1_500, 2_500, 3_500]
    assert nested == [3_500]


def test_utc_offsets_from_monotonic_and_set_utc_steps_only_utc() -> None:
    clock = VirtualClock(1_000_000_000, source=ClockSource.UNSET)
    assert (clock.monotonic_us(), clock.utc_us(), clock.source) == (0, 1_000_000_000, "unset")
    clock.advance(250)
    clock.set_utc(5_000_000_000, ClockSource.GNSS)
    clock.advance(750)
    assert clock.monotonic_us() == 1_000
    assert clock.utc_us() == 5_000_000_750
    assert clock.source is ClockSource.GNSS


def test_cannot_run_backwards_or_reenter() -> None:
    clock = VirtualClock(0)
    clock.run_until(100)
    with pytest.raises(ValueError, match="backwards"):
        clock.run_until(50)
    errors: list[Exception] = []

    def reenter() -> None:
        try:
            clock.run_until(1_000)
        except RuntimeError as exc:
            errors.append(exc)

    clock.call_at(200, reenter)
    clock.run_until(300)
    assert len(errors) == 1


class FakeWall:
    """A wall clock that moves only when slept on."""

    def __init__(self) -> None:
        self.now_s = 1000.0
        self.sleeps: list[float] = []
        self.on_sleep: Callable[[], None] | None = None

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now_s += seconds
        if self.on_sleep is not None:
            self.on_sleep()

    def monotonic_s(self) -> float:
        return self.now_s


def test_realtime_mode_sleeps_so_simulated_time_tracks_the_wall() -> None:
    wall = FakeWall()
    clock = VirtualClock(0, realtime=True, sleep=wall.sleep, wall_monotonic_s=wall.monotonic_s)
    seen: list[tuple[int, float]] = []
    clock.call_at(500_000, lambda: seen.append((clock.monotonic_us(), wall.now_s)))
    clock.run_until(1_000_000)
    assert seen[0][0] == 500_000
    assert seen[0][1] == pytest.approx(1000.5)
    assert wall.now_s == pytest.approx(1001.0)
    assert max(wall.sleeps) <= 0.02 + 1e-9  # sliced, so thread-safe calls are seen promptly


def test_fast_mode_never_sleeps() -> None:
    wall = FakeWall()
    clock = VirtualClock(0, sleep=wall.sleep, wall_monotonic_s=wall.monotonic_s)
    clock.call_at(5_000_000, lambda: None)
    clock.run_until(10_000_000)
    assert wall.sleeps == []


def test_call_soon_threadsafe_runs_at_the_current_simulated_time() -> None:
    clock = VirtualClock(0)
    seen: list[int] = []
    worker = threading.Thread(
        target=lambda: clock.call_soon_threadsafe(lambda: seen.append(clock.monotonic_us()))
    )
    clock.run_until(100)
    worker.start()
    worker.join()
    clock.call_at(150, lambda: seen.append(-1))
    clock.run_until(200)
    assert seen == [100, -1]


def test_call_soon_threadsafe_interrupts_realtime_pacing() -> None:
    wall = FakeWall()
    clock = VirtualClock(0, realtime=True, sleep=wall.sleep, wall_monotonic_s=wall.monotonic_s)
    seen: list[str] = []

    def key_pressed_at_100_ms() -> None:
        # Stands for a keyboard thread: it queues a call while run_until is sleeping.
        if wall.now_s >= 1000.1 and not seen:
            seen.append("key")
            clock.call_soon_threadsafe(lambda: seen.append(f"ran@{clock.monotonic_us()}"))

    wall.on_sleep = key_pressed_at_100_ms
    clock.call_at(1_000_000, lambda: seen.append("event"))
    clock.run_until(1_000_000)
    assert seen[0] == "key"
    assert seen[1].startswith("ran@")
    ran_at = int(seen[1].removeprefix("ran@"))
    assert 100_000 <= ran_at < 1_000_000
    assert seen[2] == "event"
