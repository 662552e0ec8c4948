"""The prefetch window: claim about PREFETCH_HORIZON seconds of short jobs ahead, never more than asked."""

from __future__ import annotations

import pytest

from workers.worker import PREFETCH_HORIZON, PrefetchWindow, WorkerConfig


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _run(window: PrefetchWindow, clock: Clock, rate: float, seconds: float, step: float = 0.05) -> None:
    """Settle jobs at ``rate`` per second for ``seconds``, one round per ``step``."""
    for _ in range(round(seconds / step)):
        clock.now += step
        window.finished(round(rate * step))


def test_short_jobs_grow_the_window_to_a_horizon_of_work_up_to_the_maximum():
    clock = Clock()
    window = PrefetchWindow(16, 256, clock)
    _run(window, clock, rate=1_000, seconds=0.5)
    assert window.size == int(1_000 * PREFETCH_HORIZON)  # 100 jobs: 0.1 s of work

    _run(window, clock, rate=50_000, seconds=0.5)
    assert window.size == 256


def test_slow_jobs_keep_the_configured_prefetch():
    clock = Clock()
    window = PrefetchWindow(16, 256, clock)
    _run(window, clock, rate=8, seconds=5, step=0.5)  # 8 threads, one-second jobs
    assert window.size == 16


def test_the_window_shrinks_gradually_when_jobs_slow_down_and_resets_after_an_idle_spell():
    clock = Clock()
    window = PrefetchWindow(16, 256, clock)
    _run(window, clock, rate=2_000, seconds=0.5)
    assert window.size == 200

    _run(window, clock, rate=200, seconds=0.1, step=0.1)
    assert 16 < window.size < 200  # one slow round does not throw the window away

    clock.now += 30  # idle: nothing settled for half a minute
    window.finished(1)
    assert window.size == 16


@pytest.mark.parametrize(
    ("prefetch", "prefetch_max", "expected"),
    [(16, None, 256), (16, 64, 64), (16, 4, 16), (0, None, 0), (0, 128, 0)],
)
def test_prefetch_zero_or_a_maximum_below_prefetch_turns_the_window_off(
    settings, prefetch, prefetch_max, expected
):
    settings.JOBQUEUE_PREFETCH_MAX = 256
    config = WorkerConfig.from_settings(["default"], 8, prefetch, False, prefetch_max)
    assert config.prefetch_max == expected
