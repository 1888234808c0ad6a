"""Runbook 01 (application-not-responding): the judge functions, then fetch + judge against moto.

Layer 1 feeds small DataFrames to the pure judge functions. Layer 2 seeds moto (context mode, one
mock for the module, per-test reset of the ECS, ELBv2 and CloudWatch backends) and a local HTTP
server, and goes through ``ctx.run(check_id)`` like a notebook does. Layer 3 checks that failures
(AccessDenied, an unreachable endpoint) become ``error`` findings instead of exceptions.
"""

from __future__ import annotations

import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest
from moto import mock_aws
from moto.core.exceptions import JsonRESTError
from moto.moto_api import state_manager

from rmsops.checks.alb import judge_5xx, judge_target_health, longest_run
from rmsops.checks.ecs import judge_capacity, judge_unhealthy_tasks, services_frame
from rmsops.checks.health import judge_health
from rmsops.core.context import Context
from tests import aws_seed as seed
from tests.judging import CRITICAL, ERROR, INFO, OK, WARNING, by_resource, thresholds

RUNBOOK = "01-application-not-responding"
T0 = datetime(2026, 11, 28, 19, 0, tzinfo=UTC)


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# =============================================================================================
# Layer 1: judge functions
# =============================================================================================

# --- app.health.endpoint ---------------------------------------------------------------------

HEALTH_COLUMNS = ["name", "url", "status", "seconds", "error"]


def health_frame(*rows) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=HEALTH_COLUMNS)


def test_judge_health_fast_2xx_is_ok():
    df = health_frame(("api", "http://a/health", 200, 0.05, ""), ("frontend", "http://f/", 204, 1.9, ""))
    findings = by_resource(judge_health(df, thresholds()))
    assert {r: f.severity for r, f in findings.items()} == {"http://a/health": OK, "http://f/": OK}
    assert findings["http://a/health"].evidence["status"] == 200


@pytest.mark.parametrize("status", [500, 502, 503, 404, 301])
def test_judge_health_non_2xx_is_critical(status):
    df = health_frame(("api", "http://a/health", status, 0.01, ""))
    [finding] = judge_health(df, thresholds())
    assert finding.severity is CRITICAL
    assert str(status) in finding.title
    assert finding.evidence["status"] == status


def test_judge_health_no_answer_is_critical_with_the_error():
    df = health_frame(("api", "http://a/health", None, 5.0, "timed out"),
                      ("frontend", "http://f/", 200, 0.1, ""))
    findings = by_resource(judge_health(df, thresholds()))
    failed = findings["http://a/health"]
    assert failed.severity is CRITICAL
    assert "timed out" in failed.title
    assert failed.evidence["status"] is None
    assert findings["http://f/"].severity is OK


def test_judge_health_slow_is_warning_and_threshold_moves_the_verdict():
    df = health_frame(("api", "http://a/health", 200, 2.5, ""), ("frontend", "http://f/", 200, 2.0, ""))
    findings = by_resource(judge_health(df, thresholds()))
    assert findings["http://a/health"].severity is WARNING
    assert findings["http://f/"].severity is OK  # exactly at the limit is not slower than it
    relaxed = by_resource(judge_health(df, thresholds(health_slow_seconds=3.0)))
    assert relaxed["http://a/health"].severity is OK
    strict = by_resource(judge_health(df, thresholds(health_slow_seconds=1.0)))
    assert strict["http://f/"].severity is WARNING
    assert strict["http://f/"].evidence["slow_seconds"] == 1.0


def test_judge_health_slow_error_status_is_still_critical():
    df = health_frame(("api", "http://a/health", 503, 9.0, ""))
    [finding] = judge_health(df, thresholds())
    assert finding.severity is CRITICAL


def test_judge_health_no_urls_gives_one_info_finding():
    findings = judge_health(health_frame(), thresholds())
    assert [f.severity for f in findings] == [INFO]


# --- app.ecs.capacity ------------------------------------------------------------------------

def svc(name, desired, running, pending=0, status="ACTIVE"):
    return {"serviceName": name, "status": status, "desiredCount": desired, "runningCount": running,
            "pendingCount": pending, "taskDefinition": f"arn:aws:ecs:us-east-1:1:task-definition/{name}:7",
            "deployments": [{"status": "PRIMARY", "rolloutState": "COMPLETED"}]}


def capacity(services: list[dict], wanted=("a", "b")):
    df = services_frame({"services": services, "failures": []}, wanted)
    return by_resource(judge_capacity(df, "c"))


def test_judge_capacity_at_or_above_desired_is_ok():
    findings = capacity([svc("a", 2, 2), svc("b", 2, 3)])  # 3 of 2: mid-deployment overlap
    assert {r: f.severity for r, f in findings.items()} == {"ecs:c/a": OK, "ecs:c/b": OK}
    assert findings["ecs:c/a"].evidence == {"desired": 2, "running": 2, "pending": 0, "status": "ACTIVE"}


def test_judge_capacity_none_running_is_critical_some_is_warning():
    findings = capacity([svc("a", 3, 0, pending=3), svc("b", 3, 2, pending=1)])
    assert findings["ecs:c/a"].severity is CRITICAL
    assert "force-new-deployment --service a" in findings["ecs:c/a"].resolution
    assert findings["ecs:c/b"].severity is WARNING
    assert "running 2 of 3" in findings["ecs:c/b"].detail


def test_judge_capacity_scaled_to_zero_is_not_critical():
    findings = capacity([svc("a", 0, 0), svc("b", 1, 1)])
    assert findings["ecs:c/a"].severity is OK


def test_judge_capacity_missing_or_inactive_service_is_critical():
    findings = capacity([svc("a", 2, 2, status="INACTIVE")])  # b absent from the answer
    assert findings["ecs:c/a"].severity is CRITICAL
    assert findings["ecs:c/b"].severity is CRITICAL
    assert "not found" in findings["ecs:c/b"].title


def test_judge_capacity_empty_answer_reports_every_service_missing():
    findings = capacity([], wanted=("a", "b", "c"))
    assert [f.severity for f in findings.values()] == [CRITICAL] * 3


# --- app.ecs.unhealthy_tasks -----------------------------------------------------------------

TASK_COLUMNS = ["service", "task", "last_status", "health", "started_at", "task_definition"]


def tasks(*rows) -> pd.DataFrame:
    return pd.DataFrame([(s, t, "RUNNING", h, None, "td:1") for s, t, h in rows], columns=TASK_COLUMNS)


def test_judge_unhealthy_tasks_all_healthy_or_unknown_is_ok():
    df = tasks(("a", "t1", "HEALTHY"), ("a", "t2", "UNKNOWN"), ("b", "t3", "HEALTHY"))
    findings = by_resource(judge_unhealthy_tasks(df, "c", ("a", "b")))
    assert [f.severity for f in findings.values()] == [OK, OK]
    assert findings["ecs:c/a"].evidence["tasks"] == 2


def test_judge_unhealthy_tasks_any_unhealthy_is_warning_per_service():
    df = tasks(("a", "t1", "HEALTHY"), ("a", "t2", "UNHEALTHY"), ("a", "t3", "UNHEALTHY"),
               ("b", "t4", "HEALTHY"))
    findings = by_resource(judge_unhealthy_tasks(df, "c", ("a", "b")))
    assert findings["ecs:c/a"].severity is WARNING
    assert findings["ecs:c/a"].evidence["unhealthy"] == 2
    assert sorted(findings["ecs:c/a"].evidence["unhealthy_tasks"]) == ["t2", "t3"]
    assert "2 of 3" in findings["ecs:c/a"].title
    assert findings["ecs:c/b"].severity is OK


def test_judge_unhealthy_tasks_ignores_services_not_asked_about():
    df = tasks(("other", "t9", "UNHEALTHY"), ("a", "t1", "HEALTHY"))
    findings = by_resource(judge_unhealthy_tasks(df, "c", ("a",)))
    assert list(findings) == ["ecs:c/a"]
    assert findings["ecs:c/a"].severity is OK


def test_judge_unhealthy_tasks_no_tasks_gives_ok_per_service():
    findings = judge_unhealthy_tasks(tasks(), "c", ("a", "b"))
    assert [(f.resource, f.severity, f.evidence["tasks"]) for f in findings] == [
        ("ecs:c/a", OK, 0), ("ecs:c/b", OK, 0)]


# --- app.alb.target_health -------------------------------------------------------------------

TARGET_COLUMNS = ["group", "target", "port", "state", "reason", "description"]


def targets(*rows) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=TARGET_COLUMNS)


def target(group, ip, state, reason="", description=""):
    return (group, ip, 8080, state, reason, description)


def test_judge_target_health_all_healthy_is_ok():
    df = targets(target("api", "10.0.0.1", "healthy"), target("api", "10.0.0.2", "healthy"),
                 target("web", "10.0.1.1", "healthy"))
    findings = by_resource(judge_target_health(df))
    assert {r: f.severity for r, f in findings.items()} == {"targetgroup:api": OK, "targetgroup:web": OK}
    assert findings["targetgroup:api"].evidence["healthy"] == 2


def test_judge_target_health_some_unhealthy_is_warning_with_reason_codes():
    df = targets(target("api", "10.0.0.1", "healthy"),
                 target("api", "10.0.0.2", "unhealthy", "Target.ResponseCodeMismatch", "codes: [502]"),
                 target("api", "10.0.0.3", "unhealthy", "Target.Timeout", "timed out"))
    [finding] = judge_target_health(df)
    assert finding.severity is WARNING
    assert finding.evidence["reasons"] == ["Target.ResponseCodeMismatch", "Target.Timeout"]
    assert {t["target"] for t in finding.evidence["targets"]} == {"10.0.0.2", "10.0.0.3"}
    assert "Target.ResponseCodeMismatch" in finding.detail
    assert "2 of 3" in finding.title


def test_judge_target_health_some_draining_is_warning():
    df = targets(target("api", "10.0.0.1", "healthy"),
                 target("api", "10.0.0.2", "draining", "Target.DeregistrationInProgress"))
    [finding] = judge_target_health(df)
    assert finding.severity is WARNING
    assert finding.evidence["reasons"] == ["Target.DeregistrationInProgress"]


def test_judge_target_health_all_draining_is_critical():
    df = targets(target("api", "10.0.0.1", "draining", "Target.DeregistrationInProgress"),
                 target("api", "10.0.0.2", "draining", "Target.DeregistrationInProgress"))
    [finding] = judge_target_health(df)
    assert finding.severity is CRITICAL
    assert finding.evidence["healthy"] == 0 and finding.evidence["registered"] == 2
    assert "Target.DeregistrationInProgress" in finding.detail


def test_judge_target_health_all_unhealthy_is_critical_with_reason():
    df = targets(target("api", "10.0.0.1", "unhealthy", "Target.FailedHealthChecks"))
    [finding] = judge_target_health(df)
    assert finding.severity is CRITICAL
    assert "Target.FailedHealthChecks" in finding.detail


def test_judge_target_health_no_targets_is_critical():
    df = targets(("api", "", None, "no targets", "", ""), target("web", "10.0.1.1", "healthy"))
    findings = by_resource(judge_target_health(df))
    assert findings["targetgroup:api"].severity is CRITICAL
    assert "no registered targets" in findings["targetgroup:api"].detail
    assert findings["targetgroup:api"].evidence["registered"] == 0
    assert findings["targetgroup:web"].severity is OK


def test_judge_target_health_missing_group_is_critical():
    df = targets(("api", "", None, "missing", "TargetGroupNotFound", ""))
    [finding] = judge_target_health(df)
    assert finding.severity is CRITICAL
    assert "not found" in finding.title


# --- app.alb.5xx and longest_run -------------------------------------------------------------

def minutes(*offsets: int, period: int = 60) -> pd.Series:
    return pd.Series([T0 + timedelta(seconds=o * period) for o in offsets])


@pytest.mark.parametrize(("offsets", "period", "expected"), [
    ((), 60, 0),
    ((0,), 60, 1),
    ((0, 1, 2, 4, 5), 60, 3),
    ((0, 2, 4), 60, 1),          # every other minute: never consecutive
    ((0, 1, 2, 3, 10, 11), 300, 4),
])
def test_longest_run(offsets, period, expected):
    assert longest_run(minutes(*offsets, period=period), period) == expected


def test_longest_run_is_relative_to_the_period():
    two_minutes_apart = minutes(0, 2, 4, 6)
    assert longest_run(two_minutes_apart, 60) == 1
    assert longest_run(two_minutes_apart, 120) == 4


def counts_frame(series: dict[str, dict[int, float]], period: int = 60) -> pd.DataFrame:
    """Datapoints like metrics.fetch returns them: label -> {period offset: count}, sorted by id/time."""
    rows = [(T0 + timedelta(seconds=o * period), label, label, float(v))
            for label, points in series.items() for o, v in sorted(points.items())]
    return pd.DataFrame(rows, columns=["timestamp", "id", "label", "value"])


def verdict(series, period=60, **overrides):
    [finding] = judge_5xx(counts_frame(series, period), period, thresholds(**overrides), "rms-alb")
    return finding


def test_judge_5xx_no_datapoints_is_ok():
    empty = pd.DataFrame(columns=["timestamp", "id", "label", "value"])
    [finding] = judge_5xx(empty, 60, thresholds(), "rms-alb")
    assert finding.severity is OK
    assert finding.resource == "alb:rms-alb"
    assert finding.evidence["metrics"] == {}


def test_judge_5xx_below_threshold_is_ok():
    # Ten minutes of exactly the threshold (10/min) is not above it.
    finding = verdict({"HTTPCode_ELB_5XX_Count": dict.fromkeys(range(10), 10)})
    assert finding.severity is OK
    assert finding.evidence["metrics"]["HTTPCode_ELB_5XX_Count"]["total"] == 100
    assert finding.evidence["metrics"]["HTTPCode_ELB_5XX_Count"]["periods_above"] == 0


def test_judge_5xx_short_spike_is_warning():
    finding = verdict({"HTTPCode_ELB_502_Count": {0: 2, 1: 40, 2: 35, 3: 50, 4: 1}})
    assert finding.severity is WARNING
    stats = finding.evidence["metrics"]["HTTPCode_ELB_502_Count"]
    assert (stats["periods_above"], stats["longest_run"], stats["peak"]) == (3, 3, 50.0)
    assert finding.evidence["sustained_periods"] == 5
    assert "HTTPCode_ELB_502_Count" in finding.title


def test_judge_5xx_sustained_run_is_critical():
    finding = verdict({"HTTPCode_ELB_503_Count": dict.fromkeys(range(5), 11)})
    assert finding.severity is CRITICAL
    assert finding.evidence["metrics"]["HTTPCode_ELB_503_Count"]["longest_run"] == 5


@pytest.mark.parametrize("gap", ["missing datapoint", "quiet minute"])
def test_judge_5xx_a_gap_breaks_the_run(gap):
    points = {m: 30 for m in (0, 1, 2, 3, 5, 6, 7, 8)}  # 8 spiking minutes, but 4 + 4
    if gap == "quiet minute":
        points[4] = 3
    finding = verdict({"HTTPCode_Target_5XX_Count": points})
    assert finding.severity is WARNING
    stats = finding.evidence["metrics"]["HTTPCode_Target_5XX_Count"]
    assert (stats["periods_above"], stats["longest_run"]) == (8, 4)


def test_judge_5xx_worst_metric_decides():
    finding = verdict({"HTTPCode_ELB_502_Count": {0: 500},                      # one big spike
                       "HTTPCode_Target_5XX_Count": dict.fromkeys(range(6), 12)})  # sustained
    assert finding.severity is CRITICAL
    assert "HTTPCode_Target_5XX_Count" in finding.title


def test_judge_5xx_longer_period_scales_the_threshold():
    # 40 in one minute is a spike; 40 in five minutes is 8/min, below 10/min.
    assert verdict({"HTTPCode_ELB_5XX_Count": {0: 40}}, period=60).severity is WARNING
    quiet = verdict({"HTTPCode_ELB_5XX_Count": {0: 40}}, period=300)
    assert quiet.severity is OK
    assert quiet.evidence["threshold_per_period"] == 50
    # 5 sustained minutes is one 5-minute period: a single period above 50 is sustained.
    loud = verdict({"HTTPCode_ELB_5XX_Count": {0: 60}}, period=300)
    assert loud.evidence["sustained_periods"] == 1
    assert loud.severity is CRITICAL


def test_judge_5xx_threshold_overrides_change_the_verdict():
    spike = {"HTTPCode_ELB_5XX_Count": {0: 20, 1: 20, 2: 20}}
    assert verdict(spike).severity is WARNING
    assert verdict(spike, alb_5xx_per_minute=25).severity is OK
    assert verdict(spike, alb_5xx_sustained_minutes=3).severity is CRITICAL
    assert verdict(spike, alb_5xx_sustained_minutes=4).severity is WARNING


def test_judge_5xx_total_does_not_count_elb_502_twice():
    # Three minutes in which the ALB answered 12 times 502 (each minute: ELB_5XX 12, of which ELB_502 12).
    finding = verdict({"HTTPCode_ELB_5XX_Count": dict.fromkeys(range(3), 12),
                       "HTTPCode_ELB_502_Count": dict.fromkeys(range(3), 12)})
    assert finding.detail.startswith("36 5xx responses")


# =============================================================================================
# Layer 2: fetch + judge through ctx.run against moto and a local HTTP server
# =============================================================================================

@pytest.fixture(scope="module")
def moto_world():
    """One mock for the module (conftest sets fake credentials); EC2's default VPC, slow to
    build, is created once and kept."""
    with mock_aws():
        seed.manual_task_states()
        seed.network()
        try:
            yield
        finally:
            state_manager.unset_transition(model_name="ecs::task")


@pytest.fixture
def aws(moto_world):
    """A clean ECS, ELBv2 and CloudWatch for each test."""
    seed.reset("ecs", "elbv2", "cloudwatch")


def production(monkeypatch, backend=(2, 2), frontend=(2, 2)) -> None:
    """Cluster rms-production with rms-backend and rms-frontend at (desired, running)."""
    seed.create_service("rms-backend", *backend, setenv=monkeypatch.setenv)
    seed.create_service("rms-frontend", *frontend, setenv=monkeypatch.setenv)


# --- app.ecs.capacity ------------------------------------------------------------------------

def test_capacity_ok_against_moto(aws, monkeypatch, make_context):
    production(monkeypatch)
    result = make_context().run("app.ecs.capacity")
    findings = by_resource(result.findings)
    assert {r: f.severity for r, f in findings.items()} == {
        "ecs:rms-production/rms-backend": OK, "ecs:rms-production/rms-frontend": OK}
    assert all(f.runbook == RUNBOOK and f.guide_section for f in result.findings)
    assert list(result.data["running"]) == [2, 2]


def test_capacity_none_running_critical_and_partial_warning(aws, monkeypatch, make_context):
    production(monkeypatch, backend=(3, 0), frontend=(4, 1))
    findings = by_resource(make_context().run("app.ecs.capacity").findings)
    backend = findings["ecs:rms-production/rms-backend"]
    assert backend.severity is CRITICAL
    assert backend.evidence["desired"] == 3 and backend.evidence["running"] == 0
    assert backend.evidence["pending"] == 3
    assert findings["ecs:rms-production/rms-frontend"].severity is WARNING


def test_capacity_missing_service_is_critical(aws, monkeypatch, make_context):
    seed.create_service("rms-backend", 2, 2, setenv=monkeypatch.setenv)  # rms-frontend never created
    findings = by_resource(make_context().run("app.ecs.capacity").findings)
    assert findings["ecs:rms-production/rms-backend"].severity is OK
    missing = findings["ecs:rms-production/rms-frontend"]
    assert missing.severity is CRITICAL
    assert "not found" in missing.title


def test_capacity_deleted_service_is_critical(aws, monkeypatch, make_context):
    production(monkeypatch)
    seed.client("ecs").delete_service(cluster=seed.CLUSTER, service="rms-frontend", force=True)
    findings = by_resource(make_context().run("app.ecs.capacity").findings)
    assert findings["ecs:rms-production/rms-frontend"].severity is CRITICAL
    assert findings["ecs:rms-production/rms-frontend"].evidence["status"] == "MISSING"


def test_capacity_missing_cluster_is_an_error_finding(aws, make_context):
    [finding] = make_context().run("app.ecs.capacity").findings
    assert finding.severity is ERROR
    assert "ClusterNotFound" in finding.detail


# --- app.ecs.unhealthy_tasks -----------------------------------------------------------------

def test_unhealthy_tasks_ok_when_all_healthy(aws, monkeypatch, make_context):
    production(monkeypatch)
    seed.run_tasks("rms-backend", ["HEALTHY", "HEALTHY"])
    seed.run_tasks("rms-frontend", [None])  # no container health check: moto reports no healthStatus
    result = make_context().run("app.ecs.unhealthy_tasks")
    findings = by_resource(result.findings)
    assert [f.severity for f in findings.values()] == [OK, OK]
    assert findings["ecs:rms-production/rms-backend"].evidence["tasks"] == 2
    assert findings["ecs:rms-production/rms-frontend"].evidence["tasks"] == 1
    assert set(result.data["health"]) == {"HEALTHY", "UNKNOWN"}


def test_unhealthy_tasks_warning_names_the_tasks(aws, monkeypatch, make_context):
    production(monkeypatch)
    ids = seed.run_tasks("rms-backend", ["HEALTHY", "UNHEALTHY", "UNHEALTHY"])
    seed.run_tasks("rms-frontend", ["HEALTHY"])
    findings = by_resource(make_context().run("app.ecs.unhealthy_tasks").findings)
    backend = findings["ecs:rms-production/rms-backend"]
    assert backend.severity is WARNING
    assert sorted(backend.evidence["unhealthy_tasks"]) == sorted(ids[1:])
    assert backend.evidence["tasks"] == 3
    assert findings["ecs:rms-production/rms-frontend"].severity is OK


def test_unhealthy_tasks_of_another_service_are_not_counted(aws, monkeypatch, make_context):
    production(monkeypatch)
    seed.create_service("rms-worker", 2, 2, setenv=monkeypatch.setenv)
    seed.run_tasks("rms-worker", ["UNHEALTHY", "UNHEALTHY"])
    seed.run_tasks("rms-backend", ["HEALTHY"])
    seed.run_tasks("rms-frontend", ["HEALTHY"])
    result = make_context().run("app.ecs.unhealthy_tasks")
    findings = by_resource(result.findings)
    assert [f.severity for f in findings.values()] == [OK, OK]
    assert [f.evidence["tasks"] for f in findings.values()] == [1, 1]
    assert set(result.data["service"]) == {"rms-backend", "rms-frontend"}


# --- app.alb.target_health -------------------------------------------------------------------

ALB_TARGETS = {"rms-backend": ["10.0.1.10", "10.0.1.11"], "rms-frontend": ["10.0.2.10", "10.0.2.11"]}


def test_target_health_ok_against_moto(aws, make_context):
    seed.create_alb(ALB_TARGETS)
    result = make_context().run("app.alb.target_health")
    findings = by_resource(result.findings)
    assert {r: f.severity for r, f in findings.items()} == {
        "targetgroup:rms-backend": OK, "targetgroup:rms-frontend": OK}
    assert findings["targetgroup:rms-backend"].evidence["healthy"] == 2
    assert sorted(result.data["target"]) == sorted(ALB_TARGETS["rms-backend"] + ALB_TARGETS["rms-frontend"])


def test_target_health_some_unhealthy_is_warning_with_reason(aws, make_context):
    seed.create_alb(ALB_TARGETS)
    with seed.target_states({"10.0.1.10": ("unhealthy", "Target.ResponseCodeMismatch",
                                           "Health checks failed with these codes: [502]")}):
        findings = by_resource(make_context().run("app.alb.target_health").findings)
    backend = findings["targetgroup:rms-backend"]
    assert backend.severity is WARNING
    assert backend.evidence["reasons"] == ["Target.ResponseCodeMismatch"]
    assert backend.evidence["targets"] == [{
        "target": "10.0.1.10", "state": "unhealthy", "reason": "Target.ResponseCodeMismatch",
        "description": "Health checks failed with these codes: [502]"}]
    assert findings["targetgroup:rms-frontend"].severity is OK


def test_target_health_none_healthy_is_critical_with_reason(aws, make_context):
    seed.create_alb(ALB_TARGETS)
    states = {ip: ("unhealthy", "Target.Timeout", "Request timed out") for ip in ALB_TARGETS["rms-frontend"]}
    with seed.target_states(states):
        findings = by_resource(make_context().run("app.alb.target_health").findings)
    frontend = findings["targetgroup:rms-frontend"]
    assert frontend.severity is CRITICAL
    assert "Target.Timeout" in frontend.detail
    assert findings["targetgroup:rms-backend"].severity is OK


def test_target_health_empty_group_and_missing_group_are_critical(aws, make_context):
    seed.create_alb({"rms-backend": []})  # registered nothing; rms-frontend does not exist
    result = make_context().run("app.alb.target_health")
    findings = by_resource(result.findings)
    assert findings["targetgroup:rms-backend"].severity is CRITICAL
    assert "no registered targets" in findings["targetgroup:rms-backend"].detail
    assert findings["targetgroup:rms-frontend"].severity is CRITICAL
    assert "not found" in findings["targetgroup:rms-frontend"].title


# --- app.alb.5xx -----------------------------------------------------------------------------

def minute_counts(ctx: Context, values: list[float], ending_minutes_ago: int = 1) -> dict[datetime, float]:
    """Consecutive per-minute counts ending ``ending_minutes_ago`` before the window's end."""
    last = ctx.window.end - timedelta(minutes=ending_minutes_ago)
    return {last - timedelta(minutes=len(values) - 1 - i): v for i, v in enumerate(values)}


def test_5xx_none_is_ok(aws, make_context):
    seed.create_alb(ALB_TARGETS)
    [finding] = make_context().run("app.alb.5xx").findings
    assert finding.severity is OK
    assert finding.resource == "alb:rms-alb"


def test_5xx_three_spiking_minutes_is_warning(aws, make_context):
    lb, _ = seed.create_alb(ALB_TARGETS)
    ctx = make_context()
    seed.put_counts(lb, "HTTPCode_ELB_502_Count", minute_counts(ctx, [2, 30, 45, 25, 1], ending_minutes_ago=10))
    result = ctx.run("app.alb.5xx")
    [finding] = result.findings
    assert finding.severity is WARNING
    stats = finding.evidence["metrics"]["HTTPCode_ELB_502_Count"]
    assert (stats["total"], stats["peak"], stats["periods_above"], stats["longest_run"]) == (103, 45.0, 3, 3)
    assert finding.evidence["period_seconds"] == 60


def test_5xx_eight_consecutive_minutes_is_critical(aws, make_context):
    lb, _ = seed.create_alb(ALB_TARGETS)
    ctx = make_context()
    seed.put_counts(lb, "HTTPCode_ELB_503_Count", minute_counts(ctx, [60] * 8))
    seed.put_counts(lb, "HTTPCode_Target_5XX_Count", minute_counts(ctx, [3, 4]))
    [finding] = ctx.run("app.alb.5xx").findings
    assert finding.severity is CRITICAL
    assert "HTTPCode_ELB_503_Count" in finding.title
    assert finding.evidence["metrics"]["HTTPCode_ELB_503_Count"]["longest_run"] == 8
    assert finding.evidence["metrics"]["HTTPCode_Target_5XX_Count"]["periods_above"] == 0


def test_5xx_outside_the_window_or_on_another_alb_is_not_counted(aws, make_context):
    lb, _ = seed.create_alb(ALB_TARGETS)
    other, _ = seed.create_alb({"other-tg": ["10.9.0.1"]}, name="other-alb")
    ctx = make_context()
    seed.put_counts(other, "HTTPCode_ELB_5XX_Count", minute_counts(ctx, [99] * 10))
    seed.put_counts(lb, "HTTPCode_ELB_5XX_Count", minute_counts(ctx, [99] * 10, ending_minutes_ago=90))
    [finding] = ctx.run("app.alb.5xx").findings
    assert finding.severity is OK
    assert finding.evidence["metrics"] == {}


def test_5xx_missing_alb_is_an_error_finding(aws, make_context):
    [finding] = make_context().run("app.alb.5xx").findings
    assert finding.severity is ERROR
    assert finding.check == "app.alb.5xx"
    assert "DescribeLoadBalancers" in finding.detail


# --- app.health.endpoint against a local HTTP server -----------------------------------------

class _Handler(BaseHTTPRequestHandler):
    ROUTES = {"/health": (200, 0.0), "/down": (503, 0.0), "/slow": (200, 0.5), "/hang": (200, 3.0)}

    def do_GET(self):  # noqa: N802 - http.server's naming
        if self.path == "/not-http":  # something that is not an HTTP server answers on the port
            self.wfile.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
            return
        status, delay = self.ROUTES.get(self.path, (404, 0.0))
        body = b'{"status": "ok"}'
        if self.path == "/stall-body":  # headers at once, then the body never comes in time
            status, delay = 200, 3.0
        else:
            time.sleep(delay)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.flush()
        if self.path == "/stall-body":
            time.sleep(delay)
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # the /hang handler writes to a socket the client already closed


@pytest.fixture(scope="module")
def http_base():
    server = _Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def run_health(make_context, urls: dict[str, str], **overrides) -> dict:
    result = make_context(thresholds=overrides or None, health_urls=urls).run("app.health.endpoint")
    return by_resource(result.findings)


def test_health_endpoint_ok(http_base, make_context):
    url = f"{http_base}/health"
    finding = run_health(make_context, {"api": url})[url]
    assert finding.severity is OK
    assert finding.evidence["status"] == 200


def test_health_endpoint_503_is_critical(http_base, make_context):
    ok, down = f"{http_base}/health", f"{http_base}/down"
    findings = run_health(make_context, {"api": down, "frontend": ok})
    assert findings[down].severity is CRITICAL
    assert findings[down].evidence["status"] == 503
    assert findings[ok].severity is OK


def test_health_endpoint_slow_is_warning_only_above_the_threshold(http_base, make_context):
    url = f"{http_base}/slow"
    assert run_health(make_context, {"api": url})[url].severity is OK  # 0.5 s against the default 2 s
    slow = run_health(make_context, {"api": url}, health_slow_seconds=0.2)[url]
    assert slow.severity is WARNING
    assert slow.evidence["seconds"] >= 0.5


def test_health_endpoint_closed_port_is_critical_with_error(make_context):
    url = f"http://127.0.0.1:{free_port()}/health"
    finding = run_health(make_context, {"api": url})[url]
    assert finding.severity is CRITICAL
    assert finding.evidence["status"] is None
    assert "refused" in finding.evidence["error"].lower()


def test_health_endpoint_timeout_is_critical(http_base, make_context):
    url = f"{http_base}/hang"
    started = time.monotonic()
    finding = run_health(make_context, {"api": url}, health_timeout_seconds=0.5)[url]
    assert time.monotonic() - started < 2.5  # gave up at the timeout, did not wait for the 3 s answer
    assert finding.severity is CRITICAL
    assert finding.evidence["error"] == "timed out"


def test_health_endpoint_body_timeout_is_critical(http_base, make_context):
    url = f"{http_base}/stall-body"
    finding = run_health(make_context, {"api": url}, health_timeout_seconds=0.5)[url]
    assert finding.severity is CRITICAL


def test_health_endpoint_non_http_answer_is_critical_and_others_still_judged(http_base, make_context):
    bad, ok = f"{http_base}/not-http", f"{http_base}/health"
    findings = run_health(make_context, {"api": bad, "frontend": ok})
    assert findings[bad].severity is CRITICAL
    assert findings[ok].severity is OK


def test_health_endpoint_none_configured_is_info(make_context):
    result = make_context().run("app.health.endpoint")
    assert [f.severity for f in result.findings] == [INFO]


# =============================================================================================
# Layer 3: errors become findings
# =============================================================================================

def assert_denied_describe_services(result) -> None:
    assert len(result.findings) == 1
    finding = result.findings[0]
    assert finding.severity is ERROR
    assert finding.check == "app.ecs.capacity" and finding.runbook == RUNBOOK
    assert "AccessDeniedException" in finding.detail
    assert "ecs:DescribeServices" in finding.detail  # the IAM action to grant, with its service


def test_access_denied_via_stubber_names_the_iam_action(aws, monkeypatch, make_context):
    from botocore.stub import Stubber

    production(monkeypatch)
    ctx = make_context()
    ecs = ctx.client("ecs")
    ecs.list_clusters()  # an earlier call on this thread: what the hook remembers must not be stale
    with Stubber(ecs) as stub:
        stub.add_client_error("describe_services", service_error_code="AccessDeniedException",
                              service_message="User is not authorized to perform this operation",
                              http_status_code=403)
        result = ctx.run("app.ecs.capacity")
    assert_denied_describe_services(result)


class _AccessDenied(JsonRESTError):
    code = 403


def test_access_denied_from_aws_names_the_iam_action(aws, monkeypatch, make_context):
    """The same denial answered by (moto) AWS over HTTP: the whole botocore pipeline runs."""
    from moto.ecs.models import EC2ContainerServiceBackend

    def deny(self, *args, **kwargs):
        raise _AccessDenied("AccessDeniedException", "User is not authorized to perform this operation")

    production(monkeypatch)
    ctx = make_context()
    ctx.client("ecs").list_clusters()  # an earlier call on this thread
    monkeypatch.setattr(EC2ContainerServiceBackend, "describe_services", deny)
    started = time.monotonic()
    result = ctx.run("app.ecs.capacity")
    assert time.monotonic() - started < 5  # AccessDenied is not retried
    assert_denied_describe_services(result)


@pytest.mark.parametrize("check_id", ["app.ecs.capacity", "app.ecs.unhealthy_tasks",
                                      "app.alb.target_health", "app.alb.5xx"])
def test_unreachable_endpoint_gives_error_findings_quickly(make_context, check_id):
    port = free_port()
    ctx = make_context(aws={"endpoint_url": f"http://127.0.0.1:{port}", "local_test_credentials": True})
    started = time.monotonic()
    result = ctx.run(check_id)
    elapsed = time.monotonic() - started
    assert elapsed < 30, f"retries are not bounded: {elapsed:.1f} s"
    assert [f.severity for f in result.findings] == [ERROR]
    assert "unreachable" in result.findings[0].detail
    assert str(port) in result.findings[0].detail


def test_check_that_raises_never_escapes_ctx_run(make_context):
    ctx = make_context(aws={"profile": "no-such-profile-rmsops"})
    result = ctx.run("app.ecs.capacity")
    [finding] = result.findings
    assert finding.severity is ERROR
    assert "no-such-profile-rmsops" in finding.detail


def test_the_5xx_figure_marks_deployments_taken_when_the_check_ran(aws, make_context, monkeypatch):
    """The deployments are fetched with the check (registry ``marks=``); drawing the figure calls no AWS."""
    from rmsops.core.registry import get
    from rmsops.render import plots

    seed.create_alb(ALB_TARGETS)
    seed.create_service("rms-backend", 2, 2, setenv=monkeypatch.setenv)  # moto: a deployment created now
    ctx = make_context()
    result = ctx.run("app.alb.5xx")
    assert [label for _, label in result.markers] == ["deploy rms-backend"]

    def no_aws(*_, **__):
        raise AssertionError("a figure called AWS")

    monkeypatch.setattr(ctx, "client", no_aws)
    monkeypatch.setattr(ctx, "memo", no_aws)  # not even a cached fetch
    figure = get("app.alb.5xx").plot(result, ctx)
    assert "deploy rms-backend" in [t.get_text() for t in figure.axes[0].texts]
    assert plots.svg(figure).startswith(b"<?xml")
