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
# Imported before the first look forks (rmsops.execution.zygote.FIRST_LOOK_MODULES): the HTTP check
# needs pandas alone, so it runs while the first look imports botocore and psycopg for the others.
EARLY_MODULES = MODULES[:1]
# Checks of the runbooks that mostly wait on a third party (the incident demo's payment gateway
# answers after 2.4 s), with the module that declares each (their URLs: ``probes.PROBED_URLS``):
# started the moment the first look begins, in their own threads, rather than when a runbook or the
# run-ahead reaches them, so the wait overlaps the warm-up and everyone else's work.
WAITING = {"external.http.health": "rmsops.checks.external"}


def order(env_path: str, start: str, end: str, runbook_stems: list[str] | None = None,
          overrides: dict[str, float] | None = None) -> dict[str, Any]:
    """What the zygote needs to take the first look (JSON-able), and then to run ahead: the checks
    of ``runbook_stems`` (``ahead``), judged with ``overrides`` as the runbooks will judge them."""
    return {"env": env_path, "start": start, "end": end, "checks": list(CHECKS),
            "ahead": ahead(runbook_stems or []), "overrides": overrides or {}}


def ahead(runbook_stems: list[str]) -> list[str]:
    """The checks of these runbooks, once each, those of the runbook a triage starts last first.

    The runbooks that start first (the costliest: ``triage.slowest_first``) run their own checks as
    soon as the warm-up is done, in as many processes; running ahead from the other end, this one
    process meets them in the middle instead of making them wait for it.
    """
    chosen = sorted((runbooks.find(stem) for stem in runbook_stems), key=lambda rb: rb.cost)
    return list(dict.fromkeys(c.id for rb in chosen for c in runbooks.runs(rb)
                              if c.id not in CHECKS and not c.reads_findings))


# The shared cache's key for who the triage runs as (rmsops.execution.triage reads it): asked here,
# where botocore is loaded, rather than in the command, which would import it for that one call.
IDENTITY_KEY = "aws:caller-identity"

# Checks run ahead at once. Against the demo's emulator (answers in a millisecond) 4 and 10 are alike;
# against a real account each call waits 50-200 ms, and at 200 ms 10 ended a triage 0.5 s sooner
# (benchmarks/latency.py).
AHEAD_JOBS = 10


def take(look: dict[str, Any], out_fd: int) -> None:
    """In the forked process: run the checks at once, write each one's findings as a JSON line;
    then run the runbooks' checks ahead of them, into the triage's shared cache
    (``rmsops.core.registry.run``), until they are all done or the triage ends (it kills us);
    meanwhile ask AWS who the run is, into the same cache (``IDENTITY_KEY``)."""
    import importlib
    import threading
    from concurrent.futures import Future, ThreadPoolExecutor

    from rmsops.core import longlived, registry
    from rmsops.core.context import Context

    for module in EARLY_MODULES:
        importlib.import_module(module)
    ctx = Context.open(look["env"], start=look["start"], end=look["end"],
                       threshold_overrides=look.get("overrides") or None)
    waiting = _start_waiting(ctx, [check for check in look.get("ahead") or [] if check in WAITING])
    try:
        with os.fdopen(out_fd, "w", encoding="utf-8") as out, ThreadPoolExecutor(len(look["checks"])) as pool:
            writing = threading.Lock()

            def report(done: Future) -> None:  # as each check finishes, even while the others import
                line = json.dumps({"findings": [f.to_dict() for f in done.result().findings]}) + "\n"
                with writing:
                    out.write(line)
                    out.flush()

            # The checks already declared (the early modules') start now; the rest once imported.
            early = [check for check in look["checks"] if check in registry.REGISTRY]
            for check in early:
                pool.submit(ctx.run, check).add_done_callback(report)
            with longlived.setting_up():  # botocore and psycopg: no collection while they are made
                for module in MODULES:
                    importlib.import_module(module)
            for check in look["checks"]:
                if check not in early:
                    pool.submit(ctx.run, check).add_done_callback(report)
        # Alongside the run-ahead: a slow or throttled STS must not hold the checks back.
        who = threading.Thread(target=_ask_who, args=(ctx,), daemon=True, name="rmsops-who")
        who.start()
        if look.get("ahead"):
            _run_ahead(ctx, [check for check in look["ahead"] if check not in WAITING])
        who.join(timeout=10)
        for thread in waiting:
            thread.join(timeout=60)
    finally:
        ctx.close()


def _start_waiting(ctx: Any, check_ids: list[str]) -> list[Any]:
    """Send the URLs' probes now and run each waiting check in a thread of its own: it holds the
    check's place in the shared cache, so a runbook that gets there later waits for this answer
    instead of sending its own and waiting the whole time again."""
    import contextlib
    import importlib
    import threading

    from rmsops.sources import probes

    def run(check: str) -> None:
        with contextlib.suppress(Exception):  # a preview: the runbook judges it again if this failed
            importlib.import_module(WAITING[check])
            ctx.run(check)

    threads = []
    for check in check_ids:
        probes.start(getattr(ctx.settings, probes.PROBED_URLS[check]), ctx.thresholds["health_timeout_seconds"])
        threads.append(threading.Thread(target=run, args=(check,), daemon=True, name=f"rmsops-{check}"))
        threads[-1].start()
    return threads


def _ask_who(ctx: Any) -> None:
    """Who the triage runs as, into the shared cache; a failure is stored too (the header says why)."""
    import contextlib

    from rmsops.core import aws, sharedcache

    cache = sharedcache.current()
    if cache is not None:
        with contextlib.suppress(Exception):
            cache.get(IDENTITY_KEY, lambda: aws.caller_identity(ctx.aws))


def _run_ahead(ctx: Any, check_ids: list[str]) -> None:
    from rmsops.core import longlived, registry
    from rmsops.execution import checkpool

    with longlived.setting_up():  # every check module, matplotlib too: a full collection after them took 0.1 s
        registry.load_all()
    checkpool.run_checks(ctx, [registry.get(check) for check in check_ids], jobs=AHEAD_JOBS)


def read(in_fd: int, on_findings: Callable[[list[Any]], None]) -> None:
    """In the command: hand each line's findings over until the first-look process is done."""
    from rmsops.core.findings import Finding

    with os.fdopen(in_fd, "r", encoding="utf-8") as stream:
        for line in stream:
            try:
                on_findings([Finding.from_dict(f) for f in json.loads(line)["findings"]])
            except (ValueError, KeyError, TypeError):
                continue  # a first look is a preview: a bad line is skipped, the runbooks still run
