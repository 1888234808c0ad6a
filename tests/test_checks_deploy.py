"""Runbook 08 (failed-deployments) and the scale-service and rollback-service actions.

Layer 1: the judges and the task definition diff as pure functions. Layer 2: fetch + judge through
``ctx.run`` against moto. moto creates one PRIMARY deployment per service and never writes service
events, a second deployment, exit codes or stoppedAt; those are set on its backend objects (see
/work/shared/notes/moto-coverage.md), and what comes back goes through the ordinary boto3 calls.
Layer 3: the actions against moto. Layer 4: the served demo and papermill.
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
from rmsops.checks.deploy import (
    deployments_frame,
    diff_task_definitions,
    events_frame,
    judge_events,
    judge_failed_tasks,
    judge_rollout,
    judge_taskdef_diff,
    split_revision,
    trouble_of,
)
from rmsops.checks.memory import is_oom, stop_category, stopped_frame
from rmsops.core import config, runbooks
from rmsops.core.errors import UserError
from tests import aws_seed as seed
from tests.judging import CRITICAL, ERROR, INFO, OK, WARNING, by_resource, thresholds

CLUSTER = "rms-production"
SERVICES = ("rms-backend", "rms-frontend")
NOW = datetime(2026, 11, 28, 20, 0, tzinfo=UTC)
ARN = "arn:aws:ecs:us-east-1:123456789012:task-definition/"


def res(service: str) -> str:
    return f"ecs:{CLUSTER}/{service}"


def deployment(revision: int, status: str = "PRIMARY", state: str = "COMPLETED", minutes_ago: float = 300,
               failed: int = 0, family: str = "rms-backend", reason: str = "") -> dict:
    created = NOW - timedelta(minutes=minutes_ago)
    return {"id": f"ecs-svc/{revision}{status}", "status": status, "taskDefinition": f"{ARN}{family}:{revision}",
            "desiredCount": 2, "runningCount": 2 if state == "COMPLETED" else 1, "pendingCount": 0,
            "failedTasks": failed, "rolloutState": state, "rolloutStateReason": reason,
            "createdAt": created, "updatedAt": created + timedelta(minutes=3)}


def answer(**services: list[dict]) -> dict:
    return {"services": [{"serviceName": name.replace("_", "-"), "status": "ACTIVE",
                          "taskDefinition": deps[0]["taskDefinition"] if deps else "", "deployments": deps,
                          "events": []} for name, deps in services.items()], "failures": []}


def rollout(ans: dict, services=SERVICES, previous=None, **overrides) -> dict:
    df = deployments_frame(ans, services)
    return by_resource(judge_rollout(df, ans, services, CLUSTER, thresholds(**overrides), NOW,
                                     previous or {"rms-backend": "rms-backend:1"}))


# =============================================================================================
# Layer 1
# =============================================================================================

def test_split_revision():
    assert split_revision(f"{ARN}rms-backend:12") == ("rms-backend", 12)
    assert split_revision("rms-backend:3") == ("rms-backend", 3)
    assert split_revision("rms-backend") == ("rms-backend", None)


def test_judge_rollout_completed_is_ok():
    found = rollout(answer(rms_backend=[deployment(2)], rms_frontend=[deployment(1, family="rms-frontend")]))
    assert {r: f.severity for r, f in found.items()} == {res("rms-backend"): OK, res("rms-frontend"): OK}


def test_judge_rollout_failed_is_critical_with_reason_and_rollback():
    ans = answer(rms_backend=[deployment(3, state="FAILED", minutes_ago=40, failed=4,
                                        reason="ECS deployment circuit breaker: tasks failed to start."),
                              deployment(2, status="ACTIVE")])
    finding = rollout(ans, ("rms-backend",), {"rms-backend": "rms-backend:2"})[res("rms-backend")]
    assert finding.severity is CRITICAL and "rms-backend:3 FAILED" in finding.title
    assert "circuit breaker" in finding.detail and "4 failed task(s)" in finding.detail
    assert "rollback-service --service rms-backend --revision rms-backend:2" in finding.resolution
    assert [d["task_definition"] for d in finding.evidence["deployments"]] == ["rms-backend:3", "rms-backend:2"]


def test_judge_rollout_failed_older_deployment_is_critical_too():
    ans = answer(rms_backend=[deployment(2, state="IN_PROGRESS", minutes_ago=5),
                              deployment(1, status="ACTIVE", state="FAILED")])
    assert rollout(ans, ("rms-backend",))[res("rms-backend")].severity is CRITICAL


@pytest.mark.parametrize(("minutes", "severity"), [(5, INFO), (30, INFO), (31, WARNING), (240, WARNING)])
def test_judge_rollout_in_progress_is_warning_only_past_the_threshold(minutes, severity):
    ans = answer(rms_backend=[deployment(2, state="IN_PROGRESS", minutes_ago=minutes), deployment(1, "ACTIVE")])
    finding = rollout(ans, ("rms-backend",))[res("rms-backend")]
    assert finding.severity is severity
    assert finding.evidence["in_progress_minutes"] == pytest.approx(minutes)


def test_judge_rollout_threshold_override():
    ans = answer(rms_backend=[deployment(2, state="IN_PROGRESS", minutes_ago=20)])
    assert rollout(ans, ("rms-backend",), rollout_in_progress_minutes=10)[res("rms-backend")].severity is WARNING


def test_judge_rollout_missing_service_is_critical_and_no_deployments_info():
    ans = answer(rms_backend=[])
    found = rollout(ans)
    assert found[res("rms-frontend")].severity is CRITICAL and "not found" in found[res("rms-frontend")].title
    assert found[res("rms-backend")].severity is INFO  # CODE_DEPLOY / EXTERNAL controllers list none


# --- failed tasks ------------------------------------------------------------------------------

def stopped(service: str, reason: str, code: str = "ServiceSchedulerInitiated", exit_code: int | None = 0,
            container_reason: str = "") -> dict:
    row = {"service": service, "task": "t", "task_definition": "rms-backend:3", "started_at": NOW,
           "stopped_at": NOW, "stop_code": code, "stopped_reason": reason, "container": "c",
           "exit_code": exit_code, "container_reason": container_reason}
    row["oom"] = is_oom(row)
    row["category"] = stop_category(row)
    return row


def test_judge_failed_tasks_groups_by_reason_and_ignores_normal_stops():
    ans = answer(rms_backend=[deployment(3, state="IN_PROGRESS", failed=2), deployment(2, "ACTIVE")],
                 rms_frontend=[deployment(1, family="rms-frontend")])
    tasks = stopped_frame([
        stopped("rms-backend", "Task failed container health checks"),
        stopped("rms-backend", "Task failed container health checks"),
        stopped("rms-backend", "CannotPullContainerError: pull access denied", "TaskFailedToStart", None),
        stopped("rms-frontend", "Scaling activity initiated by (deployment ecs-svc/1)"),
    ])
    found = by_resource(judge_failed_tasks(deployments_frame(ans, SERVICES), tasks, SERVICES, CLUSTER,
                                           {"rms-backend": "rms-backend:2"}))
    backend = found[res("rms-backend")]
    assert backend.severity is WARNING
    assert backend.evidence["by_reason"] == {"container health checks": 2, "image pull": 1}
    assert backend.evidence["deployment_failed_tasks"] == {"ecs-svc/3PRIMARY": 2}
    assert "pull access denied" in backend.evidence["example_reasons"]["image pull"]
    assert "--revision rms-backend:2" in backend.resolution
    assert found[res("rms-frontend")].severity is OK  # a scale-in is not a failure


def test_judge_failed_tasks_deployment_count_alone_is_warning():
    ans = answer(rms_backend=[deployment(2, state="IN_PROGRESS", failed=3)])
    [finding] = judge_failed_tasks(deployments_frame(ans, ("rms-backend",)), stopped_frame([]), ("rms-backend",),
                                   CLUSTER, {})
    assert finding.severity is WARNING and finding.evidence["stopped_failed_tasks"] == 0


def test_judge_failed_tasks_ignores_the_count_of_a_deployment_completed_before_the_window():
    old = deployment(2, failed=2, minutes_ago=3 * 24 * 60)  # completed 3 days ago after 2 failed starts
    recent = deployment(2, failed=2, minutes_ago=20)  # completed in the window
    for dep, severity in ((old, OK), (recent, WARNING)):
        [finding] = judge_failed_tasks(deployments_frame(answer(rms_backend=[dep]), ("rms-backend",)),
                                       stopped_frame([]), ("rms-backend",), CLUSTER, {},
                                       since=NOW - timedelta(hours=1))
        assert finding.severity is severity


def test_judge_failed_tasks_nothing_is_ok():
    [finding] = judge_failed_tasks(deployments_frame(answer(rms_backend=[deployment(2)]), ("rms-backend",)),
                                   stopped_frame([]), ("rms-backend",), CLUSTER, {})
    assert finding.severity is OK


# --- events ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("message", "kind"), [
    ("(service rms-backend) was unable to place a task because no container instance met all of its "
     "requirements.", "unable to place"),
    ("(service rms-backend) (task 1a2b) failed container health checks.", "failed container health checks"),
    ("(service rms-backend) (port 8000) is unhealthy in (target-group arn:...) due to (reason Request timed out).",
     "is unhealthy"),
    ("(service rms-backend) (deployment ecs-svc/1) deployment failed: tasks failed to start.", "deployment failed"),
    ("(service rms-backend) has reached a steady state.", ""),
    ("(service rms-backend) has started 2 tasks: (task a) (task b).", ""),
])
def test_trouble_of(message, kind):
    assert trouble_of(message) == kind


def test_judge_events_in_window_warning_outside_ignored():
    svc_events = [
        {"createdAt": NOW - timedelta(minutes=5), "message": "(service rms-backend) (task a) failed container "
                                                            "health checks."},
        {"createdAt": NOW - timedelta(minutes=10), "message": "(service rms-backend) has started 1 tasks: (task a)."},
        {"createdAt": NOW - timedelta(hours=5), "message": "(service rms-backend) was unable to place a task."},
    ]
    ans = answer(rms_backend=[deployment(2)], rms_frontend=[deployment(1, family="rms-frontend")])
    ans["services"][0]["events"] = svc_events
    ans["services"][1]["events"] = [{"createdAt": NOW - timedelta(minutes=1),
                                     "message": "(service rms-frontend) has reached a steady state."}]
    df = events_frame(ans, SERVICES, NOW - timedelta(hours=1), NOW)
    found = by_resource(judge_events(df, SERVICES, CLUSTER))
    backend = found[res("rms-backend")]
    assert backend.severity is WARNING
    assert backend.evidence == {
        "events_in_window": 2, "troubling": 1, "by_kind": {"failed container health checks": 1},
        "latest": [{"at": NOW - timedelta(minutes=5), "message": svc_events[0]["message"]}]}
    assert found[res("rms-frontend")].severity is OK


def test_judge_events_none_is_ok():
    df = events_frame(answer(rms_backend=[deployment(2)]), ("rms-backend",), NOW - timedelta(hours=1), NOW)
    [finding] = judge_events(df, ("rms-backend",), CLUSTER)
    assert finding.severity is OK and finding.evidence["events_in_window"] == 0


# --- task definition diff ----------------------------------------------------------------------

def definition(image: str = "ecr/rms-backend:2.14.0", env: dict | None = None, memory: str = "1024",
               health: list | None = None, secrets: dict | None = None) -> dict:
    env = {"RMS_ENV": "production", "DB_HOST": "db.internal"} if env is None else env
    container = {"name": "rms-backend", "image": image, "memory": int(memory),
                 "environment": [{"name": k, "value": v} for k, v in env.items()],
                 "secrets": [{"name": k, "valueFrom": v} for k, v in (secrets or {}).items()],
                 "healthCheck": {"command": health or ["CMD-SHELL", "curl -f localhost/health"], "interval": 30}}
    return {"family": "rms-backend", "cpu": "512", "memory": memory, "containerDefinitions": [container]}


def test_diff_reports_image_env_names_memory_and_health_check_never_values():
    before = definition(secrets={"DB_PASSWORD": "arn:aws:secretsmanager:...:pw-old"})
    after = definition(image="ecr/rms-backend:2.15.0", memory="2048",
                       env={"RMS_ENVIRONMENT": "production", "DB_HOST": "db-secret-host.internal"},
                       health=["CMD-SHELL", "curl -f localhost/healthz"],
                       secrets={"DB_PASSWORD": "arn:aws:secretsmanager:...:pw-new"})
    changes = {(c["container"], c["field"]): (c["before"], c["after"]) for c in diff_task_definitions(before, after)}
    assert changes[("rms-backend", "image")] == ("ecr/rms-backend:2.14.0", "ecr/rms-backend:2.15.0")
    assert changes[("(task)", "memory")] == ("1024", "2048")
    assert changes[("rms-backend", "memory")] == ("1024", "2048")
    assert changes[("rms-backend", "environment added")] == ("", "RMS_ENVIRONMENT")
    assert changes[("rms-backend", "environment removed")] == ("RMS_ENV", "")
    assert changes[("rms-backend", "environment value changed")] == ("DB_HOST", "DB_HOST")
    assert changes[("rms-backend", "secrets value changed")] == ("DB_PASSWORD", "DB_PASSWORD")
    assert "healthz" in changes[("rms-backend", "healthCheck")][1]
    text = json.dumps(diff_task_definitions(before, after))
    assert "db-secret-host" not in text and "db.internal" not in text and "pw-new" not in text


def test_diff_of_identical_definitions_is_empty_and_containers_added_or_removed():
    assert diff_task_definitions(definition(), definition()) == []
    sidecar = definition()
    sidecar["containerDefinitions"].append({"name": "xray", "image": "amazon/aws-xray-daemon"})
    assert diff_task_definitions(definition(), sidecar) == [
        {"container": "xray", "field": "container", "before": "", "after": "added"}]


def test_judge_taskdef_diff_is_info_in_every_case():
    changes = diff_task_definitions(definition(), definition(image="ecr/rms-backend:2.15.0"))
    changed = judge_taskdef_diff("rms-backend", CLUSTER, "rms-backend:3", "rms-backend:2", "how", changes)
    same = judge_taskdef_diff("rms-backend", CLUSTER, "rms-backend:3", "rms-backend:2", "how", [])
    first = judge_taskdef_diff("rms-backend", CLUSTER, "rms-backend:1", None, "no revision below 1", None)
    assert [f.severity for f in (changed, same, first)] == [INFO, INFO, INFO]
    assert "changes image" in changed.title and changed.evidence["changes"] == changes
    assert "--revision 2" in changed.resolution
    assert "no previous revision" in first.title


# =============================================================================================
# Layer 2: against moto
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


def register(family: str, image: str, env: dict[str, str]) -> str:
    return seed.client("ecs").register_task_definition(
        family=family, networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="256", memory="512",
        containerDefinitions=[{"name": family, "image": image, "essential": True, "memory": 512,
                               "environment": [{"name": k, "value": v} for k, v in env.items()]}],
    )["taskDefinition"]["taskDefinitionArn"]


@pytest.fixture
def aws(moto_world, monkeypatch):
    """rms-backend:1 (2.13) and :2 (2.14, RMS_ENV renamed): the service runs :2; rms-frontend:1."""
    seed.reset("ecs")
    for service in SERVICES:
        seed.create_service(service, 2, 2, setenv=monkeypatch.setenv)
    register("rms-backend", "ecr/rms-backend:2.13.0", {"RMS_ENV": "production"})  # :2 (seed made :1)
    arn = register("rms-backend", "ecr/rms-backend:2.14.0", {"RMS_ENVIRONMENT": "production"})  # :3
    seed.client("ecs").update_service(cluster=CLUSTER, service="rms-backend", taskDefinition=arn)
    return arn


def backend_service():
    return seed.backend("ecs").services[f"{CLUSTER}:rms-backend"]


def test_rollout_and_diff_against_moto_with_a_failed_deployment(aws, make_context):
    svc = backend_service()
    now = datetime.now(UTC)
    svc.deployments[0].update({"taskDefinition": aws, "rolloutState": "FAILED", "failedTasks": 3,
                               "rolloutStateReason": "ECS deployment circuit breaker: tasks failed to start.",
                               "createdAt": now - timedelta(minutes=20)})
    svc.deployments.append({**svc.deployments[0], "id": "ecs-svc/old", "status": "ACTIVE", "failedTasks": 0,
                            "taskDefinition": aws.replace(":3", ":2"), "rolloutState": "COMPLETED",
                            "createdAt": now - timedelta(days=2)})
    ctx = make_context()
    found = by_resource(ctx.run("deploy.ecs.rollout").findings)
    assert found[res("rms-backend")].severity is CRITICAL
    assert "--revision rms-backend:2" in found[res("rms-backend")].resolution
    assert found[res("rms-frontend")].severity is OK
    diff = by_resource(ctx.run("deploy.taskdef.diff").findings)[res("rms-backend")]
    assert diff.severity is INFO and diff.evidence["previous"] == "rms-backend:2"
    assert diff.evidence["previous_found_by"].startswith("the ACTIVE deployment ecs-svc/old")
    fields = {c["field"] for c in diff.evidence["changes"]}
    assert fields == {"image", "environment added", "environment removed"}
    assert "production" not in json.dumps(diff.evidence["changes"])


def test_diff_without_a_second_deployment_takes_the_revision_below(aws, make_context):
    diff = by_resource(make_context().run("deploy.taskdef.diff").findings)
    assert diff[res("rms-backend")].evidence["previous"] == "rms-backend:2"
    how = diff[res("rms-backend")].evidence["previous_found_by"]
    assert how == "the highest existing revision below the current one"
    assert "no previous revision" in diff[res("rms-frontend")].title


def test_events_and_failed_tasks_against_moto(aws, make_context):
    now = datetime.now(UTC)
    backend_service().events = [
        {"id": "1", "createdAt": now - timedelta(minutes=3),
         "message": "(service rms-backend) (task abc) failed container health checks."},
        {"id": "2", "createdAt": now - timedelta(minutes=9),
         "message": "(service rms-backend) was unable to place a task because no container instance met all of "
                    "its requirements."},
        {"id": "3", "createdAt": now - timedelta(minutes=30), "message": "(service rms-backend) has started 1 tasks."},
    ]
    ecs = seed.client("ecs")
    arn = ecs.run_task(cluster=CLUSTER, taskDefinition="rms-backend:3", count=1, launchType="FARGATE",
                       networkConfiguration=seed.network(), group="service:rms-backend")["tasks"][0]["taskArn"]
    task = seed.backend("ecs").tasks[CLUSTER][arn]
    task.desired_status = task.last_status = "STOPPED"
    task.stopped_at, task.stop_code = now - timedelta(minutes=4), "ServiceSchedulerInitiated"
    task.stopped_reason = "Task failed container health checks"
    ctx = make_context()
    ev = by_resource(ctx.run("deploy.ecs.events").findings)
    assert ev[res("rms-backend")].severity is WARNING
    assert ev[res("rms-backend")].evidence["by_kind"] == {"failed container health checks": 1, "unable to place": 1}
    assert ev[res("rms-frontend")].severity is OK
    failed = ctx.run("deploy.ecs.failed_tasks")
    found = by_resource(failed.findings)
    assert found[res("rms-backend")].evidence["by_reason"] == {"container health checks": 1}
    assert found[res("rms-backend")].severity is WARNING
    assert list(failed.frames["stopped_tasks"]["task_definition"]) == ["rms-backend:3"]


def test_missing_cluster_is_an_error_finding(moto_world, make_context):
    seed.reset("ecs")
    [finding] = make_context().run("deploy.ecs.rollout").findings
    assert finding.severity is ERROR and "ClusterNotFound" in finding.detail


# =============================================================================================
# Layer 3: scale-service and rollback-service
# =============================================================================================

def desired(service: str = "rms-backend") -> tuple[int, str]:
    (svc,) = seed.client("ecs").describe_services(cluster=CLUSTER, services=[service])["services"]
    return svc["desiredCount"], svc["taskDefinition"].rsplit("/", 1)[-1]


def test_scale_service_plan_converts_the_cli_string_and_names_the_change(aws, make_context, tmp_path):
    ctx = make_context()
    p = plan(ctx, "scale-service", service="rms-backend", count="6")
    assert p.params == {"cluster": CLUSTER, "service": "rms-backend", "desiredCount": 6}
    assert "from 2 to 6" in p.summary and p.cli.endswith("--desired-count 6")
    execute(ctx, p, audit_log=tmp_path / "a.jsonl")
    assert desired()[0] == 2  # a dry run
    record = execute(ctx, p, confirm="yes", audit_log=tmp_path / "a.jsonl")
    assert record.outcome == "done" and desired()[0] == 6


@pytest.mark.parametrize(("count", "message"), [(-1, "between 0 and 5000"), (5001, "between 0 and 5000"),
                                                 ("six", "whole number"), (True, "whole number"),
                                                 (2, "already has a desired count of 2")])
def test_scale_service_refuses_bad_counts(aws, make_context, count, message):
    with pytest.raises(UserError, match=message):
        plan(make_context(), "scale-service", service="rms-backend", count=count)


def test_scale_to_zero_says_it_stops_everything(aws, make_context):
    assert "stops every task" in plan(make_context(), "scale-service", service="rms-frontend", count=0).summary


def test_scale_service_unknown_or_missing_service(aws, make_context):
    with pytest.raises(UserError, match="unknown service"):
        plan(make_context(), "scale-service", service="rms-api", count=3)
    ctx = make_context(ecs={"services": ["rms-backend", "rms-frontend", "rms-worker"]})
    with pytest.raises(UserError, match="rms-worker not found in cluster"):
        plan(ctx, "scale-service", service="rms-worker", count=3)


def test_rollback_service_plan_and_confirmed_update(aws, make_context, tmp_path):
    ctx = make_context()
    p = plan(ctx, "rollback-service", service="rms-backend", revision="2")
    assert p.params == {"cluster": CLUSTER, "service": "rms-backend", "taskDefinition": "rms-backend:2"}
    assert "from rms-backend:3 to rms-backend:2" in p.summary and "2.13.0" in p.summary
    assert p.cli.endswith("--task-definition rms-backend:2")
    record = execute(ctx, p, confirm="yes", audit_log=tmp_path / "a.jsonl")
    assert record.outcome == "done" and desired()[1] == "rms-backend:2"


@pytest.mark.parametrize("revision", [1, "rms-backend:1", f"{ARN}rms-backend:1"])
def test_rollback_service_accepts_number_name_or_arn(aws, make_context, revision):
    assert plan(make_context(), "rollback-service", service="rms-backend",
                revision=revision).params["taskDefinition"] == "rms-backend:1"


@pytest.mark.parametrize(("revision", "message"), [
    (9, "rms-backend:9 does not exist"),
    (3, "already runs rms-backend:3"),
    ("rms-frontend:1", "not a revision of rms-backend"),
    ("latest", "whole number"),
])
def test_rollback_service_validates_the_revision(aws, make_context, revision, message):
    with pytest.raises(UserError, match=message):
        plan(make_context(), "rollback-service", service="rms-backend", revision=revision)


def test_rollback_service_refuses_a_deregistered_revision(aws, make_context):
    seed.client("ecs").deregister_task_definition(taskDefinition="rms-backend:1")
    with pytest.raises(UserError, match="INACTIVE"):
        plan(make_context(), "rollback-service", service="rms-backend", revision=1)


# =============================================================================================
# Layer 4: the served demo
# =============================================================================================

def demo_findings(scenario: str) -> dict[str, dict[str, object]]:
    from rmsops.core.context import Context
    from tests.demo_server import served

    ctx = Context.open(served(scenario).env_file)
    try:
        return {r.check: {f.resource: f for f in r.findings} for r in ctx.run_all("08-failed-deployments")}
    finally:
        ctx.close()


def test_demo_bad_deploy_shows_the_failed_rollout_its_tasks_events_and_the_change():
    found = demo_findings("bad-deploy")
    backend = res("rms-backend")
    assert found["deploy.ecs.rollout"][backend].severity is CRITICAL
    assert "rms-backend:3" in found["deploy.ecs.rollout"][backend].title
    assert found["deploy.ecs.failed_tasks"][backend].severity is WARNING
    assert "container health checks" in found["deploy.ecs.failed_tasks"][backend].evidence["by_reason"]
    assert found["deploy.ecs.events"][backend].evidence["by_kind"]["failed container health checks"] >= 3
    diff = found["deploy.taskdef.diff"][backend]
    assert {c["field"] for c in diff.evidence["changes"]} == {"image", "environment added", "environment removed"}
    assert (diff.evidence["previous"], diff.evidence["current"]) == ("rms-backend:2", "rms-backend:3")
    for check in found.values():
        assert check[res("rms-frontend")].severity in (OK, INFO)


def test_demo_incident_has_deployment_warnings_and_healthy_none():
    incident = demo_findings("incident")
    backend = res("rms-backend")
    assert incident["deploy.ecs.failed_tasks"][backend].severity is WARNING
    assert incident["deploy.ecs.events"][backend].severity is WARNING
    assert incident["deploy.ecs.rollout"][backend].severity is INFO  # 15 min in progress: not stuck yet
    healthy = demo_findings("healthy")
    assert {f.severity for check in healthy.values() for f in check.values()} <= {OK, INFO}


def test_notebook_runs_against_the_demo(tmp_path):
    from rmsops.core.window import resolve
    from rmsops.execution.runner import collect_findings, run_runbook
    from tests.demo_server import served

    outcome = run_runbook(runbooks.find("08"), config.load(served("bad-deploy").env_file), resolve("1h"), tmp_path)
    assert outcome.status == "done", outcome.error
    findings = collect_findings(nbformat.read(outcome.notebook, as_version=4))
    assert {f.check for f in findings} == set(runbooks.find("08").checks)
    assert any(f.severity is CRITICAL for f in findings if f.check == "deploy.ecs.rollout")
    assert outcome.html is not None and outcome.html.read_text().count("data:image/svg+xml;base64") >= 2
    audit = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [(a["action"], a["dry_run"], a["params"]["taskDefinition"]) for a in audit] == [
        ("rollback-service", True, "rms-backend:2")]


def test_frame_of_an_empty_answer():
    assert deployments_frame({"services": []}, SERVICES).empty
    assert events_frame({"services": []}, SERVICES, NOW, NOW).empty
    assert isinstance(deployments_frame({"services": []}, SERVICES), pd.DataFrame)


def test_rollout_timeline_and_failed_plot_render():
    from matplotlib.figure import Figure

    from rmsops.checks.deploy import _failed_plot, rollout_timeline
    from rmsops.core.registry import CheckResult

    window = (NOW - timedelta(hours=1), NOW)
    assert isinstance(rollout_timeline(deployments_frame({"services": []}, SERVICES), NOW, window), Figure)
    ans = answer(rms_backend=[deployment(3, state="FAILED", minutes_ago=40), deployment(2, "ACTIVE", minutes_ago=900)])
    figure = rollout_timeline(deployments_frame(ans, ("rms-backend",)), NOW, window)
    assert [t.get_text() for t in figure.axes[0].get_yticklabels()] == [
        "rms-backend rms-backend:3 (PRIMARY)", "rms-backend rms-backend:2 (ACTIVE)"]
    assert figure.axes[0].get_legend_handles_labels()[1] == ["FAILED", "COMPLETED"]

    class Ctx:  # the plot reads nothing but its result
        pass

    tasks = stopped_frame([stopped("rms-backend", "Task failed container health checks")])
    assert isinstance(_failed_plot(CheckResult([], frames={"stopped_tasks": tasks}), Ctx()), Figure)
    assert isinstance(_failed_plot(CheckResult([], frames={"stopped_tasks": stopped_frame([])}), Ctx()), Figure)
