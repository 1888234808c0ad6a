"""Large logs on Athena (an ``athena:`` section): the checks' queries, their costs, stops and failures, in moto.

moto's Athena runs no SQL: a query "succeeds" at once with the rows a test queued in its backend
(``query_results_queue``), and its statistics are zeros. What moto does not do is arranged here and
said where it is: a running query (its backend's ``get_query_execution`` patched to keep it RUNNING),
the bytes a query scanned and a failure (the parsed ``GetQueryExecution`` answer edited through
botocore's ``after-call`` event, the client's own hook).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from unittest import mock

import pytest
from moto import mock_aws
from moto.athena.models import AthenaBackend, QueryResults, athena_backends
from moto.core import DEFAULT_ACCOUNT_ID
from moto.moto_api import state_manager

from rmsops.sources import alblogs, athena
from tests import aws_seed as seed
from tests.judging import ERROR, OK, WARNING
from tests.test_checks_security import alb_with_logs, put_lines

ATHENA = {"database": "rms_logs", "alb_table": "alb_access_logs", "waf_table": "waf_logs", "workgroup": "primary",
          "output_location": "s3://aws-athena-query-results-123456789012-us-east-1/rmsops/", "max_scanned_mb": 100}
MB = 1024 * 1024


@pytest.fixture(scope="module")
def moto_world():
    with mock_aws():
        seed.network()
        yield


@pytest.fixture
def backend(moto_world) -> AthenaBackend:
    from moto.logs.models import logs_backends
    from moto.s3.models import s3_backends

    logs_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].reset()
    s3_backends[DEFAULT_ACCOUNT_ID]["aws"].reset()
    seed.reset("elbv2")
    athena_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].reset()
    seed.client("s3").create_bucket(Bucket="aws-athena-query-results-123456789012-us-east-1")
    return athena_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]


def queue(backend: AthenaBackend, columns: list[tuple[str, str]], *rows: tuple) -> None:
    """The rows the next query returns, with its header row, as Athena gives a SELECT's."""
    def row(values):
        return {"Data": [{"VarCharValue": str(v)} for v in values]}
    backend.query_results_queue.append(QueryResults(
        rows=[row([c for c, _ in columns]), *[row(r) for r in rows]],
        column_info=[{"Name": c, "Type": t} for c, t in columns]))


ALB_COLUMNS = [("client", "varchar"), ("requests", "bigint"), ("status_4xx", "bigint"), ("status_5xx", "bigint"),
               ("top_path", "varchar"), ("top_path_requests", "bigint"), ("clients_total", "bigint"),
               ("entries_total", "bigint")]
WAF_COLUMNS = [("client", "varchar"), ("rule", "varchar"), ("uri", "varchar"), ("blocks", "bigint"),
               ("previous_blocks", "bigint")]


def edit_executions(ctx, **status) -> None:
    """What moto cannot report: ``scanned`` bytes, or a ``state`` with a ``reason`` (after-call event)."""
    def edit(parsed, **_):
        execution = parsed["QueryExecution"]
        if "scanned" in status:
            execution["Statistics"]["DataScannedInBytes"] = status["scanned"]
        if "state" in status:
            execution["Status"].update(State=status["state"], StateChangeReason=status["reason"])
    ctx.client("athena").meta.events.register("after-call.athena.GetQueryExecution", edit)


@contextlib.contextmanager
def queries_stay_running() -> Iterator[None]:
    """moto finishes every query when it is first read: here queries stay RUNNING until stopped (its
    state manager told never to advance them, its backend's get_query_execution patched to say RUNNING)."""
    def running(self, exec_id):
        execution = self.executions[exec_id]
        if execution.status != "CANCELLED":
            execution.status = "RUNNING"
        return execution
    with mock.patch.object(AthenaBackend, "get_query_execution", running):
        state_manager.set_transition(model_name="athena::execution", transition={"progression": "manual",
                                                                                  "times": 10**9})
        try:
            yield
        finally:
            state_manager.unset_transition(model_name="athena::execution")


@pytest.fixture
def keep_running():
    with queries_stay_running():
        yield


def athena_context(make_context, **changes):
    return make_context(athena={**ATHENA, **changes.pop("athena", {})}, logs_query="filter", **changes)


# --- security.alb.access_logs on Athena ------------------------------------------------------------

def test_alb_access_logs_query_the_windows_partitions_and_report_what_was_scanned(backend, make_context):
    lb = alb_with_logs()
    queue(backend, ALB_COLUMNS, ("198.51.100.77", 6200, 6100, 0, "/api/login", 6200, 3, 6420),
          ("10.0.0.1", 200, 0, 3, "/api/tables", 120, 3, 6420), ("10.0.0.2", 20, 0, 0, "/", 20, 3, 6420))
    ctx = athena_context(make_context)
    edit_executions(ctx, scanned=734_003_200)
    result = ctx.run("security.alb.access_logs")
    [finding] = result.findings
    assert finding.severity is WARNING and finding.resource == "ip:198.51.100.77"
    [execution] = backend.executions.values()
    sql = execution.query
    first, last = alblogs.days(ctx.window)  # the window's day folders, the last one 5 minutes on
    assert f"WHERE \"day\" BETWEEN '{first}' AND '{last}'" in sql
    assert f"elb = '{lb.split(':loadbalancer/', 1)[1]}'" in sql and 'FROM "rms_logs"."alb_access_logs"' in sql
    assert f"\"time\" BETWEEN '{ctx.window.start:%Y-%m-%dT%H:%M:%S.%f}Z'" in sql
    assert execution.context == {"Database": "rms_logs"} and execution.workgroup.name == "primary"
    assert execution.config["OutputLocation"].startswith(ATHENA["output_location"])
    evidence = finding.evidence
    assert evidence["engine"] == "athena" and evidence["data_scanned_bytes"] == 734_003_200
    assert evidence["data_scanned_mb"] == 700.0 and evidence["query_execution_id"] == execution.id
    assert evidence["table"] == "rms_logs.alb_access_logs" and evidence["partitions"] == [first, last]
    assert evidence["entries"] == 6420 and evidence["clients"] == 3 and evidence["clients_truncated"] is False
    assert evidence["workgroup_cutoff_mb"] is None and evidence["cutoff_enforced"] is False
    assert list(result.data["client"]) == ["198.51.100.77", "10.0.0.1", "10.0.0.2"]


def test_alb_access_logs_on_athena_with_nothing_in_the_window_is_info(backend, make_context):
    alb_with_logs()
    queue(backend, ALB_COLUMNS)
    [finding] = athena_context(make_context).run("security.alb.access_logs").findings
    assert finding.severity.value == "info" and "Athena's table rms_logs.alb_access_logs" in finding.detail


def test_the_workgroups_cutoff_is_reported(backend, make_context):
    seed.client("athena").create_work_group(Name="rmsops", Configuration={
        "BytesScannedCutoffPerQuery": 50 * MB, "EnforceWorkGroupConfiguration": True})
    alb_with_logs()
    queue(backend, ALB_COLUMNS, ("10.0.0.1", 20, 0, 0, "/", 20, 1, 20))
    [finding] = athena_context(make_context, athena={"workgroup": "rmsops"}).run("security.alb.access_logs").findings
    assert finding.severity is OK
    assert finding.evidence["workgroup_cutoff_mb"] == 50.0 and finding.evidence["cutoff_enforced"] is True
    assert "in Athena's table rms_logs.alb_access_logs (0 MB scanned)" in finding.detail


def test_a_query_that_overstays_the_budget_is_stopped(backend, make_context, monkeypatch, keep_running):
    """get_query_execution is patched to stay RUNNING; the run's budget leaves it about 1.5 s."""
    alb_with_logs()
    ctx = athena_context(make_context)
    stops = []
    ctx.client("athena").meta.events.register("before-parameter-build.athena.StopQueryExecution",
                                              lambda params, **_: stops.append(params["QueryExecutionId"]))
    monkeypatch.setenv("RMSOPS_DEADLINE", f"{time.time() + athena.BUDGET_MARGIN + 1.5:.3f}")
    began = time.monotonic()
    [finding] = ctx.run("security.alb.access_logs").findings
    assert 1.0 < time.monotonic() - began < 5
    [execution] = backend.executions.values()
    assert stops == [execution.id] and execution.status == "CANCELLED"
    assert finding.severity is ERROR and "\n" not in finding.detail
    assert f"the Athena query {execution.id} did not finish in time (running when rmsops stopped it)" in finding.detail


def test_ctrl_c_while_waiting_stops_the_query(backend, make_context, monkeypatch, keep_running):
    ctx = athena_context(make_context)

    def interrupted(_seconds):
        raise KeyboardInterrupt
    monkeypatch.setattr(athena.time, "sleep", interrupted)
    with pytest.raises(KeyboardInterrupt):
        athena.run(ctx, "SELECT 1", athena.Query.of(ctx.settings.athena))
    [execution] = backend.executions.values()
    assert execution.status == "CANCELLED" and not athena._running


def test_a_query_past_max_scanned_mb_is_stopped(backend, make_context, keep_running):
    alb_with_logs()
    ctx = athena_context(make_context)
    edit_executions(ctx, scanned=300 * MB)
    [finding] = ctx.run("security.alb.access_logs").findings
    [execution] = backend.executions.values()
    assert execution.status == "CANCELLED" and finding.severity is ERROR
    assert "stopped: it had scanned 300 MB, more than athena.max_scanned_mb (100)" in finding.detail


def test_a_failing_query_is_an_error_finding_of_one_readable_line(backend, make_context):
    alb_with_logs()
    ctx = athena_context(make_context)
    edit_executions(ctx, state="FAILED", reason="COLUMN_NOT_FOUND: line 4:11: Column 'day' cannot be resolved\n"
                                                 "  or the table has no partition projection")
    [finding] = ctx.run("security.alb.access_logs").findings
    [execution] = backend.executions.values()
    assert finding.severity is ERROR and "\n" not in finding.detail
    assert finding.detail == (f"AthenaError: the Athena query {execution.id} failed: COLUMN_NOT_FOUND: line 4:11: "
                              "Column 'day' cannot be resolved or the table has no partition projection")


# --- security.waf.blocks on Athena -----------------------------------------------------------------

def test_waf_blocks_of_the_albs_acl_come_from_athena_and_cloudfronts_from_its_log_group(backend, make_context):
    put_lines("aws-waf-logs-rms-cdn", [(3, "{\"action\": \"ALLOW\"}")])
    queue(backend, WAF_COLUMNS, ("203.0.113.9", "rate-limit", "/api/login", 46, 4),
          ("192.0.2.10", "AWS-AWSManagedRulesCommonRuleSet", "/.env", 3, 4))
    ctx = athena_context(make_context, logs={"backend": "/ecs/rms-backend", "waf": "aws-waf-logs-rms-production",
                                             "waf_cloudfront": "aws-waf-logs-rms-cdn"})
    edit_executions(ctx, scanned=5 * MB)
    result = ctx.run("security.waf.blocks")
    alb, cloudfront = result.findings
    assert alb.severity is WARNING and alb.resource == "waf:rms_logs.waf_logs"
    assert alb.evidence["blocks"] == 49 and alb.evidence["previous_window_blocks"] == 4
    assert alb.evidence["engine"] == "athena" and alb.evidence["data_scanned_bytes"] == 5 * MB
    assert cloudfront.severity is OK and cloudfront.evidence["engine"] == "logs-filter"
    [execution] = backend.executions.values()
    previous = ctx.window.previous().start
    assert f"log_time BETWEEN '{athena_minute(previous, -5)}'" in execution.query
    assert "\"action\" = 'BLOCK'" in execution.query and 'FROM "rms_logs"."waf_logs"' in execution.query


def athena_minute(moment: datetime, minutes: int) -> str:
    return f"{moment + timedelta(minutes=minutes):%Y/%m/%d/%H/%M}"


def test_a_failing_waf_query_spares_the_other_wafs_finding(backend, make_context):
    put_lines("aws-waf-logs-rms-cdn", [(3, "{\"action\": \"ALLOW\"}")])
    ctx = athena_context(make_context, logs={"waf_cloudfront": "aws-waf-logs-rms-cdn"})
    edit_executions(ctx, state="FAILED", reason="Access denied when writing output to url: s3://x")
    alb, cloudfront = ctx.run("security.waf.blocks").findings
    assert alb.severity is ERROR and alb.resource == "waf:rms_logs.waf_logs" and "\n" not in alb.detail
    assert "failed: Access denied when writing output" in alb.detail
    assert cloudfront.severity is OK


# --- the generic runner ------------------------------------------------------------------------------

class _Pages:
    def __init__(self, pages):
        self.pages = pages

    def paginate(self, **_):
        return iter(self.pages)


class _Client:
    def __init__(self, pages=()):
        self.pages, self.stopped = list(pages), []

    def get_paginator(self, name):
        assert name == "get_query_results"
        return _Pages(self.pages)

    def stop_query_execution(self, QueryExecutionId):  # noqa: N803 - boto3's name
        self.stopped.append(QueryExecutionId)


def test_results_are_read_page_by_page_with_types():
    header = {"Data": [{"VarCharValue": "client"}, {"VarCharValue": "requests"}]}
    info = {"ColumnInfo": [{"Name": "client", "Type": "varchar"}, {"Name": "requests", "Type": "bigint"}]}
    pages = [{"ResultSet": {"ResultSetMetadata": info, "Rows": [header, {"Data": [{"VarCharValue": "a"},
                                                                                   {"VarCharValue": "3"}]}]}},
             {"ResultSet": {"ResultSetMetadata": info, "Rows": [{"Data": [{"VarCharValue": "b"}, {}]}]}}]
    frame = athena._results(_Client(pages), "q")
    assert frame["client"].tolist() == ["a", "b"] and frame["requests"].iloc[0] == 3
    assert frame["requests"].isna().iloc[1]


def test_queries_left_running_by_an_abandoned_check_are_stopped_at_exit():
    client = _Client()
    athena._running["q-abandoned"] = client
    athena._stop_abandoned()
    assert client.stopped == ["q-abandoned"] and not athena._running


def test_no_budget_left_starts_no_query(backend, make_context, monkeypatch):
    ctx = athena_context(make_context)
    monkeypatch.setenv("RMSOPS_DEADLINE", f"{time.time() + 1:.3f}")
    with pytest.raises(athena.AthenaError, match="no time left in the run's budget"):
        athena.run(ctx, "SELECT 1", athena.Query.of(ctx.settings.athena))
    assert not backend.executions
