"""Runbook 10 (monitoring overview): error rate, throughput, ECS, RDS, alarms; the demo and its notebook.

Layer 1 feeds the judges small frames. Layer 2 seeds moto (CloudWatch metrics and alarms, RDS)
and runs the checks through ``ctx.run``; the ALB is described through a ``Stubber`` on the ELBv2
client (its ARN is all the checks need, and moto's ELBv2 would load EC2 for it). metrics.latency is
tested in test_checks_latency.py (it shares api.latency.percentiles' fetch and judge).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import nbformat
import pandas as pd
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from rmsops.checks import overview as O
from rmsops.core.window import Window
from tests.judging import CRITICAL, INFO, OK, WARNING, thresholds

T0 = datetime(2026, 11, 28, 19, 0, tzinfo=UTC)
WINDOW = Window(T0, T0 + timedelta(hours=1))
LB_ARN = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/rms-alb/50dc6c495c0c9188"
LB_DIM = "app/rms-alb/50dc6c495c0c9188"
GIB = 1024 ** 3


def long(series: dict[str, list[float]], start: datetime = T0, step: int = 60) -> pd.DataFrame:
    """A metrics.fetch-shaped frame: one row per (minute, label)."""
    rows = [(pd.Timestamp(start + timedelta(seconds=step * i)), label, label, v)
            for label, values in series.items() for i, v in enumerate(values) if v is not None]
    return pd.DataFrame(rows, columns=["timestamp", "id", "label", "value"])


# =============================================================================================
# Layer 1: judges
# =============================================================================================

def error_rate(requests, target5=None, elb5=None, target4=None, **overrides):
    n = len(requests)
    frame = long({"RequestCount": requests, "HTTPCode_Target_5XX_Count": target5 or [None] * n,
                  "HTTPCode_ELB_5XX_Count": elb5 or [None] * n, "HTTPCode_Target_4XX_Count": target4 or [None] * n})
    rates = O.rates_frame(frame)
    return O.judge_error_rate(rates, 60, thresholds(**overrides), "rms-alb"), rates


def test_error_rate_low_is_ok_with_4xx_for_context():
    [finding], rates = error_rate([1000] * 10, target5=[1] + [None] * 9, target4=[20] * 10)
    assert finding.severity is OK
    assert finding.evidence["5xx"] == 1 and finding.evidence["4xx"] == 200
    assert finding.evidence["4xx_pct"] == 2.0
    assert rates["requests"].sum() == 10_000


def test_error_rate_worst_five_minutes_decides_warning_and_critical():
    # 3% for five minutes within an otherwise clean hour: the window rate is low, the stretch is not
    requests = [1000] * 60
    [warning], _ = error_rate(requests, target5=[None] * 50 + [30] * 5 + [None] * 5)
    assert warning.severity is WARNING
    assert warning.evidence["5xx_pct"] == pytest.approx(0.25)
    assert warning.evidence["worst_rolling_5xx_pct"] == pytest.approx(3.0)
    [critical], _ = error_rate(requests, target5=[None] * 55 + [40] * 5, elb5=[None] * 55 + [30] * 5)
    assert critical.severity is CRITICAL and "over 5%" in critical.title


def test_error_rate_counts_elb_errors_beyond_request_count_without_exceeding_100():
    [finding], rates = error_rate([0, 0, 0, 0, 0], elb5=[50] * 5)  # no target chosen: not in RequestCount
    assert finding.severity is CRITICAL and rates["5xx_pct"].max() == 100.0


def test_error_rate_without_requests_is_info():
    [finding], _ = error_rate([])
    assert finding.severity is INFO


def test_error_rate_thresholds_are_parameters():
    [strict], _ = error_rate([1000] * 5, target5=[6] * 5, error_rate_warning_pct=0.5)
    assert strict.severity is WARNING
    [relaxed], _ = error_rate([1000] * 5, target5=[60] * 5, error_rate_critical_pct=10)
    assert relaxed.severity is WARNING


def throughput(now: list[float], before: list[float], **overrides):
    previous = WINDOW.previous()
    frame = pd.concat([long({"RequestCount": before}, previous.start), long({"RequestCount": now}, WINDOW.start)])
    series = O.throughput_frame(frame, WINDOW)
    return O.judge_throughput(series, WINDOW, thresholds(**overrides), "rms-alb"), series


def test_throughput_drop_over_half_is_warning():
    [finding], series = throughput([400] * 60, [1000] * 60)
    assert finding.severity is WARNING and finding.evidence["drop_pct"] == 60.0
    assert finding.evidence["per_minute"] == 400 and finding.evidence["previous_per_minute"] == 1000
    # the previous window is drawn on this window's time axis
    assert series["timestamp"].min() == pd.Timestamp(WINDOW.start)


def test_throughput_steady_rising_or_at_the_limit_is_ok():
    assert throughput([1000] * 60, [1050] * 60)[0][0].severity is OK
    assert throughput([3000] * 60, [1000] * 60)[0][0].severity is OK
    assert throughput([500] * 60, [1000] * 60)[0][0].severity is OK  # exactly half: not more than half
    assert throughput([700] * 60, [1000] * 60, throughput_drop_pct=20)[0][0].severity is WARNING


def test_throughput_without_baseline_is_info():
    [finding], _ = throughput([1000] * 60, [])
    assert finding.severity is INFO and "no baseline" in finding.title
    [silent], _ = throughput([], [])
    assert silent.severity is INFO
    [stopped], _ = throughput([], [1000] * 60)
    assert stopped.severity is WARNING and stopped.evidence["drop_pct"] == 100.0


def ecs_frame(**series: dict[str, list[float]]) -> pd.DataFrame:
    rows = []
    for service, metrics_ in series.items():
        for key, values in metrics_.items():
            metric, stat = key.split("_")
            rows += [(pd.Timestamp(T0 + timedelta(minutes=i)), service, metric, stat, v, f"{service} {metric} {stat}")
                     for i, v in enumerate(values)]
    return pd.DataFrame(rows, columns=["timestamp", "service", "metric", "stat", "value", "label"])


def test_judge_ecs_memory_as_memory_check_and_cpu_by_average():
    df = ecs_frame(a={"MemoryUtilization_Maximum": [60, 92], "MemoryUtilization_Average": [55, 80],
                      "CPUUtilization_Average": [20, 30], "CPUUtilization_Maximum": [99, 100]},
                   b={"MemoryUtilization_Maximum": [70, 100.0], "CPUUtilization_Average": [95, 40]},
                   c={"MemoryUtilization_Maximum": [40, 45], "CPUUtilization_Average": [20, 25]})
    findings = {f.resource: f for f in O.judge_ecs(df, ("a", "b", "c", "d"), "rms", thresholds())}
    assert findings["ecs:rms/a"].severity is WARNING and "memory 92%" in findings["ecs:rms/a"].title
    assert "CPU" not in findings["ecs:rms/a"].title  # a CPU maximum of 100% alone is a spike, not load
    assert findings["ecs:rms/b"].severity is CRITICAL and "CPU 95%" in findings["ecs:rms/b"].title
    assert "raise-task-memory --service b" in findings["ecs:rms/b"].resolution
    assert "scale-service --service b" in findings["ecs:rms/b"].resolution
    assert findings["ecs:rms/c"].severity is OK
    assert findings["ecs:rms/d"].severity is INFO  # no datapoints


def test_judge_ecs_cpu_alone_is_warning_and_thresholds_move():
    df = ecs_frame(a={"MemoryUtilization_Maximum": [50], "CPUUtilization_Average": [91]})
    [finding] = O.judge_ecs(df, ("a",), "rms", thresholds())
    assert finding.severity is WARNING and finding.evidence["cpu_avg_peak_pct"] == 91
    [relaxed] = O.judge_ecs(df, ("a",), "rms", thresholds(cpu_warning_pct=95))
    assert relaxed.severity is OK


RDS_INFO = {"found": True, "allocated_gib": 100, "instance_class": "db.t3.medium", "status": "available"}


def rds_frame(cpu=(20, 30), free_gib=(60, 59), conns=(10, 12)) -> pd.DataFrame:
    return long({"CPUUtilization": list(cpu), "FreeStorageSpace": [g * GIB for g in free_gib],
                 "DatabaseConnections": list(conns)})


def test_judge_rds_ok_cpu_and_storage_warnings():
    [ok] = O.judge_rds(rds_frame(), RDS_INFO, "db", thresholds())
    assert ok.severity is OK and ok.evidence["free_storage_pct"] == 59.0 and ok.evidence["connections_peak"] == 12
    [cpu] = O.judge_rds(rds_frame(cpu=(50, 95)), RDS_INFO, "db", thresholds())
    assert cpu.severity is WARNING and "CPU 95%" in cpu.title
    [disk] = O.judge_rds(rds_frame(free_gib=(12, 9.5)), RDS_INFO, "db", thresholds())
    assert disk.severity is WARNING and "free storage 9.5%" in disk.title and "autoscaling" in disk.resolution
    [both] = O.judge_rds(rds_frame(cpu=(91,), free_gib=(5,)), RDS_INFO, "db", thresholds())
    assert "CPU" in both.title and "free storage" in both.title


def test_judge_rds_missing_instance_or_metrics():
    [missing] = O.judge_rds(rds_frame(), {"found": False}, "db", thresholds())
    assert missing.severity is CRITICAL
    [silent] = O.judge_rds(long({}), RDS_INFO, "db", thresholds())
    assert silent.severity is INFO


def test_judge_alarms_each_alarm_is_a_warning():
    assert [f.severity for f in O.judge_alarms(pd.DataFrame(columns=O.ALARM_COLUMNS))] == [OK]
    df = pd.DataFrame([("a", "metric", "CPUUtilization", "AWS/RDS", T0, "Threshold Crossed: 3 datapoints", ""),
                       ("b", "composite", "", "", T0, "ALARM rule true", "")], columns=O.ALARM_COLUMNS)
    findings = O.judge_alarms(df)
    assert [(f.resource, f.severity) for f in findings] == [("alarm:a", WARNING), ("alarm:b", WARNING)]
    assert "AWS/RDS CPUUtilization" in findings[0].detail and "Threshold Crossed" in findings[0].detail


# =============================================================================================
# Layer 2: fetches against moto
# =============================================================================================

@pytest.fixture
def moto():
    with mock_aws():
        yield


def stub_alb(ctx) -> Stubber:
    stub = Stubber(ctx.client("elbv2"))
    stub.add_response("describe_load_balancers", {"LoadBalancers": [
        {"LoadBalancerArn": LB_ARN, "LoadBalancerName": "rms-alb"}]}, {"Names": ["rms-alb"]})
    stub.activate()
    return stub


def put(namespace: str, name: str, dims: dict[str, str], points: dict[datetime, float], **extra) -> None:
    import boto3

    cw = boto3.client("cloudwatch", region_name="us-east-1")
    data = [{"MetricName": name, "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()],
             "Timestamp": at, "Value": value, **extra} for at, value in points.items()]
    for offset in range(0, len(data), 500):
        cw.put_metric_data(Namespace=namespace, MetricData=data[offset:offset + 500])


def minutes_back(count: int, start_ago: int = 0) -> list[datetime]:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    return [now - timedelta(minutes=start_ago + m) for m in range(1, count + 1)]


def test_error_rate_and_throughput_share_one_get_metric_data_call(moto, make_context):
    alb = {"LoadBalancer": LB_DIM}
    put("AWS/ApplicationELB", "RequestCount", alb, {t: 1000.0 for t in minutes_back(50)})
    put("AWS/ApplicationELB", "RequestCount", alb, {t: 400.0 for t in minutes_back(50, start_ago=60)})
    put("AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", alb, {t: 80.0 for t in minutes_back(5)})
    put("AWS/ApplicationELB", "HTTPCode_ELB_4XX_Count", alb, {t: 3.0 for t in minutes_back(10)})
    ctx = make_context()
    calls = []
    ctx.client("cloudwatch").meta.events.register("provide-client-params.cloudwatch.GetMetricData",
                                                  lambda params, **_: calls.append(params))
    stub = stub_alb(ctx)
    rate = ctx.run("metrics.error_rate")
    volume = ctx.run("metrics.throughput")
    stub.deactivate()
    assert len(calls) == 1 and len(calls[0]["MetricDataQueries"]) == len(O.ALB_COUNTS)
    assert calls[0]["StartTime"] == ctx.window.previous().start
    [rate_finding] = rate.findings
    assert rate_finding.severity is CRITICAL and rate_finding.evidence["5xx"] == 400
    assert rate_finding.evidence["4xx"] == 30 and rate_finding.evidence["requests"] == 50_000
    [volume_finding] = volume.findings
    assert volume_finding.severity is OK  # 1000/min now against 400/min before: up, not down
    assert volume_finding.evidence["previous_requests"] == 20_000


def test_throughput_drop_against_moto(moto, make_context):
    alb = {"LoadBalancer": LB_DIM}
    put("AWS/ApplicationELB", "RequestCount", alb, {t: 300.0 for t in minutes_back(55)})
    put("AWS/ApplicationELB", "RequestCount", alb, {t: 1000.0 for t in minutes_back(55, start_ago=60)})
    ctx = make_context()
    stub = stub_alb(ctx)
    [finding] = ctx.run("metrics.throughput").findings
    stub.deactivate()
    assert finding.severity is WARNING and finding.evidence["drop_pct"] == 70.0


def test_ecs_utilization_against_moto(moto, make_context):
    import boto3

    cw = boto3.client("cloudwatch", region_name="us-east-1")
    for service, (mem_avg, mem_max, cpu) in {"rms-backend": (80.0, 93.0, 40.0),
                                             "rms-frontend": (30.0, 35.0, 5.0)}.items():
        dims = [{"Name": "ClusterName", "Value": "rms-production"}, {"Name": "ServiceName", "Value": service}]
        # ECS publishes statistic sets: two tasks per minute, Average and Maximum from one datum
        cw.put_metric_data(Namespace="AWS/ECS", MetricData=[
            {"MetricName": metric, "Timestamp": at, "Unit": "Percent", "Dimensions": dims,
             "StatisticValues": {"SampleCount": 2, "Sum": 2 * avg, "Minimum": 2 * avg - peak, "Maximum": peak}}
            for at in minutes_back(30)
            for metric, avg, peak in (("MemoryUtilization", mem_avg, mem_max), ("CPUUtilization", cpu, cpu + 5))])
    result = make_context().run("metrics.ecs.utilization")
    findings = {f.resource: f for f in result.findings}
    backend = findings["ecs:rms-production/rms-backend"]
    assert backend.severity is WARNING and backend.evidence["memory_max_pct"] == 93.0
    assert backend.evidence["memory_avg_peak_pct"] == 80.0 and backend.evidence["cpu_avg_peak_pct"] == 40.0
    assert findings["ecs:rms-production/rms-frontend"].severity is OK
    assert set(result.data["stat"]) == {"Average", "Maximum"}


def test_rds_against_moto(moto, make_context):
    dims = {"DBInstanceIdentifier": "rms-production-db"}
    stamps = minutes_back(20)
    put("AWS/RDS", "CPUUtilization", dims, {t: 35.0 for t in stamps}, Unit="Percent")
    put("AWS/RDS", "FreeStorageSpace", dims, {t: 8.0 * GIB for t in stamps}, Unit="Bytes")
    put("AWS/RDS", "DatabaseConnections", dims, {t: 17.0 for t in stamps}, Unit="Count")
    ctx = make_context()
    # the instance's allocation through a Stubber: moto's RDS would load EC2 (seconds) for one number
    with Stubber(ctx.client("rds")) as rds:
        rds.add_response("describe_db_instances", {"DBInstances": [
            {"DBInstanceIdentifier": "rms-production-db", "AllocatedStorage": 100,
             "DBInstanceClass": "db.t3.medium", "DBInstanceStatus": "available"}]},
            {"DBInstanceIdentifier": "rms-production-db"})
        [finding] = ctx.run("metrics.rds").findings
    missing = make_context(database={"instance": "nope"})
    with Stubber(missing.client("rds")) as rds:
        rds.add_client_error("describe_db_instances", "DBInstanceNotFound", "DBInstance nope not found.")
        [gone] = missing.run("metrics.rds").findings
    assert finding.severity is WARNING and finding.evidence["free_storage_pct"] == 8.0
    assert finding.evidence["allocated_gib"] == 100 and finding.evidence["connections_peak"] == 17
    assert gone.severity is CRITICAL and "not found" in gone.title


def test_alarms_against_moto(moto, make_context):
    import boto3

    cw = boto3.client("cloudwatch", region_name="us-east-1")
    for name in ("rms-5xx", "rms-cpu", "rms-quiet"):
        cw.put_metric_alarm(AlarmName=name, Namespace="AWS/ApplicationELB", MetricName="HTTPCode_ELB_5XX_Count",
                            Statistic="Sum", Period=60, EvaluationPeriods=1, Threshold=10,
                            ComparisonOperator="GreaterThanThreshold")
    assert [f.severity for f in make_context().run("metrics.alarms").findings] == [OK]  # moto: all OK
    for name in ("rms-5xx", "rms-cpu"):
        cw.set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason=f"Threshold Crossed ({name})")
    result = make_context().run("metrics.alarms")
    assert {f.resource: f.severity for f in result.findings} == {"alarm:rms-5xx": WARNING, "alarm:rms-cpu": WARNING}
    assert set(result.data["reason"]) == {"Threshold Crossed (rms-5xx)", "Threshold Crossed (rms-cpu)"}


def test_overview_plots_render(moto, make_context, monkeypatch):
    from rmsops.core.registry import CheckResult, get
    from rmsops.render import plots

    ctx = make_context()
    stamps = [ctx.window.start + timedelta(minutes=m) for m in range(3)]
    rates = O.rates_frame(long({"RequestCount": [100, 100, 100], "HTTPCode_ELB_5XX_Count": [0, 9, 2]}, stamps[0]))
    cases = {
        "metrics.error_rate": CheckResult(O.judge_error_rate(rates, 60, ctx.thresholds, "a"), rates),
        "metrics.throughput": CheckResult([], O.throughput_frame(long({"RequestCount": [5, 6]}, stamps[0]),
                                                                 ctx.window)),
        "metrics.ecs.utilization": CheckResult([], ecs_frame(a={"MemoryUtilization_Maximum": [50, 60],
                                                                "CPUUtilization_Average": [10, 20]})),
        "metrics.rds": CheckResult(O.judge_rds(rds_frame(), RDS_INFO, "db", ctx.thresholds), rds_frame()),
    }
    for cid, result in cases.items():
        assert plots.svg(get(cid).plot(result, ctx)).startswith(b"<?xml"), cid


# =============================================================================================
# Layer 4: the served demo and the notebook
# =============================================================================================

def demo_findings(scenario: str) -> dict[str, list]:
    from rmsops.core.context import Context
    from tests.demo_server import served

    ctx = Context.open(served(scenario).env_file)
    try:
        return {r.check: r.findings for r in ctx.run_all("10-monitoring-overview")}
    finally:
        ctx.close()


def test_demo_incident_overview():
    found = demo_findings("incident")
    severities = {check: sorted(f.severity.value for f in findings) for check, findings in found.items()}
    assert severities["metrics.latency"] == ["critical"]
    assert severities["metrics.error_rate"] == ["critical"]
    assert severities["metrics.throughput"] == ["ok"]  # the previous window is the baseline
    assert severities["metrics.ecs.utilization"] == ["ok", "ok"]
    assert severities["metrics.rds"] == ["ok"]
    alarms = {f.resource for f in found["metrics.alarms"] if f.severity is WARNING}
    assert {"alarm:rms-production-alb-5xx", "alarm:rms-production-api-latency-p99"} <= alarms


def test_demo_healthy_overview_has_nothing_above_info():
    found = demo_findings("healthy")
    assert {f.severity for findings in found.values() for f in findings} <= {OK, INFO}
    assert found["metrics.throughput"][0].evidence["previous_requests"] > 0
    assert all(f.evidence["cpu_avg_peak_pct"] is not None for f in found["metrics.ecs.utilization"])


def test_notebook_runs_against_the_demo(tmp_path):
    from rmsops.core import config, runbooks
    from rmsops.core.window import resolve
    from rmsops.execution.runner import collect_findings, run_runbook
    from tests.demo_server import served

    runbook = runbooks.find("10")
    outcome = run_runbook(runbook, config.load(served("incident").env_file), resolve("1h"), tmp_path)
    assert outcome.status == "done", outcome.error
    findings = collect_findings(nbformat.read(outcome.notebook, as_version=4))
    assert {f.check for f in findings} == set(runbook.checks)
    assert {f.severity for f in findings} >= {CRITICAL, WARNING}
    assert outcome.html is not None and outcome.html.read_text().count("data:image/svg+xml;base64") >= 5
