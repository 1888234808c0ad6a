"""HTTP health endpoints (guide §1 step 1, 'Quick service status')."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from rmsops.core.findings import Finding, Severity
from rmsops.core.registry import CheckResult, check
from rmsops.sources.http import COLUMNS, fetch_health, probe  # noqa: F401 - re-exported for callers of this module

if TYPE_CHECKING:
    from rmsops.core.context import Context

RUNBOOK = "01-application-not-responding"
# Check ids, declared in the catalogue (rmsops/core/runbooks.py); the judges take theirs as `cid`.
HEALTH_ENDPOINT = "app.health.endpoint"


def judge_health(df: pd.DataFrame, thresholds: dict[str, float], cid: str = HEALTH_ENDPOINT) -> list[Finding]:
    if df.empty:
        return [Finding(cid, Severity.INFO, "health_urls", "No health URLs configured",
                        "Add health_urls to the environment file to probe the API and frontend.")]
    slow = thresholds["health_slow_seconds"]
    findings = []
    for row in df.itertuples(index=False):
        evidence = {"url": row.url, "status": None if pd.isna(row.status) else int(row.status),
                    "seconds": row.seconds, "slow_seconds": slow, "error": row.error}
        if pd.isna(row.status):
            findings.append(Finding(
                cid, Severity.CRITICAL, row.url, f"{row.name} health check failed: {row.error}",
                f"No HTTP answer after {row.seconds:.1f} s ({row.error}).", evidence,
                "Check ECS service status and ALB target health below; if tasks are unhealthy, "
                "force a new deployment (rmsops action force-new-deployment)."))
        elif not 200 <= int(row.status) < 300:
            findings.append(Finding(
                cid, Severity.CRITICAL, row.url, f"{row.name} health check returned HTTP {int(row.status)}",
                f"HTTP {int(row.status)} in {row.seconds:.2f} s.", evidence,
                "HTTP 502/503 from the ALB means no healthy target: check target health and "
                "force a new deployment if tasks are unhealthy."))
        elif row.seconds > slow:
            findings.append(Finding(
                cid, Severity.WARNING, row.url, f"{row.name} health check is slow ({row.seconds:.1f} s)",
                f"HTTP {int(row.status)} in {row.seconds:.2f} s, above {slow:g} s.", evidence,
                "Slow responses: see the slow-api-responses runbook (06)."))
        else:
            findings.append(Finding(
                cid, Severity.OK, row.url, f"{row.name} is healthy (HTTP {int(row.status)})",
                f"HTTP {int(row.status)} in {row.seconds:.2f} s.", evidence))
    return findings


@check(HEALTH_ENDPOINT, resource="health_urls")
def health_endpoint(ctx: Context) -> CheckResult:
    """HTTP GET of each configured health URL."""
    df = fetch_health(ctx.settings.health_urls, ctx.thresholds["health_timeout_seconds"])
    return CheckResult(findings=judge_health(df, ctx.thresholds), data=df)
