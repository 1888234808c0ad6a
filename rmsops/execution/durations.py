"""How long each check took in this environment last time, so that the slowest start first.

A check that waits on something slow (a third-party URL that takes seconds, a saturated database)
started last would hold the whole command up by its wait; started first, its wait overlaps the
others' work. The figures are a hint kept in the user's cache folder, per environment: a missing
or broken file only means catalogue order, and failing to save them never fails a run.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from rmsops.core import cachedir

if TYPE_CHECKING:
    from rmsops.core.registry import CheckResult

KEEP = 0.5  # weight of the figure remembered against the new one: one odd run does not decide


def path() -> Path:
    """check-seconds.json in the user's cache folder (``rmsops.core.cachedir``)."""
    return cachedir.root() / "check-seconds.json"


def load(environment: str) -> dict[str, float]:
    """{check id: seconds} remembered for ``environment`` ({} when there is nothing usable)."""
    try:
        known = json.loads(path().read_text(encoding="utf-8")).get(environment, {})
        return {str(k): float(v) for k, v in known.items()}
    except (OSError, ValueError, AttributeError, TypeError):
        return {}


def remember(environment: str, results: Iterable[CheckResult]) -> None:
    """Blend this run's times into the file (checks that never finished are left out)."""
    with contextlib.suppress(OSError, ValueError, AttributeError, TypeError):
        target = path()
        try:
            everything = json.loads(target.read_text(encoding="utf-8"))
            if not isinstance(everything, dict):
                everything = {}
        except (OSError, ValueError):
            everything = {}
        known = everything.get(environment, {})
        for result in results:
            if result.seconds >= 0:
                old = known.get(result.check, result.seconds)
                known[result.check] = round(KEEP * old + (1 - KEEP) * result.seconds, 3)
        everything[environment] = known
        cachedir.write(target, json.dumps(everything).encode("utf-8"))
