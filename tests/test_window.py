"""The time window: durations, explicit times, and the mistakes people make at 3 a.m."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rmsops.core.errors import UserError
from rmsops.core.window import parse_duration, resolve

NOW = datetime(2026, 11, 28, 20, 0, tzinfo=UTC)


@pytest.mark.parametrize(("text", "seconds"), [("30m", 1800), ("1h", 3600), ("2d", 172800), ("90s", 90)])
def test_durations(text, seconds):
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "1 hour", "h", "-1h", "0m", "1w"])
def test_bad_durations(text):
    with pytest.raises(UserError):
        parse_duration(text)


def test_window_ends_now_by_default():
    window = resolve("1h", now=NOW)
    assert window.end == NOW and window.start == NOW - timedelta(hours=1)
    assert window.previous().end == window.start


def test_explicit_times_naive_means_utc():
    window = resolve(start="2026-11-28T18:00:00", end="2026-11-28T19:30:00Z", now=NOW)
    assert window.start == datetime(2026, 11, 28, 18, tzinfo=UTC)
    assert window.seconds == 5400


def test_start_after_end_is_refused():
    with pytest.raises(UserError, match="not before end"):
        resolve(start="2026-11-28T19:00:00Z", end="2026-11-28T18:00:00Z", now=NOW)


def test_end_in_the_future_is_refused():
    with pytest.raises(UserError, match="in the future"):
        resolve(end="2026-11-29T19:00:00Z", now=NOW)


def test_garbage_time_is_refused_with_an_example():
    with pytest.raises(UserError, match="ISO 8601"):
        resolve(start="yesterday", now=NOW)
