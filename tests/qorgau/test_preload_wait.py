"""The page renderers' imports after a start wait until the replica's SOS backlog is answered."""

from __future__ import annotations

import time

from qorgau.runtime import wait_until_idle


def _sequence(*depths: int):
    """A backlog that answers ``depths`` in turn, then its last one for ever; and the calls made."""
    calls: list[int] = []

    def backlog() -> int:
        depth = depths[min(len(calls), len(depths) - 1)]
        calls.append(depth)
        return depth

    return backlog, calls


def test_it_waits_for_the_backlog_to_stay_empty_for_the_quiet_time_not_for_one_empty_look() -> None:
    # busy, one empty look, busy again, then empty: the quiet time counts from the last busy look
    backlog, calls = _sequence(5, 5, 0, 4, 0)
    began = time.monotonic()
    assert wait_until_idle(backlog, quiet_s=0.1, max_s=5.0, tick_s=0.01)
    took = time.monotonic() - began
    assert calls[:5] == [5, 5, 0, 4, 0]
    assert took >= 0.1 + 4 * 0.01  # four ticks before the last busy look, then the whole quiet time
    assert calls.count(0) >= 0.1 / 0.01  # it kept looking through the quiet time


def test_a_backlog_that_never_empties_gives_up_at_max_s_and_says_so() -> None:
    backlog, calls = _sequence(3)
    began = time.monotonic()
    assert not wait_until_idle(backlog, quiet_s=0.05, max_s=0.2, tick_s=0.01)
    assert 0.2 <= time.monotonic() - began < 2.0
    assert set(calls) == {3}


def test_a_stopping_service_ends_the_wait_at_once() -> None:
    backlog, calls = _sequence(3)
    stopping = iter([False, False, True])
    assert not wait_until_idle(backlog, quiet_s=0.05, max_s=30.0, tick_s=0.01, stop=lambda: next(stopping))
    assert len(calls) == 2
