"""X-Ray traces: fetch the window's traces and time their subsegments (guide "Slow API Responses" step 1).

The guide says: filter traces by service name and time range, identify slow subsegments. Here:

1. ``get_trace_summaries`` lists the traces of the window (paginated, at most ``MAX_SUMMARIES``;
   the window is clipped to its last ``MAX_TRACE_HOURS`` hours). No ``FilterExpression`` is sent:
   the service filter is applied to the segment documents instead, which works the same against
   AWS and emulators (moto answers any filter expression with ``InternalFailure``).
2. The slowest ``MAX_TRACES`` traces are fetched with ``batch_get_traces``, 5 ids per call (the API's
   limit), ``FETCHES_AT_ONCE`` calls at a time: one after another, the 20 calls were the longest
   chain of a `check` against a real account (2 s of waiting at 100 ms a call).
3. Each segment document of a wanted service becomes rows: one per subsegment (nested ones too),
   with its duration and its *own* time: the duration minus the time covered by its nested
   subsegments. Own times add up to at most the segment's duration, so a wrapper subsegment
   (a handler around a database call) does not hide the call that is actually slow.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pandas as pd

from rmsops.core import fanout
from rmsops.core.window import Window
from rmsops.sources import limits

if TYPE_CHECKING:
    from rmsops.core.context import Context

BATCH_SIZE = limits.XRAY_BATCH_GET_TRACES  # batch_get_traces takes at most 5 trace ids per call
MAX_TRACES = 100  # the slowest traces of the window that are fetched in full
MAX_TRACE_HOURS = 6  # the most recent part of the window that trace summaries are listed for
MAX_SUMMARIES = 5000  # trace summaries read (pages of up to 100) before picking the slowest
FETCHES_AT_ONCE = 4  # batch_get_traces calls in flight: a fifth of the chain's wait, a gentle rate

SEGMENT_COLUMNS = ["trace_id", "service", "segment_id", "start", "seconds", "status", "fault",
                   "error", "url"]
SUBSEGMENT_COLUMNS = ["trace_id", "service", "segment_id", "name", "namespace", "kind", "depth",
                      "start", "seconds", "own_seconds", "fault", "error"]


def trace_window(window: Window) -> Window:
    """The part of *window* that trace summaries are listed for (its last MAX_TRACE_HOURS hours)."""
    start = max(window.start, window.end - timedelta(hours=MAX_TRACE_HOURS))
    return Window(start, window.end)


def trace_summaries(ctx: Context, window: Window, limit: int = MAX_SUMMARIES) -> list[dict[str, Any]]:
    """The window's trace summaries (``get_trace_summaries``, paginated, no filter), at most *limit*."""
    xray = ctx.client("xray")
    span = trace_window(window)
    summaries: list[dict[str, Any]] = []
    for page in xray.get_paginator("get_trace_summaries").paginate(StartTime=span.start, EndTime=span.end):
        summaries += page.get("TraceSummaries", [])
        if len(summaries) >= limit:  # a busy service: enough to find the slowest among them
            break
    return summaries[:limit]


def slowest_ids(summaries: Iterable[dict[str, Any]], limit: int = MAX_TRACES) -> list[str]:
    """The ids of the *limit* slowest traces (by ``Duration``), slowest first, without duplicates."""
    ordered = sorted(summaries, key=lambda s: float(s.get("Duration") or 0.0), reverse=True)
    seen: dict[str, None] = {}
    for summary in ordered:
        if summary.get("Id"):
            seen.setdefault(summary["Id"], None)
    return list(seen)[:limit]


def chunks(items: list[str], size: int = BATCH_SIZE) -> Iterator[list[str]]:
    return limits.chunks(items, size)


def batch_get_traces(ctx: Context, trace_ids: list[str]) -> list[dict[str, Any]]:
    """The full traces (``Id``, ``Duration``, ``Segments[].Document``), BATCH_SIZE ids per call,
    ``FETCHES_AT_ONCE`` calls at a time; in the order of ``trace_ids``."""
    xray = ctx.client("xray")

    def fetch(chunk: list[str]) -> list[dict[str, Any]]:
        traces: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"TraceIds": chunk}
        while True:
            answer = xray.batch_get_traces(**kwargs)
            traces += answer.get("Traces", [])
            token = answer.get("NextToken")
            if not token:
                return traces
            kwargs["NextToken"] = token

    batches = fanout.each(fetch, list(chunks(trace_ids)), FETCHES_AT_ONCE, "rmsops-xray")
    return [trace for traces in batches for trace in traces]


def segment_documents(traces: Iterable[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(trace id, parsed segment document) for every segment; unparseable documents are skipped."""
    for trace in traces:
        for segment in trace.get("Segments", []):
            try:
                document = json.loads(segment.get("Document") or "")
            except (TypeError, ValueError):
                continue
            if isinstance(document, dict):
                yield trace.get("Id", document.get("trace_id", "")), document


def _seconds(node: dict[str, Any]) -> float | None:
    start, end = node.get("start_time"), node.get("end_time")
    if not isinstance(start, int | float) or not isinstance(end, int | float):
        return None  # in progress: no duration yet
    return max(0.0, float(end) - float(start))


def _covered(parent: dict[str, Any], children: list[dict[str, Any]]) -> float:
    """Seconds of *parent* covered by the union of its children's intervals (clipped to it)."""
    low, high = float(parent["start_time"]), float(parent["end_time"])
    intervals = sorted(
        (max(low, float(c["start_time"])), min(high, float(c["end_time"])))
        for c in children if _seconds(c) is not None)
    covered, reach = 0.0, low
    for start, end in intervals:
        start = max(start, reach)
        if end > start:
            covered += end - start
            reach = end
    return covered


def _kind(node: dict[str, Any]) -> str:
    """What the subsegment waits for: ``sql``, ``http`` (a remote call), ``aws`` or ``local``."""
    if "sql" in node:
        return "sql"
    if node.get("namespace") == "aws" or "aws" in node:
        return "aws"
    if node.get("namespace") == "remote" or "http" in node:
        return "http"
    return "local"


def _moment(epoch: Any) -> datetime | None:
    return datetime.fromtimestamp(float(epoch), UTC) if isinstance(epoch, int | float) else None


def _walk(trace_id: str, service: str, segment_id: str, nodes: list[dict[str, Any]], depth: int,
          rows: list[dict[str, Any]]) -> None:
    for node in nodes:
        seconds = _seconds(node)
        if seconds is None:
            continue
        children = [c for c in node.get("subsegments", []) if isinstance(c, dict)]
        rows.append({
            "trace_id": trace_id, "service": service, "segment_id": segment_id,
            "name": str(node.get("name", "?")), "namespace": node.get("namespace", "local"),
            "kind": _kind(node), "depth": depth, "start": _moment(node.get("start_time")),
            "seconds": seconds, "own_seconds": max(0.0, seconds - _covered(node, children)),
            "fault": bool(node.get("fault")), "error": bool(node.get("error")),
        })
        _walk(trace_id, service, segment_id, children, depth + 1, rows)


def frames(traces: Iterable[dict[str, Any]], services: Iterable[str] | None = None
           ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(segments, subsegments) of the wanted services' segment documents (all if *services* is None).

    Inferred segments (downstream AWS services X-Ray adds itself) and in-progress segments are left out.
    """
    wanted = set(services) if services is not None else None
    segments: list[dict[str, Any]] = []
    subsegments: list[dict[str, Any]] = []
    for trace_id, doc in segment_documents(traces):
        name = str(doc.get("name", ""))
        seconds = _seconds(doc)
        if doc.get("inferred") or seconds is None or (wanted is not None and name not in wanted):
            continue
        http = doc.get("http") or {}
        segments.append({
            "trace_id": trace_id, "service": name, "segment_id": doc.get("id", ""),
            "start": _moment(doc.get("start_time")), "seconds": seconds,
            "status": (http.get("response") or {}).get("status"),
            "fault": bool(doc.get("fault")), "error": bool(doc.get("error")),
            "url": str((http.get("request") or {}).get("url", "")),
        })
        children = [c for c in doc.get("subsegments", []) if isinstance(c, dict)]
        _walk(trace_id, name, doc.get("id", ""), children, 1, subsegments)
    return (pd.DataFrame(segments, columns=SEGMENT_COLUMNS),
            pd.DataFrame(subsegments, columns=SUBSEGMENT_COLUMNS))


def services_seen(traces: Iterable[dict[str, Any]]) -> list[str]:
    """The names of the (non-inferred) segments in *traces*, for 'none of yours, but these' findings."""
    return sorted({str(doc.get("name", "")) for _, doc in segment_documents(traces) if not doc.get("inferred")})


def subsegment_times(segments: pd.DataFrame, subsegments: pd.DataFrame, slow_seconds: float
                     ) -> pd.DataFrame:
    """Per service and subsegment name: calls, own time in all traces and in the slow ones, shares.

    ``share`` is the subsegment's own time as a share of its service's total segment time;
    ``slow_share`` the same within the segments slower than *slow_seconds*. Sorted slowest first.
    """
    columns = ["service", "name", "kind", "calls", "traces", "own_seconds", "share", "slow_own_seconds",
               "slow_share", "max_seconds", "seconds"]
    if segments.empty or subsegments.empty:
        return pd.DataFrame(columns=columns)
    slow_ids = set(segments.loc[segments["seconds"] > slow_seconds, "segment_id"])
    total = segments.groupby("service")["seconds"].sum()
    slow_total = segments[segments["segment_id"].isin(slow_ids)].groupby("service")["seconds"].sum()
    subs = subsegments.assign(slow_own=subsegments["own_seconds"].where(
        subsegments["segment_id"].isin(slow_ids), 0.0))
    grouped = subs.groupby(["service", "name"], sort=False).agg(
        kind=("kind", "first"), calls=("name", "size"), traces=("trace_id", "nunique"),
        own_seconds=("own_seconds", "sum"), slow_own_seconds=("slow_own", "sum"),
        max_seconds=("seconds", "max"), seconds=("seconds", "sum")).reset_index()
    grouped["share"] = grouped["own_seconds"] / grouped["service"].map(total).where(lambda t: t > 0)
    grouped["slow_share"] = grouped["slow_own_seconds"] / grouped["service"].map(slow_total).where(
        lambda t: t > 0)
    grouped[["share", "slow_share"]] = grouped[["share", "slow_share"]].fillna(0.0)
    return grouped[columns].sort_values(["own_seconds", "name"], ascending=[False, True]).reset_index(drop=True)
