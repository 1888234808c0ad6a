"""rmsops.core.fanout: a check's parallel waits, in order, and never holding the command's exit."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from rmsops.core import fanout


def test_results_come_in_order_with_a_few_calls_at_once():
    lock, flying, most, calls = threading.Lock(), [0], [0], []

    def call(n: int) -> int:
        with lock:
            flying[0] += 1
            most[0] = max(most[0], flying[0])
            calls.append(n)
        time.sleep(0.02 * (n % 3))  # later items may end first
        with lock:
            flying[0] -= 1
        return n * n

    assert fanout.each(call, list(range(12)), 4) == [n * n for n in range(12)]
    assert sorted(calls) == list(range(12)), "each item once"
    assert 1 < most[0] <= 4


def test_the_first_failure_in_order_is_raised_after_every_call():
    done = []

    def call(n: int) -> int:
        time.sleep(0.05 if n == 1 else 0)
        done.append(n)
        if n in (1, 3):
            raise ValueError(f"item {n}")
        return n

    with pytest.raises(ValueError, match="item 1"):
        fanout.each(call, [0, 1, 2, 3, 4], 3)
    assert sorted(done) == [0, 1, 2, 3, 4]


def test_one_item_or_one_at_a_time_runs_in_the_callers_thread():
    caller = threading.current_thread().name
    assert fanout.each(lambda _: threading.current_thread().name, ["a"], 8) == [caller]
    assert fanout.each(lambda _: threading.current_thread().name, ["a", "b"], 1) == [caller, caller]


def test_a_fan_out_left_behind_does_not_hold_the_exit():
    """A check still waiting on a hung endpoint when the run's budget is spent is abandoned: the
    command must end. ThreadPoolExecutor's threads would hold the exit for every queued call."""
    program = ("import threading, time\n"
               "from rmsops.core import fanout\n"
               "threading.Thread(target=fanout.each, args=(lambda _: time.sleep(120), [1, 2, 3], 2),"
               " daemon=True).start()\n"
               "time.sleep(0.3)\n")
    began = time.monotonic()
    subprocess.run([sys.executable, "-c", program], check=True, timeout=60)
    assert time.monotonic() - began < 30
