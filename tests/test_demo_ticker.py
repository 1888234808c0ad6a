"""The demo's minute ticker: the next minutes of the seeded series, cycled, until stopped."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from rmsops.demo.scenarios import MINUTES
from rmsops.demo.ticker import CYCLE, MinuteTicker


def _published_after(last_seeded: datetime, after_the_minute: bool = False, publish=None) -> list:
    calls: list[tuple[datetime, int]] = []
    ticker = MinuteTicker("test-ticker", last_seeded, publish or (lambda m, i: calls.append((m, i))),
                          after_the_minute=after_the_minute).start()
    time.sleep(0.5)
    began = time.monotonic()
    ticker.stop()
    assert time.monotonic() - began < 2, "stop() returns promptly, even mid-wait"
    return calls


def _minute_start(minutes_ago: int) -> datetime:
    if datetime.now(UTC).second >= 57:  # the tests count minutes: not across a minute's turn
        time.sleep(4)
    return datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=minutes_ago)


def test_it_catches_up_minute_by_minute_cycling_the_series_tail():
    seeded = _minute_start(12)
    calls = _published_after(seeded)
    minutes = [m for m, _ in calls]
    assert len(calls) == 12
    assert all(b - a == timedelta(minutes=1) for a, b in zip(minutes, minutes[1:], strict=False))
    assert [i for _, i in calls] == [MINUTES - CYCLE + k % CYCLE for k in range(12)]
    assert minutes[0] == seeded + timedelta(minutes=1) and minutes[-1] == _minute_start(0)


def test_a_minute_can_wait_until_it_is_over():
    seeded = _minute_start(2)
    assert len(_published_after(seeded)) == 2
    assert len(_published_after(seeded, after_the_minute=True)) == 1  # the current minute is not over


def test_a_failing_publish_is_retried_not_skipped():
    attempts: list[datetime] = []

    def flaky(minute: datetime, index: int) -> None:
        attempts.append(minute)
        raise ConnectionError("the emulator is going away")

    calls = _published_after(_minute_start(3), publish=flaky)
    assert calls == [] and len(attempts) == 1  # it waits before trying the same minute again
