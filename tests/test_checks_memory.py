"""Runbook 03 (high-memory) and the raise-task-memory action.

Layer 1 feeds small DataFrames to the pure judges and the stop classification. Layer 2 seeds moto
(context mode, one mock for the module): MemoryUtilization datapoints, stopped tasks and log lines,
then goes through ``ctx.run`` like a notebook. moto has no API for a stopped task's exit code,
container reason, stopCode or stoppedAt, so those are set on its backend's task objects (as in
/work/shared/notes/moto-coverage.md); moto's Logs Insights ignores ``filter``/``stats``, so the
Insights path is answered by a botocore Stubber (which validates the requests against the real
API model). Layer 3 runs the action against moto. Layer 4 uses the served demo and papermill.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import nbformat
import pandas as pd
import pytest
from moto import mock_aws
from moto.moto_api import state_manager

from rmsops.actions.base import execute, plan
from rmsops.checks.memory import (
    OOM_COLUMNS,
    aggregate_oom_lines,
    is_oom,
    judge_oom_kills,
    judge_oom_lines,
    judge_task_churn,
    judge_utilization,
    stop_category,
    stopped_frame,
)
from rmsops.core import config, runbooks
from rmsops.core.errors import UserError
from rmsops.core.findings import Severity
from tests import aws_seed as seed
from tests.judging import CRITICAL, ERROR, INFO, OK, WARNING, by_resource, thresholds

CLUSTER = "rms-production"
SERVICES = ("rms-backend", "rms-frontend")
T0 = datetime(2026, 11, 28, 19, 0, tzinfo=UTC)
OOM_REASON = "OutOfMemoryError: Container killed due to memory usage"


def res(service: str) -> str:
    return f"ecs:{CLUSTER}/{service}"


# =============================================================================================
# Layer 1: judges
# =============================================================================================

# --- memory.ecs.utilization --------------------------------------------------------------------

def utilization(**series: list[float]) -> pd.DataFrame:
    """``utilization(**{"rms-backend Maximum": [50, 95]})``: one row per minute from T0."""
    rows = []
    for key, values in series.items():
        service, stat = key.rsplit(" ", 1)
        rows += [{"timestamp": T0 + timedelta(minutes=i), "service": service, "stat": stat, "value": float(v),
                  "label": key} for i, v in enumerate(values)]
    return pd.DataFrame(rows, columns=["timestamp", "service", "stat", "value", "label"])


def test_judge_utilization_below_90_is_ok_per_service():
    df = utilization(**{"rms-backend Average": [40, 45], "rms-backend Maximum": [50, 89.9],
                        "rms-frontend Average": [20, 21], "rms-frontend Maximum": [30, 31]})
    found = by_resource(judge_utilization(df, SERVICES, CLUSTER, 60, thresholds()))
    assert {r: f.severity for r, f in found.items()} == {res("rms-backend"): OK, res("rms-frontend"): OK}
    backend = found[res("rms-backend")].evidence
    assert backend["peak_pct"] == 89.9 and backend["peak_stat"] == "Maximum" and backend["average_pct"] == 42.5
    assert backend["peak_at"] == T0 + timedelta(minutes=1)


def test_judge_utilization_max_at_90_is_warning_and_counts_periods():
    df = utilization(**{"rms-backend Average": [70, 80, 85], "rms-backend Maximum": [85, 90, 97]})
    [finding] = judge_utilization(df, ("rms-backend",), CLUSTER, 60, thresholds())
    assert finding.severity is WARNING
    assert "97%" in finding.title and "raise-task-memory --service rms-backend" in finding.resolution
    assert finding.evidence["periods_at_or_above_warning"] == 2


def test_judge_utilization_judges_the_maximum_not_the_average():
    """A single task at its limit shows in Maximum while the service average looks fine."""
    df = utilization(**{"rms-backend Average": [50, 52], "rms-backend Maximum": [60, 100]})
    [finding] = judge_utilization(df, ("rms-backend",), CLUSTER, 60, thresholds())
    assert finding.severity is CRITICAL and finding.evidence["average_pct"] == 51


def test_judge_utilization_thresholds_move_the_verdict():
    df = utilization(**{"rms-backend Maximum": [80, 84]})
    [default] = judge_utilization(df, ("rms-backend",), CLUSTER, 60, thresholds())
    [tight] = judge_utilization(df, ("rms-backend",), CLUSTER, 60,
                                thresholds(memory_warning_pct=80, memory_critical_pct=84))
    assert (default.severity, tight.severity) == (OK, CRITICAL)


def test_judge_utilization_average_only_still_judged():
    df = utilization(**{"rms-backend Average": [91, 92]})
    [finding] = judge_utilization(df, ("rms-backend",), CLUSTER, 60, thresholds())
    assert finding.severity is WARNING and finding.evidence["peak_stat"] == "Average"


def test_judge_utilization_no_datapoints_is_info_per_service():
    empty = utilization()
    found = judge_utilization(empty, SERVICES, CLUSTER, 60, thresholds())
    assert [f.severity for f in found] == [INFO, INFO]
    assert "no MemoryUtilization" in found[0].title


# --- stop classification -------------------------------------------------------------------------

def stop(**row) -> dict:
    base = {"service": "rms-backend", "task": "t", "task_definition": "rms-backend:2", "started_at": T0,
            "stopped_at": T0 + timedelta(minutes=5), "stop_code": "EssentialContainerExited",
            "stopped_reason": "Essential container in task exited", "container": "rms-backend", "exit_code": 137,
            "container_reason": ""}
    base.update(row)
    base["oom"] = is_oom(base)
    base["category"] = stop_category(base)
    return base


@pytest.mark.parametrize(("row", "oom", "category"), [
    ({}, True, "out of memory"),  # exit 137 of an essential container nobody asked to stop
    ({"exit_code": 1, "container_reason": OOM_REASON}, True, "out of memory"),
    ({"exit_code": None, "stopped_reason": "OutOfMemoryError: task memory exceeded"}, True, "out of memory"),
    ({"stop_code": "ServiceSchedulerInitiated", "stopped_reason": "Task failed container health checks"},
     False, "container health checks"),  # SIGKILL after the stop timeout: 137 but not memory
    ({"stop_code": "ServiceSchedulerInitiated", "exit_code": 0,
      "stopped_reason": "Task failed ELB health checks in (target-group arn:...)"}, False, "ELB health checks"),
    ({"stop_code": "TaskFailedToStart", "exit_code": None,
      "stopped_reason": "CannotPullContainerError: pull image manifest has been retried 1 time(s)"},
     False, "image pull"),
    ({"stop_code": "TaskFailedToStart", "exit_code": None,
      "stopped_reason": "ResourceInitializationError: unable to pull secrets"}, False, "resources"),
    ({"exit_code": 1}, False, "essential container exited"),
    ({"stop_code": "ServiceSchedulerInitiated", "exit_code": 0,
      "stopped_reason": "Scaling activity initiated by (deployment ecs-svc/1)"}, False, "scaling or deployment"),
    ({"stop_code": "UserInitiated", "exit_code": 137, "stopped_reason": "stopped by an operator"},
     False, "stopped on request"),
])
def test_stop_classification(row, oom, category):
    classified = stop(**row)
    assert (classified["oom"], classified["category"]) == (oom, category)


# --- memory.ecs.oom_kills and task_churn ----------------------------------------------------------

def test_judge_oom_kills_any_in_window_is_critical_with_the_tasks():
    df = stopped_frame([stop(task="a", container_reason=OOM_REASON),
                        stop(task="b", stop_code="ServiceSchedulerInitiated",
                             stopped_reason="Task failed container health checks"),
                        stop(service="rms-frontend", task="c", exit_code=0, stop_code="ServiceSchedulerInitiated",
                             stopped_reason="Scaling activity initiated by (deployment x)")])
    found = by_resource(judge_oom_kills(df, SERVICES, CLUSTER))
    backend = found[res("rms-backend")]
    assert backend.severity is CRITICAL and backend.evidence["oom_killed"] == 1
    assert [t["task"] for t in backend.evidence["tasks"]] == ["a"]
    assert backend.evidence["tasks"][0]["reason"] == OOM_REASON
    assert backend.evidence["exit_137_after_requested_stop"] == 1
    assert "raise-task-memory" in backend.resolution
    assert found[res("rms-frontend")].severity is OK
    json.dumps(backend.to_dict())  # evidence stays JSON-able (exit codes are ints, not numpy floats)


def test_judge_oom_kills_empty_frame_is_ok_per_service():
    found = judge_oom_kills(stopped_frame([]), SERVICES, CLUSTER)
    assert [f.severity for f in found] == [OK, OK]
    assert found[0].evidence["stopped_in_window"] == 0


def test_judge_task_churn_above_threshold_is_warning_with_reasons():
    rows = [stop(task=str(i)) for i in range(4)] + [stop(task="h", exit_code=1), stop(task="i", exit_code=1)]
    found = by_resource(judge_task_churn(stopped_frame(rows), SERVICES, CLUSTER, thresholds()))
    backend = found[res("rms-backend")]
    assert backend.severity is WARNING
    assert backend.evidence["by_reason"] == {"out of memory": 4, "essential container exited": 2}
    assert found[res("rms-frontend")].severity is OK


def test_judge_task_churn_at_threshold_is_ok_and_threshold_overrides():
    rows = stopped_frame([stop(task=str(i)) for i in range(5)])
    [at_limit] = judge_task_churn(rows, ("rms-backend",), CLUSTER, thresholds())
    [lowered] = judge_task_churn(rows, ("rms-backend",), CLUSTER, thresholds(task_churn_max=4))
    assert (at_limit.severity, lowered.severity) == (OK, WARNING)


# --- memory.logs.oom_errors -----------------------------------------------------------------------

def events(*rows: tuple[int, str, str]) -> pd.DataFrame:
    return pd.DataFrame([{"timestamp": T0 + timedelta(minutes=m), "log_group": g, "stream": "s", "message": msg}
                         for m, g, msg in rows], columns=["timestamp", "log_group", "stream", "message"])


def test_aggregate_oom_lines_counts_per_group_with_the_latest_example():
    raw = events((1, "/ecs/rms-backend", "INFO ok"),
                 (2, "/ecs/rms-backend", "java.lang.OutOfMemoryError: Java heap space"),
                 (3, "/ecs/rms-backend", "[CRITICAL] Worker (pid:17) was sent SIGKILL! Perhaps out of memory?"),
                 (4, "/ecs/rms-frontend", "FATAL ERROR: Reached heap limit - JavaScript heap out of memory"),
                 (5, "/ecs/rms-frontend", "ERROR outofmemory in lower case is not the JVM's message"))
    agg = aggregate_oom_lines(raw).set_index("log_group")
    assert agg.loc["/ecs/rms-backend", "lines"] == 2
    assert agg.loc["/ecs/rms-backend", "last"] == T0 + timedelta(minutes=3)
    assert "SIGKILL" in agg.loc["/ecs/rms-backend", "example"]
    assert agg.loc["/ecs/rms-frontend", "lines"] == 1


def test_judge_oom_lines_any_is_warning_none_is_ok():
    agg = aggregate_oom_lines(events((2, "/ecs/rms-backend", "MemoryError: OutOfMemory")))
    found = by_resource(judge_oom_lines(agg, ["/ecs/rms-backend", "/ecs/rms-frontend"]))
    assert found["loggroup:/ecs/rms-backend"].severity is WARNING
    assert found["loggroup:/ecs/rms-backend"].evidence["lines"] == 1
    assert found["loggroup:/ecs/rms-frontend"].severity is OK


def test_judge_oom_lines_no_group_configured_is_info():
    [finding] = judge_oom_lines(pd.DataFrame(columns=OOM_COLUMNS), [])
    assert finding.severity is INFO and "log group" in finding.title


# =============================================================================================
# Layer 2: fetch + judge against moto
# =============================================================================================

@pytest.fixture(scope="module")
def moto_world():
    with mock_aws():
        seed.manual_task_states()
        seed.network()
        try:
            yield
        finally:
            state_manager.unset_transition(model_name="ecs::task")


@pytest.fixture
def aws(moto_world, monkeypatch):
    """A clean ECS (rms-backend 2/2, rms-frontend 2/2), CloudWatch and Logs for each test."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.logs.models import logs_backends

    seed.reset("ecs", "cloudwatch")
    logs_backends[DEFAULT_ACCOUNT_ID][seed.REGION].reset()
    for service in SERVICES:
        seed.create_service(service, 2, 2, setenv=monkeypatch.setenv)


def put_memory(service: str, values: list[tuple[float, float]], cluster: str = CLUSTER) -> None:
    """(average, maximum) per minute ending now, with ClusterName + ServiceName like AWS/ECS."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    dims = [{"Name": "ClusterName", "Value": cluster}, {"Name": "ServiceName", "Value": service}]
    data = [{"MetricName": "MemoryUtilization", "Dimensions": dims, "Unit": "Percent",
             "Timestamp": now - timedelta(minutes=len(values) - i),
             "StatisticValues": {"SampleCount": 2, "Sum": 2 * avg, "Minimum": 2 * avg - mx, "Maximum": mx}}
            for i, (avg, mx) in enumerate(values)]
    seed.client("cloudwatch").put_metric_data(Namespace="AWS/ECS", MetricData=data)


def stopped_task(service: str, minutes_ago: float, exit_code: int | None = 137, container_reason: str = "",
                 stop_code: str = "EssentialContainerExited",
                 stopped_reason: str = "Essential container in task exited", dated: bool = True) -> str:
    """A task of the service's group stopped *minutes_ago*; returns its id. moto has no API for the
    exit code, container reason, stopCode or stoppedAt: they are set on the backend's task."""
    ecs = seed.client("ecs")
    arn = ecs.run_task(cluster=CLUSTER, taskDefinition=service, count=1, launchType="FARGATE",
                       networkConfiguration=seed.network(), group=f"service:{service}")["tasks"][0]["taskArn"]
    task = seed.backend("ecs").tasks[CLUSTER][arn]
    task.desired_status = task.last_status = "STOPPED"
    task.stop_code, task.stopped_reason = stop_code, stopped_reason
    if dated:
        task.stopped_at = datetime.now(UTC) - timedelta(minutes=minutes_ago)
        task.started_at = task.stopped_at - timedelta(minutes=30)
    task.containers[0].exitCode = exit_code
    if container_reason:
        task.containers[0].reason = container_reason
    return arn.rsplit("/", 1)[-1]


def test_utilization_against_moto_per_service_and_cluster(aws, make_context):
    put_memory("rms-backend", [(60, 70), (80, 93), (70, 80)])
    put_memory("rms-frontend", [(30, 35)] * 3)
    put_memory("rms-backend", [(99, 101)], cluster="rms-staging")  # another cluster: not counted
    result = make_context().run("memory.ecs.utilization")
    found = by_resource(result.findings)
    assert found[res("rms-backend")].severity is WARNING
    assert found[res("rms-backend")].evidence["peak_pct"] == 93
    assert found[res("rms-backend")].evidence["average_pct"] == 70
    assert found[res("rms-frontend")].severity is OK
    assert set(result.data["stat"]) == {"Average", "Maximum"}


def test_utilization_without_metrics_is_info(aws, make_context):
    result = make_context().run("memory.ecs.utilization")
    assert [f.severity for f in result.findings] == [INFO, INFO]


def test_oom_kills_and_churn_against_moto(aws, make_context):
    killed = stopped_task("rms-backend", 10, 137, OOM_REASON)
    stopped_task("rms-backend", 20, 137, stop_code="ServiceSchedulerInitiated",
                 stopped_reason="Task failed container health checks")
    stopped_task("rms-backend", 90)  # OOM, but before the window
    stopped_task("rms-backend", 5, dated=False)  # no stoppedAt: cannot be placed in the window
    for minutes in (3, 6, 9, 12, 15, 18):
        stopped_task("rms-frontend", minutes, 0, stop_code="ServiceSchedulerInitiated",
                     stopped_reason="Scaling activity initiated by (deployment ecs-svc/1)")
    seed.run_tasks("rms-backend", ["HEALTHY"])  # a running task is not a stopped one
    ctx = make_context()
    kills = by_resource(ctx.run("memory.ecs.oom_kills").findings)
    assert kills[res("rms-backend")].severity is CRITICAL
    assert [t["task"] for t in kills[res("rms-backend")].evidence["tasks"]] == [killed]
    assert kills[res("rms-backend")].evidence["stopped_in_window"] == 2
    assert kills[res("rms-frontend")].severity is OK
    churn = ctx.run("memory.ecs.task_churn")
    found = by_resource(churn.findings)
    assert found[res("rms-frontend")].severity is WARNING  # 6 scale-ins > 5
    assert found[res("rms-frontend")].evidence["by_reason"] == {"scaling or deployment": 6}
    assert found[res("rms-backend")].severity is OK
    assert churn.data.attrs["undated"] == 1


def test_oom_errors_filter_mode_against_moto(aws, make_context):
    logs = seed.client("logs")
    now = datetime.now(UTC)
    for group in ("/ecs/rms-backend", "/ecs/rms-frontend"):
        logs.create_log_group(logGroupName=group)
        logs.create_log_stream(logGroupName=group, logStreamName="s")
    lines = [(50, "INFO GET /api/health 200"), (30, "ERROR MemoryError: OutOfMemory building export"),
             (20, "[CRITICAL] Worker (pid:17) was sent SIGKILL! Perhaps out of memory?"),
             (90, "ERROR OutOfMemory long ago, outside the window")]
    logs.put_log_events(logGroupName="/ecs/rms-backend", logStreamName="s", logEvents=sorted(
        ({"timestamp": int((now - timedelta(minutes=m)).timestamp() * 1000), "message": msg} for m, msg in lines),
        key=lambda e: e["timestamp"]))
    ctx = make_context(logs={"backend": "/ecs/rms-backend", "frontend": "/ecs/rms-frontend",
                             "rds": "/aws/rds/instance/x/postgresql"}, logs_query="filter")
    found = by_resource(ctx.run("memory.logs.oom_errors").findings)
    assert set(found) == {"loggroup:/ecs/rms-backend", "loggroup:/ecs/rms-frontend"}  # not the RDS group
    assert found["loggroup:/ecs/rms-backend"].severity is WARNING
    assert found["loggroup:/ecs/rms-backend"].evidence["lines"] == 2
    assert "SIGKILL" in found["loggroup:/ecs/rms-backend"].evidence["example"]
    assert found["loggroup:/ecs/rms-frontend"].severity is OK


def test_oom_errors_insights_mode_via_stubber(make_context):
    """moto's Insights ignores filter/stats: the real API's answer shape is stubbed (and validated)."""
    from botocore.stub import ANY, Stubber

    ctx = make_context()  # logs_query: insights (the production default)
    logs = ctx.client("logs")
    with Stubber(logs) as stub:
        stub.add_response("start_query", {"queryId": "q-1"},
                          {"logGroupNames": ["/ecs/rms-backend"], "startTime": ANY, "endTime": ANY,
                           "queryString": ANY, "limit": ANY})
        stub.add_response("get_query_results", {"status": "Complete", "results": [[
            {"field": "@log", "value": "123456789012:/ecs/rms-backend"}, {"field": "lines", "value": "3"},
            {"field": "first", "value": "2026-11-28 19:05:00.000"},
            {"field": "last", "value": "2026-11-28 19:45:00.000"},
            {"field": "example", "value": "MemoryError: OutOfMemory"}]]}, {"queryId": "q-1"})
        [finding] = ctx.run("memory.logs.oom_errors").findings
    assert finding.severity is WARNING and finding.resource == "loggroup:/ecs/rms-backend"
    assert finding.evidence["lines"] == 3 and "19:05" in finding.detail


def test_oom_errors_missing_log_group_is_an_error_finding(aws, make_context):
    ctx = make_context(logs_query="filter")
    [finding] = ctx.run("memory.logs.oom_errors").findings
    assert finding.severity is ERROR and "ResourceNotFound" in finding.detail


# =============================================================================================
# Layer 3: raise-task-memory against moto
# =============================================================================================

def register_fargate(family: str = "rms-backend", memory: int = 1024, cpu: int = 512) -> str:
    return seed.client("ecs").register_task_definition(
        family=family, networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu=str(cpu), memory=str(memory),
        executionRoleArn="arn:aws:iam::123456789012:role/exec",
        containerDefinitions=[
            {"name": "rms-backend", "image": "ecr/rms-backend:2.14.0", "essential": True, "memory": memory,
             "cpu": cpu, "environment": [{"name": "RMS_ENV", "value": "value-never-logged"}],
             "healthCheck": {"command": ["CMD-SHELL", "curl -f localhost/health"], "interval": 30}}],
        tags=[{"key": "team", "value": "rms"}])["taskDefinition"]["taskDefinitionArn"]


@pytest.fixture
def fargate_backend(aws):
    """rms-backend runs rms-backend:2, a Fargate definition of cpu 512 / memory 1024."""
    arn = register_fargate()
    seed.client("ecs").update_service(cluster=CLUSTER, service="rms-backend", taskDefinition=arn)
    return arn


def test_raise_task_memory_plan_shows_both_calls_and_changes_nothing(fargate_backend, make_context, tmp_path):
    ctx = make_context()
    p = plan(ctx, "raise-task-memory", service="rms-backend", memory="2048")  # a CLI string
    assert p.operation == "register_task_definition_and_update_service" and p.service == "ecs"
    assert p.params == {"cluster": CLUSTER, "service": "rms-backend", "sourceTaskDefinition": "rms-backend:2",
                        "memory": 2048, "containerMemory": {"rms-backend": 2048}}
    assert "register_task_definition, then ecs.update_service" in p.summary and "1024 → 2048" in p.summary
    assert "aws ecs register-task-definition" in p.cli and "aws ecs update-service" in p.cli
    record = execute(ctx, p, audit_log=tmp_path / "audit.jsonl")
    assert record.dry_run and record.outcome == "planned"
    assert len(seed.client("ecs").list_task_definitions(familyPrefix="rms-backend")["taskDefinitionArns"]) == 2


def test_raise_task_memory_confirmed_registers_a_copy_and_points_the_service_at_it(fargate_backend, make_context,
                                                                                   tmp_path):
    ctx = make_context()
    record = execute(ctx, plan(ctx, "raise-task-memory", service="rms-backend", memory=2048), confirm="yes",
                     audit_log=tmp_path / "audit.jsonl")
    assert record.outcome == "done" and not record.dry_run
    ecs = seed.client("ecs")
    new = ecs.describe_task_definition(taskDefinition="rms-backend:3", include=["TAGS"])
    old = ecs.describe_task_definition(taskDefinition="rms-backend:2")["taskDefinition"]
    td = new["taskDefinition"]
    assert td["memory"] == "2048" and td["containerDefinitions"][0]["memory"] == 2048
    for key in ("cpu", "networkMode", "requiresCompatibilities", "executionRoleArn"):
        assert td[key] == old[key]
    for key in ("image", "environment", "healthCheck", "cpu"):
        assert td["containerDefinitions"][0][key] == old["containerDefinitions"][0][key]
    assert new["tags"] == [{"key": "team", "value": "rms"}]
    (svc,) = ecs.describe_services(cluster=CLUSTER, services=["rms-backend"])["services"]
    assert svc["taskDefinition"].endswith("rms-backend:3")
    line = json.loads((tmp_path / "audit.jsonl").read_text().splitlines()[-1])
    assert line["outcome"] == "done" and line["params"]["memory"] == 2048
    assert "value-never-logged" not in json.dumps(line)  # no environment value in the audit log


@pytest.mark.parametrize(("memory", "message"), [
    (1024, "higher than the current 1024"),
    (512, "higher than the current 1024"),
    (2500, "next valid size is 3072"),
    (8192, "at most 4096"),
    ("lots", "whole number"),
])
def test_raise_task_memory_refuses_bad_sizes(fargate_backend, make_context, memory, message):
    with pytest.raises(UserError, match=message):
        plan(make_context(), "raise-task-memory", service="rms-backend", memory=memory)


def test_raise_task_memory_unknown_service_and_missing_argument(fargate_backend, make_context):
    ctx = make_context()
    with pytest.raises(UserError, match="unknown service"):
        plan(ctx, "raise-task-memory", service="rms-api", memory=2048)
    with pytest.raises(UserError, match="memory"):
        plan(ctx, "raise-task-memory", service="rms-backend")


def test_raise_task_memory_update_failure_names_the_registered_revision(fargate_backend, make_context, tmp_path,
                                                                       monkeypatch):
    from moto.ecs.models import EC2ContainerServiceBackend

    ctx = make_context()
    p = plan(ctx, "raise-task-memory", service="rms-backend", memory=3072)

    def refuse(self, *args, **kwargs):
        from moto.ecs.exceptions import ServiceNotFoundException
        raise ServiceNotFoundException

    monkeypatch.setattr(EC2ContainerServiceBackend, "update_service", refuse)
    with pytest.raises(UserError, match=r"registered rms-backend:3, but pointing rms-backend at it failed"):
        execute(ctx, p, confirm="yes", audit_log=tmp_path / "audit.jsonl")


# =============================================================================================
# Layer 4: the served demo
# =============================================================================================

def demo_findings(scenario: str, runbook: str = "03-high-memory") -> dict[str, dict[str, Severity]]:
    from rmsops.core.context import Context
    from tests.demo_server import served

    ctx = Context.open(served(scenario).env_file)
    try:
        return {r.check: {f.resource: f.severity for f in r.findings} for r in ctx.run_all(runbook)}
    finally:
        ctx.close()


def test_demo_memory_leak_shows_climbing_memory_oom_kills_and_log_lines():
    found = demo_findings("memory-leak")
    assert found["memory.ecs.utilization"] == {res("rms-backend"): WARNING, res("rms-frontend"): OK}
    assert found["memory.ecs.oom_kills"] == {res("rms-backend"): CRITICAL, res("rms-frontend"): OK}
    assert found["memory.logs.oom_errors"]["loggroup:/ecs/rms-backend"] is WARNING
    assert set(found["memory.ecs.task_churn"].values()) == {OK}


def test_demo_incident_has_a_memory_runbook_warning_and_healthy_none():
    incident = demo_findings("incident")
    assert incident["memory.ecs.task_churn"][res("rms-backend")] is WARNING
    assert incident["memory.ecs.oom_kills"][res("rms-backend")] is OK  # health-check kills are not OOM
    healthy = demo_findings("healthy")
    assert {s for check in healthy.values() for s in check.values()} <= {OK, INFO}


def test_notebook_runs_against_the_demo(tmp_path):
    from rmsops.core.window import resolve
    from rmsops.execution.runner import collect_findings, run_runbook
    from tests.demo_server import served

    outcome = run_runbook(runbooks.find("03"), config.load(served("memory-leak").env_file), resolve("1h"), tmp_path)
    assert outcome.status == "done", outcome.error
    findings = collect_findings(nbformat.read(outcome.notebook, as_version=4))
    assert {f.check for f in findings} == set(runbooks.find("03").checks)
    assert any(f.severity is CRITICAL for f in findings if f.check == "memory.ecs.oom_kills")
    assert outcome.html is not None and outcome.html.read_text().count("data:image/svg+xml;base64") >= 2
    audit = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [(a["action"], a["dry_run"]) for a in audit] == [("raise-task-memory", True)]


@pytest.mark.parametrize("check_id", ["memory.ecs.utilization", "memory.ecs.task_churn"])
def test_plots_render_with_and_without_data(aws, make_context, check_id):
    from matplotlib.figure import Figure

    from rmsops.core.registry import get

    empty_ctx = make_context()
    empty = empty_ctx.run(check_id)
    assert isinstance(get(check_id).plot(empty, empty_ctx), Figure)
    put_memory("rms-backend", [(60, 95)] * 3)
    stopped_task("rms-backend", 2, 137, OOM_REASON)
    ctx = make_context()
    figure = get(check_id).plot(ctx.run(check_id), ctx)
    texts = [t.get_text() for ax in figure.axes for t in ax.texts]
    if check_id == "memory.ecs.utilization":
        assert "OOM rms-backend" in texts  # the kill is marked on the memory chart
        assert {line.get_label() for line in figure.axes[0].lines} >= {"critical (100)", "warning (90)"}
    else:
        assert figure.axes[0].get_legend_handles_labels()[1] == ["out of memory"]
