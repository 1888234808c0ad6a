"""ECS memory: utilisation, OOM-killed and churning tasks, OutOfMemory log lines (guide §3).

The stopped-task fetch here (``stopped_tasks``) is shared with the failed-deployments runbook
(``rmsops.checks.deploy``): both ask ECS once per run which tasks stopped in the window and why.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from rmsops.core.findings import Finding, Severity
from rmsops.core.registry import CheckResult, check
from rmsops.render import plots
from rmsops.sources import logquery, metrics
from rmsops.sources.ecs import (  # noqa: F401 - re-exported for callers of this module
    NORMAL_STOPS,
    OOM_TEXT,
    REQUESTED_STOPS,
    SIGKILL_EXIT,
    STOPPED_COLUMNS,
    _is_oom_text,
    deployment_markers,
    is_oom,
    stop_category,
    stopped_frame,
    stopped_row,
    stopped_tasks,
)

if TYPE_CHECKING:
    from rmsops.core.context import Context

RUNBOOK = "03-high-memory"
# Check ids, declared in the catalogue (rmsops/core/runbooks.py); the judges take theirs as `cid`.
ECS_OOM_KILLS = "memory.ecs.oom_kills"
ECS_TASK_CHURN = "memory.ecs.task_churn"
ECS_UTILIZATION = "memory.ecs.utilization"
LOGS_OOM_ERRORS = "memory.logs.oom_errors"
RAISE_MEMORY = ("Immediate: increase task memory allocation in the task definition (rmsops action "
                "raise-task-memory --service {service} --memory <MiB>). Long-term: profile the "
                "application for memory leaks and optimise.")

# --- stopped tasks (shared with 08 failed-deployments) --------------------------------------------


# --- memory.ecs.utilization -----------------------------------------------------------------------

UTILIZATION_COLUMNS = ["timestamp", "service", "stat", "value", "label"]


def fetch_utilization(ctx: Context) -> tuple[pd.DataFrame, int]:
    """AWS/ECS MemoryUtilization, Average and Maximum per service (ClusterName + ServiceName)."""
    queries, keys = [], {}
    for i, service in enumerate(ctx.settings.services):
        dims = (("ClusterName", ctx.settings.cluster), ("ServiceName", service))
        for stat, suffix in (("Average", "avg"), ("Maximum", "max")):
            qid = f"m{i}{suffix}"
            keys[qid] = (service, stat)
            queries.append(metrics.MetricQuery(qid, "AWS/ECS", "MemoryUtilization", dims, stat,
                                               f"{service} {stat.lower()}"))
    period = metrics.period_for(ctx.window.seconds)
    raw = metrics.fetch(ctx, queries, period)
    if raw.empty:
        return pd.DataFrame(columns=UTILIZATION_COLUMNS), period
    frame = raw.assign(service=[keys[q][0] for q in raw["id"]], stat=[keys[q][1] for q in raw["id"]])
    return frame[UTILIZATION_COLUMNS + ["id"]], period


def judge_utilization(df: pd.DataFrame, services: tuple[str, ...], cluster: str, period: int,
                      thresholds: dict[str, float], cid: str = ECS_UTILIZATION) -> list[Finding]:
    warn, crit = thresholds["memory_warning_pct"], thresholds["memory_critical_pct"]
    findings = []
    for service in services:
        resource = f"ecs:{cluster}/{service}"
        rows = df[df["service"] == service]
        peaks = rows[rows["stat"] == "Maximum"]
        averages = rows[rows["stat"] == "Average"]
        if peaks.empty and averages.empty:
            findings.append(Finding(
                cid, Severity.INFO, resource, f"{service}: no MemoryUtilization datapoints",
                "AWS/ECS published no MemoryUtilization for this service in the window "
                "(no running task, or the service/cluster name is wrong).",
                {"warning_pct": warn, "critical_pct": crit, "period_seconds": period},
                "Check that the service runs tasks and the names in the environment file."))
            continue
        series = peaks if len(peaks) else averages
        top = series.loc[series["value"].idxmax()]
        above = int((series["value"] >= warn).sum())
        evidence = {
            "peak_pct": round(float(top["value"]), 1), "peak_at": top["timestamp"],
            "peak_stat": str(top["stat"]),
            "average_pct": round(float(averages["value"].mean()), 1) if len(averages) else None,
            "latest_average_pct": round(float(averages["value"].iloc[-1]), 1) if len(averages) else None,
            "periods_at_or_above_warning": above, "period_seconds": period,
            "warning_pct": warn, "critical_pct": crit,
        }
        average = (f"average {evidence['average_pct']:g}% over the window; "
                   if evidence["average_pct"] is not None else "")
        numbers = (f"peak {evidence['peak_pct']:g}% ({str(top['stat']).lower()}); {average}"
                   f"{above} of {len(series)} {period // 60}-min periods at or above {warn:g}%.")
        if top["value"] >= crit:
            findings.append(Finding(cid, Severity.CRITICAL, resource,
                                    f"{service}: memory at {evidence['peak_pct']:g}% (limit reached)",
                                    numbers, evidence, RAISE_MEMORY.format(service=service)))
        elif top["value"] >= warn:
            findings.append(Finding(cid, Severity.WARNING, resource,
                                    f"{service}: memory peaked at {evidence['peak_pct']:g}%",
                                    numbers, evidence, RAISE_MEMORY.format(service=service)))
        else:
            findings.append(Finding(cid, Severity.OK, resource,
                                    f"{service}: memory below {warn:g}% (peak {evidence['peak_pct']:g}%)",
                                    numbers, evidence))
    return findings


def oom_markers(ctx: Context) -> list[tuple[datetime, str]]:
    """(time, label) of each OOM-killed task in the window, for plots. Never raises."""
    try:
        tasks = stopped_tasks(ctx)
    except Exception:  # noqa: BLE001 - markers are decoration; the checks report the failure
        return []
    return [(row.stopped_at, f"OOM {row.service}") for row in tasks[tasks["oom"]].itertuples()]


def _utilization_plot(result: CheckResult, ctx: Context):
    evidence = next((f.evidence for f in result.findings if "period_seconds" in f.evidence), {})
    warn = evidence.get("warning_pct", ctx.thresholds["memory_warning_pct"])
    crit = evidence.get("critical_pct", ctx.thresholds["memory_critical_pct"])
    return plots.timeseries(result.data, "ECS memory utilisation per service (dotted: OOM kills, deployments)",
                            "% of task memory",
                            lines={"critical": crit, "warning": warn},
                            markers=result.markers,
                            window=(ctx.window.start, ctx.window.end), most=plots.MOST_NAMED_LINES)


@check(ECS_UTILIZATION, plot=_utilization_plot,
       marks=lambda ctx: oom_markers(ctx) + deployment_markers(ctx))
def utilization(ctx: Context) -> CheckResult:
    """ECS MemoryUtilization (Average and Maximum) per service (CloudWatch)."""
    df, period = fetch_utilization(ctx)
    return CheckResult(findings=judge_utilization(df, ctx.settings.services, ctx.settings.cluster, period,
                                                  ctx.thresholds), data=df)


# --- memory.ecs.oom_kills -------------------------------------------------------------------------

def judge_oom_kills(df: pd.DataFrame, services: tuple[str, ...], cluster: str,
                    cid: str = ECS_OOM_KILLS) -> list[Finding]:
    findings = []
    for service in services:
        resource = f"ecs:{cluster}/{service}"
        rows = df[df["service"] == service]
        killed = rows[rows["oom"]]
        sigkill_on_request = rows[(rows["exit_code"] == SIGKILL_EXIT) & ~rows["oom"]]
        evidence = {
            "stopped_in_window": len(rows), "oom_killed": len(killed),
            "tasks": [{"task": r.task, "stopped_at": r.stopped_at, "exit_code": r.exit_code,
                       "container": r.container, "reason": r.container_reason or r.stopped_reason,
                       "task_definition": r.task_definition} for r in killed.itertuples()],
            "exit_137_after_requested_stop": len(sigkill_on_request),
        }
        if len(killed):
            last = killed.iloc[-1]
            revisions = sorted(set(killed["task_definition"]))
            findings.append(Finding(
                cid, Severity.CRITICAL, resource,
                f"{service}: {len(killed)} task(s) killed for memory in the window",
                f"{len(killed)} of {len(rows)} stopped task(s) exited 137 or reported OutOfMemoryError "
                f"(revision {', '.join(revisions)}); the last at {last['stopped_at']:%H:%M} UTC.",
                evidence, RAISE_MEMORY.format(service=service)))
        else:
            note = (f"; {len(sigkill_on_request)} exited 137 after a requested stop (not memory)"
                    if len(sigkill_on_request) else "")
            findings.append(Finding(cid, Severity.OK, resource, f"{service}: no OOM-killed task",
                                    f"{len(rows)} task(s) stopped in the window{note}.", evidence))
    return findings


def _stopped_plot(result: CheckResult, ctx: Context):
    df = result.data
    counts = (df.groupby(["service", "category"]).size().reset_index(name="tasks")
              if len(df) else pd.DataFrame(columns=["service", "category", "tasks"]))
    return plots.bars(counts, "service", "tasks", "Stopped tasks in the window by reason",
                      stack="category", xlabel="stopped tasks")


@check(ECS_OOM_KILLS)
def oom_kills(ctx: Context) -> CheckResult:
    """Stopped ECS tasks killed for memory (exit code 137, OutOfMemoryError) in the window."""
    df = stopped_tasks(ctx)
    return CheckResult(findings=judge_oom_kills(df, ctx.settings.services, ctx.settings.cluster), data=df)


# --- memory.ecs.task_churn ------------------------------------------------------------------------

def judge_task_churn(df: pd.DataFrame, services: tuple[str, ...], cluster: str,
                     thresholds: dict[str, float], cid: str = ECS_TASK_CHURN) -> list[Finding]:
    limit = thresholds["task_churn_max"]
    findings = []
    for service in services:
        resource = f"ecs:{cluster}/{service}"
        rows = df[df["service"] == service]
        by_category = {str(k): int(v) for k, v in rows["category"].value_counts().items()}
        evidence = {"stopped": len(rows), "threshold": limit, "by_reason": by_category}
        reasons = ", ".join(f"{k} {v}" for k, v in by_category.items()) or "none"
        if len(rows) > limit:
            findings.append(Finding(
                cid, Severity.WARNING, resource,
                f"{service}: {len(rows)} tasks stopped in the window",
                f"More than {limit:g} stopped tasks: tasks are being killed and restarted. By reason: "
                f"{reasons}.", evidence,
                "Find out why tasks stop (memory.ecs.oom_kills, deploy.ecs.failed_tasks). If they run "
                f"out of memory: increase task memory (rmsops action raise-task-memory --service {service} "
                "--memory <MiB>) and profile the application for memory leaks."))
        else:
            findings.append(Finding(cid, Severity.OK, resource,
                                    f"{service}: {len(rows)} task(s) stopped in the window",
                                    f"At most {limit:g} expected. By reason: {reasons}.", evidence))
    return findings


@check(ECS_TASK_CHURN, plot=_stopped_plot)
def task_churn(ctx: Context) -> CheckResult:
    """Number of ECS tasks per service that stopped in the window."""
    df = stopped_tasks(ctx)
    return CheckResult(findings=judge_task_churn(df, ctx.settings.services, ctx.settings.cluster,
                                                 ctx.thresholds), data=df)


# --- memory.logs.oom_errors -----------------------------------------------------------------------

OOM_LINES = re.compile(r"OutOfMemory|MemoryError|[Oo]ut of memory")
OOM_COLUMNS = ["log_group", "lines", "first", "last", "example"]


def aggregate_oom_lines(events: pd.DataFrame) -> pd.DataFrame:
    """filter_log_events fallback: raw events -> what the Insights ``stats`` query returns."""
    hits = events[events["message"].astype(str).str.contains(OOM_LINES)]
    if hits.empty:
        return pd.DataFrame(columns=OOM_COLUMNS)
    rows = []
    for group, lines in hits.sort_values("timestamp").groupby("log_group", sort=True):
        rows.append({"log_group": group, "lines": len(lines), "first": lines["timestamp"].iloc[0],
                     "last": lines["timestamp"].iloc[-1], "example": lines["message"].iloc[-1]})
    return pd.DataFrame(rows, columns=OOM_COLUMNS)


OOM_QUERY = logquery.LogQuery(
    insights=("filter @message like /OutOfMemory|MemoryError|[Oo]ut of memory/ "
              "| stats count(*) as lines, min(@timestamp) as first, max(@timestamp) as last, "
              "latest(@message) as example by @log"),
    # Any of the terms (an unknown pattern matches everything in moto); the regex above decides.
    filter_pattern='?OutOfMemory ?OutOfMemoryError ?MemoryError ?"out of memory" ?"Out of memory"',
    aggregate=aggregate_oom_lines,
)


def service_log_groups(ctx: Context) -> list[str]:
    """The configured log groups of the services (not the database's or the WAF's)."""
    return [group for key, group in ctx.settings.log_groups.items() if key not in ("rds", "waf", "waf_cloudfront")]


def fetch_oom_lines(ctx: Context, groups: list[str]) -> pd.DataFrame:
    frame = logquery.run(ctx, groups, OOM_QUERY)
    if "@log" in frame.columns:  # Insights names the group "<account>:<group>"
        frame = frame.rename(columns={"@log": "log_group"})
        frame["log_group"] = frame["log_group"].astype(str).str.replace(r"^\d+:", "", regex=True)
    for column in OOM_COLUMNS:
        if column not in frame.columns:
            frame[column] = pd.Series(dtype=object)
    lines = frame[OOM_COLUMNS]
    lines.attrs["truncated"] = logquery.truncated(frame)
    return lines


def judge_oom_lines(df: pd.DataFrame, groups: list[str], cid: str = LOGS_OOM_ERRORS) -> list[Finding]:
    if not groups:
        return [Finding(cid, Severity.INFO, "logs", "No service log group configured",
                        "Set logs.backend / logs.frontend in the environment file to search them.", {},
                        "Add the services' log groups (e.g. /ecs/rms-backend) under logs:.")]
    findings = []
    for group in groups:
        rows = df[df["log_group"] == group]
        lines = int(pd.to_numeric(rows["lines"]).sum()) if len(rows) else 0
        if lines:
            row = rows.iloc[0]
            evidence = {"lines": lines, "first": row["first"], "last": row["last"],
                        "example": str(row["example"])[:500]}
            findings.append(Finding(
                cid, Severity.WARNING, f"loggroup:{group}", f"{group}: {lines} OutOfMemory line(s)",
                f"Between {_hhmm(row['first'])} and {_hhmm(row['last'])} UTC; the latest is in the evidence.",
                evidence,
                "Review the application logs for memory leaks. Immediate: increase task memory allocation "
                "in the task definition (rmsops action raise-task-memory); long-term: profile the "
                "application for memory leaks and optimise."))
        else:
            findings.append(Finding(cid, Severity.OK, f"loggroup:{group}", f"{group}: no OutOfMemory line",
                                    "", {"lines": 0}))
    return findings


def _hhmm(value: Any) -> str:
    moment = pd.to_datetime(value, utc=True, errors="coerce")
    return "?" if pd.isna(moment) else f"{moment:%H:%M}"


@check(LOGS_OOM_ERRORS)
def oom_errors(ctx: Context) -> CheckResult:
    """OutOfMemory lines in the services' log groups (Logs Insights, or filter_log_events)."""
    groups = service_log_groups(ctx)
    df = fetch_oom_lines(ctx, groups) if groups else pd.DataFrame(columns=OOM_COLUMNS)
    return CheckResult(findings=logquery.mark_truncated(judge_oom_lines(df, groups), logquery.truncated(df)),
                       data=df)
