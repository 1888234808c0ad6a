"""Objects a process makes once and keeps to its end (imports, models, the check registry).

Python's collector walks every container it tracks, again and again as a process allocates:
the imports of pandas, matplotlib and boto3 alone are hundreds of thousands. Made inside
``setting_up()``, they are not collected while they are made (nothing there is garbage) and are
frozen afterwards (``gc.freeze``), out of the collector's sight. In a process that forks, frozen
objects also stay shared: a child's collections would otherwise write to their pages. A process
that lives only seconds also collects rarely (``collect_rarely``).
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager


def begin() -> None:
    """From here, no collection: what is made now lives on (see ``end``)."""
    gc.disable()


def end() -> None:
    """Freeze everything made so far, and collect again from here."""
    gc.freeze()
    gc.enable()


# Young objects a collection waits for in a process that lives seconds (Python's default: 700).
SHORT_LIFE_THRESHOLD = 50_000


def collect_rarely() -> None:
    """For a process that lives seconds (a check, the warm process's children): collect only every
    ``SHORT_LIFE_THRESHOLD`` new objects. A runbook's figures make cycles that die young, and the
    collector walked the young objects 700 times a triage, 0.3 s of CPU; this often, its runners
    collect once or twice each and hold no more memory (peak 1.05 GB for all its processes, as
    before). A check keeps most of what it makes to the end: there it saves little (70 -> 60 ms)."""
    gc.set_threshold(SHORT_LIFE_THRESHOLD, *gc.get_threshold()[1:])


_lock = threading.Lock()
_depth = 0  # setting_up() blocks open now: several threads may set up at once (a fleet's checks)
_resume = False  # whether the collector was on when the first of them began


@contextmanager
def setting_up() -> Iterator[None]:
    """No collection inside; everything made by the end is frozen. Nested or concurrent blocks
    collect again when the last one ends, if the collector was on when the first began."""
    global _depth, _resume
    with _lock:
        if _depth == 0:
            _resume = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            gc.freeze()
            if _depth == 0 and _resume:
                gc.enable()


_rarely = {"depth": 0, "previous": gc.get_threshold()}  # collecting_rarely() blocks open now, and the thresholds before


@contextmanager
def collecting_rarely() -> Iterator[None]:
    """``collect_rarely`` inside; the thresholds as they were afterwards (a program that goes on).
    Nested or concurrent blocks (a fleet's checks) put them back when the last one ends."""
    with _lock:
        if _rarely["depth"] == 0:
            _rarely["previous"] = gc.get_threshold()
            collect_rarely()
        _rarely["depth"] += 1
    try:
        yield
    finally:
        with _lock:
            _rarely["depth"] -= 1
            if _rarely["depth"] == 0:
                gc.set_threshold(*_rarely["previous"])
