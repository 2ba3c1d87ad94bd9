"""Gesture recognition from raw edges, including bounce bursts the mock pin does not filter."""

from __future__ import annotations

from recorder.gestures import Gesture, GestureRecogniser

MS = 1000


def rec() -> GestureRecogniser:
    return GestureRecogniser(double_press_window_s=0.6, hold_s=3.0, debounce_ms=20)


def play(g: GestureRecogniser, edges: list[tuple[str, bool, int]], until_us: int) -> list[Gesture]:
    out: list[Gesture] = []
    for name, active, t in edges:
        out += g.tick(t)
        out += g.feed(name, active, t)
    for t in range(0, until_us + 1, 10 * MS):  # the owner ticks often; gestures come in time
        out += g.tick(t)
    return out


def press(name: str, t_us: int, dur_us: int = 120 * MS) -> list[tuple[str, bool, int]]:
    return [(name, True, t_us), (name, False, t_us + dur_us)]


def test_double_press_is_stamped_at_first_press() -> None:
    g = rec()
    out = play(g, press("event", 1000 * MS) + press("event", 1270 * MS), 3000 * MS)
    assert out == [Gesture("double_press", "event", 1000 * MS)]


def test_single_event_press_after_window() -> None:
    g = rec()
    out = g.feed("event", True, 0) + g.feed("event", False, 120 * MS)
    out += g.tick(500 * MS)
    assert out == []  # the window (0.6 s from the press) is still open
    out += g.tick(650 * MS)
    assert out == [Gesture("press", "event", 0)]


def test_two_presses_too_far_apart_are_two_singles() -> None:
    g = rec()
    out = play(g, press("event", 0) + press("event", 900 * MS), 3000 * MS)
    assert out == [Gesture("press", "event", 0), Gesture("press", "event", 900 * MS)]


def test_second_press_without_ticks_still_ends_first_single() -> None:
    g = rec()
    out = g.feed("event", True, 0) + g.feed("event", False, 100 * MS)
    out += g.feed("event", True, 2000 * MS)  # no tick in between
    assert out == [Gesture("press", "event", 0)]


def test_hold_fires_at_threshold_even_if_tick_is_late() -> None:
    g = rec()
    out = g.feed("event", True, 0)
    out += g.tick(2999 * MS)
    assert out == []
    out += g.tick(3500 * MS)
    assert out == [Gesture("hold", "event", 3000 * MS)]
    out += g.feed("event", False, 3600 * MS) + g.tick(5000 * MS)
    assert out == [Gesture("hold", "event", 3000 * MS)]  # no press after a hold, hold only once


def test_function_press_is_immediate_and_hold_works() -> None:
    g = rec()
    out = g.feed("function", True, 0) + g.feed("function", False, 100 * MS)
    out += g.tick(121 * MS)  # the release settles after the debounce time
    assert out == [Gesture("press", "function", 0)]
    out = play(rec(), [("function", True, 0), ("function", False, 3200 * MS)], 4000 * MS)
    assert out == [Gesture("hold", "function", 3000 * MS)]


def test_function_double_press_is_two_presses() -> None:
    out = play(rec(), press("function", 0) + press("function", 270 * MS), 2000 * MS)
    assert [x.kind for x in out] == ["press", "press"]


def test_trigger_line() -> None:
    out = play(rec(), [("trigger", True, 5 * MS), ("trigger", False, 9000 * MS)], 10_000 * MS)
    assert out == [Gesture("trigger", "trigger", 5 * MS)]


def bounce(name: str, t_us: int, n: int = 6, step_us: int = 300) -> list[tuple[str, bool, int]]:
    """A burst of ``n`` sub-ms edges that starts active and ends inactive."""
    return [(name, i % 2 == 0, t_us + i * step_us) for i in range(n)]


def test_bounce_burst_alone_creates_nothing() -> None:
    for name in ("event", "function", "trigger"):
        out = play(rec(), bounce(name, 1000 * MS), 5000 * MS)
        assert out == [], name


def test_bouncy_presses_still_make_one_double_press() -> None:
    edges = [
        *bounce("event", 1000 * MS, 5),  # ends active: a bouncy press
        ("event", False, 1120 * MS),
        *bounce("event", 1270 * MS, 3),
        ("event", False, 1390 * MS),
        ("event", True, 1390 * MS + 400),  # release bounce
        ("event", False, 1390 * MS + 800),
    ]
    out = play(rec(), edges, 4000 * MS)
    assert [x.kind for x in out] == ["double_press"]
    assert abs(out[0].t_us - 1000 * MS) <= 2 * MS


def test_release_bounce_does_not_break_a_hold() -> None:
    edges = [
        ("event", True, 0),
        *bounce("event", 1500 * MS, 4)[1:],
        ("event", True, 1501 * MS),
        ("event", False, 4000 * MS),
    ]
    out = play(rec(), edges, 5000 * MS)
    assert [x.kind for x in out] == ["hold"]


def test_repeated_levels_are_ignored() -> None:
    g = rec()
    g.feed("event", False, 0)
    assert g.ignored_edges == 1
    assert g.tick(1000 * MS) == []


def test_zero_debounce() -> None:
    g = GestureRecogniser(0.6, 3.0, 0)
    out = g.feed("function", True, 0) + g.feed("function", False, 10)
    assert out == [Gesture("press", "function", 0)]
