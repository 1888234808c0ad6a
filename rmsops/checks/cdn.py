"""CloudFront and static assets: the distribution, asset reachability, error rates, cache hits (guide §5)."""

from __future__ import annotations

import http.client
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

import pandas as pd

from rmsops.core import fanout
from rmsops.core.findings import Finding, Severity
from rmsops.core.registry import CheckResult, check
from rmsops.render import plots
from rmsops.sources import metrics, regions
from rmsops.sources.cloudfront import matching_distributions, primary_distribution

if TYPE_CHECKING:
    from rmsops.core.context import Context

RUNBOOK = "05-cdn-static-assets"
# Check ids, declared in the catalogue (rmsops/core/runbooks.py); the judges take theirs as `cid`.
ASSETS_REACHABLE = "cdn.assets.reachable"
CLOUDFRONT_CACHE_HIT = "cdn.cloudfront.cache_hit"
CLOUDFRONT_DISTRIBUTION = "cdn.cloudfront.distribution"
CLOUDFRONT_ERROR_RATE = "cdn.cloudfront.error_rate"
DISTRIBUTION_COLUMNS = ["id", "domain", "status", "enabled", "aliases", "origins", "last_modified"]
ASSET_COLUMNS = ["path", "url", "status", "seconds", "error", "x_cache", "content_type", "content_length"]
RATE_METRICS = ("4xxErrorRate", "5xxErrorRate")
CACHE_METRIC = "CacheHitRate"
REQUESTS_METRIC = "Requests"  # tells whether the distribution served traffic in the window

INVALIDATE = ("Cache issues: create a CloudFront invalidation (rmsops action invalidate-cloudfront, "
              "paths=/* by default).")
ORIGIN = "Origin issues: verify S3 bucket permissions and ALB health (runbook 01)."


# --- the distribution ------------------------------------------------------------------------------

def distribution_frame(items: list[dict[str, Any]]) -> pd.DataFrame:
    rows = [{"id": d["Id"], "domain": d.get("DomainName", ""), "status": d.get("Status", ""),
             "enabled": bool(d.get("Enabled")), "aliases": list(d.get("Aliases", {}).get("Items", [])),
             "origins": [o.get("DomainName", "") for o in d.get("Origins", {}).get("Items", [])],
             "last_modified": d.get("LastModifiedTime")} for d in items]
    return pd.DataFrame(rows, columns=DISTRIBUTION_COLUMNS)


def judge_distribution(df: pd.DataFrame, comment: str, cid: str = CLOUDFRONT_DISTRIBUTION) -> list[Finding]:
    if df.empty:
        return [Finding(cid, Severity.CRITICAL, f"cloudfront:{comment}",
                        f"No CloudFront distribution with comment {comment!r}",
                        "list_distributions found none: static assets are not served through the CDN "
                        "(or cloudfront.comment in the environment file is wrong).", {"comment": comment},
                        "Check cloudfront.comment; if the distribution was deleted, restore it from the "
                        "infrastructure code (terraform apply).")]
    findings = []
    shared = f" {len(df)} distributions share the comment {comment!r}." if len(df) > 1 else ""
    for row in df.itertuples(index=False):
        resource = f"cloudfront:{row.id}"
        evidence = {"id": row.id, "domain": row.domain, "status": row.status, "enabled": bool(row.enabled),
                    "aliases": list(row.aliases), "origins": list(row.origins),
                    "last_modified": None if pd.isna(row.last_modified) else row.last_modified,
                    "matches": len(df)}
        name = f"{row.id} ({row.domain})"
        if not row.enabled:
            findings.append(Finding(cid, Severity.CRITICAL, resource, f"Distribution {name} is disabled",
                                    f"Enabled is false: CloudFront serves nothing for it.{shared}", evidence,
                                    "Enable the distribution again (aws cloudfront update-distribution with "
                                    "Enabled=true) once the reason it was disabled is understood."))
        elif row.status != "Deployed":
            findings.append(Finding(cid, Severity.WARNING, resource,
                                    f"Distribution {name} is {row.status}, not Deployed",
                                    f"A configuration change is still propagating to the edge locations; "
                                    f"edges may serve the old and new configuration for a while.{shared}",
                                    evidence, "Wait for the status to become Deployed (usually minutes); "
                                              "if it stays InProgress, check the last change to it."))
        else:
            findings.append(Finding(cid, Severity.OK, resource, f"Distribution {name} is enabled and Deployed",
                                    f"Aliases: {', '.join(row.aliases) or 'none'}; origins: "
                                    f"{', '.join(row.origins) or 'none'}.{shared}", evidence))
    return findings


@check(CLOUDFRONT_DISTRIBUTION)
def distribution(ctx: Context) -> CheckResult:
    """The CloudFront distribution found by its comment: enabled and Deployed."""
    df = distribution_frame(matching_distributions(ctx))
    return CheckResult(findings=judge_distribution(df, ctx.settings.cloudfront_comment), data=df)


# --- cdn.assets.reachable ----------------------------------------------------------------------------

def head(path: str, url: str, timeout: float) -> dict[str, Any]:
    """One HEAD request (the guide's ``curl -I``); never raises. ``status`` is None without an answer."""
    started = time.monotonic()
    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "rmsops-cdn-check"})
    row: dict[str, Any] = {"path": path, "url": url, "status": None, "error": "", "x_cache": "",
                           "content_type": "", "content_length": None}
    headers = None
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - configured URLs
            row["status"], headers = response.status, response.headers
    except urllib.error.HTTPError as exc:
        row["status"], headers = exc.code, exc.headers
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        row["error"] = "timed out" if isinstance(reason, TimeoutError) or "timed out" in str(reason) else str(reason)
    except http.client.HTTPException as exc:
        row["error"] = f"not an HTTP answer ({type(exc).__name__})"
    if headers is not None:
        row["x_cache"] = headers.get("X-Cache", "")
        row["content_type"] = headers.get("Content-Type", "")
        length = headers.get("Content-Length")
        row["content_length"] = int(length) if length and length.isdigit() else None
    row["seconds"] = round(time.monotonic() - started, 3)
    return row


def asset_base_url(ctx: Context) -> str | None:
    """cloudfront.base_url, else https://<the distribution's domain>."""
    if ctx.settings.cdn_base_url:
        return ctx.settings.cdn_base_url.rstrip("/")
    dist = primary_distribution(ctx)
    return f"https://{dist['DomainName']}" if dist else None


def fetch_assets(base: str | None, paths: tuple[str, ...], timeout: float) -> pd.DataFrame:
    if not base or not paths:
        return pd.DataFrame(columns=ASSET_COLUMNS)
    targets = [(p, base + (p if p.startswith("/") else "/" + p)) for p in paths]
    rows = fanout.each(lambda t: head(t[0], t[1], timeout), targets, 8, "rmsops-asset")
    return pd.DataFrame(rows, columns=ASSET_COLUMNS)


def judge_assets(df: pd.DataFrame, base: str | None, paths: tuple[str, ...],
                 cid: str = ASSETS_REACHABLE) -> list[Finding]:
    if not paths:
        return [Finding(cid, Severity.INFO, "cloudfront.asset_paths", "No asset paths configured",
                        "Add cloudfront.asset_paths (e.g. /assets/logo.png) to the environment file to test "
                        "that static assets load through the CDN.")]
    if not base:
        return [Finding(cid, Severity.INFO, "cloudfront.base_url", "No URL to test the assets through",
                        "The distribution was not found and cloudfront.base_url is not set.",
                        {"paths": list(paths)})]
    failing = df[df["status"].isna() | (df["status"].fillna(0) >= 400)]
    all_failing = len(failing) == len(df)
    findings = []
    for row in df.itertuples(index=False):
        status = None if pd.isna(row.status) else int(row.status)
        evidence = {"url": row.url, "status": status, "seconds": row.seconds, "error": row.error,
                    "x_cache": row.x_cache, "content_type": row.content_type,
                    "content_length": None if pd.isna(row.content_length) else int(row.content_length),
                    "failing": len(failing), "tested": len(df)}
        if status is not None and status < 400:
            findings.append(Finding(cid, Severity.OK, row.url, f"{row.path}: HTTP {status}",
                                    f"HTTP {status} in {row.seconds:.2f} s"
                                    + (f" ({row.x_cache})" if row.x_cache else "") + ".", evidence))
            continue
        severity = Severity.CRITICAL if all_failing else Severity.WARNING
        scope = f"all {len(df)} assets fail" if all_failing else f"{len(failing)} of {len(df)} assets fail"
        if status is None:
            what, resolution = f"no answer ({row.error})", ORIGIN
        elif status == 404:
            what = "HTTP 404"
            resolution = ("404 errors for static assets: check that the deployment uploaded the object to the "
                          "origin bucket; if the edge still serves a stale answer, create a CloudFront "
                          "invalidation (rmsops action invalidate-cloudfront).")
        elif status == 403:
            what, resolution = "HTTP 403", ("Origin issues: verify S3 bucket permissions (S3 answers 403 for a "
                                            "missing object or a bucket policy that denies CloudFront).")
        else:
            what, resolution = f"HTTP {status}", ORIGIN
        findings.append(Finding(cid, severity, row.url, f"{row.path}: {what}",
                                f"{what} after {row.seconds:.2f} s; {scope}.", evidence, resolution))
    return findings


@check(ASSETS_REACHABLE, resource="cloudfront.asset_paths")
def assets_reachable(ctx: Context) -> CheckResult:
    """HEAD of each configured asset path through the distribution."""
    paths = ctx.settings.asset_paths
    base = asset_base_url(ctx) if paths else None
    df = fetch_assets(base, paths, ctx.thresholds["health_timeout_seconds"])
    return CheckResult(findings=judge_assets(df, base, paths), data=df)


# --- CloudWatch: error rates and cache hits -----------------------------------------------------------

def fetch_metrics(ctx: Context, distribution_id: str) -> tuple[pd.DataFrame, int]:
    """4xxErrorRate, 5xxErrorRate, CacheHitRate (Average, percent) and Requests (Sum) of one
    distribution, read where CloudFront publishes them (us-east-1); once per run."""
    def fetch() -> tuple[pd.DataFrame, int]:
        dims = (("DistributionId", distribution_id), ("Region", "Global"))
        queries = [metrics.MetricQuery(f"m{i}", "AWS/CloudFront", name, dims, "Average", name)
                   for i, name in enumerate((*RATE_METRICS, CACHE_METRIC))]
        queries.append(metrics.MetricQuery("requests", "AWS/CloudFront", REQUESTS_METRIC, dims, "Sum",
                                           REQUESTS_METRIC))
        period = metrics.period_for(ctx.window.seconds)
        return metrics.fetch(ctx, queries, period, region=regions.region_for(ctx, "cloudfront.metrics")), period
    return ctx.memo(f"cloudfront.metrics.{distribution_id}", fetch)


def looked_in(distribution_id: str, region: str) -> str:
    """Where the metrics were read, for a finding that found none."""
    return f"AWS/CloudFront in {region} (DistributionId={distribution_id}, Region=Global)"


def requests_served(df: pd.DataFrame) -> float | None:
    """The distribution's Requests in the window; None when CloudWatch had no Requests datapoints."""
    values = df.loc[df["label"] == REQUESTS_METRIC, "value"] if not df.empty else pd.Series(dtype=float)
    return float(values.sum()) if len(values) else None


def summarise(df: pd.DataFrame, names: tuple[str, ...]) -> dict[str, dict[str, float]]:
    out = {}
    for name in names:
        values = df.loc[df["label"] == name, "value"] if not df.empty else pd.Series(dtype=float)
        if len(values):
            out[name] = {"average": round(float(values.mean()), 3), "peak": round(float(values.max()), 3),
                         "lowest": round(float(values.min()), 3), "datapoints": len(values)}
    return out


def judge_error_rate(df: pd.DataFrame, thresholds: dict[str, float], distribution_id: str | None,
                     region: str = "us-east-1", requests: float | None = None,
                     cid: str = CLOUDFRONT_ERROR_RATE) -> list[Finding]:
    """``region``: where the metrics were read; ``requests``: the distribution's Requests in the
    window (None: no Requests datapoints either)."""
    limit = thresholds["cdn_error_rate_pct"]
    if distribution_id is None:
        return [Finding(cid, Severity.INFO, "cloudfront", "No distribution to read error rates of",
                        "See cdn.cloudfront.distribution.")]
    resource = f"cloudfront:{distribution_id}"
    stats = summarise(df, RATE_METRICS)
    where = looked_in(distribution_id, region)
    evidence = {"threshold_pct": limit, "metrics": stats, "looked_in": where, "requests": requests}
    if not stats and requests:
        return [Finding(cid, Severity.WARNING, resource,
                        "CloudFront served traffic but its error rates could not be seen",
                        f"{requests:.0f} requests in the window, yet 4xxErrorRate and 5xxErrorRate have no "
                        f"datapoints in {where}: rmsops cannot tell whether the edge is failing.", evidence,
                        "Look at the distribution's Monitoring tab in the CloudFront console, and check that "
                        "the role may call cloudwatch:GetMetricData in us-east-1.")]
    if not stats:
        return [Finding(cid, Severity.INFO, resource, "No CloudFront error-rate datapoints in the window",
                        f"Neither the error rates nor Requests have datapoints in {where}: the distribution "
                        "served no traffic in the window.", evidence)]
    text = "; ".join(f"{name} average {s['average']:.2f}% (peak {s['peak']:.2f}%)" for name, s in stats.items())
    above = [name for name, s in stats.items() if s["average"] > limit]
    if not above:
        return [Finding(cid, Severity.OK, resource, f"CloudFront error rates below {limit:g}%", text + ".",
                        evidence)]
    resolution = (f"{ORIGIN} 5xx at the edge mean the origin fails or times out."
                  if "5xxErrorRate" in above else
                  f"4xx at the edge are mostly missing objects (404) or denied ones (403): see the assets "
                  f"check above. {INVALIDATE}")
    title = " and ".join(f"{name.replace('ErrorRate', '')} error rate {stats[name]['average']:.1f}%"
                         for name in above)
    return [Finding(cid, Severity.WARNING, resource, f"CloudFront {title} (above {limit:g}%)", text + ".",
                    evidence, resolution)]


def judge_cache_hit(df: pd.DataFrame, thresholds: dict[str, float], distribution_id: str | None,
                    region: str = "us-east-1", cid: str = CLOUDFRONT_CACHE_HIT) -> list[Finding]:
    info_pct, warning_pct = thresholds["cdn_cache_hit_info_pct"], thresholds["cdn_cache_hit_warning_pct"]
    if distribution_id is None:
        return [Finding(cid, Severity.INFO, "cloudfront", "No distribution to read the cache hit rate of",
                        "See cdn.cloudfront.distribution.")]
    resource = f"cloudfront:{distribution_id}"
    stats = summarise(df, (CACHE_METRIC,))
    evidence = {"info_below_pct": info_pct, "warning_below_pct": warning_pct, "metrics": stats}
    if not stats:
        return [Finding(cid, Severity.INFO, resource, "No CacheHitRate datapoints in the window",
                        "CacheHitRate is one of CloudFront's additional metrics: enable them on the "
                        f"distribution to see it (or: no traffic). Looked in "
                        f"{looked_in(distribution_id, region)}.", evidence)]
    average = stats[CACHE_METRIC]["average"]
    text = (f"Average {average:.1f}% over {stats[CACHE_METRIC]['datapoints']} datapoints "
            f"(lowest {stats[CACHE_METRIC]['lowest']:.1f}%).")
    resolution = ("A low cache hit rate sends most requests to the origin (slow page loads): check the cache "
                  "behaviours' TTLs, forwarded query strings, cookies and headers (each one splits the cache), "
                  "and whether a recent invalidation of /* emptied it.")
    if average < warning_pct:
        return [Finding(cid, Severity.WARNING, resource, f"Cache hit rate {average:.1f}% (below {warning_pct:g}%)",
                        text, evidence, resolution)]
    if average < info_pct:
        return [Finding(cid, Severity.INFO, resource, f"Cache hit rate {average:.1f}% (below {info_pct:g}%)",
                        text, evidence, resolution)]
    return [Finding(cid, Severity.OK, resource, f"Cache hit rate {average:.1f}%", text, evidence)]


def _metric_check(ctx: Context, names: tuple[str, ...]) -> tuple[pd.DataFrame, str | None, float | None]:
    """The named metrics of the primary distribution, its id and its Requests in the window."""
    dist = primary_distribution(ctx)
    if dist is None:
        return pd.DataFrame(columns=["timestamp", "id", "label", "value"]), None, None
    df, _ = fetch_metrics(ctx, dist["Id"])
    picked = df[df["label"].isin(names)].reset_index(drop=True) if not df.empty else df
    return picked, dist["Id"], requests_served(df)


def _rate_plot(result: CheckResult, ctx: Context):
    return plots.timeseries(result.data, "CloudFront error rates", "% of requests",
                            lines={"threshold": ctx.thresholds["cdn_error_rate_pct"]},
                            window=(ctx.window.start, ctx.window.end))


def _cache_plot(result: CheckResult, ctx: Context):
    return plots.timeseries(result.data, "CloudFront cache hit rate", "% of requests",
                            lines={"warning below": ctx.thresholds["cdn_cache_hit_warning_pct"],
                                   "info below": ctx.thresholds["cdn_cache_hit_info_pct"]},
                            window=(ctx.window.start, ctx.window.end))


@check(CLOUDFRONT_ERROR_RATE, plot=_rate_plot)
def error_rate(ctx: Context) -> CheckResult:
    """CloudFront 4xx and 5xx error rates over the window (CloudWatch)."""
    df, dist_id, requests = _metric_check(ctx, RATE_METRICS)
    region = regions.region_for(ctx, "cloudfront.metrics")
    return CheckResult(findings=judge_error_rate(df, ctx.thresholds, dist_id, region, requests), data=df)


@check(CLOUDFRONT_CACHE_HIT, plot=_cache_plot)
def cache_hit(ctx: Context) -> CheckResult:
    """CloudFront cache hit rate over the window (CloudWatch)."""
    df, dist_id, _ = _metric_check(ctx, (CACHE_METRIC,))
    region = regions.region_for(ctx, "cloudfront.metrics")
    return CheckResult(findings=judge_cache_hit(df, ctx.thresholds, dist_id, region), data=df)
