"""ALB target health and 5xx responses (guide §1 step 3, symptoms 'HTTP 502/503')."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pandas as pd

from rmsops.core.findings import Finding, Severity
from rmsops.core.registry import CheckResult, check
from rmsops.render import plots
from rmsops.sources import metrics
from rmsops.sources.alb import (
    DISTINCT_5XX,
    load_balancer,  # noqa: F401 - re-exported for callers of this module
    target_groups,
)
from rmsops.sources.ecs import deployment_markers

if TYPE_CHECKING:
    from rmsops.core.context import Context

RUNBOOK = "01-application-not-responding"
# Check ids, declared in the catalogue (rmsops/core/runbooks.py); the judges take theirs as `cid`.
ALB_5XX = "app.alb.5xx"
ALB_TARGET_HEALTH = "app.alb.target_health"
TARGET_COLUMNS = ["group", "target", "port", "state", "reason", "description"]
METRICS_5XX = ("HTTPCode_ELB_5XX_Count", "HTTPCode_ELB_502_Count", "HTTPCode_ELB_503_Count",
               "HTTPCode_Target_5XX_Count")
UNHEALTHY_RESOLUTION = ("If tasks are unhealthy: force a new deployment (rmsops action "
                        "force-new-deployment --service {service}). If the ALB is failing: check "
                        "security groups and VPC routing. If persistent: scale up service capacity.")


def target_health_frame(ctx: Context) -> pd.DataFrame:
    """One row per registered target of each configured target group; a missing group gets a row.
    Fetched once a run: the first look and runbook 01 read the same answer."""
    return ctx.memo("elbv2.target_health", lambda: _target_health_frame(ctx))


def _target_health_frame(ctx: Context) -> pd.DataFrame:
    elb = ctx.client("elbv2")
    groups = target_groups(elb, ctx.settings.target_groups)
    rows = []
    for name in ctx.settings.target_groups:
        group = groups.get(name)
        if group is None:
            rows.append({"group": name, "target": "", "port": None, "state": "missing",
                         "reason": "TargetGroupNotFound", "description": ""})
            continue
        described = elb.describe_target_health(TargetGroupArn=group["TargetGroupArn"])  # one group a call
        for item in described["TargetHealthDescriptions"]:
            health = item.get("TargetHealth", {})
            rows.append({"group": name, "target": item["Target"]["Id"],
                         "port": item["Target"].get("Port"), "state": health.get("State", "unknown"),
                         "reason": health.get("Reason", ""),
                         "description": health.get("Description", "")})
        if not described["TargetHealthDescriptions"]:
            rows.append({"group": name, "target": "", "port": None, "state": "no targets",
                         "reason": "", "description": ""})
    return pd.DataFrame(rows, columns=TARGET_COLUMNS)


def judge_target_health(df: pd.DataFrame, cid: str = ALB_TARGET_HEALTH) -> list[Finding]:
    findings = []
    for group, rows in df.groupby("group", sort=False):
        resource = f"targetgroup:{group}"
        service = str(group)
        states = rows["state"].value_counts().to_dict()
        registered = rows[~rows["state"].isin(["missing", "no targets"])]
        healthy = int((registered["state"] == "healthy").sum())
        troubled = registered[registered["state"] != "healthy"]
        reasons = sorted({r for r in troubled["reason"] if r})
        evidence = {"states": states, "healthy": healthy, "registered": len(registered),
                    "reasons": reasons,
                    "targets": troubled[["target", "state", "reason", "description"]].to_dict("records")}
        if "missing" in states:
            findings.append(Finding(cid, Severity.CRITICAL, resource, f"{group}: target group not found",
                                    "describe_target_groups found no group of that name.", evidence,
                                    "Check alb.target_groups in the environment file."))
        elif healthy == 0:
            what = "no registered targets" if registered.empty else (
                f"0 of {len(registered)} targets healthy ({', '.join(reasons) or 'no reason given'})")
            findings.append(Finding(cid, Severity.CRITICAL, resource, f"{group}: no healthy target",
                                    f"{what}; the ALB answers 502/503.", evidence,
                                    UNHEALTHY_RESOLUTION.format(service=service)))
        elif len(troubled):
            findings.append(Finding(
                cid, Severity.WARNING, resource,
                f"{group}: {len(troubled)} of {len(registered)} targets not healthy",
                f"States: {', '.join(f'{k} {v}' for k, v in states.items())}; reasons: "
                f"{', '.join(reasons) or 'none given'}.", evidence,
                UNHEALTHY_RESOLUTION.format(service=service)))
        else:
            findings.append(Finding(cid, Severity.OK, resource,
                                    f"{group}: all {healthy} targets healthy", "", evidence))
    return findings


def _target_plot(result: CheckResult, ctx: Context):
    counts = result.data.groupby(["group", "state"]).size().reset_index(name="targets")
    return plots.bars(counts, "group", "targets", "ALB targets by group and state", stack="state")


@check(ALB_TARGET_HEALTH, plot=_target_plot)
def target_health(ctx: Context) -> CheckResult:
    """ALB target health per target group."""
    df = target_health_frame(ctx)
    return CheckResult(findings=judge_target_health(df), data=df)


def fetch_5xx(ctx: Context) -> tuple[pd.DataFrame, int]:
    lb = load_balancer(ctx)
    dimension = lb["LoadBalancerArn"].split(":loadbalancer/", 1)[1]
    queries = [metrics.MetricQuery(f"m{i}", "AWS/ApplicationELB", name,
                                   (("LoadBalancer", dimension),), "Sum", name)
               for i, name in enumerate(METRICS_5XX)]
    period = metrics.period_for(ctx.window.seconds)
    return metrics.fetch(ctx, queries, period), period


def longest_run(timestamps: pd.Series, period: int) -> int:
    """The longest run of consecutive periods in a sorted series of timestamps."""
    best = run = 0
    previous = None
    for moment in timestamps:
        run = run + 1 if previous is not None and (moment - previous).total_seconds() == period else 1
        best = max(best, run)
        previous = moment
    return best


def judge_5xx(df: pd.DataFrame, period: int, thresholds: dict[str, float], alb: str,
              cid: str = ALB_5XX) -> list[Finding]:
    resource = f"alb:{alb}"
    per_period = thresholds["alb_5xx_per_minute"] * period / 60
    sustained = max(1, math.ceil(thresholds["alb_5xx_sustained_minutes"] * 60 / period))
    stats = {}
    for label, rows in df.groupby("label"):
        spiking = rows[rows["value"] > per_period]
        stats[str(label)] = {"total": int(rows["value"].sum()), "peak": float(rows["value"].max()),
                             "periods_above": len(spiking),
                             "longest_run": longest_run(spiking["timestamp"], period)}
    evidence = {"period_seconds": period, "threshold_per_period": per_period,
                "sustained_periods": sustained, "metrics": stats}
    if not stats:
        return [Finding(cid, Severity.OK, resource, "No 5xx responses in the window",
                        "The ALB published no 5xx datapoint (it emits these counts only when non-zero).",
                        evidence)]
    # HTTPCode_ELB_5XX_Count already includes the ELB's 502s and 503s: count it once.
    total = sum(stats.get(name, {}).get("total", 0) for name in DISTINCT_5XX)
    worst_name, worst = max(stats.items(), key=lambda kv: (kv[1]["longest_run"], kv[1]["peak"]))
    summary = (f"{total} 5xx responses in the window; {worst_name} peaked at {worst['peak']:g} per "
               f"{period // 60} min, above {per_period:g} for {worst['longest_run']} consecutive "
               f"period(s) (sustained = {sustained}).")
    resolution = ("502/503 from the ALB mean targets are failing: check target health and ECS "
                  "tasks; force a new deployment if tasks are unhealthy; scale up if persistent.")
    if worst["longest_run"] >= sustained:
        return [Finding(cid, Severity.CRITICAL, resource, f"Sustained 5xx errors ({worst_name})",
                        summary, evidence, resolution)]
    if worst["periods_above"]:
        return [Finding(cid, Severity.WARNING, resource, f"5xx spike ({worst_name})", summary,
                        evidence, resolution)]
    return [Finding(cid, Severity.OK, resource, f"5xx below threshold ({total} in the window)",
                    summary, evidence)]


def _5xx_plot(result: CheckResult, ctx: Context):
    period = result.findings[0].evidence.get("period_seconds", 60)
    limit = result.findings[0].evidence.get("threshold_per_period", 0)
    frame = metrics.fill_missing(result.data, ctx.window.start, ctx.window.end, period)
    return plots.timeseries(frame, f"ALB 5xx responses per {period // 60} min",
                            "responses", lines={"spike threshold": limit},
                            markers=result.markers,
                            window=(ctx.window.start, ctx.window.end))


@check(ALB_5XX, plot=_5xx_plot, marks=deployment_markers)
def alb_5xx(ctx: Context) -> CheckResult:
    """ALB and target 5xx counts over the window (CloudWatch)."""
    df, period = fetch_5xx(ctx)
    return CheckResult(findings=judge_5xx(df, period, ctx.thresholds, ctx.settings.alb_name), data=df)
