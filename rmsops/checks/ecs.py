"""ECS services and tasks (guide §1 step 2)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from rmsops.core.findings import Finding, Severity
from rmsops.core.registry import CheckResult, check
from rmsops.render import plots
from rmsops.sources.ecs import _deployment_markers, deployment_markers, describe_services  # noqa: F401 - re-exported for callers of this module
from rmsops.sources.ecs_tasks import service_tasks

if TYPE_CHECKING:
    from rmsops.core.context import Context

RUNBOOK = "01-application-not-responding"
# Check ids, declared in the catalogue (rmsops/core/runbooks.py); the judges take theirs as `cid`.
ECS_CAPACITY = "app.ecs.capacity"
ECS_UNHEALTHY_TASKS = "app.ecs.unhealthy_tasks"
FORCE_DEPLOY = ("If tasks are unhealthy: force a new deployment "
                "(rmsops action force-new-deployment --service {service}); "
                "if persistent: scale up service capacity.")
SERVICE_COLUMNS = ["service", "status", "desired", "running", "pending", "task_definition",
                   "deployments", "rollout_state", "missing"]
TASK_COLUMNS = ["service", "task", "last_status", "health", "started_at", "task_definition"]


def services_frame(answer: dict[str, Any], wanted: tuple[str, ...]) -> pd.DataFrame:
    rows = []
    found = {s["serviceName"]: s for s in answer.get("services", [])}
    for name in wanted:
        svc = found.get(name)
        if svc is None or svc.get("status") == "INACTIVE":
            rows.append({"service": name, "status": "MISSING", "desired": 0, "running": 0,
                         "pending": 0, "task_definition": "", "deployments": 0,
                         "rollout_state": "", "missing": True})
            continue
        primary = next((d for d in svc.get("deployments", []) if d.get("status") == "PRIMARY"), {})
        rows.append({
            "service": name, "status": svc.get("status", ""),
            "desired": int(svc.get("desiredCount", 0)), "running": int(svc.get("runningCount", 0)),
            "pending": int(svc.get("pendingCount", 0)),
            "task_definition": str(svc.get("taskDefinition", "")).rsplit("/", 1)[-1],
            "deployments": len(svc.get("deployments", [])),
            "rollout_state": primary.get("rolloutState", ""), "missing": False,
        })
    return pd.DataFrame(rows, columns=SERVICE_COLUMNS)


def judge_capacity(df: pd.DataFrame, cluster: str, cid: str = ECS_CAPACITY) -> list[Finding]:
    findings = []
    for row in df.itertuples(index=False):
        resource = f"ecs:{cluster}/{row.service}"
        evidence = {"desired": row.desired, "running": row.running, "pending": row.pending,
                    "status": row.status}
        numbers = f"running {row.running} of {row.desired} desired, {row.pending} pending"
        if row.missing:
            findings.append(Finding(cid, Severity.CRITICAL, resource,
                                    f"{row.service}: service not found in {cluster}",
                                    "describe_services reports it missing or inactive.", evidence,
                                    "Check the cluster and service names in the environment file."))
        elif row.desired > 0 and row.running == 0:
            findings.append(Finding(cid, Severity.CRITICAL, resource,
                                    f"{row.service}: no task running", numbers + ".", evidence,
                                    FORCE_DEPLOY.format(service=row.service)))
        elif row.running < row.desired:
            findings.append(Finding(cid, Severity.WARNING, resource,
                                    f"{row.service}: below desired capacity", numbers + ".", evidence,
                                    FORCE_DEPLOY.format(service=row.service)))
        else:
            findings.append(Finding(cid, Severity.OK, resource, f"{row.service}: at desired capacity",
                                    numbers + ".", evidence))
    return findings


def _capacity_plot(result: CheckResult, ctx: Context):
    df = result.data
    long = df.melt(id_vars="service", value_vars=["running", "pending"], var_name="state",
                   value_name="tasks")
    return plots.bars(long, "service", "tasks", "ECS tasks by service (against desired)",
                      stack="state", xlabel="tasks")


@check(ECS_CAPACITY, plot=_capacity_plot)
def capacity(ctx: Context) -> CheckResult:
    """ECS running vs desired vs pending tasks per service."""
    df = services_frame(describe_services(ctx), ctx.settings.services)
    return CheckResult(findings=judge_capacity(df, ctx.settings.cluster), data=df)


def tasks_frame(ctx: Context) -> pd.DataFrame:
    """Running tasks of each configured service with their health status."""
    tasks = service_tasks(ctx, "RUNNING")
    rows = []
    for service in ctx.settings.services:
        for task in tasks.get(service, []):  # a missing service: app.ecs.capacity reports it
            rows.append({
                "service": service, "task": task["taskArn"].rsplit("/", 1)[-1],
                "last_status": task.get("lastStatus", ""),
                "health": task.get("healthStatus", "UNKNOWN"),
                "started_at": task.get("startedAt"),
                "task_definition": task.get("taskDefinitionArn", "").rsplit("/", 1)[-1],
            })
    return pd.DataFrame(rows, columns=TASK_COLUMNS)


def judge_unhealthy_tasks(df: pd.DataFrame, cluster: str, services: tuple[str, ...],
                          cid: str = ECS_UNHEALTHY_TASKS) -> list[Finding]:
    findings = []
    for service in services:
        tasks = df[df["service"] == service]
        bad = tasks[tasks["health"] == "UNHEALTHY"]
        resource = f"ecs:{cluster}/{service}"
        evidence = {"tasks": len(tasks), "unhealthy": len(bad), "unhealthy_tasks": list(bad["task"])}
        if len(bad):
            findings.append(Finding(
                cid, Severity.WARNING, resource,
                f"{service}: {len(bad)} of {len(tasks)} running tasks UNHEALTHY",
                f"Container health checks fail on {len(bad)} task(s).", evidence,
                FORCE_DEPLOY.format(service=service)))
        else:
            findings.append(Finding(cid, Severity.OK, resource,
                                    f"{service}: no unhealthy task ({len(tasks)} running)",
                                    "", evidence))
    return findings


@check(ECS_UNHEALTHY_TASKS)
def unhealthy_tasks(ctx: Context) -> CheckResult:
    """Running ECS tasks whose container health status is UNHEALTHY."""
    df = tasks_frame(ctx)
    return CheckResult(findings=judge_unhealthy_tasks(df, ctx.settings.cluster, ctx.settings.services),
                       data=df)


