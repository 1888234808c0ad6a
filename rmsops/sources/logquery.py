"""Log queries: CloudWatch Logs Insights in production, filter_log_events where Insights is missing.

The production path aggregates on AWS's side (``start_query`` + polling ``get_query_results``;
10 000 rows unless a larger ``limit`` is asked for, paged by ``nextToken``), so large log groups
cost seconds, not downloads. Emulators such as moto ignore ``filter``/``stats`` in Insights
queries, so an environment may set ``logs_query: filter``: then the raw events are fetched with
``filter_log_events`` and the query's ``aggregate`` function turns them into the same rows here,
with pandas.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import pandas as pd
from botocore.exceptions import ClientError

from rmsops.core import budget
from rmsops.core.findings import Finding, Severity
from rmsops.sources import limits

if TYPE_CHECKING:
    from rmsops.core.context import Context
    from rmsops.core.window import Window

INSIGHTS_ROW_LIMIT = 10_000  # the rows a query returns by default (one page of get_query_results)
INSIGHTS_MAX_ROWS = 100_000  # the most a query may return, in pages of 10 000 (StartQuery's limit)
FILTER_MAX_EVENTS = 50_000  # the events the fallback reads before it stops (``attrs["truncated"]``)
SLOT_FIRST_WAIT = 1.0  # seconds before asking again for a query slot (then doubling, up to SLOT_MAX_WAIT)
SLOT_MAX_WAIT = 8.0
EVENT_COLUMNS = ["timestamp", "log_group", "stream", "message"]
_DONE = {"Complete", "Failed", "Cancelled", "Timeout", "Unknown"}


@dataclass(frozen=True)
class LogQuery:
    """One question asked of the logs, in both forms."""

    insights: str  # the Logs Insights query (production)
    filter_pattern: str = ""  # the filter_log_events pattern for the fallback (plain terms)
    # Fallback: raw events (EVENT_COLUMNS) -> the rows the Insights query would have returned.
    aggregate: Callable[[pd.DataFrame], pd.DataFrame] | None = None


def run(ctx: Context, log_groups: Sequence[str], query: LogQuery, window: Window | None = None,
        limit: int = INSIGHTS_ROW_LIMIT, region: str | None = None) -> pd.DataFrame:
    """Rows answering ``query`` over the window, by the environment's ``logs_query`` mode.

    ``attrs["truncated"]`` tells whether the rows may be incomplete (the Insights row limit, or the
    fallback's event cap). ``region``: where the log groups are (default: the environment's).
    """
    window = window or ctx.window
    if ctx.settings.logs_query == "insights":
        return insights(ctx, log_groups, query.insights, window, limit, region=region)
    events = filter_events(ctx, log_groups, query.filter_pattern, window, region=region)
    if query.aggregate is None:
        return events
    rows = query.aggregate(events)
    truncated = bool(events.attrs.get("truncated")) or len(rows) > limit
    rows = rows.head(limit)
    rows.attrs["truncated"] = truncated
    return rows


def insights(ctx: Context, log_groups: Sequence[str], query_string: str, window: Window,
             limit: int = INSIGHTS_ROW_LIMIT, timeout: float = 120.0, region: str | None = None) -> pd.DataFrame:
    """Run a Logs Insights query and wait for it; ``attrs["truncated"]`` when the row limit was hit.

    It waits at most ``timeout`` seconds, and never past the run's budget: for a free query slot
    when the account already runs as many queries as it may (StartQuery's LimitExceededException),
    then for the answer, asking with growing pauses (0.2 s up to 2 s).
    """
    if len(log_groups) > limits.LOGS_INSIGHTS_LOG_GROUPS:  # one query cannot, and splitting breaks its stats
        raise ValueError(f"a Logs Insights query reads at most {limits.LOGS_INSIGHTS_LOG_GROUPS} log groups; "
                         f"{len(log_groups)} were given")
    logs = ctx.client("logs", region)
    limit = max(1, min(limit, INSIGHTS_MAX_ROWS))
    left = budget.remaining()
    allowed = timeout if left is None else min(timeout, left)
    deadline = time.monotonic() + allowed
    query_id = _start_query(logs, deadline, logGroupNames=list(log_groups), startTime=int(window.start.timestamp()),
                            endTime=math.ceil(window.end.timestamp()), queryString=query_string, limit=limit)
    delay = 0.2
    while True:
        answer = logs.get_query_results(queryId=query_id)
        if answer.get("status") in _DONE:
            break
        if time.monotonic() > deadline:
            with contextlib.suppress(Exception):  # it may have finished meanwhile
                logs.stop_query(queryId=query_id)
            said = "" if allowed == timeout else " (what was left of the run's time budget)"
            raise TimeoutError(f"Logs Insights query did not finish in {allowed:.0f} s{said}; narrow the window")
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 1.5, 2.0)
    if answer["status"] != "Complete":
        raise RuntimeError(f"Logs Insights query ended {answer['status']}")
    results, statistics = list(answer.get("results", [])), answer.get("statistics", {})
    while answer.get("nextToken") and len(results) < limit:  # pages of 10 000 rows (limit > 10 000)
        answer = logs.get_query_results(queryId=query_id, nextToken=answer["nextToken"])
        results += answer.get("results", [])
    frame = insights_frame(results)
    frame.attrs["truncated"] = len(frame) >= limit
    frame.attrs["statistics"] = statistics
    return frame


def _start_query(logs: object, deadline: float, **request: object) -> str:
    """StartQuery, waiting (with growing pauses) for a query slot of the account until ``deadline``.

    Logs Insights runs a limited number of queries per account and region at once; one more is
    refused with LimitExceededException until another ends, which takes seconds, not minutes.
    """
    began, pause = time.monotonic(), SLOT_FIRST_WAIT
    while True:
        try:
            return logs.start_query(**request)["queryId"]  # type: ignore[attr-defined]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "LimitExceededException":
                raise
            if time.monotonic() + pause > deadline:
                raise RuntimeError(
                    "Logs Insights refused the query: the account already runs as many queries as its "
                    f"concurrency quota allows (LimitExceededException); no slot freed in "
                    f"{time.monotonic() - began:.0f} s. Try again when other queries have ended.") from exc
        time.sleep(pause)
        pause = min(pause * 2, SLOT_MAX_WAIT)


def truncated(*frames: pd.DataFrame) -> bool:
    """Whether any of these answers of ``run`` (or their copies that kept ``attrs``) was capped."""
    return any(bool(frame.attrs.get("truncated")) for frame in frames)


def mark_truncated(findings: list[Finding], capped: bool) -> list[Finding]:
    """Say on every judgement built from capped log rows that they were capped: evidence
    ``truncated: true`` and a sentence in the detail (the counts are then lower bounds).

    Logs Insights returns at most the query's ``limit`` rows (10 000 unless asked for more) and the
    fallback reads at most FILTER_MAX_EVENTS events, so a busy window may hold more than was seen.
    ``error`` findings (the query did not run) are left as they are.
    """
    if not capped:
        return findings
    note = ("The log query's results were capped at its row limit, so the counts here are lower bounds; "
            "narrow the window to see everything.")
    return [finding if finding.severity == Severity.ERROR else
            replace(finding, detail=f"{finding.detail} {note}".strip(),
                    evidence={**finding.evidence, "truncated": True})
            for finding in findings]


def _is_time_field(name: str) -> bool:
    return name == "@timestamp" or name.startswith("bin(")


def insights_time(values: pd.Series) -> pd.Series:
    """Insights times as UTC timestamps: "2026-11-28 19:05:00.000" (AWS) or epoch milliseconds."""
    text = values.astype("string")
    epoch = pd.to_numeric(text, errors="coerce")
    parsed = pd.to_datetime(text.where(epoch.isna()), utc=True, errors="coerce", format="mixed")
    from_epoch = pd.to_datetime(epoch, unit="ms", utc=True, errors="coerce")
    return parsed.where(epoch.isna(), from_epoch)


def insights_frame(results: list[list[dict]]) -> pd.DataFrame:
    """Insights rows ([{field, value}, ...]) as a DataFrame.

    ``@ptr`` is dropped; ``@timestamp`` and ``bin(...)`` fields become UTC timestamps; a column whose
    values are all numbers (stats results such as ``count(*)``) becomes numeric. A field missing from
    a row (Insights leaves out empty fields) is missing in the frame.
    """
    records = [{cell["field"]: cell.get("value") for cell in row if cell.get("field") != "@ptr"}
               for row in results]
    frame = pd.DataFrame.from_records(records)
    for column in frame.columns:
        if _is_time_field(str(column)):
            frame[column] = insights_time(frame[column])
            continue
        present = frame[column].dropna()
        numbers = pd.to_numeric(present, errors="coerce")
        if len(present) and numbers.notna().all():
            frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


def filter_events(ctx: Context, log_groups: Sequence[str], pattern: str, window: Window,
                  max_events: int = FILTER_MAX_EVENTS, region: str | None = None) -> pd.DataFrame:
    """Raw events of each group in the window (paginated), sorted by time.

    At most ``max_events`` are read (the first ones the API returns, i.e. the oldest of each group);
    ``attrs["truncated"]`` says when the cap was hit.
    """
    logs = ctx.client("logs", region)
    rows: list[tuple] = []
    truncated = False
    for group in log_groups:
        kwargs = {"logGroupName": group, "startTime": int(window.start.timestamp() * 1000),
                  "endTime": int(window.end.timestamp() * 1000)}
        if pattern:
            kwargs["filterPattern"] = pattern
        for page in logs.get_paginator("filter_log_events").paginate(**kwargs):
            rows.extend((event["timestamp"], group, event.get("logStreamName", ""), event.get("message", ""))
                        for event in page.get("events", []))
            if len(rows) >= max_events:
                truncated = True
                break
        if truncated:
            break
    frame = pd.DataFrame(rows[:max_events], columns=EVENT_COLUMNS)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], unit="ms", utc=True)
    frame = frame.sort_values("timestamp", kind="stable").reset_index(drop=True)
    frame.attrs["truncated"] = truncated
    return frame
