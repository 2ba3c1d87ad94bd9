"""Simulated GPIO: scheduled gestures become the right edges at the right simulated times."""

from __future__ import annotations

from hal.types import OFF, SOLID, Pattern
from simulator.clock import VirtualClock
from simulator.gpio import SimButton, SimIndicator, make_pin_factory


def _rig() -> tuple[VirtualClock, SimButton, list[tuple[bool, int]]]:
    clock = VirtualClock(0)
    button = SimButton("event", 17, clock, make_pin_factory(clock))
    edges: list[tuple[bool, int]] = []
    button.on_edge(lambda _name, active, t_us: edges.append((active, t_us)))
    return clock, button, edges


def test_press_is_a_press_and_a_release() -> None:
    clock, _button, edges = _rig()
    _button.schedule_press(1_000_000)
    clock.run_until(2_000_000)
    assert edges == [(True, 1_000_000), (False, 1_150_000)]


def test_double_press_is_two_120_ms_presses_with_a_150_ms_gap() -> None:
    clock, button, edges = _rig()
    button.schedule_double_press(5_000_000)
    clock.run_until(6_000_000)
    assert edges == [
        (True, 5_000_000),
        (False, 5_120_000),
        (True, 5_270_000),
        (False, 5_390_000),
    ]


def test_hold_keeps_the_line_active_for_its_duration() -> None:
    clock, button, edges = _rig()
    button.schedule_hold(1_000_000, 3.5)
    clock.run_until(2_000_000)
    assert button.is_active
    clock.run_until(5_000_000)
    assert not button.is_active
    assert edges == [(True, 1_000_000), (False, 4_500_000)]


def test_bounce_delivers_every_sub_millisecond_edge() -> None:
    clock, button, edges = _rig()
    button.schedule_bounce(1_000_000, edges=5, spacing_us=200, settle_active=True)
    clock.run_until(1_500_000)
    assert button.is_active
    first = list(edges)
    assert first == [(k % 2 == 0, 1_000_000 + 200 * k) for k in range(5)]
    button.release()
    button.schedule_bounce(2_000_000, edges=5, spacing_us=300)  # rounded up to end released
    clock.run_until(3_000_000)
    second = [e for e in edges if e[1] >= 2_000_000]
    assert second == [(k % 2 == 0, 2_000_000 + 300 * k) for k in range(6)]
    assert not button.is_active


def test_sim_indicator_records_history_and_starts_no_threads() -> None:
    import threading

    clock = VirtualClock(0)
    led = SimIndicator("led", 22, "led", clock, make_pin_factory(clock))
    threads_before = threading.active_count()
    led.play(SOLID)
    clock.advance(1_000)
    led.play(Pattern("recording", ((200, 800),), repeat=True))
    assert led.is_lit
    assert threading.active_count() == threads_before
    clock.advance(500)
    led.play(OFF)
    assert not led.is_lit
    assert led.history == [(0, "solid"), (1_000, "recording"), (1_500, "off")]
    led.close()
