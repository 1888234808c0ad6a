"""ALB latency percentiles: fetched, judged and drawn once for two checks (api.latency.percentiles in
runbook 06 and metrics.latency in the monitoring overview). Not a check module: it registers nothing."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from rmsops.core.findings import Finding, Severity, iso
from rmsops.core.registry import CheckResult
from rmsops.render import plots
from rmsops.sources import metrics
from rmsops.sources.alb import load_balancer

if TYPE_CHECKING:
    from rmsops.core.context import Context


PERCENTILES = ("p50", "p90", "p99")


SLOW_RESOLUTION = (
    "Check X-Ray traces for the slow subsegments (api.xray.slow_segments). The guide's common causes: "
    "database query performance (runbook 07-database-performance), external API timeouts "
    "(16-external-dependencies), memory/CPU constraints (03-high-memory, metrics.ecs.utilization), "
    "network latency.")


def fetch_percentiles(ctx: Context) -> tuple[pd.DataFrame, int]:
    """TargetResponseTime p50/p90/p99 (seconds) per period: one GetMetricData call, shared per run."""

    def fetch() -> tuple[pd.DataFrame, int]:
        lb = load_balancer(ctx)
        dimension = lb["LoadBalancerArn"].split(":loadbalancer/", 1)[1]
        queries = [metrics.MetricQuery(p, "AWS/ApplicationELB", "TargetResponseTime",
                                       (("LoadBalancer", dimension),), p, p) for p in PERCENTILES]
        period = metrics.period_for(ctx.window.seconds)
        return metrics.fetch(ctx, queries, period), period

    return ctx.memo("alb.target_response_time.percentiles", fetch)


def judge_percentiles(cid: str, df: pd.DataFrame, period: int, thresholds: dict[str, float],
                      alb: str) -> list[Finding]:
    resource = f"alb:{alb}"
    warn, crit = thresholds["latency_p99_warning_seconds"], thresholds["latency_p99_critical_seconds"]
    p99 = df[df["label"] == "p99"].sort_values("timestamp") if len(df) else df
    evidence: dict = {"period_seconds": period, "warning_seconds": warn, "critical_seconds": crit}
    if p99.empty:
        return [Finding(cid, Severity.INFO, resource, "No TargetResponseTime datapoints in the window",
                        "The ALB publishes TargetResponseTime only for requests that reached a target: "
                        "no traffic, or no target answered.", evidence,
                        "If requests are failing before reaching targets, run 01-application-not-responding.")]
    peaks = {label: float(rows["value"].max()) for label, rows in df.groupby("label")}
    medians = {label: float(rows["value"].median()) for label, rows in df.groupby("label")}
    worst = p99.loc[p99["value"].idxmax()]
    over = p99[p99["value"] > warn]
    evidence.update(peak_seconds=peaks, median_seconds=medians, p99_peak_at=worst["timestamp"],
                    periods=len(p99), periods_over_warning=len(over),
                    first_over_warning=over["timestamp"].min() if len(over) else None,
                    latest_p99_seconds=float(p99["value"].iloc[-1]))
    detail = (f"p50 median {medians.get('p50', float('nan')):.3f} s, p90 peak {peaks.get('p90', float('nan')):.3f} s, "
              f"p99 peak {worst['value']:.3f} s at {iso(worst['timestamp'])} (latest {p99['value'].iloc[-1]:.3f} s). "
              f"p99 over {warn:g} s in {len(over)} of {len(p99)} periods of {period // 60} min"
              + (f", first at {iso(over['timestamp'].min())}." if len(over) else "."))
    peak = float(worst["value"])
    if peak > crit:
        return [Finding(cid, Severity.CRITICAL, resource, f"p99 latency {peak:.2f} s (over {crit:g} s)",
                        detail, evidence, SLOW_RESOLUTION)]
    if peak > warn:
        return [Finding(cid, Severity.WARNING, resource, f"p99 latency {peak:.2f} s (over {warn:g} s)",
                        detail, evidence, SLOW_RESOLUTION)]
    return [Finding(cid, Severity.OK, resource, f"p99 latency at most {peak:.2f} s (threshold {warn:g} s)",
                    detail, evidence)]


def percentiles_plot(result: CheckResult, ctx: Context):
    period = result.findings[0].evidence.get("period_seconds", 60)
    lines = {"p99 warning": ctx.thresholds["latency_p99_warning_seconds"],
             "p99 critical": ctx.thresholds["latency_p99_critical_seconds"]}
    return plots.timeseries(result.data, f"ALB TargetResponseTime per {period // 60} min (p50 / p90 / p99)",
                            "seconds", lines=lines, markers=result.markers,
                            window=(ctx.window.start, ctx.window.end))


def percentiles_result(ctx: Context, cid: str) -> CheckResult:
    df, period = fetch_percentiles(ctx)
    return CheckResult(findings=judge_percentiles(cid, df, period, ctx.thresholds, ctx.settings.alb_name),
                       data=df)
