"""HTTP health endpoints (guide §1 step 1, 'Quick service status')."""

from __future__ import annotations

import http.client
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import pandas as pd

from rmsops.findings import Finding, Severity
from rmsops.registry import CheckResult, check

if TYPE_CHECKING:
    from rmsops.context import Context

RUNBOOK = "01-application-not-responding"
COLUMNS = ["name", "url", "status", "seconds", "error"]


def probe(name: str, url: str, timeout: float) -> dict:
    """One GET; never raises. ``status`` is None when no HTTP answer came back."""
    started = time.monotonic()
    request = urllib.request.Request(url, headers={"User-Agent": "rmsops-health-check"})
    status, error = None, ""
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - configured URLs
            response.read(65536)  # a body that never arrives is a timeout, not a 200
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        error = "timed out" if isinstance(reason, TimeoutError) or "timed out" in str(reason) else str(reason)
    except http.client.HTTPException as exc:  # the peer does not speak HTTP
        error = f"not an HTTP answer ({type(exc).__name__})"
    return {"name": name, "url": url, "status": status, "seconds": round(time.monotonic() - started, 3),
            "error": error}


def fetch_health(urls: dict[str, str], timeout: float) -> pd.DataFrame:
    if not urls:
        return pd.DataFrame(columns=COLUMNS)
    with ThreadPoolExecutor(max_workers=min(8, len(urls))) as pool:
        rows = list(pool.map(lambda item: probe(item[0], item[1], timeout), urls.items()))
    return pd.DataFrame(rows, columns=COLUMNS)


def judge_health(df: pd.DataFrame, thresholds: dict[str, float]) -> list[Finding]:
    cid = "app.health.endpoint"
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


@check("app.health.endpoint", runbook=RUNBOOK, resource="health_urls")
def health_endpoint(ctx: Context) -> CheckResult:
    """HTTP GET of each configured health URL."""
    df = fetch_health(ctx.settings.health_urls, ctx.thresholds["health_timeout_seconds"])
    return CheckResult(findings=judge_health(df, ctx.thresholds), data=df)
