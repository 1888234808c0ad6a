"""AWS's per-call maxima and paging, everywhere rmsops calls AWS.

The unit tests use botocore's ``Stubber`` on the context's own clients: each expected request is
checked against the API model, and a request the test did not expect fails, so the number and the
size of the calls are what is asserted (23 services: DescribeServices of 10, 10 and 3).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from botocore.stub import Stubber

from rmsops.core.findings import Finding, Severity
from rmsops.core.window import Window
from rmsops.sources import alarms, ecs, ecs_tasks, limits, logquery, metrics
from rmsops.sources.alb import target_groups

CLUSTER = "rms-production"
ACCOUNT = "123456789012"
T0 = datetime(2026, 11, 28, 19, 0, tzinfo=UTC)
WINDOW = Window(T0, T0 + timedelta(hours=1))


def task_arn(n: int) -> str:
    return f"arn:aws:ecs:us-east-1:{ACCOUNT}:task/{CLUSTER}/{n:032x}"


def task(n: int, service: str) -> dict:
    return {"taskArn": task_arn(n), "group": f"service:{service}", "lastStatus": "RUNNING"}


@pytest.fixture
def no_sleep(monkeypatch):
    slept: list[float] = []
    monkeypatch.setattr(logquery.time, "sleep", slept.append)
    return slept


def test_chunks_keep_order_and_respect_the_size():
    assert [len(c) for c in limits.chunks(list(range(250)), 100)] == [100, 100, 50]
    assert list(limits.chunks([], 10)) == []
    assert [x for c in limits.chunks("abcdefg", 3) for x in c] == list("abcdefg")
    with pytest.raises(ValueError):
        list(limits.chunks([1], 0))


def test_describe_services_asks_for_10_services_a_call(make_context):
    names = [f"svc-{n:02d}" for n in range(23)]
    ctx = make_context(ecs={"services": names})
    with Stubber(ctx.client("ecs")) as stub:
        for batch in (names[:10], names[10:20], names[20:]):
            stub.add_response("describe_services", {"services": [{"serviceName": n} for n in batch], "failures": []},
                              {"cluster": CLUSTER, "services": batch})
        answer = ecs.describe_services(ctx)
        stub.assert_no_pending_responses()
    assert [s["serviceName"] for s in answer["services"]] == names


def test_tasks_of_many_services_are_listed_cluster_wide_and_described_100_a_call(make_context):
    """12 services, 250 running tasks: 3 ListTasks pages and DescribeTasks of 100, 100 and 50, not 24+ calls.
    Tasks of services that are not configured are left out, as the per-service listing would."""
    services = [f"svc-{n:02d}" for n in range(12)]
    ctx = make_context(ecs={"services": services})
    owners = {n: (services[n % 12] if n % 25 else "someone-else") for n in range(250)}
    arns = [task_arn(n) for n in range(250)]
    with Stubber(ctx.client("ecs")) as stub:
        for page, first in enumerate((0, 100, 200)):
            token = {"nextToken": f"t{page}"} if first < 200 else {}
            request = {"cluster": CLUSTER, "desiredStatus": "RUNNING", "maxResults": 100,
                       **({"nextToken": f"t{page - 1}"} if page else {})}
            stub.add_response("list_tasks", {"taskArns": arns[first:first + 100], **token}, request)
        for first in (0, 100, 200):
            numbers = range(first, min(first + 100, 250))
            stub.add_response("describe_tasks", {"tasks": [task(n, owners[n]) for n in numbers]},
                              {"cluster": CLUSTER, "tasks": [task_arn(n) for n in numbers]})
        found = ecs_tasks.service_tasks(ctx, "RUNNING")
        stub.assert_no_pending_responses()
    assert list(found) == services
    for service in services:
        assert [t["taskArn"] for t in found[service]] == [task_arn(n) for n in range(250) if owners[n] == service]


def test_a_shared_cluster_with_more_task_pages_than_services_is_listed_per_service(make_context):
    """Two services in a cluster of 300+ tasks: after 2 pages the cluster-wide listing gives way (it
    would cost more than asking per service); a service ECS does not know has no tasks."""
    ctx = make_context(ecs={"services": ["rms-backend", "rms-gone"]})
    with Stubber(ctx.client("ecs")) as stub:
        stub.add_response("list_tasks", {"taskArns": [task_arn(n) for n in range(100)], "nextToken": "a"},
                          {"cluster": CLUSTER, "desiredStatus": "STOPPED", "maxResults": 100})
        stub.add_response("list_tasks", {"taskArns": [task_arn(n) for n in range(100, 200)], "nextToken": "b"},
                          {"cluster": CLUSTER, "desiredStatus": "STOPPED", "maxResults": 100, "nextToken": "a"})
        stub.add_response("list_tasks", {"taskArns": [task_arn(7)]},
                          {"cluster": CLUSTER, "serviceName": "rms-backend", "desiredStatus": "STOPPED"})
        stub.add_response("describe_tasks", {"tasks": [task(7, "rms-backend")]},
                          {"cluster": CLUSTER, "tasks": [task_arn(7)]})
        stub.add_client_error("list_tasks", "ServiceNotFoundException", "Service not found.",
                              expected_params={"cluster": CLUSTER, "serviceName": "rms-gone",
                                               "desiredStatus": "STOPPED"})
        found = ecs_tasks.service_tasks(ctx, "STOPPED")
        stub.assert_no_pending_responses()
    assert found == {"rms-backend": [task(7, "rms-backend")]}


def test_one_service_is_listed_by_its_name(make_context):
    ctx = make_context(ecs={"services": ["rms-backend"]})
    with Stubber(ctx.client("ecs")) as stub:
        stub.add_response("list_tasks", {"taskArns": []},
                          {"cluster": CLUSTER, "serviceName": "rms-backend", "desiredStatus": "RUNNING"})
        assert ecs_tasks.service_tasks(ctx, "RUNNING") == {"rms-backend": []}
        stub.assert_no_pending_responses()


def test_metric_queries_go_500_a_call_and_every_page_is_read(make_context):
    ctx = make_context()
    queries = [metrics.MetricQuery(f"q{n}", "AWS/ECS", "CPUUtilization", (("ServiceName", f"s{n}"),), "Average")
               for n in range(1200)]
    stamp = T0 + timedelta(minutes=5)
    with Stubber(ctx.client("cloudwatch")) as stub:
        for first, size in ((0, 500), (500, 500), (1000, 200)):
            batch = [q.to_api(60) for q in queries[first:first + size]]
            request = {"MetricDataQueries": batch, "StartTime": WINDOW.start, "EndTime": WINDOW.end,
                       "ScanBy": "TimestampAscending"}
            # each batch answers in two pages: the first query's values continue on the second
            stub.add_response("get_metric_data", {"MetricDataResults": [
                {"Id": f"q{first}", "Timestamps": [stamp], "Values": [1.0]}], "NextToken": "more"}, request)
            stub.add_response("get_metric_data", {"MetricDataResults": [
                {"Id": f"q{first}", "Timestamps": [stamp + timedelta(minutes=1)], "Values": [2.0]}]},
                {**request, "NextToken": "more"})
        frame = metrics.fetch(ctx, queries, period=60, window=WINDOW)
        stub.assert_no_pending_responses()
    assert sorted(set(frame["id"])) == ["q0", "q1000", "q500"]
    assert frame.groupby("id")["value"].sum().tolist() == [3.0, 3.0, 3.0]


def test_alarm_names_go_100_a_call(make_context):
    ctx = make_context(alarms={"names": [f"a{n:03d}" for n in range(230)]})
    names = list(ctx.settings.alarm_names)
    cloudwatch = ctx.client("cloudwatch")
    with Stubber(cloudwatch) as stub:
        for batch in (names[:100], names[100:200], names[200:]):
            stub.add_response("describe_alarms", {"MetricAlarms": [], "CompositeAlarms": []},
                              {"StateValue": "ALARM", "AlarmTypes": ["MetricAlarm", "CompositeAlarm"],
                               "AlarmNames": batch})
        assert alarms.firing(cloudwatch, ctx.settings) == []
        stub.assert_no_pending_responses()


def _group(name: str) -> dict:
    return {"TargetGroupName": name, "TargetGroupArn": f"arn:aws:elasticloadbalancing:us-east-1:{ACCOUNT}:"
                                                       f"targetgroup/{name}/0123456789abcdef"}


def test_target_groups_are_described_20_names_a_call_and_a_missing_one_is_told_apart(make_context):
    names = [f"tg-{n:02d}" for n in range(23)]
    ctx = make_context()
    elb = ctx.client("elbv2")
    with Stubber(elb) as stub:
        stub.add_response("describe_target_groups", {"TargetGroups": [_group(n) for n in names[:20]]},
                          {"Names": names[:20]})
        stub.add_client_error("describe_target_groups", "TargetGroupNotFound", "One or more target groups not found",
                              expected_params={"Names": names[20:]})
        for name in names[20:]:
            if name == "tg-21":
                stub.add_client_error("describe_target_groups", "TargetGroupNotFound", "not found",
                                      expected_params={"Names": [name]})
            else:
                stub.add_response("describe_target_groups", {"TargetGroups": [_group(name)]}, {"Names": [name]})
        found = target_groups(elb, names)
        stub.assert_no_pending_responses()
    assert sorted(found) == [n for n in names if n != "tg-21"]


def test_insights_waits_for_a_query_slot_when_the_account_runs_too_many(make_context, no_sleep):
    ctx = make_context()
    with Stubber(ctx.client("logs")) as stub:
        for _ in range(2):
            stub.add_client_error("start_query", "LimitExceededException", "Too many concurrent queries.")
        stub.add_response("start_query", {"queryId": "q-1"})
        stub.add_response("get_query_results", {"status": "Complete", "results": []}, {"queryId": "q-1"})
        frame = logquery.insights(ctx, ["/ecs/rms-backend"], "fields @message", WINDOW)
        stub.assert_no_pending_responses()
    assert frame.empty and no_sleep[:2] == [logquery.SLOT_FIRST_WAIT, 2 * logquery.SLOT_FIRST_WAIT]


def test_insights_says_so_when_no_query_slot_frees_in_time(make_context, no_sleep):
    ctx = make_context()
    with Stubber(ctx.client("logs")) as stub:
        stub.add_client_error("start_query", "LimitExceededException", "Too many concurrent queries.")
        with pytest.raises(RuntimeError, match="concurrency quota allows"):
            logquery.insights(ctx, ["/ecs/rms-backend"], "fields @message", WINDOW, timeout=0.5)


def test_insights_refuses_more_log_groups_than_one_query_takes(make_context):
    with pytest.raises(ValueError, match="at most 50 log groups"):
        logquery.insights(make_context(), [f"/ecs/g{n}" for n in range(51)], "fields @message", WINDOW)


def test_capped_log_rows_are_said_on_the_findings_they_judge():
    judged = [Finding("logs.status_codes", Severity.OK, "logs:x", "fine", "12 requests.", {"requests": 12}),
              Finding("logs.status_codes", Severity.ERROR, "logs:y", "could not run")]
    assert logquery.mark_truncated(judged, False) == judged
    marked = logquery.mark_truncated(judged, True)
    assert marked[0].evidence == {"requests": 12, "truncated": True}
    assert marked[0].detail.startswith("12 requests. The log query's results were capped")
    assert marked[1] == judged[1]


# --- the strict emulator: AWS's maxima and pages of two (rmsops.demo.strict_limits) ---------------

def test_the_strict_emulator_refuses_what_aws_refuses_and_pages_by_two():
    import boto3
    from moto import mock_aws

    from rmsops.demo import strict_limits

    with mock_aws():
        ecs, iam, cw = (boto3.client(s, region_name="us-east-1") for s in ("ecs", "iam", "cloudwatch"))
        ecs.create_cluster(clusterName=CLUSTER)
        for _ in range(5):
            ecs.register_task_definition(family="rms-api", containerDefinitions=[
                {"name": "api", "image": "nginx", "memory": 128}])
        for n in range(5):
            iam.create_user(UserName=f"user-{n}")
        undo = strict_limits.install()
        try:
            with pytest.raises(ecs.exceptions.InvalidParameterException, match="at most 10 items"):
                ecs.describe_services(cluster=CLUSTER, services=[f"s{n}" for n in range(11)])
            with pytest.raises(cw.exceptions.InvalidParameterValueException, match="greater than 500"):
                cw.get_metric_data(StartTime=T0, EndTime=T0 + timedelta(hours=1), MetricDataQueries=[
                    {"Id": f"q{n}", "MetricStat": {"Metric": {"Namespace": "AWS/ECS", "MetricName": "CPUUtilization"},
                                                   "Period": 60, "Stat": "Average"}} for n in range(501)])
            assert ecs.describe_services(cluster=CLUSTER, services=[f"s{n}" for n in range(10)])["failures"]
            pages = list(ecs.get_paginator("list_task_definitions").paginate(familyPrefix="rms-api", sort="DESC"))
            assert [[a.rsplit(":", 1)[1] for a in p["taskDefinitionArns"]] for p in pages] == [
                ["5", "4"], ["3", "2"], ["1"]]
            users = list(iam.get_paginator("list_users").paginate())
            assert [len(p["Users"]) for p in users] == [2, 2, 1] and [p["IsTruncated"] for p in users] == [
                True, True, False]
        finally:
            undo()
        assert len(ecs.list_task_definitions()["taskDefinitionArns"]) == 5  # removed: moto's one page again


# --- the 12-service demo under AWS's limits: one served demo for the tests below -------------------

RUNBOOKS = [f"{n:02d}" for n in range(1, 17)]
# APIs whose answers in this demo span several pages of two: each must have been asked page by page
PAGED = ("ecs.ListTasks", "ecs.ListTaskDefinitions", "elbv2.DescribeTargetGroups", "cloudwatch.GetMetricData",
         "logs.FilterLogEvents", "xray.GetTraceSummaries", "xray.BatchGetTraces", "rds.DescribeDBSnapshots",
         "cloudtrail.LookupEvents", "s3.ListObjectsV2")


@pytest.fixture(scope="module")
def strict_demo():
    """`rmsops demo --serve --workers 10 --target-groups 4` with RMSOPS_DEMO_STRICT_LIMITS=1."""
    from rmsops.demo import strict_limits
    from tests.demo_server import ServedDemo

    demo = ServedDemo("incident", extra=("--workers", "10", "--target-groups", "4"),
                      env={strict_limits.ENV: "1"}).start()
    try:
        yield demo
    finally:
        demo.stop()


@pytest.fixture(scope="module")
def strict_check(strict_demo, tmp_path_factory):
    """`rmsops check 01 … 16 --json` on it: (exit code, findings, AWS calls per API)."""
    import json
    import os
    import subprocess
    import sys
    from collections import Counter

    api_log = tmp_path_factory.mktemp("api") / "calls.log"
    # pages of two make it several times slower than against moto's single pages: a budget for a busy machine
    run = subprocess.run([sys.executable, "-m", "rmsops.cli", "check", "-e", str(strict_demo.env_file), *RUNBOOKS,
                          "--json", "--budget", "150"], env={**os.environ, "RMSOPS_API_LOG": str(api_log)},
                         capture_output=True, text=True, timeout=240)
    calls = Counter(api_log.read_text().split()) if api_log.exists() else Counter()
    return run.returncode, json.loads(run.stdout or "{}").get("findings", []), calls


def test_every_check_runs_on_12_services_and_4_target_groups_under_aws_limits(strict_check, strict_demo):
    code, findings, _ = strict_check
    errors = [f"{f['check']} {f['resource']}: {f['title']} {f['detail']}" for f in findings if f["severity"] == "error"]
    assert errors == []
    assert code == 1  # the incident's warnings and criticals, nothing that could not run
    services = {f["resource"] for f in findings if f["check"] == "app.ecs.capacity"}
    assert len(services) == 12
    groups = {f["resource"]: f["severity"] for f in findings if f["check"] == "app.alb.target_health"}
    assert set(groups) == {f"targetgroup:{name}" for name in
                           ("rms-backend", "rms-frontend", "rms-worker-01", "rms-worker-02")}
    assert groups["targetgroup:rms-worker-01"] == groups["targetgroup:rms-worker-02"] == "ok"


def test_every_list_was_read_page_by_page_and_every_batch_within_its_maximum(strict_check):
    _, _, calls = strict_check
    assert {api: calls[api] for api in PAGED if calls[api] < 2} == {}
    # 12 services: DescribeServices in batches of 10, 10 + 2 (production's, and staging's that the drift
    # checks compare); the tasks cluster-wide, described in one call per desired status
    assert calls["ecs.DescribeServices"] == 4 and calls["ecs.DescribeTasks"] == 2
    assert calls["elbv2.DescribeTargetHealth"] == 4  # one call per target group


def test_every_strict_rule_finds_the_moto_handler_it_wraps():
    """A rule whose handler moto renamed (X-Ray's ``trace_summaries`` became ``get_trace_summaries``)
    would page nothing, silently; only CloudTrail's lookup_events is the demo's own, added later."""
    import importlib

    from rmsops.demo import strict_limits

    missing = set()
    for rule in strict_limits.RULES:
        module, name = rule.response.split(":")
        handler = getattr(importlib.import_module(module), name)
        names = (rule.method,) if isinstance(rule.method, str) else rule.method
        if not any(hasattr(handler, n) for n in names):
            missing.add((name, names))
    assert missing == {("CloudTrailResponse", ("lookup_events",))}
