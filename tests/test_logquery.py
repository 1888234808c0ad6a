"""rmsops.sources.logquery: Logs Insights (production) and the filter_log_events fallback.

moto runs Insights queries but ignores ``filter`` and ``stats`` (it returns every event), so the
Insights path is tested with botocore's ``Stubber`` on the context's own logs client: the Stubber
checks every request against the real API model (parameter names, types, ranges) and the answers
are what Insights returns for such queries (stats fields named after the stat or its alias, no
``@ptr`` for stats, times as "YYYY-MM-DD HH:MM:SS.mmm" UTC strings, numbers as strings). The
fallback path runs against moto.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws

from rmsops.core.window import Window
from rmsops.sources import logquery
from rmsops.sources.logquery import LogQuery, insights_frame

T0 = datetime(2026, 11, 28, 19, 0, tzinfo=UTC)
WINDOW = Window(T0, T0 + timedelta(hours=1))
STATS_QUERY = "filter @message like /ERROR/\n| stats count(*) as errors by bin(5m)"


def cells(**fields: str) -> list[dict[str, str]]:
    return [{"field": k, "value": v} for k, v in fields.items()]


def stats_rows() -> list[list[dict[str, str]]]:
    """What GetQueryResults returns for STATS_QUERY: the bin field is named "bin(5m)", no @ptr."""
    return [[{"field": "bin(5m)", "value": "2026-11-28 19:05:00.000"}, {"field": "errors", "value": "42"}],
            [{"field": "bin(5m)", "value": "2026-11-28 19:10:00.000"}, {"field": "errors", "value": "7"}]]


@pytest.fixture
def no_sleep(monkeypatch):
    monkeypatch.setattr(logquery.time, "sleep", lambda _: None)


# --- insights_frame: parsing realistic result rows -------------------------------------------

def test_insights_frame_parses_a_stats_answer():
    frame = insights_frame(stats_rows())
    assert list(frame.columns) == ["bin(5m)", "errors"]
    assert frame["errors"].tolist() == [42, 7]
    assert pd.api.types.is_integer_dtype(frame["errors"])
    assert frame["bin(5m)"].tolist() == [pd.Timestamp("2026-11-28T19:05:00Z"), pd.Timestamp("2026-11-28T19:10:00Z")]


def test_insights_frame_drops_ptr_parses_timestamps_and_keeps_text():
    rows = [cells(**{"@timestamp": "2026-11-28 19:59:01.250", "@message": "ERROR 502 upstream", "@ptr": "CmAKJgoi"}),
            cells(**{"@timestamp": "2026-11-28 19:58:00.000", "@message": "ERROR 17", "@ptr": "CmAKJgoj"})]
    frame = insights_frame(rows)
    assert list(frame.columns) == ["@timestamp", "@message"]
    assert frame["@timestamp"].iloc[0] == pd.Timestamp("2026-11-28T19:59:01.250Z")
    # a text column stays text even when some values look like numbers
    assert frame["@message"].tolist() == ["ERROR 502 upstream", "ERROR 17"]


def test_insights_frame_reads_moto_epoch_millisecond_timestamps():
    frame = insights_frame([cells(**{"@timestamp": "1795902851127", "@message": "x"})])
    assert frame["@timestamp"].iloc[0] == pd.Timestamp(1795902851127, unit="ms", tz="UTC")


def test_insights_frame_missing_fields_and_empty_answer():
    # Insights leaves a field out of a row when it has no value (e.g. a group with no status)
    frame = insights_frame([cells(status="502", requests="3"), cells(requests="9")])
    assert frame["requests"].tolist() == [3, 9]
    assert frame["status"].iloc[0] == 502 and pd.isna(frame["status"].iloc[1])
    assert insights_frame([]).empty


# --- insights(): the production path, requests checked against the API model -----------------

def test_insights_polls_until_complete_and_sends_a_valid_request(make_context, no_sleep):
    ctx = make_context()
    logs = ctx.client("logs")
    with Stubber(logs) as stub:
        stub.add_response("start_query", {"queryId": "q-1"}, {
            "logGroupNames": ["/ecs/rms-backend", "/ecs/rms-frontend"],
            "startTime": int(WINDOW.start.timestamp()), "endTime": int(WINDOW.end.timestamp()),
            "queryString": STATS_QUERY, "limit": 10_000})
        stub.add_response("get_query_results", {"status": "Scheduled", "results": []}, {"queryId": "q-1"})
        stub.add_response("get_query_results", {"status": "Running", "results": stats_rows()[:1]}, {"queryId": "q-1"})
        stub.add_response("get_query_results", {
            "status": "Complete", "results": stats_rows(),
            "statistics": {"recordsMatched": 49.0, "recordsScanned": 5120.0, "bytesScanned": 912_345.0}},
            {"queryId": "q-1"})
        frame = logquery.insights(ctx, ["/ecs/rms-backend", "/ecs/rms-frontend"], STATS_QUERY, WINDOW)
        stub.assert_no_pending_responses()
    assert frame["errors"].sum() == 49
    assert frame.attrs["truncated"] is False
    assert frame.attrs["statistics"]["recordsMatched"] == 49.0


def test_insights_marks_a_full_answer_truncated_and_follows_next_token(make_context, no_sleep):
    ctx = make_context()
    logs = ctx.client("logs")
    page = [cells(**{"@timestamp": "2026-11-28 19:59:00.000", "@message": f"ERROR {i}"}) for i in range(3)]
    with Stubber(logs) as stub:
        stub.add_response("start_query", {"queryId": "q-2"}, {
            "logGroupNames": ["/ecs/rms-backend"], "startTime": ANY, "endTime": ANY,
            "queryString": "fields @message", "limit": 5})
        stub.add_response("get_query_results", {"status": "Complete", "results": page, "nextToken": "t-1"},
                          {"queryId": "q-2"})
        stub.add_response("get_query_results", {"status": "Complete", "results": page},
                          {"queryId": "q-2", "nextToken": "t-1"})
        frame = logquery.insights(ctx, ["/ecs/rms-backend"], "fields @message", WINDOW, limit=5)
        stub.assert_no_pending_responses()
    assert len(frame) == 6
    assert frame.attrs["truncated"] is True


@pytest.mark.parametrize("status", ["Failed", "Cancelled", "Timeout"])
def test_insights_raises_when_the_query_does_not_complete(make_context, no_sleep, status):
    ctx = make_context()
    with Stubber(ctx.client("logs")) as stub:
        stub.add_response("start_query", {"queryId": "q-3"})
        stub.add_response("get_query_results", {"status": status, "results": []})
        with pytest.raises(RuntimeError, match=status):
            logquery.insights(ctx, ["/ecs/rms-backend"], STATS_QUERY, WINDOW)


def test_insights_gives_up_after_the_timeout_and_stops_the_query(make_context, no_sleep):
    ctx = make_context()
    with Stubber(ctx.client("logs")) as stub:
        stub.add_response("start_query", {"queryId": "q-4"})
        stub.add_response("get_query_results", {"status": "Running", "results": []})
        stub.add_response("stop_query", {"success": True}, {"queryId": "q-4"})
        with pytest.raises(TimeoutError, match="narrow the window"):
            logquery.insights(ctx, ["/ecs/rms-backend"], STATS_QUERY, WINDOW, timeout=0.0)
        stub.assert_no_pending_responses()


def test_run_uses_insights_by_default_and_never_calls_the_fallback(make_context, no_sleep):
    ctx = make_context()
    assert ctx.settings.logs_query == "insights"

    def fallback(_events):
        raise AssertionError("the pandas aggregate must not run in insights mode")

    with Stubber(ctx.client("logs")) as stub:
        stub.add_response("start_query", {"queryId": "q-5"}, {
            "logGroupNames": ["/ecs/rms-backend"], "startTime": ANY, "endTime": ANY,
            "queryString": STATS_QUERY, "limit": 10_000})
        stub.add_response("get_query_results", {"status": "Complete", "results": stats_rows()})
        frame = logquery.run(ctx, ["/ecs/rms-backend"], LogQuery(STATS_QUERY, "ERROR", fallback), window=WINDOW)
    assert frame["errors"].tolist() == [42, 7]


# --- the filter_log_events fallback against moto ---------------------------------------------

@pytest.fixture(scope="module")
def moto_logs():
    """Two log groups with lines around a fixed window (moto, module scope)."""
    with mock_aws():
        import boto3

        logs = boto3.client("logs", region_name="us-east-1")
        lines = {
            "/ecs/rms-backend": [(-5, "INFO before the window"), (1, "ERROR timeout after 30.1 s"),
                                 (2, "INFO GET /api 200"), (30, "ERROR timeout after 29.8 s"),
                                 (59, "ERROR pool exhausted"), (61, "ERROR after the window")],
            "/ecs/rms-frontend": [(3, 'ERROR 10.0.1.7 "GET / HTTP/1.1" 502'), (40, '10.0.1.8 "GET / HTTP/1.1" 200')],
        }
        for group, events in lines.items():
            logs.create_log_group(logGroupName=group)
            logs.create_log_stream(logGroupName=group, logStreamName="s1")
            logs.put_log_events(logGroupName=group, logStreamName="s1", logEvents=[
                {"timestamp": int((T0 + timedelta(minutes=m)).timestamp() * 1000), "message": text}
                for m, text in events])
        yield logs


def count_errors(events: pd.DataFrame) -> pd.DataFrame:
    errors = events[events["message"].str.contains("ERROR", regex=False)]
    return errors.groupby("log_group").size().reset_index(name="errors")


def test_filter_events_reads_every_group_in_the_window_sorted(moto_logs, make_context):
    ctx = make_context(logs_query="filter")
    events = logquery.filter_events(ctx, ["/ecs/rms-backend", "/ecs/rms-frontend"], "", WINDOW)
    assert list(events.columns) == logquery.EVENT_COLUMNS
    assert len(events) == 6  # the lines before and after the window are not read
    assert events["timestamp"].is_monotonic_increasing
    assert set(events["log_group"]) == {"/ecs/rms-backend", "/ecs/rms-frontend"}
    assert events.attrs["truncated"] is False


def test_run_in_filter_mode_sends_the_pattern_and_aggregates_with_pandas(moto_logs, make_context):
    ctx = make_context(logs_query="filter")
    query = LogQuery(STATS_QUERY, "ERROR", count_errors)
    rows = logquery.run(ctx, ["/ecs/rms-backend", "/ecs/rms-frontend"], query, window=WINDOW)
    assert dict(zip(rows["log_group"], rows["errors"], strict=True)) == {"/ecs/rms-backend": 3,
                                                                         "/ecs/rms-frontend": 1}
    assert rows.attrs["truncated"] is False


def test_run_in_filter_mode_without_aggregate_returns_the_events(moto_logs, make_context):
    ctx = make_context(logs_query="filter")
    events = logquery.run(ctx, ["/ecs/rms-backend"], LogQuery(STATS_QUERY, "ERROR"), window=WINDOW)
    assert events["message"].tolist() == ["ERROR timeout after 30.1 s", "ERROR timeout after 29.8 s",
                                          "ERROR pool exhausted"]


def test_filter_events_cap_marks_the_frame_truncated_and_stops_reading(moto_logs, make_context):
    ctx = make_context(logs_query="filter")
    events = logquery.filter_events(ctx, ["/ecs/rms-backend", "/ecs/rms-frontend"], "", WINDOW, max_events=2)
    assert len(events) == 2
    assert set(events["log_group"]) == {"/ecs/rms-backend"}  # the second group is not read at all
    assert events.attrs["truncated"] is True


def test_run_in_filter_mode_caps_aggregated_rows_at_the_limit(moto_logs, make_context):
    ctx = make_context(logs_query="filter")
    rows = logquery.run(ctx, ["/ecs/rms-backend"], LogQuery(STATS_QUERY, "", lambda e: e), window=WINDOW, limit=2)
    assert len(rows) == 2 and rows.attrs["truncated"] is True


def test_filter_events_of_a_missing_group_raises_resource_not_found(moto_logs, make_context):
    ctx = make_context(logs_query="filter")
    logs = ctx.client("logs")
    with pytest.raises(logs.exceptions.ResourceNotFoundException):
        logquery.filter_events(ctx, ["/ecs/nope"], "", WINDOW)
