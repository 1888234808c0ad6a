"""The run's time budget: one deadline shared by the command and every process it starts.

A run that waits on a throttled or unreachable AWS must still end in time with what it has. The
deadline is wall-clock time (epoch seconds) in ``RMSOPS_DEADLINE``, so the kernels of a triage,
forked or spawned later, inherit it with the environment.
"""

from __future__ import annotations

import os
import time

ENV = "RMSOPS_DEADLINE"
SECONDS_ENV = "RMSOPS_BUDGET_SECONDS"


def start(seconds: float) -> float:
    """Set this run's deadline ``seconds`` from now (for this process and those it starts)."""
    deadline = time.time() + seconds
    os.environ[ENV] = f"{deadline:.3f}"
    os.environ[SECONDS_ENV] = f"{seconds:g}"
    return deadline


def clear() -> None:
    os.environ.pop(ENV, None)
    os.environ.pop(SECONDS_ENV, None)


def describe() -> str:
    """The budget as a person reads it, e.g. ``240 s``."""
    return f"{os.environ.get(SECONDS_ENV, '?')} s"


def deadline() -> float | None:
    try:
        return float(os.environ[ENV])
    except (KeyError, ValueError):
        return None


def remaining() -> float | None:
    """Seconds left in the run's budget (never negative), or None when the run has no budget."""
    end = deadline()
    return None if end is None else max(0.0, end - time.time())


def exhausted() -> bool:
    left = remaining()
    return left is not None and left <= 0
