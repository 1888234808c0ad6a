"""ECS data shared by the checks: the services' describe (once per run), deployments, task definitions
and stopped tasks, as frames the judges read. Fetches are memoised on the context."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from rmsops.sources import limits
from rmsops.sources.ecs_tasks import service_tasks

if TYPE_CHECKING:
    from rmsops.core.context import Context


def describe_services(ctx: Context) -> dict[str, Any]:
    """The raw describe_services answer for the configured services, fetched once per run."""

    def fetch() -> dict[str, Any]:
        ecs = ctx.client("ecs")
        services: list[dict] = []
        failures: list[dict] = []
        for batch in limits.chunks(ctx.settings.services, limits.ECS_DESCRIBE_SERVICES):
            answer = ecs.describe_services(cluster=ctx.settings.cluster, services=batch)
            services += answer.get("services", [])
            failures += answer.get("failures", [])
        return {"services": services, "failures": failures}

    return ctx.memo("ecs.describe_services", fetch)


def deployment_markers(ctx: Context) -> list[tuple[datetime, str]]:
    """(time, label) of each ECS deployment that started in the window, for plots. Never raises."""
    return ctx.memo("ecs.deployment_markers", lambda: _deployment_markers(ctx))


def _deployment_markers(ctx: Context) -> list[tuple[datetime, str]]:
    try:
        answer = describe_services(ctx)
    except Exception:  # noqa: BLE001 - markers are decoration; the checks report the failure (once)
        return []
    markers = []
    for svc in answer.get("services", []):
        for deployment in svc.get("deployments", []):
            created = deployment.get("createdAt")
            if isinstance(created, datetime) and ctx.window.start <= created <= ctx.window.end:
                markers.append((created, f"deploy {svc['serviceName']}"))
    return sorted(markers)


def short_name(task_definition: str | None) -> str:
    """``family:revision`` from an ARN (or the name itself)."""
    return str(task_definition or "").rsplit("/", 1)[-1]


def split_revision(task_definition: str | None) -> tuple[str, int | None]:
    """(family, revision) of an ARN or ``family[:revision]``; revision None when absent."""
    family, _, revision = short_name(task_definition).partition(":")
    return family, int(revision) if revision.isdigit() else None


def describe_task_definition(ctx: Context, name: str) -> dict[str, Any] | None:
    """One task definition (any status), fetched once per run; None when it does not exist.

    DescribeTaskDefinition takes one task definition a call, so an ARN and its ``family:revision``
    share one fetch: the checks that name it either way ask ECS once.
    """
    key = short_name(name) if ":task-definition/" in name else name

    def fetch() -> dict[str, Any] | None:
        ecs = ctx.client("ecs")
        try:
            return ecs.describe_task_definition(taskDefinition=name)["taskDefinition"]
        except ecs.exceptions.ClientException:
            return None  # "Unable to describe task definition": never registered, or deleted

    return ctx.memo(f"deploy.task_definition:{key}", fetch)


def newest_revisions(ctx: Context, family: str, status: str = "ACTIVE", limit: int = 10) -> list[int]:
    """The newest ``limit`` revision numbers of ``family`` with ``status``, newest first.

    ListTaskDefinitions is paged (up to 100 ARNs a page); ``familyPrefix`` may also match longer
    families (rms-backend-worker), which are skipped. With ``sort=DESC`` AWS lists a family's
    revisions together, newest first, so the listing stops once ``limit`` of them are in.
    """
    def fetch() -> list[int]:
        ecs = ctx.client("ecs")
        numbers: set[int] = set()
        for page in ecs.get_paginator("list_task_definitions").paginate(familyPrefix=family, status=status,
                                                                         sort="DESC"):
            for arn in page.get("taskDefinitionArns", []):
                name_family, revision = split_revision(arn)
                if name_family == family and revision is not None:
                    numbers.add(revision)
            if len(numbers) >= limit:
                break
        return sorted(numbers, reverse=True)[:limit]

    return ctx.memo(f"ecs.newest_revisions:{family}:{status}:{limit}", fetch)


DEPLOYMENT_COLUMNS = ["service", "deployment", "status", "task_definition", "rollout_state",
                      "rollout_reason", "desired", "running", "pending", "failed", "created_at",
                      "updated_at"]


def deployments_frame(answer: dict[str, Any], services: tuple[str, ...]) -> pd.DataFrame:
    """Every deployment ECS lists for each service (PRIMARY first), from describe_services."""
    found = {s["serviceName"]: s for s in answer.get("services", []) if s.get("status") != "INACTIVE"}
    rows = []
    for name in services:
        for d in found.get(name, {}).get("deployments", []):
            rows.append({
                "service": name, "deployment": d.get("id", ""), "status": d.get("status", ""),
                "task_definition": short_name(d.get("taskDefinition")),
                "rollout_state": d.get("rolloutState", ""), "rollout_reason": d.get("rolloutStateReason", ""),
                "desired": int(d.get("desiredCount", 0)), "running": int(d.get("runningCount", 0)),
                "pending": int(d.get("pendingCount", 0)), "failed": int(d.get("failedTasks", 0)),
                "created_at": d.get("createdAt"), "updated_at": d.get("updatedAt"),
            })
    return pd.DataFrame(rows, columns=DEPLOYMENT_COLUMNS)


def service_answer(answer: dict[str, Any], service: str) -> dict[str, Any] | None:
    return next((s for s in answer.get("services", [])
                 if s.get("serviceName") == service and s.get("status") != "INACTIVE"), None)


def current_task_definition(svc: dict[str, Any]) -> str:
    """What the service is set to run: its taskDefinition (the PRIMARY deployment's in AWS)."""
    primary = next((d for d in svc.get("deployments", []) if d.get("status") == "PRIMARY"), {})
    return short_name(svc.get("taskDefinition") or primary.get("taskDefinition"))


def previous_task_definition(ctx: Context, svc: dict[str, Any]) -> tuple[str | None, str]:
    """The revision before the current one, and how it was found.

    The task definition of a deployment the current one is replacing (ECS lists it while it
    rolls out) is the best evidence; otherwise the highest existing revision below the current.
    """
    current = current_task_definition(svc)
    for d in svc.get("deployments", []):
        name = short_name(d.get("taskDefinition"))
        if d.get("status") != "PRIMARY" and name and name != current:
            return name, f"the {d.get('status', 'older')} deployment {d.get('id', '')} runs it"
    family, revision = split_revision(current)
    if revision is None:
        return None, "the service's task definition has no revision number"
    for candidate in range(revision - 1, max(0, revision - 6), -1):
        if describe_task_definition(ctx, f"{family}:{candidate}") is not None:
            return f"{family}:{candidate}", "the highest existing revision below the current one"
    return None, f"no revision of {family} below {revision} exists"


def deployment_end(status: str, rollout_state: str, created: datetime, updated: datetime | None,
                   now: datetime) -> datetime:
    """Where a deployment's bar ends: now while it runs or rolls out, else at its last update."""
    if status == "PRIMARY" or rollout_state == "IN_PROGRESS":
        return max(now, created)
    return max(updated or created, created)


STOPPED_COLUMNS = ["service", "task", "task_definition", "started_at", "stopped_at", "stop_code",
                   "stopped_reason", "container", "exit_code", "container_reason", "category", "oom"]


# Stops that were asked for (scale-in, a deployment replacing tasks, a user): a container that
# ignores SIGTERM is then SIGKILLed after the stop timeout and also exits 137 - not out of memory.
REQUESTED_STOPS = {"UserInitiated", "ServiceSchedulerInitiated", "SpotInterruption", "TerminationNotice"}


OOM_TEXT = "OutOfMemory"


SIGKILL_EXIT = 137


def stopped_tasks(ctx: Context) -> pd.DataFrame:
    """Tasks of the configured services that stopped in the window (``stoppedAt``), one row each.

    ECS lists stopped tasks for a limited time (about an hour) after they stop, so a window far
    in the past finds none. Tasks without ``stoppedAt`` cannot be placed in time and are left out;
    their number is in ``attrs["undated"]``.
    """

    def fetch() -> pd.DataFrame:
        tasks = service_tasks(ctx, "STOPPED")  # a missing service: app.ecs.capacity reports it
        rows, undated = [], 0
        for service in ctx.settings.services:
            for task in tasks.get(service, []):
                stopped = task.get("stoppedAt")
                if not isinstance(stopped, datetime):
                    undated += 1
                    continue
                if ctx.window.start <= stopped <= ctx.window.end:
                    rows.append(stopped_row(service, task))
        frame = stopped_frame(rows)
        frame.attrs["undated"] = undated
        return frame

    return ctx.memo("memory.stopped_tasks", fetch)


def stopped_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows of ``stopped_row`` as a frame, oldest first (exit codes stay ints or None)."""
    frame = pd.DataFrame(rows, columns=STOPPED_COLUMNS)
    frame["exit_code"] = pd.Series([r.get("exit_code") for r in rows], dtype=object)
    frame["oom"] = frame["oom"].astype(bool)
    return frame.sort_values("stopped_at", ignore_index=True) if len(frame) else frame


def stopped_row(service: str, task: dict[str, Any]) -> dict[str, Any]:
    """One row for a stopped task, from the container that tells most about why it stopped."""
    containers = task.get("containers") or [{}]
    telling = sorted(containers, key=lambda c: (not _is_oom_text(c.get("reason", "")),
                                                c.get("exitCode") != SIGKILL_EXIT,
                                                c.get("exitCode") in (0, None)))[0]
    row = {
        "service": service, "task": task.get("taskArn", "").rsplit("/", 1)[-1],
        "task_definition": task.get("taskDefinitionArn", "").rsplit("/", 1)[-1],
        "started_at": task.get("startedAt"), "stopped_at": task.get("stoppedAt"),
        "stop_code": task.get("stopCode", ""), "stopped_reason": task.get("stoppedReason", ""),
        "container": telling.get("name", ""), "exit_code": telling.get("exitCode"),
        "container_reason": telling.get("reason", ""),
    }
    row["oom"] = is_oom(row)
    row["category"] = stop_category(row)
    return row


def _is_oom_text(text: str | None) -> bool:
    return OOM_TEXT.lower() in (text or "").lower()


def is_oom(row: dict[str, Any]) -> bool:
    """Killed for memory: an OutOfMemoryError reason, or exit 137 without a requested stop."""
    if _is_oom_text(row.get("container_reason")) or _is_oom_text(row.get("stopped_reason")):
        return True
    return row.get("exit_code") == SIGKILL_EXIT and row.get("stop_code") not in REQUESTED_STOPS


def stop_category(row: dict[str, Any]) -> str:
    """Why a task stopped, in a few words a chart can group by."""
    reason = f"{row.get('stopped_reason') or ''} {row.get('container_reason') or ''}".lower()
    code = row.get("stop_code") or ""
    if row.get("oom"):
        return "out of memory"
    if "failed container health checks" in reason:
        return "container health checks"
    if "elb health checks" in reason:
        return "ELB health checks"
    if "cannotpullcontainer" in reason or "pull image" in reason or "pulling image" in reason:
        return "image pull"
    if "resource:" in reason or "resourceinitializationerror" in reason or "insufficient" in reason:
        return "resources"
    if code == "TaskFailedToStart":
        return "failed to start"
    if code in REQUESTED_STOPS:
        return "scaling or deployment" if code == "ServiceSchedulerInitiated" else "stopped on request"
    if code == "EssentialContainerExited" or row.get("exit_code") not in (0, None):
        return "essential container exited"
    return "other"


NORMAL_STOPS = {"scaling or deployment", "stopped on request"}
