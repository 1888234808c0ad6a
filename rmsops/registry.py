"""The check registry: one source of truth per check (the function and its registration)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from rmsops import failure
from rmsops.findings import Finding, Severity

if TYPE_CHECKING:
    from rmsops.context import Context


@dataclass
class CheckResult:
    """What a check saw (DataFrames) and what it judged (findings)."""

    findings: list[Finding]
    data: pd.DataFrame | None = None
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)
    check: str = ""
    seconds: float = 0.0

    @property
    def worst(self) -> Severity:
        return min((f.severity for f in self.findings), key=lambda s: s.rank, default=Severity.OK)


CheckFn = Callable[["Context"], CheckResult]
PlotFn = Callable[[CheckResult, "Context"], Any]


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


REGISTRY: dict[str, CheckSpec] = {}


def check(check_id: str, *, runbook: str, quick: bool = True, plot: PlotFn | None = None,
          resource: str = "") -> Callable[[CheckFn], CheckFn]:
    """Register a check function under its catalogue id; the guide section comes from the runbook."""
    from rmsops import runbooks

    def register(fn: CheckFn) -> CheckFn:
        if check_id in REGISTRY:
            raise ValueError(f"check {check_id} registered twice")
        summary = (fn.__doc__ or check_id).strip().splitlines()[0]
        REGISTRY[check_id] = CheckSpec(check_id, runbook, runbooks.section(runbook), fn, summary,
                                       plot, quick, resource)
        return fn

    return register


def get(check_id: str) -> CheckSpec:
    load_all()
    try:
        return REGISTRY[check_id]
    except KeyError:
        raise KeyError(f"unknown check {check_id!r}") from None


DAILY = "17-daily-health-check"


def for_runbook(runbook: str, quick_only: bool = False) -> list[CheckSpec]:
    """The runbook's checks in catalogue order (the daily health check: every quick check)."""
    from rmsops import runbooks

    load_all()
    found = runbooks.find(runbook)
    if found.stem == DAILY:
        return daily_checks()
    specs = [REGISTRY[cid] for cid in found.checks]
    return [s for s in specs if s.quick or not quick_only]


def daily_checks() -> list[CheckSpec]:
    """The quick checks of every other diagnostic runbook: the guide's 'System Health Check'."""
    from rmsops import runbooks

    return [spec for rb in runbooks.diagnostic() if rb.stem != DAILY
            for spec in for_runbook(rb.stem, quick_only=True)]


def load_all() -> None:
    import rmsops.checks  # noqa: F401  (importing registers every check)


def run(spec: CheckSpec, ctx: Context) -> CheckResult:
    """Run one check; it never raises: a failure becomes an ``error`` finding with the reason."""
    started = time.monotonic()
    try:
        result = spec.fn(ctx)
        if not result.findings:
            raise RuntimeError("the check produced no finding (a bug in rmsops)")
    except Exception as exc:  # noqa: BLE001 - the contract: a check never raises into a notebook
        result = CheckResult(findings=[error_finding(spec, _reason(exc))])
    result.check = spec.id
    # Findings name the runbook that ran them: the daily health check reports as itself.
    runbook = getattr(ctx, "runbook", "") or spec.runbook
    result.findings = [f.placed(runbook, spec.section) for f in result.findings]
    result.seconds = time.monotonic() - started
    return result


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
