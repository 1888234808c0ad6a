"""Runbook 11 (log analysis) and 06's api.logs.errors.

Layer 1: patterns, the fallback aggregations and the judges with small frames. Layer 2: the
production path (Logs Insights) through ``ctx.run`` with botocore's ``Stubber`` on the context's
logs client — moto ignores Insights ``filter``/``stats``, so the request is checked against the real
API model and the answer is what Insights returns for a stats query. Layer 3: the
``logs_query: filter`` fallback against moto. Layer 4: the served demo and the notebook.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import nbformat
import pandas as pd
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws

from rmsops.checks import logs as L
from rmsops.core.findings import Severity
from rmsops.sources import logquery
from tests.judging import ERROR, INFO, OK, WARNING, thresholds

T0 = datetime(2026, 11, 28, 19, 0, tzinfo=UTC)
BACKEND, FRONTEND, RDS = "/ecs/rms-backend", "/ecs/rms-frontend", "/aws/rds/instance/rms-production-db/postgresql"
APP_LOGS = {"backend": BACKEND, "frontend": FRONTEND}


def events(*rows: tuple[int, str, str]) -> pd.DataFrame:
    """Raw events as filter_events returns them: (minute after T0, group, message)."""
    frame = pd.DataFrame([(T0 + timedelta(minutes=m, seconds=7), g, "s1", msg) for m, g, msg in rows],
                         columns=logquery.EVENT_COLUMNS)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    return frame


# =============================================================================================
# Layer 1: patterns, aggregations, judges
# =============================================================================================

@pytest.mark.parametrize(("a", "b"), [
    ("ERROR [rms.api] GET /api/reservations/123 timeout after 30.1 s",
     "ERROR [rms.api] GET /api/reservations/98765 timeout after 29.8 s"),
    ("2026-11-28T19:05:00.123Z ERROR job 3f2a9c0e1b7d4a55 failed",
     "2026-11-28T19:07:59.001Z ERROR job 0e8b00ffa1c2d3e4 failed"),
    ("ERROR user 'alice' not found", "ERROR user 'bob' not found"),
    ('ERROR connection to server at "db-a" (10.0.11.15), port 5432 failed',
     'ERROR connection to server at "db-b" (10.0.11.16), port 5433 failed'),
    ("ERROR request 1b4e28ba-2fa1-11d2-883f-0016d3cca427 aborted",
     "ERROR request 6fa459ea-ee8a-3ca4-894e-db77e160355e aborted"),
    ("ERROR at 0x7f3a2c bad pointer", "ERROR at 0xdeadbeef bad pointer"),
])
def test_message_pattern_masks_what_varies(a, b):
    assert L.message_pattern(a) == L.message_pattern(b)


def test_message_pattern_keeps_what_tells_causes_apart():
    assert L.message_pattern("ERROR timeout after 30.1 s") == "ERROR timeout after <n> s"
    assert L.message_pattern("ERROR timeout after 30 s") != L.message_pattern("ERROR pool exhausted after 30 s")
    assert L.message_pattern("ERROR http2 stream reset") == "ERROR http2 stream reset"  # a digit inside a word stays
    assert L.message_pattern("ERROR 10.0.1.7 - - \"GET /x HTTP/1.1\" 502 166") == 'ERROR <ip> - - "<*>" <n> <n>'
    assert len(L.message_pattern("ERROR " + "x" * 500)) == L.PATTERN_MAX_CHARS


def lines(*rows: tuple[int, str, str]) -> pd.DataFrame:
    frame = events(*rows)
    frame["pattern"] = frame["message"].map(L.message_pattern)
    return frame[L.LINE_COLUMNS]


def error_lines(groups=(BACKEND,), missing=(), total=None, truncated=False, *rows) -> L.ErrorLines:
    frame = lines(*rows)
    return L.ErrorLines(L.Groups(list(groups) + list(missing), list(groups), list(missing)), frame,
                        len(frame) if total is None else total, truncated)


TIMEOUTS = [(m, BACKEND, f"ERROR GET /api/reservations/{m} timeout after {29 + m / 10:.1f} s") for m in range(6)]


def test_patterns_frame_groups_counts_and_keeps_the_newest_example():
    frame = lines(*TIMEOUTS, (3, FRONTEND, "ERROR pool exhausted"))
    patterns = L.patterns_frame(frame)
    assert patterns["count"].tolist() == [6, 1]
    top = patterns.iloc[0]
    assert top["pattern"] == "ERROR GET /api/reservations/<n> timeout after <n> s"
    assert top["example"] == TIMEOUTS[-1][2]
    assert top["first"] < top["last"]
    assert patterns.iloc[1]["log_groups"] == FRONTEND


def judge(errors: L.ErrorLines, **overrides: float):
    return L.judge_errors("api.logs.errors", errors, L.patterns_frame(errors.lines), thresholds(**overrides), "fix")


def test_judge_errors_none_is_ok_some_is_info_many_is_warning():
    assert [f.severity for f in judge(error_lines())] == [OK]
    [info] = judge(error_lines((BACKEND,), (), None, False, *TIMEOUTS))
    assert info.severity is INFO and info.evidence["errors"] == 6
    assert "timeout after <n> s" in info.title
    [warning] = judge(error_lines((BACKEND,), (), None, False, *TIMEOUTS), log_errors_max=5)
    assert warning.severity is WARNING and "threshold 5" in warning.title
    assert warning.evidence["top_patterns"][0]["count"] == 6
    [at_limit] = judge(error_lines((BACKEND,), (), None, False, *TIMEOUTS), log_errors_max=6)
    assert at_limit.severity is INFO  # above the threshold, not at it


def test_judge_errors_uses_the_exact_total_when_the_lines_were_capped():
    [finding] = judge(error_lines((BACKEND,), (), 12_345, True, *TIMEOUTS))
    assert finding.severity is WARNING
    assert finding.evidence["errors"] == 12_345 and finding.evidence["lines_read"] == 6
    assert finding.evidence["truncated"] is True and "newest 6 lines" in finding.detail


def test_judge_errors_missing_and_unconfigured_groups_are_info():
    findings = judge(error_lines((BACKEND,), (FRONTEND,)))
    assert [(f.resource, f.severity) for f in findings] == [(f"logs:{FRONTEND}", INFO), (f"logs:{BACKEND}", OK)]
    only_missing = judge(error_lines((), (FRONTEND,)))
    assert [f.severity for f in only_missing] == [INFO]
    [unconfigured] = L.judge_errors("logs.errors.recent", L.ErrorLines(L.Groups([], [], [])), L.patterns_frame(
        lines()), thresholds(), "")
    assert unconfigured.severity is INFO and "logs.backend" in unconfigured.detail


def test_chart_labels_keep_the_end_of_long_patterns_and_stay_unique():
    a = "ERROR [rms.api] GET /api/reservations <n> upstream database unavailable (pool exhausted) after <n> ms"
    b = "ERROR [rms.api] GET /api/reservations <n> upstream database unavailable (too many connections) after <n> s"
    labels = L.labels_for([a, b, "ERROR x", "ERROR x"], 70)
    assert len(set(labels)) == 4 and all(len(label) <= 74 for label in labels)
    assert labels[0].endswith("after <n> ms") and labels[1].endswith("after <n> s")


def test_errors_over_time_bins_top_patterns_and_lumps_the_rest():
    frame = lines(*TIMEOUTS, (0, BACKEND, "ERROR a"), (1, BACKEND, "ERROR a"), (0, BACKEND, "ERROR b"),
                  (1, BACKEND, "ERROR c"))
    over = L.errors_over_time(frame, 60, top=2)
    assert set(over["pattern"]) == {"ERROR GET /api/reservations/<n> timeout after <n> s", "ERROR a", "other"}
    assert over["lines"].sum() == 10
    assert over[over["pattern"] == "other"]["lines"].sum() == 2
    assert len(over[over["pattern"] == "ERROR a"]) == 2  # one row per minute it occurred in


# --- status codes ------------------------------------------------------------------------------

DEMO_ACCESS = [
    (1, FRONTEND, '10.0.1.7 - - "GET / HTTP/1.1" 200 1532 "-" "Mozilla/5.0"'),
    (1, FRONTEND, 'ERROR 10.0.1.8 - - "GET /api/reservations HTTP/1.1" 502 166 "-" "Mozilla/5.0"'),
    (2, BACKEND, "2026-11-28T19:02:07.000Z INFO [rms.api] GET /api/reservations 200 in 80 ms"),
    (2, BACKEND, "2026-11-28T19:02:09.000Z INFO [rms.api] POST /api/reservations 201 in 95 ms"),
    (3, BACKEND, "2026-11-28T19:03:07.000Z ERROR [rms.api] GET /api/reservations 502 upstream database unavailable"),
    (3, BACKEND, "2026-11-28T19:03:08.000Z INFO [rms.api] GET /api/restaurants/7 404 in 9 ms"),
    (3, BACKEND, "WARNING [rms.health] /api/health -> 503: database check failed"),  # not an access line
    (4, BACKEND, "INFO [rms.db] connection pool ready (min=5, max=40)"),
]


def test_status_rows_parse_both_access_line_formats_like_the_insights_query():
    rows = L.status_rows(events(*DEMO_ACCESS), minutes=1)
    assert list(rows.columns) == ["bin(1m)", "status", "requests"]
    frame = L.status_frame(rows)
    assert frame.groupby("status")["requests"].sum().to_dict() == {200: 2, 201: 1, 404: 1, 502: 2}
    assert set(frame["class"]) == {"2xx", "4xx", "5xx"}
    assert frame["timestamp"].min() == pd.Timestamp(T0 + timedelta(minutes=1))


def test_status_regex_is_the_same_for_insights_and_python():
    assert "(?<status>" in L.status_insights(5) and "bin(5m)" in L.status_insights(5)
    assert L.STATUS_RE.pattern == L.STATUS_REGEX.replace("(?<", "(?P<")


def status_summary(**codes: int) -> pd.DataFrame:
    frame = pd.DataFrame({"timestamp": pd.Timestamp(T0), "status": [int(c[1:]) for c in codes],
                          "requests": list(codes.values())})
    frame["class"] = (frame["status"] // 100).astype(str) + "xx"
    return L.status_summary(frame)


GROUPS = L.Groups([BACKEND, FRONTEND], [BACKEND, FRONTEND], [])


def test_judge_status_5xx_share_over_threshold_is_warning():
    [finding] = L.judge_status(status_summary(s200=950, s404=30, s502=15, s503=5), GROUPS, thresholds())
    assert finding.severity is WARNING
    assert finding.evidence["share_5xx_pct"] == 2.0 and finding.evidence["by_class"]["5xx"] == 20
    assert "502 ×15" in finding.title


def test_judge_status_below_or_at_threshold_is_ok_and_no_lines_is_info():
    [ok] = L.judge_status(status_summary(s200=990, s500=10), GROUPS, thresholds())  # exactly 1%
    assert ok.severity is OK
    [none] = L.judge_status(status_summary(), GROUPS, thresholds())
    assert none.severity is INFO
    [strict] = L.judge_status(status_summary(s200=990, s500=10), GROUPS, thresholds(status_5xx_share_pct=0.5))
    assert strict.severity is WARNING


# --- RDS connection errors ---------------------------------------------------------------------

RDS_LINES = [
    (1, RDS, "2026-11-28 19:01:00 UTC:10.0.10.10(51234):rms_app@rms:[4120]:FATAL:  sorry, too many clients already"),
    (1, RDS, "2026-11-28 19:01:02 UTC:10.0.10.11(51298):rms_app@rms:[4180]:FATAL:  remaining connection slots are "
             "reserved for non-replication superuser connections"),
    (2, RDS, "2026-11-28 19:02:00 UTC:10.0.10.12(50000):rms_app@rms:[4200]:FATAL:  password authentication failed "
             'for user "rms_app"'),
    (3, RDS, "2026-11-28 19:03:00 UTC:10.0.10.12(50001):rms_app@rms:[4201]:FATAL:  terminating connection due to "
             "administrator command"),
    (4, RDS, "2026-11-28 19:04:00 UTC:10.0.10.12(50002):[unknown]@[unknown]:[4202]:LOG:  connection received: "
             "host=10.0.10.12 port=50002"),  # normal with log_connections on
    (4, RDS, "2026-11-28 19:04:00 UTC::@:[612]:LOG:  checkpoint complete: wrote 112 buffers (0.7%)"),
]


def test_rds_rows_classify_connection_failures_and_skip_normal_lines():
    frame = L.rds_frame(L.rds_rows(events(*RDS_LINES), minutes=1))
    assert frame.groupby("kind")["errors"].sum().to_dict() == {
        "too many clients": 1, "remaining connection slots": 1, "password authentication failed": 1,
        "connection": 1}
    assert "terminating connection" in frame.loc[frame["kind"] == "connection", "sample"].iloc[0]


def test_rds_kind_parsing_is_case_insensitive_and_insights_uses_the_same_regex():
    rows = L.rds_rows(events((1, RDS, "FATAL:  Could Not Connect to server")), minutes=1)
    assert L.rds_frame(rows)["kind"].tolist() == ["could not connect"]
    query = L.rds_insights(1)
    assert L.RDS_FILTER_REGEX in query and "(?<kind>" in query and "latest(@message) as sample" in query


def test_judge_rds_any_error_is_warning_with_the_matching_resolution():
    frame = L.rds_frame(L.rds_rows(events(*RDS_LINES), minutes=1))
    [finding] = L.judge_rds(frame, RDS, present=True)
    assert finding.severity is WARNING and finding.evidence["errors"] == 4
    assert "scale up the RDS instance or optimize connection pooling" in finding.resolution
    assert "credentials" in finding.resolution
    [ok] = L.judge_rds(L.rds_frame(pd.DataFrame()), RDS, present=True)
    assert ok.severity is OK
    [missing] = L.judge_rds(L.rds_frame(pd.DataFrame()), RDS, present=False)
    assert missing.severity is INFO and "EnableLogTypes=postgresql" in missing.resolution


# =============================================================================================
# Layer 2: the Insights path through ctx.run, Stubber on the logs client
# =============================================================================================

@pytest.fixture
def insights_ctx(make_context, monkeypatch):
    monkeypatch.setattr(logquery.time, "sleep", lambda _: None)
    return make_context(logs=APP_LOGS)


def stub_groups(stub: Stubber, *names: str) -> None:
    for name in names:
        stub.add_response("describe_log_groups", {"logGroups": [{"logGroupName": name, "storedBytes": 1}]},
                          {"logGroupNamePrefix": name})


def test_status_codes_insights_request_and_stats_answer(insights_ctx):
    ctx = insights_ctx
    answer = [[{"field": "bin(1m)", "value": "2026-11-28 19:05:00.000"}, {"field": "status", "value": s},
               {"field": "requests", "value": n}] for s, n in (("200", "940"), ("404", "12"), ("502", "48"))]
    with Stubber(ctx.client("logs")) as stub:
        stub_groups(stub, BACKEND, FRONTEND)
        stub.add_response("start_query", {"queryId": "q"}, {
            "logGroupNames": [BACKEND, FRONTEND], "startTime": ANY, "endTime": ANY,
            "queryString": L.status_insights(1), "limit": 10_000})
        stub.add_response("get_query_results", {"status": "Complete", "results": answer})
        result = ctx.run("logs.status_codes")
        stub.assert_no_pending_responses()
    [finding] = result.findings
    assert finding.severity is WARNING and finding.evidence["share_5xx_pct"] == 4.8
    assert result.frames["requests per bin by class"]["requests"].sum() == 1000


def test_api_errors_insights_runs_the_guide_query_and_counts_when_capped(insights_ctx):
    ctx = insights_ctx
    rows = [[{"field": "@timestamp", "value": "2026-11-28 19:59:00.000"},
             {"field": "@log", "value": f"123456789012:{BACKEND}"}, {"field": "@logStream", "value": "ecs/a"},
             {"field": "@message", "value": f"ERROR GET /api/reservations/{i} timeout after 30.{i % 10} s"},
             {"field": "@ptr", "value": f"p{i}"}] for i in range(10_000)]
    with Stubber(ctx.client("logs")) as stub:
        stub_groups(stub, BACKEND, FRONTEND)
        stub.add_response("start_query", {"queryId": "q1"}, {
            "logGroupNames": [BACKEND, FRONTEND], "startTime": ANY, "endTime": ANY,
            "queryString": L.ERRORS_INSIGHTS, "limit": 10_000})
        stub.add_response("get_query_results", {"status": "Complete", "results": rows})
        stub.add_response("start_query", {"queryId": "q2"}, {
            "logGroupNames": [BACKEND, FRONTEND], "startTime": ANY, "endTime": ANY,
            "queryString": L.ERROR_COUNT_INSIGHTS, "limit": 10_000})
        stub.add_response("get_query_results", {"status": "Complete",
                                                "results": [[{"field": "errors", "value": "25678"}]]})
        result = ctx.run("api.logs.errors")
        again = ctx.run("logs.errors.recent")  # the same run shares the fetch: no more calls
        stub.assert_no_pending_responses()
    assert "filter @message like /ERROR/" in L.ERRORS_INSIGHTS and "sort @timestamp desc" in L.ERRORS_INSIGHTS
    [finding] = result.findings
    assert finding.severity is WARNING and finding.evidence["errors"] == 25_678
    assert finding.evidence["patterns"] == 1 and set(result.data["log_groups"]) == {BACKEND}
    assert [f.severity for f in again.findings] == [WARNING]


def test_rds_connection_errors_insights_request(insights_ctx):
    ctx = insights_ctx
    answer = [[{"field": "bin(1m)", "value": "2026-11-28 19:05:00.000"}, {"field": "kind", "value": "too many clients"},
               {"field": "errors", "value": "13"},
               {"field": "sample", "value": "...:FATAL:  sorry, too many clients already"}]]
    with Stubber(ctx.client("logs")) as stub:
        stub_groups(stub, RDS)
        stub.add_response("start_query", {"queryId": "q"}, {
            "logGroupNames": [RDS], "startTime": ANY, "endTime": ANY, "queryString": L.rds_insights(1),
            "limit": 10_000})
        stub.add_response("get_query_results", {"status": "Complete", "results": answer})
        result = ctx.run("logs.rds.connection_errors")
        stub.assert_no_pending_responses()
    [finding] = result.findings
    assert finding.severity is WARNING and finding.evidence["by_kind"] == {"too many clients": 13}


def test_access_denied_becomes_an_error_finding(insights_ctx):
    ctx = insights_ctx
    with Stubber(ctx.client("logs")) as stub:
        stub_groups(stub, RDS)
        stub.add_client_error("start_query", "AccessDeniedException", "not allowed")
        result = ctx.run("logs.rds.connection_errors")
    [finding] = result.findings
    assert finding.severity is ERROR and "logs:StartQuery" in finding.detail


# =============================================================================================
# Layer 3: the filter_log_events fallback against moto
# =============================================================================================

@pytest.fixture(scope="module")
def moto_env():
    """Backend, frontend and RDS log groups with incident-like lines in the last hour."""
    with mock_aws():
        import boto3

        logs = boto3.client("logs", region_name="us-east-1")
        now = datetime.now(UTC)
        content = {
            BACKEND: [msg for _, g, msg in DEMO_ACCESS if g == BACKEND] + [msg for _, _, msg in TIMEOUTS] * 10,
            FRONTEND: [msg for _, g, msg in DEMO_ACCESS if g == FRONTEND],
            RDS: [msg for _, _, msg in RDS_LINES],
        }
        for group, messages in content.items():
            logs.create_log_group(logGroupName=group)
            logs.create_log_stream(logGroupName=group, logStreamName="s1")
            start = now - timedelta(minutes=50)
            logs.put_log_events(logGroupName=group, logStreamName="s1", logEvents=[
                {"timestamp": int((start + timedelta(seconds=20 * i)).timestamp() * 1000), "message": m}
                for i, m in enumerate(messages)])
        yield


def test_fallback_checks_against_moto(moto_env, make_context):
    ctx = make_context(logs_query="filter", logs={**APP_LOGS, "rds": RDS})
    errors = ctx.run("logs.errors.recent")
    [finding] = errors.findings
    assert finding.severity is WARNING and finding.evidence["errors"] == 62  # 60 timeouts + 2 ERROR access lines
    assert errors.data.iloc[0]["count"] == 60
    assert not errors.frames["errors per period by pattern"].empty
    status = ctx.run("logs.status_codes")
    assert [f.severity for f in status.findings] == [WARNING]
    assert status.findings[0].evidence["by_status"] == {"200": 2, "201": 1, "404": 1, "502": 2}
    rds = ctx.run("logs.rds.connection_errors")
    assert [f.severity for f in rds.findings] == [WARNING] and rds.findings[0].evidence["errors"] == 4


def test_fallback_missing_groups_are_info_and_the_rest_is_still_judged(moto_env, make_context):
    ctx = make_context(logs_query="filter", logs={"backend": BACKEND, "frontend": "/ecs/nope",
                                                  "rds": "/aws/rds/instance/nope/postgresql"})
    errors = ctx.run("api.logs.errors")
    assert {f.resource: f.severity for f in errors.findings} == {"logs:/ecs/nope": INFO, f"logs:{BACKEND}": WARNING}
    rds = ctx.run("logs.rds.connection_errors")
    assert [f.severity for f in rds.findings] == [INFO] and "not found" in rds.findings[0].title


def test_rds_group_defaults_to_the_instance_export_name(moto_env, make_context):
    ctx = make_context(logs_query="filter", logs={"backend": BACKEND})  # no logs.rds: derived from the instance
    assert L.rds_group(ctx) == RDS
    assert [f.severity for f in ctx.run("logs.rds.connection_errors").findings] == [WARNING]


def test_plots_render_for_data_and_for_nothing(moto_env, make_context, monkeypatch):
    from rmsops.core.registry import get
    from rmsops.render import plots

    moment = datetime.now(UTC) - timedelta(minutes=10)
    ctx = make_context(logs_query="filter", logs={**APP_LOGS, "rds": RDS})
    for cid in ("logs.errors.recent", "logs.status_codes", "logs.rds.connection_errors", "api.logs.errors"):
        result = ctx.run(cid)
        result.markers = [(moment, "deploy rms-backend")]  # no ECS here
        assert plots.svg(get(cid).plot(result, ctx)).startswith(b"<?xml")
    empty = make_context(logs_query="filter", logs={"backend": "/ecs/nope"}, window="5m")
    for cid in ("logs.errors.recent", "logs.status_codes"):
        assert plots.svg(get(cid).plot(empty.run(cid), empty)).startswith(b"<?xml")


# =============================================================================================
# Layer 4: the served demo and the notebook
# =============================================================================================

def demo_severities(scenario: str) -> dict[str, list[Severity]]:
    from rmsops.core.context import Context
    from tests.demo_server import served

    ctx = Context.open(served(scenario).env_file)
    try:
        return {r.check: [f.severity for f in r.findings] for r in ctx.run_all("11-log-analysis")}
    finally:
        ctx.close()


def test_demo_incident_shows_errors_5xx_and_connection_errors():
    found = demo_severities("incident")
    assert found == {"logs.errors.recent": [WARNING], "logs.status_codes": [WARNING],
                     "logs.rds.connection_errors": [WARNING]}


def test_demo_healthy_has_nothing_above_info():
    found = demo_severities("healthy")
    assert found == {"logs.errors.recent": [OK], "logs.status_codes": [OK], "logs.rds.connection_errors": [OK]}


def test_notebook_runs_against_the_demo(tmp_path):
    from rmsops.core import config, runbooks
    from rmsops.core.window import resolve
    from rmsops.execution.runner import collect_findings, run_runbook
    from tests.demo_server import served

    runbook = runbooks.find("11")
    outcome = run_runbook(runbook, config.load(served("incident").env_file), resolve("1h"), tmp_path)
    assert outcome.status == "done", outcome.error
    findings = collect_findings(nbformat.read(outcome.notebook, as_version=4))
    assert {f.check for f in findings} == set(runbook.checks)
    assert {f.severity for f in findings} == {WARNING}
    assert outcome.html is not None and outcome.html.read_text().count("data:image/svg+xml;base64") >= 3
