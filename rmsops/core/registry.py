"""The check registry: each check's function, attached to its entry in the catalogue.

What a check is (its id, runbook, guide section, summary, whether the daily health check runs it)
is declared once, in ``rmsops.core.runbooks.CATALOGUE``; ``@check`` adds what only the code knows: the
function, its plot and the resource an error is reported against.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import pkgutil
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rmsops.core import failure, fanout, runbooks, sharedcache
from rmsops.core.findings import Finding, Severity

if TYPE_CHECKING:  # the checks import pandas; the catalogue alone (a triage's command) need not
    import pandas as pd


@dataclass
class CheckResult:
    """What a check saw (DataFrames) and what it judged (findings)."""

    findings: list[Finding]
    data: pd.DataFrame | None = None
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)
    check: str = ""
    seconds: float = 0.0
    # Moments to mark on the check's figures (deployments, OOM kills), taken when the check ran, so
    # that drawing a figure never calls AWS.
    markers: list[tuple[datetime, str]] = field(default_factory=list)

    @property
    def worst(self) -> Severity:
        return min((f.severity for f in self.findings), key=lambda s: s.rank, default=Severity.OK)


# The context is rmsops.core.context.Context. It is not imported here, not even for type checking:
# context imports this module, and the import would close a cycle (context → registry → context).
CheckFn = Callable[[Any], CheckResult]
PlotFn = Callable[[CheckResult, Any], Any]
MarksFn = Callable[[Any], list[tuple[datetime, str]]]


@dataclass(frozen=True)
class CheckSpec:
    id: str
    runbook: str
    section: str
    fn: CheckFn
    summary: str
    plot: PlotFn | None = None
    quick: bool = True
    resource: str = ""
    summary_template: str = ""  # the catalogue's summary, naming thresholds (runbooks.format_summary)
    marks: MarksFn | None = None  # fetches the markers its figure shows

    def summary_with(self, thresholds: Mapping[str, float] | None) -> str:
        """The summary with the thresholds in force (``summary`` itself has the defaults)."""
        return runbooks.format_summary(self.summary_template, thresholds) if self.summary_template \
            else self.summary


REGISTRY: dict[str, CheckSpec] = {}


def check(check_id: str, *, plot: PlotFn | None = None, marks: MarksFn | None = None,
          resource: str = "") -> Callable[[CheckFn], CheckFn]:
    """Register a check function under its catalogue id; the runbook, guide section, summary and
    whether it is quick come from the catalogue (rmsops/core/runbooks.py), which must know the id."""
    try:
        runbook, entry = runbooks.entry(check_id)
    except KeyError as exc:
        raise ValueError(f"@check({check_id!r}): {exc.args[0]}; declare it in the catalogue first") from None

    def register(fn: CheckFn) -> CheckFn:
        if check_id in REGISTRY:
            raise ValueError(f"check {check_id} registered twice")
        REGISTRY[check_id] = CheckSpec(check_id, runbook.stem, runbook.guide_section, fn, entry.summary_with(None),
                                       plot, entry.quick, resource, entry.summary, marks)
        return fn

    return register


def get(check_id: str) -> CheckSpec:
    if check_id not in REGISTRY:  # a module already imported (the first look's few) is enough
        load_all()
    try:
        return REGISTRY[check_id]
    except KeyError:
        raise KeyError(f"unknown check {check_id!r}") from None


def for_runbook(runbook: str, quick_only: bool = False) -> list[CheckSpec]:
    """The runbook's checks in catalogue order (the daily health check: every quick check)."""
    load_all()
    return [REGISTRY[c.id] for c in runbooks.runs(runbooks.find(runbook)) if c.quick or not quick_only]


def daily_checks() -> list[CheckSpec]:
    """The quick checks of every other diagnostic runbook: the guide's 'System Health Check'."""
    load_all()
    return [REGISTRY[c.id] for c in runbooks.daily()]


_loaded = False


def load_all() -> None:
    """Import every check module, which registers its checks.

    Plugin-style discovery: the modules of the rmsops.checks package are found with pkgutil and
    imported by name, so this module never imports rmsops.checks statically (the checks import
    this module: a static import back would be a cycle, registry → checks → registry).
    """
    global _loaded
    if _loaded:
        return
    package = importlib.import_module("rmsops.checks")
    for module in pkgutil.iter_modules(package.__path__, f"{package.__name__}."):
        importlib.import_module(module.name)
    _loaded = True  # only once every module imported: a failed import is retried (and raises) next time


def run(spec: CheckSpec, ctx: Any) -> CheckResult:
    """Run one check; it never raises: a failure becomes an ``error`` finding with the reason.

    In a triage (a shared cache is set) a check runs once for all the runbooks' processes: the
    first to need it runs it, the others wait for its result. The first look runs ahead that way
    on the core the warm-up leaves idle, so the runbooks mostly find their checks done.
    """
    if _shared(spec, ctx):
        result = copy.copy(ctx.memo(f"check:{spec.id}:{_digest(ctx.thresholds)}", lambda: _judged(spec, ctx)))
    else:
        result = _judged(spec, ctx)
    # Findings name the runbook that ran them: the daily health check reports as itself.
    runbook = getattr(ctx, "runbook", "") or spec.runbook
    result.findings = [f.placed(runbook, spec.section) for f in result.findings]
    return result


# Checks of one runbook started at once in a triage (``start_ahead``): a runbook has two to six.
AHEAD_JOBS = 4


def start_ahead(runbook: str, ctx: Any, jobs: int = AHEAD_JOBS) -> int:
    """In a triage, start the runbook's checks now, ``jobs`` at a time, in daemon threads; how many
    started.

    A runbook's cells run its checks one after another, and against a real account each check
    waits on a few AWS calls of 50-200 ms: one after another, a runbook took the sum of those
    waits (3.3 s for runbook 12 at 200 ms a call). Started at once they overlap, and each cell
    finds its result done or under way (``run`` shares a check's result through ``ctx.memo``; the
    first look, running ahead in another process, meets them through the triage's shared cache).
    Outside a triage nothing is shared, so nothing is started: a cell run in JupyterLab runs its
    check when it runs. A check that fails here has its error finding shown by its cell, as ever.
    """
    if sharedcache.current() is None:
        return 0
    wanted = [spec for spec in for_runbook(runbook) if _shared(spec, ctx)]
    if not wanted:
        return 0
    # One thread hands the checks out, ``jobs`` at a time (``fanout``: daemons, never holding an exit);
    # ``run`` never raises, and each result waits in ``ctx.memo`` for its cell.
    threading.Thread(target=fanout.each, args=(lambda spec: run(spec, ctx), wanted, jobs, "rmsops-ahead"),
                     daemon=True, name="rmsops-ahead").start()
    return len(wanted)


def _shared(spec: CheckSpec, ctx: Any) -> bool:
    """Whether the check's result is the triage's to share: not when it judges its runbook's input,
    the other runbooks' findings (escalation.level), which no other process has. Escalation's recent
    changes are shared: the first look runs them ahead, the timeline draws them."""
    return sharedcache.current() is not None and hasattr(ctx, "memo") and not runbooks.reads_findings(spec.id)


def _digest(values: Mapping[str, float]) -> str:
    """The thresholds a result was judged with, in short: `-p` overrides make another result."""
    return hashlib.sha256(repr(sorted(values.items())).encode()).hexdigest()[:16]


def _judged(spec: CheckSpec, ctx: Any) -> CheckResult:
    started = time.monotonic()
    try:
        result = spec.fn(ctx)
        if not result.findings:
            raise RuntimeError("the check produced no finding (a bug in rmsops)")
    except Exception as exc:  # noqa: BLE001 - the contract: a check never raises into a notebook
        result = CheckResult(findings=[error_finding(spec, _reason(exc))])
    result.check = spec.id
    if spec.marks is not None and spec.plot is not None:
        result.markers = _markers(spec, ctx)
    result.seconds = time.monotonic() - started
    return result


def _markers(spec: CheckSpec, ctx: Any) -> list[tuple[datetime, str]]:
    try:
        return list(spec.marks(ctx)) if spec.marks else []
    except Exception:  # noqa: BLE001 - markers are decoration; the checks report a failing source
        return []


def _reason(exc: Exception) -> str:
    try:
        return failure.describe(exc)
    except Exception:  # noqa: BLE001 - describing must not lose the finding
        return f"{type(exc).__name__} (rmsops could not describe it further)"


def error_finding(spec: CheckSpec, reason: str, resource: str = "") -> Finding:
    return Finding(
        check=spec.id, severity=Severity.ERROR, resource=resource or spec.resource or spec.id,
        title=f"Could not run: {spec.summary}", detail=reason, evidence={"reason": reason},
        resolution="Fix the cause named in the detail and run the runbook again.",
        runbook=spec.runbook, guide_section=spec.section,
    )
