"""A few calls at a time in daemon threads, their results in order: what a check waits on in parallel.

A check that fetches many things (X-Ray's traces five at a time, the ALB's log objects, health
URLs, TLS handshakes) waits for them side by side rather than one after another. With
``concurrent.futures.ThreadPoolExecutor`` the interpreter's exit waits for its threads, and they
work through every queued call first: once a run's time budget is spent and its command ends, a
hung endpoint could still hold the process for each remaining call's timeout. These threads are
daemons, so an abandoned fan-out never keeps the command alive, as ``checkpool``'s threads do not.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def each(fn: Callable[[T], R], items: Sequence[T], at_once: int, name: str = "rmsops-fanout") -> list[R]:
    """``[fn(item) for item in items]``, at most ``at_once`` calls running at a time.

    Every call is made; if some raised, the exception of the first such item (in ``items``'
    order) is raised once all have ended, as ``ThreadPoolExecutor.map`` would."""
    if len(items) <= 1 or at_once <= 1:
        return [fn(item) for item in items]
    results: list[R | None] = [None] * len(items)
    errors: dict[int, BaseException] = {}
    lock = threading.Lock()
    pending = iter(range(len(items)))

    def worker() -> None:
        while True:
            with lock:
                index = next(pending, None)
            if index is None:
                return
            try:
                results[index] = fn(items[index])
            except BaseException as exc:  # noqa: BLE001 - handed to the caller below
                errors[index] = exc

    threads = [threading.Thread(target=worker, daemon=True, name=f"{name}-{n}")
               for n in range(min(at_once, len(items)))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[min(errors)]
    return results  # type: ignore[return-value]  # every slot was filled: no error
