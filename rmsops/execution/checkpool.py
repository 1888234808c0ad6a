"""Checks run concurrently, bounded, inside the run's time budget (``rmsops check``).

Checks mostly wait on AWS and the database, so running them one after another adds their waits
up. Here ``jobs`` run at once and share the context's fetches (a failed one too). Whatever has
not finished when the budget runs out becomes an ``error`` finding that says so; the threads are
daemons, so a check stuck on a network call never keeps the command alive.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

from rmsops.core import registry
from rmsops.core.context import Context
from rmsops.core.registry import CheckResult, CheckSpec

DEFAULT_JOBS = 16  # they wait on the network far more than they compute


def run_checks(ctx: Context, specs: list[CheckSpec], jobs: int = DEFAULT_JOBS, budget_seconds: float | None = None,
               on_result: Callable[[CheckResult], None] | None = None,
               usual_seconds: dict[str, float] | None = None) -> list[CheckResult]:
    """Every check's result in the order given; those that did not finish in time are errors.

    ``usual_seconds`` ({check id: seconds}, ``rmsops.execution.durations``): the slowest start first.
    """
    todo: queue.Queue[tuple[int, CheckSpec]] = queue.Queue()
    usual = usual_seconds or {}
    for item in sorted(enumerate(specs), key=lambda item: -usual.get(item[1].id, 0.0)):
        todo.put(item)
    done: queue.Queue[tuple[int, CheckResult]] = queue.Queue()

    def worker() -> None:
        while True:
            try:
                index, spec = todo.get_nowait()
            except queue.Empty:
                return
            done.put((index, registry.run(spec, ctx)))

    for n in range(max(1, min(jobs, len(specs)))):
        threading.Thread(target=worker, daemon=True, name=f"rmsops-check-{n}").start()
    deadline = None if budget_seconds is None else time.monotonic() + budget_seconds
    results: dict[int, CheckResult] = {}
    while len(results) < len(specs):
        wait = None if deadline is None else deadline - time.monotonic()
        if wait is not None and wait <= 0:
            break
        try:
            index, result = done.get(timeout=wait)
        except queue.Empty:
            break
        results[index] = result
        if on_result:
            on_result(result)
    reason = (f"did not finish within the run's time budget ({budget_seconds:g} s): AWS or the database "
              "answered too slowly; the other checks' findings stand") if budget_seconds is not None else ""
    return [results.get(i) or unfinished(spec, ctx, reason) for i, spec in enumerate(specs)]


def overran(results: list[CheckResult]) -> bool:
    """Whether some check was still running when the budget ran out."""
    return any(result.seconds < 0 for result in results)


def unfinished(spec: CheckSpec, ctx: Context, reason: str) -> CheckResult:
    runbook = getattr(ctx, "runbook", "") or spec.runbook
    finding = registry.error_finding(spec, reason).placed(runbook, spec.section)
    return CheckResult(findings=[finding], check=spec.id, seconds=-1.0)  # -1: it never finished
