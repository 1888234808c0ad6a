"""Runbook 06 (slow API responses): latency percentiles, X-Ray subsegments; the demo and its notebook.

moto cannot answer GetMetricData with ``Stat: "p99"`` (a TypeError inside moto, HTTP 500 from its
server), so the percentile fetch is tested with botocore's ``Stubber`` on the context's CloudWatch
and ELBv2 clients: the request is checked against the real API model and must be one call with the
three percentiles. The demo's moto patch that computes percentiles is tested here too. X-Ray is
tested against moto (put_trace_segments, get_trace_summaries, batch_get_traces work there).
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta

import nbformat
import pandas as pd
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws

from rmsops.checks import latency
from rmsops.core.window import Window
from rmsops.sources import xray
from tests.judging import CRITICAL, INFO, OK, WARNING, thresholds

T0 = datetime(2026, 11, 28, 19, 0, tzinfo=UTC)
LB_ARN = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/rms-alb/50dc6c495c0c9188"


# =============================================================================================
# Layer 1: percentiles judge
# =============================================================================================

def percentile_frame(p99: list[float], p50: float = 0.08, p90: float = 0.2) -> pd.DataFrame:
    stamps = [pd.Timestamp(T0 + timedelta(minutes=i)) for i in range(len(p99))]
    rows = [(t, label, label, v) for label, values in (("p50", [p50] * len(p99)), ("p90", [p90] * len(p99)),
                                                       ("p99", p99)) for t, v in zip(stamps, values, strict=True)]
    return pd.DataFrame(rows, columns=["timestamp", "id", "label", "value"])


def judge_p(p99: list[float], **overrides: float):
    [finding] = latency.judge_percentiles("api.latency.percentiles", percentile_frame(p99), 60,
                                          thresholds(**overrides), "rms-alb")
    return finding


def test_judge_percentiles_fast_is_ok():
    finding = judge_p([0.2, 0.35, 0.3])
    assert finding.severity is OK and finding.resource == "alb:rms-alb"
    assert finding.evidence["peak_seconds"]["p99"] == 0.35 and finding.evidence["periods_over_warning"] == 0


def test_judge_percentiles_over_warning_and_over_critical():
    warning = judge_p([0.3, 1.4, 2.0, 0.4])
    assert warning.severity is WARNING and "2.00 s" in warning.title
    assert warning.evidence["periods_over_warning"] == 2
    assert warning.evidence["first_over_warning"] == pd.Timestamp(T0 + timedelta(minutes=1))
    critical = judge_p([0.3, 6.5, 0.4])
    assert critical.severity is CRITICAL and "over 5 s" in critical.title
    assert "database query performance" in critical.resolution


def test_judge_percentiles_thresholds_are_strict_and_parameters():
    assert judge_p([1.0]).severity is OK  # at the threshold is not over it
    assert judge_p([5.0]).severity is WARNING
    assert judge_p([0.8], latency_p99_warning_seconds=0.5).severity is WARNING
    assert judge_p([3.0], latency_p99_critical_seconds=2.5).severity is CRITICAL


def test_judge_percentiles_no_datapoints_is_info():
    [finding] = latency.judge_percentiles("metrics.latency", percentile_frame([]), 60, thresholds(), "rms-alb")
    assert finding.severity is INFO and finding.check == "metrics.latency"


# =============================================================================================
# Layer 1: X-Ray documents, own time, judge
# =============================================================================================

def doc(service: str, start: float, seconds: float, subsegments=(), trace=1, **extra) -> dict:
    return {"name": service, "id": f"{trace:016x}", "trace_id": f"1-{int(T0.timestamp()):08x}-{trace:024x}",
            "start_time": start, "end_time": start + seconds, "subsegments": list(subsegments), **extra}


def sub(name: str, start: float, seconds: float, *children, **extra) -> dict:
    return {"id": f"{abs(hash((name, start))) % 2**63:016x}", "name": name, "start_time": start,
            "end_time": start + seconds, "subsegments": list(children), **extra}


def trace(*docs: dict) -> dict:
    seconds = max(d.get("end_time", d["start_time"]) - d["start_time"] for d in docs)
    return {"Id": docs[0]["trace_id"], "Duration": seconds,
            "Segments": [{"Id": d["id"], "Document": json.dumps(d)} for d in docs]}


S = T0.timestamp()


def approx(value: float):
    return pytest.approx(value, abs=1e-5)  # epoch seconds as floats carry ~1e-7 s of rounding


def slow_trace(n: int, seconds: float = 3.0) -> dict:
    """A handler around redis, postgres (most of the time) and serialize."""
    return trace(doc("rms-backend", S + n, seconds, [
        sub("reservations.list", S + n + 0.01, seconds - 0.02,
            sub("redis", S + n + 0.02, 0.01, namespace="remote"),
            sub("postgres", S + n + 0.04, seconds - 0.2, namespace="remote", sql={"database_type": "PostgreSQL"}),
            sub("serialize", S + n + seconds - 0.15, 0.1))], trace=n))


def test_frames_compute_own_time_without_nested_subsegments():
    segments, subs = xray.frames([slow_trace(1)], ["rms-backend"])
    assert len(segments) == 1 and segments.iloc[0]["seconds"] == approx(3.0)
    by_name = subs.set_index("name")
    assert by_name.loc["reservations.list", "seconds"] == approx(2.98)
    assert by_name.loc["reservations.list", "own_seconds"] == approx(2.98 - 0.01 - 2.8 - 0.1)
    assert by_name.loc["postgres", "own_seconds"] == approx(2.8)
    assert by_name.loc["postgres", "kind"] == "sql" and by_name.loc["redis", "kind"] == "http"
    assert by_name.loc["serialize", "kind"] == "local" and by_name.loc["postgres", "depth"] == 2


def test_own_time_counts_overlapping_children_once():
    parallel = trace(doc("rms-backend", S, 1.0, [sub("fan-out", S, 1.0, sub("a", S + 0.1, 0.5), sub("b", S + 0.3, 0.5),
                                                                             sub("late", S + 0.9, 0.5))]))
    _, subs = xray.frames([parallel], ["rms-backend"])
    # children cover 0.1-0.8 and 0.9-1.0 of the parent (the late one is clipped at its end)
    assert subs.set_index("name").loc["fan-out", "own_seconds"] == approx(0.2)


def test_frames_filter_by_service_and_skip_inferred_in_progress_and_garbage():
    other = doc("payments", S, 2.0, trace=7)
    inferred = doc("rms-production-db", S, 1.0, trace=7, inferred=True)
    in_progress = {k: v for k, v in doc("rms-backend", S, 1.0, trace=8).items() if k != "end_time"}
    in_progress["in_progress"] = True
    traces = [slow_trace(1), trace(other, inferred), trace(in_progress),
              {"Id": "1-x", "Segments": [{"Id": "s", "Document": "{not json"}]}]
    segments, subs = xray.frames(traces, ["rms-backend", "rms-frontend"])
    assert segments["service"].tolist() == ["rms-backend"] and set(subs["service"]) == {"rms-backend"}
    assert xray.services_seen(traces) == ["payments", "rms-backend"]
    everything, _ = xray.frames(traces)
    assert sorted(everything["service"]) == ["payments", "rms-backend"]


def test_slowest_ids_and_chunks():
    summaries = [{"Id": "a", "Duration": 0.1}, {"Id": "b", "Duration": 3.0}, {"Id": "c", "Duration": 1.0},
                 {"Id": "b", "Duration": 3.0}, {"Duration": 9.0}]
    assert xray.slowest_ids(summaries) == ["b", "c", "a"]
    assert xray.slowest_ids(summaries, limit=2) == ["b", "c"]
    assert [len(c) for c in xray.chunks([str(i) for i in range(12)])] == [5, 5, 2]


def fast_trace(n: int) -> dict:
    return trace(doc("rms-backend", S + n, 0.1, [sub("postgres", S + n + 0.01, 0.03, namespace="remote", sql={}),
                                                 sub("serialize", S + n + 0.05, 0.04)], trace=100 + n))


def judged(traces: list[dict], summaries: int | None = None, **overrides: float):
    segments, subs = xray.frames(traces, ["rms-backend"])
    fetched = {"summaries": len(traces) if summaries is None else summaries, "fetched": len(traces),
               "segments": segments, "subsegments": subs, "services_seen": xray.services_seen(traces),
               "window": Window(T0, T0 + timedelta(hours=1))}
    slow = thresholds(**overrides)["latency_p99_warning_seconds"]
    times = xray.subsegment_times(segments, subs, slow)
    return latency.judge_slow_segments(fetched, times, ("rms-backend",), slow), times


def test_subsegment_times_shares_all_and_slow_traces():
    _, times = judged([slow_trace(1), fast_trace(2), fast_trace(3)])
    postgres = times.set_index("name").loc["postgres"]
    assert postgres["calls"] == 3 and postgres["traces"] == 3
    assert postgres["own_seconds"] == approx(2.86)
    assert postgres["share"] == approx(2.86 / 3.2)
    assert postgres["slow_share"] == approx(2.8 / 3.0)
    assert times.iloc[0]["name"] == "postgres"  # slowest first


def test_judge_slow_segments_dominant_subsegment_of_slow_traces_is_warning():
    [finding], _ = judged([slow_trace(1), slow_trace(2), fast_trace(3)])
    assert finding.severity is WARNING and finding.resource == "xray:rms-backend"
    assert "postgres takes 93% of the time of 2 slow traces" in finding.title
    assert "07-database-performance" in finding.resolution  # a sql subsegment: the database runbook
    assert finding.evidence["dominant"] == {"name": "postgres", "slow_share": 0.933}


def test_judge_slow_segments_no_dominant_subsegment_is_info():
    balanced = trace(doc("rms-backend", S, 2.0, [sub("postgres", S, 0.7, namespace="remote", sql={}),
                                                 sub("payments", S + 0.7, 0.7, namespace="remote"),
                                                 sub("render", S + 1.4, 0.6)]))
    [finding], _ = judged([balanced])
    assert finding.severity is INFO and "no single subsegment dominates" in finding.title


def test_judge_slow_segments_no_slow_traces_is_ok_and_names_the_slowest():
    [finding], _ = judged([fast_trace(1), fast_trace(2)])
    assert finding.severity is OK and "slowest subsegment serialize" in finding.title


def test_judge_slow_segments_without_traces_or_without_ours_is_info():
    [none], _ = judged([], summaries=0)
    assert none.severity is INFO and "No X-Ray traces" in none.title
    [foreign], _ = judged([trace(doc("payments", S, 2.0))])
    assert foreign.severity is INFO and "payments" in foreign.detail
    bare = trace(doc("rms-backend", S, 2.0))
    [no_subs], _ = judged([bare])
    assert no_subs.severity is INFO and "no subsegments" in no_subs.title


def test_trace_window_is_clipped_to_the_last_hours():
    long = Window(T0 - timedelta(days=2), T0)
    assert xray.trace_window(long).start == T0 - timedelta(hours=xray.MAX_TRACE_HOURS)
    short = Window(T0 - timedelta(minutes=30), T0)
    assert xray.trace_window(short) == short


# =============================================================================================
# Layer 2: the percentile fetch (Stubber: moto cannot compute percentiles)
# =============================================================================================

def metric_result(qid: str, values: list[float], start: datetime) -> dict:
    return {"Id": qid, "Label": qid, "StatusCode": "Complete",
            "Timestamps": [start + timedelta(minutes=i) for i in range(len(values))], "Values": values}


def test_percentiles_are_one_batched_get_metric_data_call(make_context):
    ctx = make_context()
    start = ctx.window.start
    dimension = "app/rms-alb/50dc6c495c0c9188"
    expected = [{"Id": p, "Label": p, "MetricStat": {
        "Metric": {"Namespace": "AWS/ApplicationELB", "MetricName": "TargetResponseTime",
                   "Dimensions": [{"Name": "LoadBalancer", "Value": dimension}]},
        "Period": 60, "Stat": p}} for p in ("p50", "p90", "p99")]
    with Stubber(ctx.client("elbv2")) as elb, Stubber(ctx.client("cloudwatch")) as cw:
        elb.add_response("describe_load_balancers", {"LoadBalancers": [
            {"LoadBalancerArn": LB_ARN, "LoadBalancerName": "rms-alb"}]}, {"Names": ["rms-alb"]})
        cw.add_response("get_metric_data", {"MetricDataResults": [
            metric_result("p50", [0.08, 0.09, 0.4], start), metric_result("p90", [0.2, 0.3, 2.1], start),
            metric_result("p99", [0.3, 0.9, 6.2], start)]},
            {"MetricDataQueries": expected, "StartTime": ANY, "EndTime": ANY, "ScanBy": "TimestampAscending"})
        result = ctx.run("api.latency.percentiles")
        overview = ctx.run("metrics.latency")  # shares the fetch: no second call
        elb.assert_no_pending_responses()
        cw.assert_no_pending_responses()
    [finding] = result.findings
    assert finding.severity is CRITICAL and finding.evidence["peak_seconds"]["p99"] == 6.2
    assert set(result.data["label"]) == {"p50", "p90", "p99"}
    assert [f.severity for f in overview.findings] == [CRITICAL] and overview.findings[0].check == "metrics.latency"


def test_percentile_plot_draws_the_thresholds(make_context, monkeypatch):
    from rmsops.render import plots

    ctx = make_context()
    frame = percentile_frame([0.3, 1.5])
    frame["timestamp"] = [ctx.window.start + timedelta(minutes=m) for m in (0, 0, 1, 1, 2, 2)][:len(frame)]
    result = latency.CheckResult(findings=latency.judge_percentiles("x", frame, 60, ctx.thresholds, "a"), data=frame)
    figure = latency.percentiles_plot(result, ctx)
    labels = [line.get_label() for line in figure.axes[0].get_lines()]
    assert "p99" in labels and "p99 warning (1)" in labels and "p99 critical (5)" in labels
    assert plots.svg(figure).startswith(b"<?xml")


def test_demo_patch_computes_percentiles_in_moto_and_is_removed():
    from rmsops.demo.areas import observability

    cleanups = []
    with mock_aws():
        import boto3
        from botocore.config import Config

        cw = boto3.client("cloudwatch", region_name="us-east-1", config=Config(retries={"max_attempts": 0}))
        dims = [{"Name": "LoadBalancer", "Value": "app/rms-alb/1"}]
        at = T0 + timedelta(minutes=1)
        cw.put_metric_data(Namespace="AWS/ApplicationELB", MetricData=[
            {"MetricName": "TargetResponseTime", "Dimensions": dims, "Timestamp": at, "Unit": "Seconds",
             "Values": [float(v) for v in range(1, 101)]}])
        queries = [{"Id": p, "MetricStat": {"Metric": {"Namespace": "AWS/ApplicationELB",
                                                       "MetricName": "TargetResponseTime", "Dimensions": dims},
                                            "Period": 60, "Stat": p}} for p in ("p50", "p90", "p99")]
        with pytest.raises(TypeError):  # plain moto: why the demo patches it
            cw.get_metric_data(MetricDataQueries=queries, StartTime=T0, EndTime=T0 + timedelta(minutes=5))
        observability.install_percentiles(lambda name, fn: cleanups.append(fn))
        try:
            answer = cw.get_metric_data(MetricDataQueries=queries, StartTime=T0, EndTime=T0 + timedelta(minutes=5))
            values = {r["Id"]: r["Values"] for r in answer["MetricDataResults"]}
            assert values == {"p50": [pytest.approx(50.5)], "p90": [pytest.approx(90.1)], "p99": [pytest.approx(99.01)]}
            average = cw.get_metric_data(MetricDataQueries=[{**queries[0], "Id": "avg", "MetricStat": {
                **queries[0]["MetricStat"], "Stat": "Average"}}], StartTime=T0, EndTime=T0 + timedelta(minutes=5))
            assert average["MetricDataResults"][0]["Values"] == [50.5]  # other statistics untouched
        finally:
            for fn in cleanups:
                fn()
        with pytest.raises(TypeError):
            cw.get_metric_data(MetricDataQueries=queries, StartTime=T0, EndTime=T0 + timedelta(minutes=5))


# =============================================================================================
# Layer 2: X-Ray against moto
# =============================================================================================

def test_xray_fetch_against_moto_batches_five_and_judges(make_context):
    now = datetime.now(UTC).timestamp()
    with mock_aws():
        import boto3

        client = boto3.client("xray", region_name="us-east-1")
        docs = []
        for n in range(11):  # 8 slow traces dominated by postgres, 3 fast ones
            seconds = 2.5 if n < 8 else 0.1
            start = now - 600 + 30 * n
            body = doc("rms-backend", start, seconds, [
                sub("postgres", start + 0.01, seconds - 0.05, namespace="remote", sql={}),
                sub("serialize", start + seconds - 0.03, 0.02)], trace=n + 1)
            body["trace_id"] = f"1-{int(start):08x}-{n + 1:024x}"
            docs.append(body)
        docs.append({**doc("payments", now - 300, 0.5, trace=99), "trace_id": f"1-{int(now - 300):08x}-{99:024x}"})
        client.put_trace_segments(TraceSegmentDocuments=[json.dumps(d) for d in docs])
        ctx = make_context()
        batches = []
        ctx.client("xray").meta.events.register(
            "provide-client-params.xray.BatchGetTraces", lambda params, **_: batches.append(len(params["TraceIds"])))
        result = ctx.run("api.xray.slow_segments")
        capped = xray.trace_summaries(ctx, ctx.window, limit=3)
    assert sorted(batches) == [2, 5, 5]  # fetched concurrently: in any order
    assert len(capped) == 3
    [finding] = result.findings
    assert finding.severity is WARNING and "postgres" in finding.title
    assert finding.evidence["traces"] == 11 and finding.evidence["slow_traces"] == 8
    assert finding.evidence["trace_summaries"] == 12
    assert result.data.iloc[0]["name"] == "postgres"
    assert len(result.frames["slowest traces"]) == 11


def test_xray_traces_are_fetched_a_few_calls_at_once_and_kept_in_order(make_context):
    """Against a real account each call waits ~0.1 s: 20 in a row were a check's longest chain."""
    now = datetime.now(UTC).timestamp()
    with mock_aws():
        import boto3

        ids = [f"1-{int(now - 600 + n):08x}-{n + 1:024x}" for n in range(18)]
        boto3.client("xray", region_name="us-east-1").put_trace_segments(TraceSegmentDocuments=[
            json.dumps({**doc("rms-backend", now - 600 + n, 0.2, trace=n + 1), "trace_id": trace_id})
            for n, trace_id in enumerate(ids)])
        ctx = make_context()
        lock, flying, most = threading.Lock(), [0], [0]

        def before(**_):
            with lock:
                flying[0] += 1
                most[0] = max(most[0], flying[0])
            time.sleep(0.05)  # a real account's answer time: lets the next call start meanwhile

        def after(**_):
            with lock:
                flying[0] -= 1

        events = ctx.client("xray").meta.events
        events.register("before-call.xray.BatchGetTraces", before)
        events.register("after-call.xray.BatchGetTraces", after)
        wanted = list(reversed(ids))
        traces = xray.batch_get_traces(ctx, wanted)
    assert [trace["Id"] for trace in traces] == wanted
    assert 1 < most[0] <= xray.FETCHES_AT_ONCE


def test_xray_nothing_in_the_window_against_moto(make_context):
    with mock_aws():
        result = make_context().run("api.xray.slow_segments")
    assert [f.severity for f in result.findings] == [INFO]


# =============================================================================================
# Layer 4: the served demo and the notebook
# =============================================================================================

def demo_findings(scenario: str):
    from rmsops.core.context import Context
    from tests.demo_server import served

    ctx = Context.open(served(scenario).env_file)
    try:
        return {r.check: r.findings for r in ctx.run_all("06-slow-api-responses")}
    finally:
        ctx.close()


def test_demo_incident_is_slow_in_postgres_with_errors():
    found = demo_findings("incident")
    assert [f.severity for f in found["api.latency.percentiles"]] == [CRITICAL]
    [xray_finding] = found["api.xray.slow_segments"]
    assert xray_finding.severity is WARNING and "rms-backend: postgres takes" in xray_finding.title
    assert [f.severity for f in found["api.logs.errors"]] == [WARNING]


def test_demo_healthy_is_fast():
    found = demo_findings("healthy")
    assert {check: [f.severity for f in findings] for check, findings in found.items()} == {
        "api.latency.percentiles": [OK], "api.xray.slow_segments": [OK], "api.logs.errors": [OK]}
    p99 = found["api.latency.percentiles"][0].evidence["peak_seconds"]["p99"]
    p50 = found["api.latency.percentiles"][0].evidence["peak_seconds"]["p50"]
    assert p99 < 0.5 and p50 < p99  # the demo's samples give distinct percentiles


def test_notebook_runs_against_the_demo(tmp_path):
    from rmsops.core import config, runbooks
    from rmsops.core.window import resolve
    from rmsops.execution.runner import collect_findings, run_runbook
    from tests.demo_server import served

    runbook = runbooks.find("06")
    outcome = run_runbook(runbook, config.load(served("incident").env_file), resolve("1h"), tmp_path)
    assert outcome.status == "done", outcome.error
    findings = collect_findings(nbformat.read(outcome.notebook, as_version=4))
    assert {f.check for f in findings} == set(runbook.checks)
    assert CRITICAL in {f.severity for f in findings}
    assert outcome.html is not None and outcome.html.read_text().count("data:image/svg+xml;base64") >= 3
