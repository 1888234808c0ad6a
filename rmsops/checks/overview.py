"""Monitoring overview: the guide's key application and infrastructure metrics in one pass.

Guide "Monitoring and Alerting": request latency (p50/p90/p99), error rate (4xx, 5xx), throughput
(requests per minute), ECS task CPU/memory, RDS connections and performance, and the CloudWatch
alarms that are firing. Each group of metrics is one GetMetricData call, shared between the checks
that need it (``ctx.memo``): the ALB counts of this window and the previous one come in one call.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import pandas as pd

from rmsops.checks.percentiles import percentiles_plot, percentiles_result
from rmsops.core.findings import Finding, Severity, iso
from rmsops.core.registry import CheckResult, check
from rmsops.core.window import Window
from rmsops.render import plots
from rmsops.sources import metrics
from rmsops.sources.alb import load_balancer
from rmsops.sources.ecs import deployment_markers
from rmsops.sources.rds import db_instance

if TYPE_CHECKING:
    from rmsops.core.context import Context

RUNBOOK = "10-monitoring-overview"
# Check ids, declared in the catalogue (rmsops/core/runbooks.py); the judges take theirs as `cid`.
LATENCY = "metrics.latency"
ALARMS = "metrics.alarms"
ECS_UTILIZATION = "metrics.ecs.utilization"
ERROR_RATE = "metrics.error_rate"
RDS = "metrics.rds"
THROUGHPUT = "metrics.throughput"
ROLLING_MINUTES = 5  # the error rate is judged on its worst rolling window of this length
ALB_COUNTS = ("RequestCount", "HTTPCode_Target_5XX_Count", "HTTPCode_ELB_5XX_Count",
              "HTTPCode_Target_4XX_Count", "HTTPCode_ELB_4XX_Count")
GIB = 1024 ** 3


def fetch_over(ctx: Context, window: Window, queries: list[metrics.MetricQuery], period: int) -> pd.DataFrame:
    return metrics.fetch(ctx, queries, period, window=window)


# --- latency --------------------------------------------------------------------------------

@check(LATENCY, plot=percentiles_plot, marks=deployment_markers)
def request_latency(ctx: Context) -> CheckResult:
    """Request latency p50 / p90 / p99 (ALB TargetResponseTime)."""
    return percentiles_result(ctx, LATENCY)


# --- ALB counts: error rate and throughput --------------------------------------------------

def fetch_alb_counts(ctx: Context) -> tuple[pd.DataFrame, int]:
    """Sum per period of ALB_COUNTS over the previous window and this one: one GetMetricData call."""

    def fetch() -> tuple[pd.DataFrame, int]:
        lb = load_balancer(ctx)
        dimension = lb["LoadBalancerArn"].split(":loadbalancer/", 1)[1]
        queries = [metrics.MetricQuery(f"c{i}", "AWS/ApplicationELB", name, (("LoadBalancer", dimension),),
                                       "Sum", name) for i, name in enumerate(ALB_COUNTS)]
        period = metrics.period_for(ctx.window.seconds)
        span = Window(ctx.window.previous().start, ctx.window.end)
        return fetch_over(ctx, span, queries, period), period

    return ctx.memo("overview.alb_counts", fetch)


def in_window(df: pd.DataFrame, window: Window) -> pd.DataFrame:
    if df.empty:
        return df
    return df[(df["timestamp"] >= window.start) & (df["timestamp"] < window.end)]


def rates_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Per period: requests, 5xx, 4xx (target + ELB) and their rates in percent."""
    columns = ["timestamp", "requests", "5xx", "4xx", "5xx_pct", "4xx_pct"]
    if df.empty:
        return pd.DataFrame(columns=columns)
    wide = df.pivot_table(index="timestamp", columns="label", values="value", aggfunc="sum", fill_value=0.0)
    wide = wide.reindex(columns=list(ALB_COUNTS), fill_value=0.0).sort_index()
    out = pd.DataFrame({
        "requests": wide["RequestCount"],
        "5xx": wide["HTTPCode_Target_5XX_Count"] + wide["HTTPCode_ELB_5XX_Count"],
        "4xx": wide["HTTPCode_Target_4XX_Count"] + wide["HTTPCode_ELB_4XX_Count"],
    })
    # ELB-generated errors (no target chosen) are not in RequestCount: never above 100%.
    base = pd.concat([out["requests"], out["5xx"]], axis=1).max(axis=1).where(lambda b: b > 0)
    out["5xx_pct"] = (100 * out["5xx"] / base).fillna(0.0)
    out["4xx_pct"] = (100 * out["4xx"] / base).fillna(0.0)
    return out.reset_index(names="timestamp")[columns]


def judge_error_rate(rates: pd.DataFrame, period: int, thresholds: dict[str, float], alb: str,
                     cid: str = ERROR_RATE) -> list[Finding]:
    resource = f"alb:{alb}"
    warn, crit = thresholds["error_rate_warning_pct"], thresholds["error_rate_critical_pct"]
    requests, e5, e4 = (float(rates[c].sum()) if len(rates) else 0.0 for c in ("requests", "5xx", "4xx"))
    base = max(requests, e5)
    rate5 = 100 * e5 / base if base else 0.0
    rate4 = 100 * e4 / base if base else 0.0
    span = max(1, math.ceil(ROLLING_MINUTES * 60 / period))
    evidence: dict[str, Any] = {"requests": int(requests), "5xx": int(e5), "4xx": int(e4),
                                "5xx_pct": round(rate5, 3), "4xx_pct": round(rate4, 3),
                                "warning_pct": warn, "critical_pct": crit, "period_seconds": period,
                                "rolling_periods": span}
    if not base:
        return [Finding(cid, Severity.INFO, resource, "No requests in the window",
                        "The ALB published no RequestCount or 5xx datapoint.", evidence,
                        "If traffic is expected, run 01-application-not-responding.")]
    # by time, not rows: a period with no datapoint at all counts as a quiet one
    rolling = (rates.set_index("timestamp")[["requests", "5xx"]].sort_index()
               .rolling(pd.Timedelta(seconds=span * period), min_periods=1).sum())
    rolling_base = rolling.max(axis=1).where(lambda b: b > 0)
    rolling_rate = (100 * rolling["5xx"] / rolling_base).fillna(0.0)
    worst_at = rolling_rate.idxmax()
    worst = float(rolling_rate.max())
    evidence.update(worst_rolling_5xx_pct=round(worst, 3), worst_rolling_end=worst_at)
    minutes = span * period // 60
    detail = (f"{int(e5)} 5xx of {int(requests)} requests ({rate5:.2f}%) and {int(e4)} 4xx ({rate4:.2f}%) in "
              f"the window; worst {minutes} min: {worst:.2f}% 5xx (ending {iso(worst_at)}).")
    resolution = ("5xx from the targets or the ALB: run 01-application-not-responding (target health, ECS "
                  "tasks) and 11-log-analysis (which errors, since when).")
    if worst > crit:
        return [Finding(cid, Severity.CRITICAL, resource, f"5xx rate {worst:.1f}% over {minutes} min "
                        f"(over {crit:g}%)", detail, evidence, resolution)]
    if worst > warn:
        return [Finding(cid, Severity.WARNING, resource, f"5xx rate {worst:.1f}% over {minutes} min "
                        f"(over {warn:g}%)", detail, evidence, resolution)]
    return [Finding(cid, Severity.OK, resource, f"5xx rate {rate5:.2f}% (4xx {rate4:.2f}%)", detail, evidence)]


def _error_rate_plot(result: CheckResult, ctx: Context):
    rates = result.data
    frame = (rates.melt(id_vars="timestamp", value_vars=["5xx_pct", "4xx_pct"], var_name="label")
             .replace({"label": {"5xx_pct": "5xx %", "4xx_pct": "4xx %"}}) if len(rates)
             else pd.DataFrame(columns=["timestamp", "label", "value"]))
    lines = {"5xx warning": ctx.thresholds["error_rate_warning_pct"],
             "5xx critical": ctx.thresholds["error_rate_critical_pct"]}
    return plots.timeseries(frame, "Error rate per period (% of requests)", "%", lines=lines,
                            markers=result.markers, window=(ctx.window.start, ctx.window.end))


@check(ERROR_RATE, plot=_error_rate_plot, marks=deployment_markers)
def error_rate(ctx: Context) -> CheckResult:
    """4xx and 5xx responses per request (ALB counts)."""
    df, period = fetch_alb_counts(ctx)
    rates = rates_frame(in_window(df, ctx.window))
    return CheckResult(findings=judge_error_rate(rates, period, ctx.thresholds, ctx.settings.alb_name),
                       data=rates)


def throughput_frame(df: pd.DataFrame, window: Window) -> pd.DataFrame:
    """RequestCount per period, labelled "this window" / "previous window", on this window's time axis."""
    columns = ["timestamp", "label", "value"]
    requests = df[df["label"] == "RequestCount"] if len(df) else df
    if requests.empty:
        return pd.DataFrame(columns=columns)
    previous = window.previous()
    now = in_window(requests, window).assign(label="this window")
    before = in_window(requests, previous).assign(label="previous window (shifted)")
    before = before.assign(timestamp=before["timestamp"] + (window.start - previous.start))
    return pd.concat([now, before], ignore_index=True)[columns]


def judge_throughput(frame: pd.DataFrame, window: Window, thresholds: dict[str, float], alb: str,
                     cid: str = THROUGHPUT) -> list[Finding]:
    resource = f"alb:{alb}"
    minutes = window.seconds / 60
    now = float(frame.loc[frame["label"] == "this window", "value"].sum()) if len(frame) else 0.0
    before = float(frame.loc[frame["label"] != "this window", "value"].sum()) if len(frame) else 0.0
    limit = thresholds["throughput_drop_pct"]
    per_min, before_per_min = now / minutes, before / minutes
    evidence = {"requests": int(now), "previous_requests": int(before), "per_minute": round(per_min, 2),
                "previous_per_minute": round(before_per_min, 2), "drop_threshold_pct": limit}
    if not before:
        severity = Severity.INFO
        title = (f"{per_min:.0f} requests per minute; no baseline" if now else "No requests in this window "
                 "or the previous one")
        return [Finding(cid, severity, resource, title,
                        "The previous window has no RequestCount datapoint to compare with.", evidence)]
    drop = 100 * (before - now) / before
    evidence["drop_pct"] = round(drop, 2)
    detail = (f"{per_min:.1f} requests/min in the window, {before_per_min:.1f} in the previous one "
              f"({-drop:+.1f}%).")
    if drop > limit:
        return [Finding(cid, Severity.WARNING, resource, f"Throughput down {drop:.0f}% against the previous window",
                        detail, evidence,
                        "Fewer requests reach the targets: check the health endpoints and target health "
                        "(01-application-not-responding), CloudFront and DNS (05-cdn-static-assets); or "
                        "confirm it is the normal daily pattern.")]
    return [Finding(cid, Severity.OK, resource, f"{per_min:.0f} requests per minute ({-drop:+.0f}% against the "
                    "previous window)", detail, evidence)]


def _throughput_plot(result: CheckResult, ctx: Context):
    period = metrics.period_for(ctx.window.seconds)
    return plots.timeseries(result.data, f"Requests per {period // 60} min (RequestCount)", "requests",
                            markers=result.markers, window=(ctx.window.start, ctx.window.end))


@check(THROUGHPUT, plot=_throughput_plot, marks=deployment_markers)
def throughput(ctx: Context) -> CheckResult:
    """Requests per minute against the previous window (ALB RequestCount)."""
    df, _ = fetch_alb_counts(ctx)
    frame = throughput_frame(df, ctx.window)
    return CheckResult(findings=judge_throughput(frame, ctx.window, ctx.thresholds, ctx.settings.alb_name),
                       data=frame)


# --- ECS CPU and memory ---------------------------------------------------------------------

ECS_STATS = (("CPUUtilization", "Average"), ("CPUUtilization", "Maximum"),
             ("MemoryUtilization", "Average"), ("MemoryUtilization", "Maximum"))


def fetch_ecs(ctx: Context) -> pd.DataFrame:
    """AWS/ECS CPU and memory (Average, Maximum) per configured service: one GetMetricData call."""
    queries = []
    for s, service in enumerate(ctx.settings.services):
        dims = (("ClusterName", ctx.settings.cluster), ("ServiceName", service))
        queries += [metrics.MetricQuery(f"e{s}_{m}", "AWS/ECS", metric, dims, stat, f"{service} {metric} {stat}")
                    for m, (metric, stat) in enumerate(ECS_STATS)]
    df = metrics.fetch(ctx, queries)
    if df.empty:
        return pd.DataFrame(columns=["timestamp", "service", "metric", "stat", "value", "label"])
    parts = df["label"].str.rsplit(" ", n=2, expand=True)
    return df.assign(service=parts[0], metric=parts[1], stat=parts[2])[
        ["timestamp", "service", "metric", "stat", "value", "label"]]


def judge_ecs(df: pd.DataFrame, services: tuple[str, ...], cluster: str, thresholds: dict[str, float]
              , cid: str = ECS_UTILIZATION) -> list[Finding]:
    """Memory as memory.ecs.utilization (peak of Maximum: ≥ warning %, ≥ critical %); CPU: peak of the
    per-period Average ≥ cpu_warning_pct (short CPU spikes on one task are normal; sustained load is not)."""
    mem_warn, mem_crit, cpu_warn = (thresholds["memory_warning_pct"], thresholds["memory_critical_pct"],
                                    thresholds["cpu_warning_pct"])
    findings = []
    for service in services:
        resource = f"ecs:{cluster}/{service}"
        rows = df[df["service"] == service]

        def peak(metric: str, stat: str, rows: pd.DataFrame = rows) -> float | None:
            values = rows.loc[(rows["metric"] == metric) & (rows["stat"] == stat), "value"]
            return float(values.max()) if len(values) else None

        mem_max, mem_avg = peak("MemoryUtilization", "Maximum"), peak("MemoryUtilization", "Average")
        cpu_avg, cpu_max = peak("CPUUtilization", "Average"), peak("CPUUtilization", "Maximum")
        evidence = {"memory_max_pct": mem_max, "memory_avg_peak_pct": mem_avg, "cpu_avg_peak_pct": cpu_avg,
                    "cpu_max_pct": cpu_max, "memory_warning_pct": mem_warn, "memory_critical_pct": mem_crit,
                    "cpu_warning_pct": cpu_warn}
        if mem_max is None and cpu_avg is None:
            findings.append(Finding(cid, Severity.INFO, resource, f"{service}: no CPU or memory datapoints",
                                    "AWS/ECS published nothing for the service in the window.", evidence,
                                    "Check the cluster and service names; the service may have no running task."))
            continue

        def pct(value: float | None) -> str:
            return "n/a" if value is None else f"{value:.0f}%"

        detail = (f"Memory peak {pct(mem_max)} (average peak {pct(mem_avg)}); CPU average peak {pct(cpu_avg)} "
                  f"(maximum {pct(cpu_max)}).")
        problems = []
        severity = Severity.OK
        if mem_max is not None and mem_max >= mem_crit:
            severity = Severity.CRITICAL
            problems.append(f"memory {mem_max:.0f}% (≥ {mem_crit:g}%)")
        elif mem_max is not None and mem_max >= mem_warn:
            severity = Severity.WARNING
            problems.append(f"memory {mem_max:.0f}% (≥ {mem_warn:g}%)")
        if cpu_avg is not None and cpu_avg >= cpu_warn:
            severity = severity if severity is Severity.CRITICAL else Severity.WARNING
            problems.append(f"CPU {cpu_avg:.0f}% (≥ {cpu_warn:g}%)")
        if problems:
            resolution = []
            if any(p.startswith("memory") for p in problems):
                resolution.append(f"Memory: follow 03-high-memory (OOM kills, leaks); raise the task memory "
                                  f"(rmsops action raise-task-memory --service {service} --memory N) or scale "
                                  "out if the load is real.")
            if any(p.startswith("CPU") for p in problems):
                resolution.append(f"CPU: scale out the service (rmsops action scale-service --service {service} "
                                  "--count N) or find the hot path in X-Ray (06-slow-api-responses).")
            findings.append(Finding(cid, severity, resource, f"{service}: {' and '.join(problems)}", detail,
                                    evidence, " ".join(resolution)))
        else:
            findings.append(Finding(cid, Severity.OK, resource,
                                    f"{service}: memory peak {pct(mem_max)}, CPU {pct(cpu_avg)}", detail, evidence))
    return findings


def _ecs_plot(result: CheckResult, ctx: Context):
    df = result.data
    shown = df[((df["metric"] == "MemoryUtilization") & (df["stat"] == "Maximum"))
               | ((df["metric"] == "CPUUtilization") & (df["stat"] == "Average"))] if len(df) else df
    frame = (shown.assign(label=shown["service"] + " " + shown["metric"].str.replace("Utilization", "")
                          + " " + shown["stat"].str.lower())[["timestamp", "label", "value"]]
             if len(shown) else pd.DataFrame(columns=["timestamp", "label", "value"]))
    lines = {"memory warning": ctx.thresholds["memory_warning_pct"],
             "CPU warning": ctx.thresholds["cpu_warning_pct"]}
    figure = plots.timeseries(frame, "ECS utilization per service (%)", "%", lines=lines,
                              markers=result.markers, window=(ctx.window.start, ctx.window.end),
                              most=plots.MOST_NAMED_LINES)
    figure.axes[0].set_ylim(0, max(105.0, float(frame["value"].max()) + 5 if len(frame) else 0.0))
    return figure


@check(ECS_UTILIZATION, plot=_ecs_plot, marks=deployment_markers)
def ecs_utilization(ctx: Context) -> CheckResult:
    """ECS CPU and memory utilization per service (AWS/ECS)."""
    df = fetch_ecs(ctx)
    return CheckResult(findings=judge_ecs(df, ctx.settings.services, ctx.settings.cluster, ctx.thresholds),
                       data=df)


# --- RDS ------------------------------------------------------------------------------------

RDS_STATS = (("CPUUtilization", "Average"), ("FreeStorageSpace", "Minimum"),
             ("DatabaseConnections", "Maximum"))


def fetch_rds(ctx: Context) -> tuple[pd.DataFrame, dict[str, Any]]:
    """RDS CPU, free storage and connections (one GetMetricData call) and the instance's allocation."""
    instance = ctx.settings.database.instance
    described = db_instance(ctx) or {}  # shared with the other runbooks that describe it
    queries = [metrics.MetricQuery(f"r{i}", "AWS/RDS", metric, (("DBInstanceIdentifier", instance),), stat, metric)
               for i, (metric, stat) in enumerate(RDS_STATS)]
    info = {"found": bool(described), "allocated_gib": described.get("AllocatedStorage"),
            "instance_class": described.get("DBInstanceClass"), "status": described.get("DBInstanceStatus")}
    return metrics.fetch(ctx, queries), info


def judge_rds(df: pd.DataFrame, info: dict[str, Any], instance: str, thresholds: dict[str, float],
              cid: str = RDS) -> list[Finding]:
    resource = f"db:{instance}"
    cpu_limit, free_limit = thresholds["rds_cpu_warning_pct"], thresholds["rds_free_storage_pct"]

    def values(metric: str) -> pd.Series:
        return df.loc[df["label"] == metric, "value"] if len(df) else pd.Series(dtype=float)

    cpu, free, conns = values("CPUUtilization"), values("FreeStorageSpace"), values("DatabaseConnections")
    allocated = info.get("allocated_gib")
    free_min = float(free.min()) if len(free) else None
    free_pct = 100 * free_min / (allocated * GIB) if free_min is not None and allocated else None
    evidence = {"cpu_peak_pct": float(cpu.max()) if len(cpu) else None,
                "cpu_latest_pct": float(cpu.iloc[-1]) if len(cpu) else None,
                "free_storage_min_gib": round(free_min / GIB, 2) if free_min is not None else None,
                "allocated_gib": allocated, "free_storage_pct": round(free_pct, 2) if free_pct is not None else None,
                "connections_peak": int(conns.max()) if len(conns) else None,
                "cpu_warning_pct": cpu_limit, "free_storage_warning_pct": free_limit,
                "instance_class": info.get("instance_class")}
    if not info.get("found"):
        return [Finding(cid, Severity.CRITICAL, resource, f"RDS instance {instance} not found",
                        "describe_db_instances found no instance of that name.", evidence,
                        "Check database.instance in the environment file; see 02-database-connections.")]
    if not (len(cpu) or len(free) or len(conns)):
        return [Finding(cid, Severity.INFO, resource, "No RDS metrics in the window",
                        "AWS/RDS published no CPUUtilization, FreeStorageSpace or DatabaseConnections.", evidence)]
    parts = []
    if len(cpu):
        parts.append(f"CPU peak {cpu.max():.0f}% (latest {cpu.iloc[-1]:.0f}%)")
    if free_pct is not None:
        parts.append(f"free storage {free_min / GIB:.1f} GiB of {allocated} GiB ({free_pct:.0f}%)")
    if len(conns):
        parts.append(f"connections peak {int(conns.max())}")
    detail = "; ".join(parts) + "."
    problems, resolutions = [], []
    if len(cpu) and cpu.max() > cpu_limit:
        problems.append(f"CPU {cpu.max():.0f}% (over {cpu_limit:g}%)")
        resolutions.append("CPU: find the expensive statements (07-database-performance); scale up the instance "
                           "class if the load is legitimate.")
    if free_pct is not None and free_pct < free_limit:
        problems.append(f"free storage {free_pct:.1f}% (under {free_limit:g}%)")
        resolutions.append("Storage: increase AllocatedStorage or enable storage autoscaling "
                           "(MaxAllocatedStorage); check for bloat and old WAL (07-database-performance).")
    if problems:
        return [Finding(cid, Severity.WARNING, resource, f"RDS {instance}: {' and '.join(problems)}", detail,
                        evidence, " ".join(resolutions))]
    return [Finding(cid, Severity.OK, resource, f"RDS {instance}: " + ", ".join(parts), detail, evidence)]


def _rds_plot(result: CheckResult, ctx: Context):
    df = result.data
    allocated = result.findings[0].evidence.get("allocated_gib")
    cpu = df[df["label"] == "CPUUtilization"].assign(label="CPU %") if len(df) else df
    free = df[df["label"] == "FreeStorageSpace"] if len(df) else df
    parts = [cpu[["timestamp", "label", "value"]]] if len(cpu) else []
    if len(free) and allocated:
        parts.append(free.assign(label="free storage %", value=100 * free["value"] / (allocated * GIB))[
            ["timestamp", "label", "value"]])
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["timestamp", "label", "value"])
    lines = {"CPU warning": ctx.thresholds["rds_cpu_warning_pct"],
             "free storage warning": ctx.thresholds["rds_free_storage_pct"]}
    figure = plots.timeseries(frame, f"RDS {ctx.settings.database.instance}: CPU and free storage (%)", "%",
                              lines=lines, markers=result.markers,
                              window=(ctx.window.start, ctx.window.end))
    figure.axes[0].set_ylim(0, 105)
    return figure


@check(RDS, plot=_rds_plot, marks=deployment_markers)
def rds_metrics(ctx: Context) -> CheckResult:
    """RDS CPU, connections and free storage (AWS/RDS)."""
    df, info = fetch_rds(ctx)
    return CheckResult(findings=judge_rds(df, info, ctx.settings.database.instance, ctx.thresholds), data=df)


# --- alarms ---------------------------------------------------------------------------------

ALARM_COLUMNS = ["alarm", "type", "metric", "namespace", "since", "reason", "description"]


def alarms_frame(ctx: Context) -> pd.DataFrame:
    """Metric and composite alarms in state ALARM (``describe_alarms``, paginated)."""
    cloudwatch = ctx.client("cloudwatch")
    rows = []
    pages = cloudwatch.get_paginator("describe_alarms").paginate(
        StateValue="ALARM", AlarmTypes=["MetricAlarm", "CompositeAlarm"])
    for page in pages:
        for kind, key in (("metric", "MetricAlarms"), ("composite", "CompositeAlarms")):
            for alarm in page.get(key, []):
                rows.append({"alarm": alarm["AlarmName"], "type": kind,
                             "metric": alarm.get("MetricName", "") or ("(metric math)" if alarm.get("Metrics") else ""),
                             "namespace": alarm.get("Namespace", ""), "since": alarm.get("StateUpdatedTimestamp"),
                             "reason": alarm.get("StateReason", ""), "description": alarm.get("AlarmDescription", "")})
    return pd.DataFrame(rows, columns=ALARM_COLUMNS).sort_values("since", ascending=False, ignore_index=True)


def judge_alarms(df: pd.DataFrame, cid: str = ALARMS) -> list[Finding]:
    if df.empty:
        return [Finding(cid, Severity.OK, "cloudwatch:alarms", "No CloudWatch alarm in ALARM", "", {"alarms": 0})]
    findings = []
    for row in df.itertuples(index=False):
        metric = f" on {row.namespace} {row.metric}".rstrip() if row.metric else ""
        since = f" since {iso(row.since)}" if row.since is not None else ""
        findings.append(Finding(
            cid, Severity.WARNING, f"alarm:{row.alarm}", f"Alarm {row.alarm} in ALARM{since}",
            f"{row.type.capitalize()} alarm{metric}. {row.reason}".strip(),
            {"alarm": row.alarm, "type": row.type, "metric": row.metric, "namespace": row.namespace,
             "since": row.since, "reason": row.reason},
            "Follow the runbook of what the alarm watches (its description says); the reason names the "
            "threshold and the datapoints that crossed it."))
    return findings


@check(ALARMS)
def alarms(ctx: Context) -> CheckResult:
    """CloudWatch alarms in state ALARM."""
    df = alarms_frame(ctx)
    return CheckResult(findings=judge_alarms(df), data=df)
