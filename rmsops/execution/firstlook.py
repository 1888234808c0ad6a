"""The first look: the few checks that answer "is it up?", on screen seconds after a triage starts.

They run in a process the kernel zygote forks as soon as it has imported the checks, before it
goes on warming up for the runbooks, and report over a pipe; the live view shows them first.
Their fetches go into the triage's shared cache, so the runbooks that repeat them do not ask AWS
again. The runbooks stay the evidence: first-look findings are shown, not added to the bundle.

This module is light to import: the command line imports it before anything heavy.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from rmsops.core import runbooks  # light: the catalogue alone

# Is the API answering, are its targets healthy, are its tasks running, is the database reachable?
# The catalogue's entries with a first_look place (app.health.endpoint, app.alb.target_health,
# app.ecs.capacity, db.connectivity), in that order.
CHECKS: tuple[str, ...] = runbooks.first_look()
# The check modules that declare them: imported alone, they cost pandas and botocore, not every
# check module and matplotlib (tests/test_firstlook.py holds this list to CHECKS).
MODULES = ("rmsops.checks.health", "rmsops.checks.alb", "rmsops.checks.ecs", "rmsops.checks.database")


def order(env_path: str, start: str, end: str) -> dict[str, Any]:
    """What the zygote needs to take the first look (JSON-able)."""
    return {"env": env_path, "start": start, "end": end, "checks": list(CHECKS)}


def take(look: dict[str, Any], out_fd: int) -> None:
    """In the forked process: run the checks at once, write each one's findings as a JSON line."""
    import importlib
    from concurrent.futures import ThreadPoolExecutor, as_completed

    from rmsops.core.context import Context

    for module in MODULES:
        importlib.import_module(module)
    ctx = Context.open(look["env"], start=look["start"], end=look["end"])
    with os.fdopen(out_fd, "w", encoding="utf-8") as out, ThreadPoolExecutor(len(look["checks"])) as pool:
        try:
            for done in as_completed([pool.submit(ctx.run, check) for check in look["checks"]]):
                out.write(json.dumps({"findings": [f.to_dict() for f in done.result().findings]}) + "\n")
                out.flush()
        finally:
            ctx.close()


def read(in_fd: int, on_findings: Callable[[list[Any]], None]) -> None:
    """In the command: hand each line's findings over until the first-look process is done."""
    from rmsops.core.findings import Finding

    with os.fdopen(in_fd, "r", encoding="utf-8") as stream:
        for line in stream:
            try:
                on_findings([Finding.from_dict(f) for f in json.loads(line)["findings"]])
            except (ValueError, KeyError, TypeError):
                continue  # a first look is a preview: a bad line is skipped, the runbooks still run
