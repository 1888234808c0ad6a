"""The tasks of the configured ECS services, listed cluster-wide when that takes fewer calls.

ECS names tasks with ListTasks (ARNs only, at most 100 a page) and describes them with
DescribeTasks (at most 100 a call). Asked per service, that is two calls or more for every
service: 24 for a cluster of 12. One cluster-wide ListTasks by desired status and DescribeTasks in
batches of 100 cost two calls per hundred tasks instead, whatever the number of services; each
task names its service in ``group`` (``service:NAME``), which splits the answer again.

A shared cluster may run far more tasks than the configured services own. The cluster-wide
listing therefore reads at most as many pages as there are configured services (beyond that it
would cost more than asking per service) and otherwise gives way to the per-service listing. Both
ways give the same tasks: the per-service way keeps only the tasks whose ``group`` names the
service too (emulators ignore ``serviceName``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rmsops.sources import limits

if TYPE_CHECKING:
    from rmsops.core.context import Context


def service_tasks(ctx: Context, desired_status: str) -> dict[str, list[dict[str, Any]]]:
    """Described tasks of each configured service with this desired status (``RUNNING``, ``STOPPED``),
    fetched once per run. A service ECS does not know (ServiceNotFoundException) has none."""

    def fetch() -> dict[str, list[dict[str, Any]]]:
        ecs = ctx.client("ecs")
        cluster, services = ctx.settings.cluster, ctx.settings.services
        arns = _cluster_arns(ecs, cluster, desired_status, max_pages=len(services)) if len(services) > 1 else None
        if arns is not None:
            found: dict[str, list[dict[str, Any]]] = {service: [] for service in services}
            for task in describe(ecs, cluster, arns):
                group = str(task.get("group", ""))
                if group.startswith("service:") and group[len("service:"):] in found:
                    found[group[len("service:"):]].append(task)
            return found
        return {service: [task for task in describe(ecs, cluster, service_arns)
                          if task.get("group", f"service:{service}") == f"service:{service}"]
                for service in services
                if (service_arns := _service_arns(ecs, cluster, service, desired_status)) is not None}

    return ctx.memo(f"ecs.service_tasks:{desired_status}", fetch)


def describe(ecs: Any, cluster: str, arns: list[str]) -> list[dict[str, Any]]:
    """DescribeTasks of ``arns`` in batches of 100 (the API's maximum), in the order of ``arns``."""
    described: dict[str, dict[str, Any]] = {}
    for batch in limits.chunks(arns, limits.ECS_DESCRIBE_TASKS):
        for task in ecs.describe_tasks(cluster=cluster, tasks=batch).get("tasks", []):
            described[task["taskArn"]] = task
    return [described[arn] for arn in arns if arn in described]


def _cluster_arns(ecs: Any, cluster: str, desired_status: str, max_pages: int) -> list[str] | None:
    """Every task ARN of the cluster with this desired status; None when more than ``max_pages`` pages."""
    arns: list[str] = []
    pages = ecs.get_paginator("list_tasks").paginate(cluster=cluster, desiredStatus=desired_status,
                                                     PaginationConfig={"PageSize": limits.ECS_LIST_TASKS_PAGE})
    for number, page in enumerate(pages, start=1):
        arns += page.get("taskArns", [])
        if number >= max_pages and page.get("nextToken"):
            return None  # a shared cluster: asking per service is cheaper
    return arns


def _service_arns(ecs: Any, cluster: str, service: str, desired_status: str) -> list[str] | None:
    """The service's task ARNs with this desired status; None when ECS does not know the service."""
    arns: list[str] = []
    try:
        for page in ecs.get_paginator("list_tasks").paginate(cluster=cluster, serviceName=service,
                                                             desiredStatus=desired_status):
            arns += page.get("taskArns", [])
    except ecs.exceptions.ServiceNotFoundException:
        return None  # app.ecs.capacity and deploy.ecs.rollout report the missing service
    return arns
