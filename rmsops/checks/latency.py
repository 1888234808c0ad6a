"""API latency: ALB TargetResponseTime percentiles and X-Ray's slowest subsegments.

Guide "Slow API Responses" (investigation: X-Ray traces, then the logs in ``checks.logs``) and
"Monitoring and Alerting" (request latency p50 / p90 / p99, ``metrics.latency``).

The percentiles come from one GetMetricData call with ``Stat: p50/p90/p99`` per period. The
judgement is on the worst period's p99 in the window (the detail says in how many periods it was
over the threshold, so a one-minute blip reads differently from a sustained slowdown).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from rmsops.checks.percentiles import (  # noqa: F401 - re-exported for callers of this module
    PERCENTILES,
    SLOW_RESOLUTION,
    fetch_percentiles,
    judge_percentiles,
    percentiles_plot,
    percentiles_result,
)
from rmsops.core.findings import Finding, Severity
from rmsops.core.registry import CheckResult, check
from rmsops.render import plots
from rmsops.sources import xray
from rmsops.sources.ecs import deployment_markers

if TYPE_CHECKING:
    from rmsops.core.context import Context

RUNBOOK = "06-slow-api-responses"
# Check ids, declared in the catalogue (rmsops/core/runbooks.py); the judges take theirs as `cid`.
LATENCY_PERCENTILES = "api.latency.percentiles"
XRAY_SLOW_SEGMENTS = "api.xray.slow_segments"
DOMINANT_SHARE = 0.5  # one subsegment taking more than this share of the slow traces' time
TOP_SUBSEGMENTS = 10
KIND_RESOLUTIONS = {
    "sql": "Database query performance: run 07-database-performance (slow statements, locks, missing "
           "indexes) and 02-database-connections (a pool waiting for connections looks the same).",
    "http": "External API timeouts: run 16-external-dependencies; set timeouts and retries on the client.",
    "aws": "An AWS service call is slow: check its throttling and the service's health dashboard.",
    "local": "Time spent in the service itself: memory/CPU constraints (03-high-memory, "
             "metrics.ecs.utilization) or code; profile the handler.",
}


# --- percentiles ----------------------------------------------------------------------------


@check(LATENCY_PERCENTILES, plot=percentiles_plot, marks=deployment_markers)
def api_latency(ctx: Context) -> CheckResult:
    """ALB TargetResponseTime p50 / p90 / p99 over the window (CloudWatch percentiles)."""
    return percentiles_result(ctx, LATENCY_PERCENTILES)


# --- X-Ray ----------------------------------------------------------------------------------

def fetch_traces(ctx: Context) -> dict:
    """The window's trace summaries and the slowest traces' segments for the configured services."""
    summaries = xray.trace_summaries(ctx, ctx.window)
    traces = xray.batch_get_traces(ctx, xray.slowest_ids(summaries))
    segments, subsegments = xray.frames(traces, ctx.settings.services)
    return {"summaries": len(summaries), "fetched": len(traces), "segments": segments,
            "subsegments": subsegments, "services_seen": xray.services_seen(traces),
            "window": xray.trace_window(ctx.window)}


def judge_slow_segments(fetched: dict, times: pd.DataFrame, services: tuple[str, ...],
                        slow_seconds: float, cid: str = XRAY_SLOW_SEGMENTS) -> list[Finding]:
    """Per service: warning when one subsegment takes most (> DOMINANT_SHARE) of its slow traces' time.

    Slow traces are the service's segments longer than ``slow_seconds`` (the p99 latency warning
    threshold). With slow traces but no dominant subsegment: info naming the slowest. No slow
    traces: ok, naming the slowest subsegment all the same.
    """
    segments = fetched["segments"]
    base = {"trace_summaries": fetched["summaries"], "traces_fetched": fetched["fetched"],
            "max_traces": xray.MAX_TRACES, "max_summaries": xray.MAX_SUMMARIES, "slow_seconds": slow_seconds,
            "trace_window": {"start": fetched["window"].start, "end": fetched["window"].end}}
    if not fetched["summaries"]:
        return [Finding(cid, Severity.INFO, "xray", "No X-Ray traces in the window",
                        "get_trace_summaries returned nothing: tracing is off, the sampling rule kept "
                        "no request, or there was no traffic.", base,
                        "Make sure the services run the X-Ray SDK or the ADOT collector with a sampling rule.")]
    if segments.empty:
        seen = ", ".join(fetched["services_seen"]) or "none"
        return [Finding(cid, Severity.INFO, "xray", f"No traces from {', '.join(services)}",
                        f"{fetched['fetched']} traces fetched; their segments come from: {seen}.",
                        {**base, "services_seen": fetched["services_seen"]},
                        "If the services name their segments differently, the X-Ray SDK's service name "
                        "(AWS_XRAY_TRACING_NAME) should match the ECS service name.")]
    findings = []
    for service, rows in segments.groupby("service", sort=True):
        resource = f"xray:{service}"
        mine = times[times["service"] == service]
        slow = rows[rows["seconds"] > slow_seconds]
        top = mine.head(TOP_SUBSEGMENTS)
        evidence = {**base, "traces": len(rows), "slow_traces": len(slow),
                    "total_seconds": round(float(rows["seconds"].sum()), 3),
                    "slowest_trace_seconds": round(float(rows["seconds"].max()), 3),
                    "subsegments": [{"name": r.name, "kind": r.kind, "calls": int(r.calls),
                                     "own_seconds": round(float(r.own_seconds), 3), "share": round(float(r.share), 3),
                                     "slow_share": round(float(r.slow_share), 3)}
                                    for r in top.itertuples(index=False)]}
        if mine.empty:
            findings.append(Finding(cid, Severity.INFO, resource, f"{service}: traces have no subsegments",
                                    f"{len(rows)} traces; instrument database and HTTP clients to see where "
                                    "the time goes.", evidence))
            continue
        listing = "; ".join(f"{r.name} {r.own_seconds:.1f} s ({100 * r.share:.0f}%)"
                            for r in top.head(5).itertuples(index=False))
        detail = (f"{len(rows)} traces, {len(slow)} slower than {slow_seconds:g} s. Own time by subsegment "
                  f"(share of all trace time): {listing}.")
        if len(slow):
            leader = mine.sort_values("slow_own_seconds", ascending=False).iloc[0]
            evidence["dominant"] = {"name": leader["name"], "slow_share": round(float(leader["slow_share"]), 3)}
            if leader["slow_share"] > DOMINANT_SHARE:
                findings.append(Finding(
                    cid, Severity.WARNING, resource,
                    f"{service}: {leader['name']} takes {100 * leader['slow_share']:.0f}% of the time of "
                    f"{len(slow)} slow traces",
                    detail, evidence, KIND_RESOLUTIONS.get(str(leader["kind"]), SLOW_RESOLUTION)))
                continue
            findings.append(Finding(
                cid, Severity.INFO, resource,
                f"{service}: {len(slow)} slow traces, no single subsegment dominates "
                f"(largest: {leader['name']} {100 * leader['slow_share']:.0f}%)", detail, evidence, SLOW_RESOLUTION))
            continue
        first = mine.iloc[0]
        findings.append(Finding(cid, Severity.OK, resource,
                                f"{service}: no slow traces; slowest subsegment {first['name']} "
                                f"({100 * first['share']:.0f}% of trace time)", detail, evidence))
    return findings


def _slow_segments_plot(result: CheckResult, ctx: Context):
    data = result.data.head(TOP_SUBSEGMENTS)
    slow = ctx.thresholds["latency_p99_warning_seconds"]
    long = pd.concat([
        pd.DataFrame({"subsegment": data["service"] + " / " + data["name"],
                      "traces": f"slow traces (> {slow:g} s)", "seconds": data["slow_own_seconds"]}),
        pd.DataFrame({"subsegment": data["service"] + " / " + data["name"], "traces": "other traces",
                      "seconds": data["own_seconds"] - data["slow_own_seconds"]}),
    ], ignore_index=True)
    return plots.bars(long, "subsegment", "seconds", "Slowest X-Ray subsegments: own time in the window",
                      stack="traces", xlabel="seconds (summed over traces)")


@check(XRAY_SLOW_SEGMENTS, plot=_slow_segments_plot)  # up to 20+ calls
def slow_segments(ctx: Context) -> CheckResult:
    """X-Ray traces: the slowest subsegments by total time, with their share of the time."""
    fetched = fetch_traces(ctx)
    slow = ctx.thresholds["latency_p99_warning_seconds"]
    times = xray.subsegment_times(fetched["segments"], fetched["subsegments"], slow)
    return CheckResult(findings=judge_slow_segments(fetched, times, ctx.settings.services, slow),
                       data=times, frames={"slowest traces": fetched["segments"].sort_values(
                           "seconds", ascending=False).head(20)})
