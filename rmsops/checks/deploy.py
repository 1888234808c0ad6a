"""ECS deployments: rollout state, failed tasks, service events, task definition changes
(guide "Deployment Issues" / "Failed Deployments").

The guide's resolution steps are the checks: the service events (``describe-services ...
events[0:10]``), the task definition (``describe-task-definition``) and, through the stopped
tasks' reasons, the startup errors.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from rmsops.core.findings import Finding, Severity
from rmsops.core.registry import CheckResult, check
from rmsops.render import plots
from rmsops.render.figures import (
    TIMELINE_TITLE,  # noqa: F401 - re-exported for callers of this module
    rollout_timeline,  # noqa: F401 - re-exported for callers of this module
)
from rmsops.sources.ecs import (  # noqa: F401 - re-exported for callers of this module
    DEPLOYMENT_COLUMNS,
    NORMAL_STOPS,
    current_task_definition,
    deployment_end,
    deployments_frame,
    describe_services,
    describe_task_definition,
    previous_task_definition,
    service_answer,
    short_name,
    split_revision,
    stopped_tasks,
)

if TYPE_CHECKING:
    from rmsops.core.context import Context

RUNBOOK = "08-failed-deployments"
# Check ids, declared in the catalogue (rmsops/core/runbooks.py); the judges take theirs as `cid`.
ECS_EVENTS = "deploy.ecs.events"
ECS_FAILED_TASKS = "deploy.ecs.failed_tasks"
ECS_ROLLOUT = "deploy.ecs.rollout"
TASKDEF_DIFF = "deploy.taskdef.diff"
ROLLBACK = ("Roll back to the previous working task definition (rmsops action rollback-service "
            "--service {service} --revision {revision}).")
INVESTIGATE = ("Check the ECS service events (deploy.ecs.events), review the task definition change "
               "(deploy.taskdef.diff) and check CloudWatch logs for startup errors: health check "
               "configuration, resource allocation, environment variables, network connectivity.")

# --- task definition names ------------------------------------------------------------------------


# --- deployments ----------------------------------------------------------------------------------


def judge_rollout(df: pd.DataFrame, answer: dict[str, Any], services: tuple[str, ...], cluster: str,
                  thresholds: dict[str, float], now: datetime,
                  previous: dict[str, str | None], cid: str = ECS_ROLLOUT) -> list[Finding]:
    limit = thresholds["rollout_in_progress_minutes"]
    findings = []
    for service in services:
        resource = f"ecs:{cluster}/{service}"
        if service_answer(answer, service) is None:
            findings.append(Finding(cid, Severity.CRITICAL, resource, f"{service}: service not found in {cluster}",
                                    "describe_services reports it missing or inactive.", {},
                                    "Check the cluster and service names in the environment file."))
            continue
        rows = df[df["service"] == service]
        rollback = (ROLLBACK.format(service=service, revision=previous[service])
                    if previous.get(service) else "")
        deployments = [{k: r[k] for k in ("deployment", "status", "task_definition", "rollout_state",
                                          "rollout_reason", "running", "desired", "failed", "created_at")}
                       for r in rows.to_dict("records")]
        evidence = {"deployments": deployments, "in_progress_limit_minutes": limit,
                    "previous_task_definition": previous.get(service)}
        failed = rows[rows["rollout_state"] == "FAILED"]
        primary = rows[rows["status"] == "PRIMARY"]
        if rows.empty:
            findings.append(Finding(cid, Severity.INFO, resource, f"{service}: no ECS deployment listed",
                                    "The service lists no deployment (a CODE_DEPLOY or EXTERNAL "
                                    "deployment controller manages its rollouts).", evidence))
            continue
        if len(failed):
            row = failed.iloc[0]
            findings.append(Finding(
                cid, Severity.CRITICAL, resource,
                f"{service}: rollout of {row['task_definition']} FAILED",
                f"Deployment {row['deployment']}: {row['rollout_reason'] or 'no reason given'}; "
                f"{row['failed']} failed task(s), {row['running']} of {row['desired']} running.",
                evidence, f"{INVESTIGATE} {rollback}".strip()))
            continue
        in_progress = primary[primary["rollout_state"] == "IN_PROGRESS"]
        if len(in_progress):
            row = in_progress.iloc[0]
            created = row["created_at"]
            minutes = (now - created).total_seconds() / 60 if isinstance(created, datetime) else None
            evidence["in_progress_minutes"] = round(minutes, 1) if minutes is not None else None
            age = f"{minutes:.0f} min" if minutes is not None else "an unknown time"
            numbers = (f"Deployment {row['deployment']} started {age} ago: {row['running']} of "
                       f"{row['desired']} running, {row['pending']} pending, {row['failed']} failed.")
            if minutes is not None and minutes > limit:
                findings.append(Finding(cid, Severity.WARNING, resource,
                                        f"{service}: rollout of {row['task_definition']} stuck for {age}",
                                        f"{numbers} Longer than {limit:g} min.", evidence,
                                        f"{INVESTIGATE} {rollback}".strip()))
            else:
                findings.append(Finding(cid, Severity.INFO, resource,
                                        f"{service}: rollout of {row['task_definition']} in progress ({age})",
                                        numbers, evidence))
            continue
        row = primary.iloc[0] if len(primary) else rows.iloc[0]
        findings.append(Finding(cid, Severity.OK, resource,
                                f"{service}: {row['task_definition']} rollout {row['rollout_state'] or 'done'}",
                                f"{row['running']} of {row['desired']} tasks running.", evidence))
    return findings


def _rollout_plot(result: CheckResult, ctx: Context):
    return rollout_timeline(result.data, ctx.window.end, (ctx.window.start, ctx.window.end))


def previous_by_service(ctx: Context, answer: dict[str, Any]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for service in ctx.settings.services:
        svc = service_answer(answer, service)
        out[service] = previous_task_definition(ctx, svc)[0] if svc else None
    return out


@check(ECS_ROLLOUT, plot=_rollout_plot)
def rollout(ctx: Context) -> CheckResult:
    """ECS deployments' rollout state, and how long an IN_PROGRESS rollout has been running."""
    answer = describe_services(ctx)
    df = deployments_frame(answer, ctx.settings.services)
    findings = judge_rollout(df, answer, ctx.settings.services, ctx.settings.cluster, ctx.thresholds,
                             ctx.window.end, previous_by_service(ctx, answer))
    return CheckResult(findings=findings, data=df)


# --- deploy.ecs.failed_tasks ----------------------------------------------------------------------

def _recent(row: Any, since: datetime | None) -> bool:
    """A deployment whose failedTasks still matter: still rolling out, failed, or updated in the window
    (ECS keeps the count on a deployment for as long as it is listed, days after it completed)."""
    if row.rollout_state != "COMPLETED" or since is None:
        return True
    moment = row.updated_at if isinstance(row.updated_at, datetime) else row.created_at
    return isinstance(moment, datetime) and moment >= since


def judge_failed_tasks(deployments: pd.DataFrame, stopped: pd.DataFrame, services: tuple[str, ...],
                       cluster: str, previous: dict[str, str | None], since: datetime | None = None
                       , cid: str = ECS_FAILED_TASKS) -> list[Finding]:
    findings = []
    for service in services:
        resource = f"ecs:{cluster}/{service}"
        counted = deployments[deployments["service"] == service]
        failed_by_deployment = {r.deployment: int(r.failed) for r in counted.itertuples()
                                if r.failed and _recent(r, since)}
        tasks = stopped[(stopped["service"] == service) & ~stopped["category"].isin(NORMAL_STOPS)]
        by_reason = {str(k): int(v) for k, v in tasks["category"].value_counts().items()}
        examples = {}
        for row in tasks.itertuples():
            examples.setdefault(row.category, (row.container_reason or row.stopped_reason or "")[:300])
        evidence = {"deployment_failed_tasks": failed_by_deployment, "stopped_failed_tasks": len(tasks),
                    "by_reason": by_reason, "example_reasons": examples,
                    "task_definitions": sorted(set(tasks["task_definition"]))}
        total_failed = sum(failed_by_deployment.values())
        if total_failed or len(tasks):
            reasons = ", ".join(f"{k} {v}" for k, v in by_reason.items()) or "no stopped task in the window"
            rollback = (" " + ROLLBACK.format(service=service, revision=previous[service])
                        if previous.get(service) else "")
            findings.append(Finding(
                cid, Severity.WARNING, resource,
                f"{service}: {max(total_failed, len(tasks))} failed task(s)",
                f"Deployments report {total_failed} failed task(s); {len(tasks)} task(s) stopped abnormally in "
                f"the window. By reason: {reasons}.", evidence, INVESTIGATE + rollback))
        else:
            findings.append(Finding(cid, Severity.OK, resource, f"{service}: no failed task",
                                    "No deployment counts failed tasks; no task stopped abnormally in the window.",
                                    evidence))
    return findings


def _failed_plot(result: CheckResult, ctx: Context):
    df = result.frames.get("stopped_tasks", pd.DataFrame(columns=["service", "category"]))
    bad = df[~df["category"].isin(NORMAL_STOPS)] if len(df) else df
    counts = (bad.groupby(["service", "category"]).size().reset_index(name="tasks") if len(bad)
              else pd.DataFrame(columns=["service", "category", "tasks"]))
    return plots.bars(counts, "service", "tasks", "Failed (stopped) tasks in the window by reason",
                      stack="category", xlabel="tasks")


@check(ECS_FAILED_TASKS, plot=_failed_plot)
def failed_tasks(ctx: Context) -> CheckResult:
    """Failed tasks of the deployments and stopped tasks' reasons (health checks, image pull, resources)."""
    answer = describe_services(ctx)
    deployments = deployments_frame(answer, ctx.settings.services)
    stopped = stopped_tasks(ctx)
    findings = judge_failed_tasks(deployments, stopped, ctx.settings.services, ctx.settings.cluster,
                                  previous_by_service(ctx, answer), since=ctx.window.start)
    return CheckResult(findings=findings, data=deployments, frames={"stopped_tasks": stopped})


# --- deploy.ecs.events ----------------------------------------------------------------------------

# Service event messages that mean trouble: (label, pattern). ECS phrases them like
# "(service rms-backend) (task 1234) failed container health checks."
TROUBLE = (
    ("unable to place", re.compile(r"unable to place a task", re.I)),
    ("failed container health checks", re.compile(r"failed container health checks", re.I)),
    ("failed ELB health checks", re.compile(r"failed elb health checks", re.I)),
    ("is unhealthy", re.compile(r"is unhealthy in", re.I)),
    ("unable to start tasks", re.compile(r"unable to consistently start tasks", re.I)),
    ("deployment failed", re.compile(r"deployment failed|circuit breaker|rolling back", re.I)),
    ("image pull", re.compile(r"CannotPullContainer|pull image manifest", re.I)),
)
EVENT_COLUMNS = ["service", "created_at", "trouble", "message"]


def trouble_of(message: str) -> str:
    return next((label for label, pattern in TROUBLE if pattern.search(message or "")), "")


def events_frame(answer: dict[str, Any], services: tuple[str, ...], start: datetime,
                 end: datetime) -> pd.DataFrame:
    """The service events in the window (ECS keeps the last 100), newest first."""
    rows = []
    for service in services:
        svc = service_answer(answer, service) or {}
        for event in svc.get("events", []):
            created = event.get("createdAt")
            if isinstance(created, datetime) and not start <= created <= end:
                continue
            message = str(event.get("message", ""))
            rows.append({"service": service, "created_at": created, "trouble": trouble_of(message),
                         "message": message})
    return pd.DataFrame(rows, columns=EVENT_COLUMNS)


def judge_events(df: pd.DataFrame, services: tuple[str, ...], cluster: str, cid: str = ECS_EVENTS) -> list[Finding]:
    findings = []
    for service in services:
        resource = f"ecs:{cluster}/{service}"
        rows = df[df["service"] == service]
        bad = rows[rows["trouble"] != ""]
        counts = {str(k): int(v) for k, v in bad["trouble"].value_counts().items()}
        evidence = {"events_in_window": len(rows), "troubling": len(bad), "by_kind": counts,
                    "latest": [{"at": r.created_at, "message": r.message[:300]}
                               for r in bad.head(10).itertuples()]}
        if len(bad):
            findings.append(Finding(
                cid, Severity.WARNING, resource,
                f"{service}: {len(bad)} troubling service event(s)",
                "; ".join(f"{k} ×{v}" for k, v in counts.items()) + f" (of {len(rows)} events in the window). "
                f"Latest: {bad.iloc[0]['message'][:200]}", evidence, INVESTIGATE))
        else:
            findings.append(Finding(cid, Severity.OK, resource, f"{service}: no troubling service event",
                                    f"{len(rows)} event(s) in the window.", evidence))
    return findings


@check(ECS_EVENTS)
def events(ctx: Context) -> CheckResult:
    """The ECS service events in the window that mean trouble (placement, health checks)."""
    answer = describe_services(ctx)
    df = events_frame(answer, ctx.settings.services, ctx.window.start, ctx.window.end)
    return CheckResult(findings=judge_events(df, ctx.settings.services, ctx.settings.cluster), data=df)


# --- deploy.taskdef.diff --------------------------------------------------------------------------

DIFF_COLUMNS = ["service", "container", "field", "before", "after"]
HEALTH_KEYS = ("command", "interval", "timeout", "retries", "startPeriod")


def _names(items: list[dict[str, Any]] | None) -> dict[str, Any]:
    return {item.get("name", ""): item.get("value", item.get("valueFrom")) for item in items or []}


def _health(container: dict[str, Any]) -> str:
    check_ = container.get("healthCheck")
    if not check_:
        return ""
    return json.dumps({k: check_[k] for k in HEALTH_KEYS if k in check_}, sort_keys=True)


def diff_task_definitions(before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    """What changed between two task definitions: image, environment and secret NAMES (values are
    never read into the result), cpu and memory, health check. One dict per change."""
    changes = []

    def add(container: str, field: str, old: Any, new: Any) -> None:
        changes.append({"container": container, "field": field,
                        "before": "" if old is None else str(old), "after": "" if new is None else str(new)})

    for key in ("cpu", "memory"):
        if str(before.get(key) or "") != str(after.get(key) or ""):
            add("(task)", key, before.get(key), after.get(key))
    old = {c.get("name", ""): c for c in before.get("containerDefinitions", [])}
    new = {c.get("name", ""): c for c in after.get("containerDefinitions", [])}
    for name in sorted(old.keys() - new.keys()):
        add(name, "container", "present", "removed")
    for name in sorted(new.keys() - old.keys()):
        add(name, "container", "", "added")
    for name in sorted(old.keys() & new.keys()):
        a, b = old[name], new[name]
        for key in ("image", "cpu", "memory", "memoryReservation"):
            if a.get(key) != b.get(key):
                add(name, key, a.get(key), b.get(key))
        for key in ("environment", "secrets"):
            env_a, env_b = _names(a.get(key)), _names(b.get(key))
            for var in sorted(env_b.keys() - env_a.keys()):
                add(name, f"{key} added", "", var)
            for var in sorted(env_a.keys() - env_b.keys()):
                add(name, f"{key} removed", var, "")
            for var in sorted(k for k in env_a.keys() & env_b.keys() if env_a[k] != env_b[k]):
                add(name, f"{key} value changed", var, var)  # the name only, never the value
        if _health(a) != _health(b):
            add(name, "healthCheck", _health(a), _health(b))
    return changes


def judge_taskdef_diff(service: str, cluster: str, current: str, previous: str | None, how: str,
                       changes: list[dict[str, Any]] | None, cid: str = TASKDEF_DIFF) -> Finding:
    resource = f"ecs:{cluster}/{service}"
    evidence = {"current": current, "previous": previous, "previous_found_by": how, "changes": changes or []}
    if previous is None or changes is None:
        return Finding(cid, Severity.INFO, resource, f"{service}: no previous revision to compare {current} with",
                       how + ".", evidence)
    if not changes:
        return Finding(cid, Severity.INFO, resource, f"{service}: {current} = {previous} (image, environment, "
                       "memory, health check)", f"Previous revision: {how}.", evidence)
    fields = sorted({c["field"].split(" ")[0] for c in changes})
    return Finding(cid, Severity.INFO, resource,
                   f"{service}: {previous} → {current} changes {', '.join(fields)}",
                   f"{len(changes)} change(s); previous revision: {how}. Environment variables are compared "
                   "by name only.", evidence,
                   "If the change broke the deployment: roll back (rmsops action rollback-service "
                   f"--service {service} --revision {split_revision(previous)[1]}).")


@check(TASKDEF_DIFF)
def taskdef_diff(ctx: Context) -> CheckResult:
    """Current vs previous task definition revision: image, environment names, memory, health check."""
    answer = describe_services(ctx)
    findings, rows = [], []
    for service in ctx.settings.services:
        svc = service_answer(answer, service)
        if svc is None:
            findings.append(Finding(TASKDEF_DIFF, Severity.INFO, f"ecs:{ctx.settings.cluster}/{service}",
                                    f"{service}: service not found", "Nothing to compare.", {}))
            continue
        current = current_task_definition(svc)
        previous, how = previous_task_definition(ctx, svc)
        after = describe_task_definition(ctx, current)
        before = describe_task_definition(ctx, previous) if previous else None
        changes = diff_task_definitions(before, after) if before and after else None
        if after is None:
            how = f"the current task definition {current} cannot be described"
        findings.append(judge_taskdef_diff(service, ctx.settings.cluster, current, previous, how, changes))
        rows += [{"service": service, **c} for c in changes or []]
    return CheckResult(findings=findings, data=pd.DataFrame(rows, columns=DIFF_COLUMNS))
