"""Demo seeding for the platform runbooks: 03 high-memory, 08 failed-deployments, 15 application-recovery.

On top of the base seeding (task definitions rms-backend:1 and :2, the services, their running
tasks and deployments), per scenario:

* CloudWatch ``AWS/ECS`` ``MemoryUtilization`` (Average and Maximum, ClusterName + ServiceName)
  for the last hour, kept coming by a small ticker thread while the demo runs (as the base
  ticker does for the ALB and RDS metrics).
* Stopped tasks (OOM kills, failed health checks, scale-in): started with ``run_task`` and then
  finished in moto's backend, which has no API for a task's exit code, container reason,
  ``stopCode``, ``stoppedAt`` or ``startedAt`` (/work/shared/notes/moto-coverage.md).
* ECS service events ("failed container health checks", "deployment failed"): moto never writes
  events, so they are appended to the service object, like the base events.
* ``registeredAt`` of the task definitions (moto leaves it out), so revisions have a history.
* ``bad-deploy``: a third revision rms-backend:3 (new image, RMS_ENV renamed RMS_ENVIRONMENT) whose
  rollout the circuit breaker FAILED; the service and its running task are pointed at it.
* Log lines: OutOfMemory (``memory-leak``) and startup errors (``bad-deploy``).
* A throwaway terraform workspace (``recovery.terraform_dir``) when ``terraform`` is installed and
  plans offline in well under 2 s: ``terraform_data`` resources only (built in: no provider, no
  network), applied once to a local state that mirrors what runs, then the code is written. In
  ``incident`` the code says rms-backend desired_count 2 while 4 run (scaled by hand): plan shows a
  change pending. Otherwise the code matches. The folder is removed when the demo stops.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rmsops.demo import layout
from rmsops.demo.layout import CLUSTER, ECR, LOG_GROUPS, SERVICES
from rmsops.demo.scenarios import MINUTES
from rmsops.demo.ticker import MinuteTicker

if TYPE_CHECKING:
    from rmsops.demo.areas.seeding import AwsSeed

BACKEND = "rms-backend"
FRONTEND = "rms-frontend"
STEADY_SINCE = timedelta(days=3, hours=4, minutes=12)  # as in seed_aws: the last uneventful deployment
OOM_REASON = "OutOfMemoryError: Container killed due to memory usage"
TERRAFORM_BUDGET_SECONDS = 2.0


def seed_aws(env: AwsSeed) -> None:
    name = env.scenario.name
    # terraform runs as a subprocess: let it work while the AWS side is seeded
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rms-demo-terraform")
    workspace_ready = pool.submit(terraform_workspace, name)
    pool.shutdown(wait=False)
    try:
        story = _Story(env, env.client("ecs"), env.now)
        story.register_times()
        if name == "bad-deploy":
            story.bad_revision()
        story.stopped_tasks()
        story.events()
        story.log_lines()
        series = memory_series(name, MINUTES)
        cloudwatch = env.client("cloudwatch")  # one client (clients are thread-safe): creating one costs
        _put_memory(cloudwatch, series, _minutes(env.now), range(MINUTES))
        ticker = MinuteTicker("rms-demo-memory", env.now, lambda minute, index: _put_memory(
            cloudwatch, series, [minute], [index])).start()
        env.cleanup("memory metrics ticker", ticker.stop)
    finally:
        workspace = workspace_ready.result()
        if workspace:
            env.cleanup("terraform workspace", lambda: shutil.rmtree(workspace, ignore_errors=True))
    if workspace:
        env.settings["recovery"] = {"terraform_dir": str(workspace)}


# --- ECS story ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StoppedTask:
    """A stopped task as ECS would describe it."""

    service: str
    minutes_ago: float
    stop_code: str
    stopped_reason: str
    exit_code: int
    container_reason: str = ""
    revision: int | None = None  # default: the service's current revision
    ran_minutes: float = 30.0


def stopped_for(scenario: str, deployed_minutes_ago: float | None) -> list[StoppedTask]:
    """The stopped tasks a scenario shows in the window."""
    if scenario == "memory-leak":
        return [StoppedTask(BACKEND, m, "EssentialContainerExited", "Essential container in task exited", 137,
                            OOM_REASON, ran_minutes=ran) for m, ran in ((44, 190.0), (27, 62.0), (9, 44.0))]
    if scenario == "incident" and deployed_minutes_ago is not None:
        d = deployed_minutes_ago
        replaced = "Scaling activity initiated by (deployment {deployment})"
        health = "Task failed container health checks"
        return [
            StoppedTask(BACKEND, d - 3, "ServiceSchedulerInitiated", replaced, 0, revision=1, ran_minutes=4000),
            StoppedTask(BACKEND, d - 3.2, "ServiceSchedulerInitiated", replaced, 0, revision=1, ran_minutes=4000),
            # a container that ignores SIGTERM is SIGKILLed after the stop timeout: 137, not memory
            StoppedTask(BACKEND, d - 7, "ServiceSchedulerInitiated", health, 137, ran_minutes=6.5),
            StoppedTask(BACKEND, d - 8, "ServiceSchedulerInitiated", health, 137, ran_minutes=7.5),
            StoppedTask(BACKEND, d - 11, "ServiceSchedulerInitiated", health, 0, ran_minutes=3.5),
            StoppedTask(BACKEND, d - 13, "ServiceSchedulerInitiated", health, 0, ran_minutes=3.0),
        ]
    if scenario == "bad-deploy" and deployed_minutes_ago is not None:
        d = deployed_minutes_ago
        health = "Task failed container health checks"
        return [
            StoppedTask(BACKEND, d - 4, "EssentialContainerExited", "Essential container in task exited", 1,
                        ran_minutes=0.5),
            StoppedTask(BACKEND, d - 7, "ServiceSchedulerInitiated", health, 0, ran_minutes=3.0),
            StoppedTask(BACKEND, d - 10, "ServiceSchedulerInitiated", health, 0, ran_minutes=3.0),
            StoppedTask(BACKEND, d - 13, "ServiceSchedulerInitiated", health, 137, ran_minutes=3.0),
        ]
    if scenario == "healthy":  # application auto scaling took one task away: a normal stop
        return [StoppedTask(FRONTEND, 31, "ServiceSchedulerInitiated",
                            "Scaling activity initiated by (deployment {deployment})", 0, ran_minutes=180)]
    return []


class _Story:
    def __init__(self, env: AwsSeed, ecs: Any, now: datetime):
        from rmsops.demo import moto_patches

        self.env, self.ecs, self.now = env, ecs, now
        self.backend = moto_patches.ecs_backend()
        self.deployed = env.scenario.deployment_minutes_ago
        self.stopped: dict[str, list[tuple[str, datetime, str]]] = {}  # service -> (task id, stoppedAt, reason)

    def _service(self, name: str) -> Any:
        return self.backend.services[f"{CLUSTER}:{name}"]

    def _definitions(self, family: str) -> dict[int, Any]:
        return self.backend.task_definitions[family]

    def register_times(self) -> None:
        """registeredAt: each revision a little before its deployment (moto does not record it).
        The workers (``--workers``) too: one revision each, steady like rms-frontend."""
        for spec in layout.all_services():
            revisions = self._definitions(spec.name)
            last = max(revisions)
            rolled = spec.name == BACKEND and self.deployed is not None
            latest_deploy = self.now - (timedelta(minutes=self.deployed) if rolled else STEADY_SINCE)
            for revision, definition in revisions.items():
                if revision == last:
                    definition.registered_at = latest_deploy - timedelta(minutes=6)
                elif revision == last - 1 and rolled:
                    definition.registered_at = self.now - STEADY_SINCE - timedelta(minutes=9)
                else:
                    definition.registered_at = latest_deploy - timedelta(days=2 * (last - revision), hours=3)

    def bad_revision(self) -> None:
        """bad-deploy: rms-backend:3 (image 2.15.0, RMS_ENV renamed) is the failed rollout's revision."""
        from rmsops.actions.ecs import registration_input

        service = self._service(BACKEND)
        current = self.ecs.describe_task_definition(taskDefinition=f"{BACKEND}:2")["taskDefinition"]
        params = registration_input(self.ecs, current)
        container = dict(params["containerDefinitions"][0])
        container["image"] = f"{ECR}/rms-backend:2.15.0"
        container["environment"] = [{"name": "RMS_ENVIRONMENT" if e["name"] == "RMS_ENV" else e["name"],
                                     "value": e["value"]} for e in container.get("environment", [])]
        params["containerDefinitions"] = [container]
        arn = self.ecs.register_task_definition(**params)["taskDefinition"]["taskDefinitionArn"]
        deployed = self.now - timedelta(minutes=self.deployed or 0)
        self._definitions(BACKEND)[3].registered_at = deployed - timedelta(minutes=5)
        previous = self._definitions(BACKEND)[2].arn
        self._definitions(BACKEND)[2].registered_at = self.now - STEADY_SINCE - timedelta(minutes=6)
        self._definitions(BACKEND)[1].registered_at = self.now - STEADY_SINCE - timedelta(days=6)
        service.task_definition = arn
        primary, *others = service.deployments
        primary.update({"taskDefinition": arn, "rolloutState": "FAILED",
                        "rolloutStateReason": "ECS deployment circuit breaker: tasks failed to start.",
                        "updatedAt": deployed + timedelta(minutes=14)})
        for old in others:
            old.update({"taskDefinition": previous, "createdAt": self.now - STEADY_SINCE})
        for arn_ in self.env.aws.tasks.get(BACKEND, []):
            task = self.backend.tasks[CLUSTER][arn_]
            task.task_definition_arn = arn
            for c in task.containers:
                c.image = container["image"]

    def stopped_tasks(self) -> None:
        """run_task (one call per service and revision), then finish each task as stopped in moto's
        backend: it has no API for exit codes, container reasons, stopCode or the timestamps."""
        specs = stopped_for(self.env.scenario.name, self.deployed)
        groups: dict[tuple[str, int], list[StoppedTask]] = {}
        for spec in specs:
            revision = spec.revision or max(self._definitions(spec.service))
            groups.setdefault((spec.service, revision), []).append(spec)
        networks: dict[str, Any] = {}
        for (name, revision), members in groups.items():
            service = self._service(name)
            if name not in networks:
                networks[name] = self.ecs.describe_services(
                    cluster=CLUSTER, services=[name])["services"][0]["networkConfiguration"]
            primary = service.deployments[0]["id"]
            started_by = next((d["id"] for d in service.deployments
                               if str(d.get("taskDefinition", "")).endswith(f":{revision}")), primary)
            tasks = self.ecs.run_task(cluster=CLUSTER, taskDefinition=self._definitions(name)[revision].arn,
                                      count=len(members), launchType="FARGATE", networkConfiguration=networks[name],
                                      group=f"service:{name}", startedBy=started_by)["tasks"]
            for spec, described in zip(members, tasks, strict=True):
                self._stop(described["taskArn"], spec, primary)

    def _stop(self, arn: str, spec: StoppedTask, deployment: str) -> None:
        task = self.backend.tasks[CLUSTER][arn]
        stopped = self.now - timedelta(minutes=spec.minutes_ago)
        task.started_at = stopped - timedelta(minutes=spec.ran_minutes)
        task.pull_started_at = task.started_at - timedelta(seconds=20)
        task.stopping_at = stopped - timedelta(seconds=30)
        task.stopped_at = stopped
        task.execution_stopped_at = stopped
        task.stop_code = spec.stop_code
        task.stopped_reason = spec.stopped_reason.format(deployment=deployment)
        task.desired_status = "STOPPED"
        task.last_status = "STOPPED"
        task.health_status = "UNHEALTHY" if "health checks" in spec.stopped_reason else "UNKNOWN"
        for container in task.containers:
            container.exitCode = spec.exit_code
            container.last_status = "STOPPED"
            container.health_status = task.health_status
            if spec.container_reason:
                container.reason = spec.container_reason
        self.stopped.setdefault(spec.service, []).append((arn.rsplit("/", 1)[-1], stopped, task.stopped_reason))

    def events(self) -> None:
        """Service events of the failing tasks (newest first, as ECS lists them)."""
        name = self.env.scenario.name
        if name not in ("incident", "bad-deploy") or self.deployed is None:
            return
        service = self._service(BACKEND)
        deployed = self.now - timedelta(minutes=self.deployed)
        new: list[tuple[datetime, str]] = [
            (stopped - timedelta(seconds=20), f"(service {BACKEND}) (task {task}) failed container health checks.")
            for task, stopped, reason in self.stopped.get(BACKEND, []) if "container health checks" in reason]
        if name == "bad-deploy":
            new.append((deployed + timedelta(minutes=14),
                        f"(service {BACKEND}) (deployment {service.deployments[0]['id']}) deployment failed: "
                        "tasks failed to start."))
        service.events.extend({"id": str(uuid.uuid4()), "createdAt": at, "message": text}
                              for at, text in new if at <= self.now)
        service.events.sort(key=lambda e: e["createdAt"], reverse=True)

    def log_lines(self) -> None:
        name = self.env.scenario.name
        lines: list[tuple[float, str]] = []
        if name == "memory-leak":
            for kill in (44, 27, 9):
                lines += [
                    (kill + 3, "WARNING [rms.reports] reservations export holds 812 MiB (limit 1024 MiB)"),
                    (kill + 0.6, "ERROR [rms.reports] MemoryError: OutOfMemory while building the reservations "
                                 "export (rss 1003 MiB of 1024 MiB)"),
                    (kill + 0.2, "[CRITICAL] Worker (pid:17) was sent SIGKILL! Perhaps out of memory?"),
                ]
        elif name == "bad-deploy" and self.deployed is not None:
            for k in range(4):
                lines.append((self.deployed - 3 - 3 * k,
                              "ERROR [rms.config] required environment variable RMS_ENV is not set; "
                              "refusing to start (found RMS_ENVIRONMENT)"))
        if not lines:
            return
        logs = self.env.client("logs")
        group = LOG_GROUPS["backend"]
        stream = f"ecs/{BACKEND}/{(self.stopped.get(BACKEND) or [(uuid.uuid4().hex,)])[0][0]}"
        logs.create_log_stream(logGroupName=group, logStreamName=stream)
        events = []
        for minutes_ago, message in lines:
            at = self.now - timedelta(minutes=minutes_ago)
            stamp = f"{at:%Y-%m-%dT%H:%M:%S}.{at.microsecond // 1000:03d}Z "
            events.append({"timestamp": int(at.timestamp() * 1000), "message": stamp + message})
        events.sort(key=lambda e: e["timestamp"])
        logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)


# --- memory metrics ---------------------------------------------------------------------------------

def memory_series(scenario: str, minutes: int = MINUTES) -> dict[str, list[tuple[float, float]]]:
    """Per service, (average, maximum) MemoryUtilization per minute, oldest first."""
    rng = random.Random(f"memory-{scenario}")
    out: dict[str, list[tuple[float, float]]] = {}
    for service, (low, high) in ((BACKEND, (45.0, 52.0)), (FRONTEND, (29.0, 33.0))):
        values = []
        for i in range(minutes):
            average = rng.uniform(low, high)
            maximum = average + rng.uniform(3.0, 7.0)
            minutes_ago = minutes - 1 - i
            if service == BACKEND and scenario == "memory-leak":
                average, maximum = _leak(minutes_ago, rng)
            elif service == BACKEND and scenario == "incident" and minutes_ago < 15:
                since = 15 - minutes_ago  # the connection leak holds memory too, but stays below 90%
                average = min(76.0, 52 + 2.0 * since) + rng.uniform(-1.5, 1.5)
                maximum = min(86.0, average + 8 + rng.uniform(0, 2))
            values.append((round(average, 1), round(maximum, 1)))
        out[service] = values
    return out


def _leak(minutes_ago: int, rng: random.Random) -> tuple[float, float]:
    """Memory climbing until a task is OOM-killed (44, 27, 9 min ago), then restarting low."""
    kills = (44, 27, 9)
    since_restart = min((k - minutes_ago for k in kills if k > minutes_ago), default=None)
    # before the first kill the leak has been running for a while already
    elapsed = since_restart if since_restart is not None else 15 + (60 - minutes_ago)
    level = min(1.0, elapsed / 17)  # ~17 minutes from a fresh task to the limit
    maximum = 62 + 35 * level + rng.uniform(-0.8, 0.4)
    if elapsed >= 16:
        maximum = 96.4 + rng.uniform(0, 0.8)  # the last minute before the kill: ~97%
    average = maximum - 7 - rng.uniform(0, 2)
    return average, min(maximum, 97.2)


def _minutes(now: datetime) -> list[datetime]:
    first = now.replace(second=0, microsecond=0) - timedelta(minutes=MINUTES - 1)
    return [first + timedelta(minutes=i) for i in range(MINUTES)]


def _put_memory(cloudwatch: Any, series: dict[str, list[tuple[float, float]]], stamps: list[datetime],
                indexes: Any) -> None:
    data = []
    for service, values in series.items():
        dims = [{"Name": "ClusterName", "Value": CLUSTER}, {"Name": "ServiceName", "Value": service}]
        for at, i in zip(stamps, indexes, strict=True):
            average, maximum = values[i]
            # one datum per minute carrying both statistics, as CloudWatch stores ECS's aggregates
            data.append({"MetricName": "MemoryUtilization", "Dimensions": dims, "Timestamp": at, "Unit": "Percent",
                         "StatisticValues": {"SampleCount": 2, "Sum": 2 * average,
                                             "Minimum": max(0.0, 2 * average - maximum), "Maximum": maximum}})
    for offset in range(0, len(data), 500):
        cloudwatch.put_metric_data(Namespace="AWS/ECS", MetricData=data[offset:offset + 500])



# --- terraform workspace ----------------------------------------------------------------------------

def _service_block(name: str, desired: int, task_definition: str) -> str:
    key = name.replace("-", "_")
    return (f'resource "terraform_data" "{key}_service" {{\n'
            f"  input = {{\n"
            f'    cluster         = "{CLUSTER}"\n'
            f'    service         = "{name}"\n'
            f"    desired_count   = {desired}\n"
            f'    task_definition = "{task_definition}"\n'
            f"  }}\n}}\n")


def terraform_code(scenario: str, running: bool) -> str:
    """The demo's stand-in for apps/infrastructure/: the ECS services' settings as terraform_data.

    ``running``: what runs (the state is applied from it); otherwise what the code says.
    """
    from rmsops.demo.scenarios import get

    state = get(scenario)
    head = ("# rmsops demo: a stand-in for apps/infrastructure/ (terraform_data is built into terraform:\n"
            "# no provider, no network, no real infrastructure).\n"
            'terraform {\n  required_version = ">= 1.4"\n}\n\n')
    blocks = []
    for spec in SERVICES:
        desired = state.services[spec.name].desired
        if scenario == "incident" and spec.name == BACKEND and not running:
            desired = 2  # scaled from 2 to 4 by hand during the incident: the code still says 2
        revision = 3 if scenario == "bad-deploy" and spec.name == BACKEND else len(spec.images)
        blocks.append(_service_block(spec.name, desired, f"{spec.name}:{revision}"))
    return head + "\n".join(blocks)


def terraform_workspace(scenario: str, budget: float = TERRAFORM_BUDGET_SECONDS) -> Path | None:
    """A temp workspace whose plan shows the scenario's drift; None (and nothing left) when terraform
    is missing, fails, or is slower than the budget. The caller removes the folder when done.

    ``terraform_data`` is built in, so no ``terraform init`` is needed (and nothing is downloaded).
    """
    binary = shutil.which("terraform")
    if binary is None:
        return None
    folder = Path(tempfile.mkdtemp(prefix="rmsops-demo-terraform-"))
    env = {**os.environ, "TF_IN_AUTOMATION": "1", "TF_INPUT": "0", "CHECKPOINT_DISABLE": "1"}
    began = time.monotonic()
    try:
        (folder / "main.tf").write_text(terraform_code(scenario, running=True), encoding="utf-8")
        # the demo's own throwaway state mirrors what runs; the check itself only ever plans
        subprocess.run([binary, "apply", "-auto-approve", "-input=false", "-lock=false", "-no-color"],
                       cwd=folder, env=env, capture_output=True, check=True, timeout=budget,
                       stdin=subprocess.DEVNULL)
        (folder / "main.tf").write_text(terraform_code(scenario, running=False), encoding="utf-8")
        if time.monotonic() - began > budget:
            raise subprocess.TimeoutExpired("terraform apply", budget)
    except (OSError, subprocess.SubprocessError):
        shutil.rmtree(folder, ignore_errors=True)
        return None
    return folder
