"""What moto does not model, seeded explicitly into its in-process backends.

moto 5.2 answers the AWS APIs rmsops calls, but some of the state an incident
consists of cannot be created through those APIs:

* ALB targets are always ``healthy``: ``FakeTargetGroup.health_for`` is patched
  so the scenario's targets report ``unhealthy`` with a reason and description.
* ECS services never get events, a second deployment or real running/pending
  counts: they are written into the service objects of ``ecs_backends``.
* ECS tasks have no ``healthStatus`` or ``startedAt`` and drift to STOPPED each
  time they are described: the task state machine is frozen
  (``state_manager.set_transition(... "manual" ...)``) and the attributes are set
  on the task objects (moto serialises any attribute named like the API field).
* The EC2 backend loads ~1,300 AMIs when first used (0.4 s); the demo needs none, so
  ``settings.ec2_load_default_amis`` answers False.
* Task IPs are random ``10.x.y.z`` addresses outside the VPC: ``run_task`` draws
  them from the scenario's task subnet instead.
* For every request, moto's server lists its ~200 package folders on disk and tries
  its ~500 URL patterns to find the service, holding its one lock: about a sixth
  of the emulator's CPU in a ``rmsops check``. The answer for a host name never
  changes, so it is remembered. (Emulator time only: a real account costs us none.)
* moto's GetMetricData scans every datum of the window once per query and period,
  about half of the emulator's CPU in a ``rmsops check``. Each query is answered
  by moto's own code from the datums of its metric name (and dimensions) alone:
  its filters would drop every other one, so the answer is the same.

The ThreadedMotoServer runs in this process and serves these same backends, so
boto3 calls (and therefore rmsops' plain production code path) see the result.
Everything here is undone by ``MotoPatches.remove()``.
"""

from __future__ import annotations

import ipaddress
import itertools
import threading
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any
from unittest import mock

from moto import settings as moto_settings
from moto.cloudwatch.models import CloudWatchBackend, Dimension
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ecs import models as ecs_models
from moto.elbv2.models import FakeHealthStatus, FakeTargetGroup
from moto.moto_api import state_manager
from moto.moto_server.werkzeug_app import DomainDispatcherApplication

from rmsops.demo import layout
from rmsops.demo.scenarios import ServiceState, TargetFault

ECS_TASK_MODEL = "ecs::task"


def ecs_backend() -> Any:
    return ecs_models.ecs_backends[DEFAULT_ACCOUNT_ID][layout.REGION]


def reset_moto() -> None:
    """Forget every emulated resource (all services, all regions) in this process."""
    from moto.moto_api._internal.models import moto_api_backend

    moto_api_backend.reset()


class MotoPatches:
    """Patches installed by ``install()`` and removed by ``remove()`` (idempotent)."""

    def __init__(self, task_subnet: str = "10.0.10.0/24"):
        self._patchers: list[Any] = []
        self._froze_tasks = False
        self._faults: dict[tuple[str, str], TargetFault] = {}
        self._lock = threading.Lock()
        self._task_ips: Iterator[str] = self._addresses(task_subnet)

    @staticmethod
    def _addresses(cidr: str) -> Iterator[str]:
        hosts = ipaddress.ip_network(cidr).hosts()
        return (str(ip) for ip in itertools.islice(hosts, 9, None))  # .10 upwards, like AWS spreads them

    def install(self) -> None:
        if self._patchers:
            return
        state_manager.set_transition(model_name=ECS_TASK_MODEL,
                                     transition={"progression": "manual", "times": 999_999})
        self._froze_tasks = True
        original_health = FakeTargetGroup.health_for
        faults, lock = self._faults, self._lock

        def health_for(group: FakeTargetGroup, target: dict[str, Any], ec2_backend: Any) -> FakeHealthStatus:
            health = original_health(group, target, ec2_backend)
            with lock:
                fault = faults.get((group.name, target["Id"]))
            if fault is None or health.status != "healthy":
                return health
            return FakeHealthStatus(health.instance_id, health.port, health.health_check_port,
                                    fault.state, fault.reason, fault.description)

        def next_task_ip(cidr: str | None = None, ipv6: bool = False) -> str:
            with lock:
                return next(self._task_ips)

        for patcher in (mock.patch.object(FakeTargetGroup, "health_for", health_for),
                        mock.patch.object(DomainDispatcherApplication, "get_backend_for_host",
                                          _remembered(DomainDispatcherApplication.get_backend_for_host)),
                        mock.patch.object(CloudWatchBackend, "get_metric_data",
                                          _per_metric(CloudWatchBackend.get_metric_data)),
                        mock.patch.object(ecs_models, "random_private_ip", next_task_ip),
                        mock.patch.object(moto_settings, "ec2_load_default_amis", lambda: False)):
            patcher.start()
            self._patchers.append(patcher)

    def remove(self) -> None:
        while self._patchers:
            self._patchers.pop().stop()
        if self._froze_tasks:
            state_manager.unset_transition(ECS_TASK_MODEL)
            self._froze_tasks = False
        with self._lock:
            self._faults.clear()

    def set_target_faults(self, group: str, targets: Iterable[str], faults: Iterable[TargetFault]) -> None:
        """The first targets of *group* (by Id) get the faults, in order; the others stay healthy."""
        with self._lock:
            for target, fault in zip(targets, faults, strict=False):
                self._faults[(group, target)] = fault


def _remembered(get_backend_for_host: Callable[[Any, str | None], Any]) -> Callable[[Any, str | None], Any]:
    """moto's host-to-service lookup, remembering each host's service (moto calls it under its lock)."""
    known: dict[str | None, Any] = {}

    def lookup(app: Any, host: str | None) -> Any:
        if host not in known:
            backend = get_backend_for_host(app, host)
            if not backend:
                return backend  # not found: moto tries the request's other headers; ask again next time
            known[host] = backend
        return known[host]

    return lookup


class _Datums:
    """Stands in for a CloudWatch backend in its ``get_metric_data``, which reads only ``get_all_metrics``."""

    def __init__(self, datums: list[Any]):
        self.datums = datums

    def get_all_metrics(self) -> list[Any]:
        return self.datums


def _per_metric(get_metric_data: Callable[..., list[dict[str, Any]]]) -> Callable[..., list[dict[str, Any]]]:
    """moto's GetMetricData, each metric query given only the datums its own filters can keep."""

    def answer(backend: Any, queries: list[dict[str, Any]], *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        if not queries or any("MetricStat" not in query for query in queries):  # math reads other results
            return get_metric_data(backend, queries, *args, **kwargs)
        by_name: dict[str, list[Any]] = {}
        for datum in backend.get_all_metrics():
            by_name.setdefault(datum.name, []).append(datum)
        results = []
        for query in queries:
            metric = query["MetricStat"]["Metric"]
            datums = by_name.get(metric["MetricName"], [])
            if metric.get("Dimensions"):  # moto's own test for a query with dimensions
                wanted = sorted(Dimension(name=d["Name"], value=d["Value"]) for d in metric["Dimensions"])
                datums = [datum for datum in datums if sorted(datum.dimensions) == wanted]
            results += get_metric_data(_Datums(datums), [query], *args, **kwargs)
        return results

    return answer


def shape_service(cluster: str, service: str, state: ServiceState, deployments: list[dict[str, Any]],
                  events: list[dict[str, Any]]) -> None:
    """Set running/pending counts, deployments (PRIMARY first) and events (newest first)."""
    svc = ecs_backend().services[f"{cluster}:{service}"]
    svc.desired_count = state.desired
    svc.running_count = state.running
    svc.pending_count = state.pending
    svc.deployments = deployments
    svc.events = events


def primary_deployment(cluster: str, service: str) -> dict[str, Any]:
    """The PRIMARY deployment moto created with the service (to keep its id)."""
    return dict(ecs_backend().services[f"{cluster}:{service}"].deployments[0])


def shape_cluster(cluster: str, running: int, pending: int, services: int) -> None:
    """describe_clusters counts (moto does not keep them in step with services and tasks)."""
    obj = ecs_backend().clusters[cluster]
    obj.running_tasks_count, obj.pending_tasks_count, obj.active_services_count = running, pending, services


def set_task_health(cluster: str, task_arns: Iterable[str], health: str, started_at: datetime) -> None:
    """``healthStatus`` (task and containers), ``startedAt`` and connectivity of running tasks."""
    tasks = ecs_backend().tasks[cluster]
    for arn in task_arns:
        task = tasks[arn]
        task.health_status = health
        task.started_at = started_at
        task.pull_started_at = started_at
        task.connectivity = "CONNECTED"
        task.connectivity_at = started_at
        for container in task.containers:
            container.health_status = health
            container.last_status = "RUNNING"
