"""Amazon Athena: run one query with a deadline, stop it when rmsops stops waiting, read its rows.

For logs too large to download (the ``athena:`` section of the environment file). A query is
polled with ``GetQueryExecution`` (backoff from 0.2 s to 2 s) until it ends or its deadline: the
sooner of ``timeout`` and the run's time budget (``rmsops.core.budget``) less a margin to report
in. A query rmsops stops waiting for is stopped (``StopQueryExecution``): at its deadline, on
Ctrl-C (KeyboardInterrupt), when it has scanned more than ``max_scanned_mb`` (Athena reports the
running total while it runs), and at the exit of a process whose check thread was abandoned (a
budget that ran out, ``rmsops check``'s daemon threads). Results are read with
``GetQueryResults``, page by page. What Athena scanned (``Statistics.DataScannedInBytes``), the
query id and the workgroup's own cutoff are returned with the rows, for the finding's evidence.

``max_scanned_mb`` is enforced by AWS only as the workgroup's ``BytesScannedCutoffPerQuery``
(Athena then fails the query); rmsops reports whether the workgroup has one, and stops a query
whose running total passes the limit, which can be seconds late.
"""

from __future__ import annotations

import atexit
import contextlib
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from rmsops.core import budget

if TYPE_CHECKING:
    from rmsops.core.config import AthenaSettings
    from rmsops.core.context import Context

DEFAULT_TIMEOUT = 120.0  # seconds a query may run when the run has no budget
BUDGET_MARGIN = 3.0  # seconds kept from the run's budget to stop the query and report
_NUMERIC = {"tinyint", "smallint", "integer", "int", "bigint", "double", "float", "real", "decimal"}
_DONE = {"SUCCEEDED", "FAILED", "CANCELLED"}
MB = 1024 * 1024


class AthenaError(RuntimeError):
    """A query that failed, was cancelled, ran out of time or scanned too much: one line for the finding."""


@dataclass(frozen=True)
class Query:
    """Where one query runs: the environment's Athena settings."""

    database: str
    workgroup: str
    output_location: str | None
    max_scanned_mb: float

    @classmethod
    def of(cls, settings: AthenaSettings) -> Query:
        return cls(settings.database, settings.workgroup, settings.output_location, settings.max_scanned_mb)


# Queries started and not yet ended, stopped at exit when their thread was abandoned.
_running: dict[str, Any] = {}
_running_lock = threading.Lock()


def _stop_abandoned() -> None:
    with _running_lock:
        left = list(_running.items())
        _running.clear()
    for query_id, client in left:
        with contextlib.suppress(Exception):
            client.stop_query_execution(QueryExecutionId=query_id)


atexit.register(_stop_abandoned)


def deadline_for(timeout: float) -> float:
    """A monotonic deadline: ``timeout`` from now, or sooner when the run's budget ends sooner."""
    seconds = timeout
    left = budget.remaining()
    if left is not None:
        seconds = min(seconds, max(0.0, left - BUDGET_MARGIN))
    return time.monotonic() + seconds


def workgroup_cutoff_mb(ctx: Context, workgroup: str) -> float | None:
    """The workgroup's BytesScannedCutoffPerQuery in MB (None: no cutoff), read once per run."""
    def fetch() -> float | None:
        answer = ctx.client("athena").get_work_group(WorkGroup=workgroup)
        configuration = answer.get("WorkGroup", {}).get("Configuration", {}) or {}
        cutoff = configuration.get("BytesScannedCutoffPerQuery")
        return round(cutoff / MB, 1) if cutoff else None
    return ctx.memo(f"athena.workgroup.{workgroup}", fetch)


def run(ctx: Context, sql: str, query: Query, timeout: float = DEFAULT_TIMEOUT) -> pd.DataFrame:
    """The query's rows (numeric columns as numbers); ``attrs["athena"]`` says what it cost.

    Raises AthenaError (one line) when the query fails, is cancelled, passes ``max_scanned_mb`` or
    its deadline; the query is stopped first in the last two cases.
    """
    athena = ctx.client("athena")
    cutoff = workgroup_cutoff_mb(ctx, query.workgroup)
    deadline = deadline_for(timeout)
    if deadline <= time.monotonic():
        raise AthenaError("no time left in the run's budget to start an Athena query")
    start: dict[str, Any] = {"QueryString": sql, "WorkGroup": query.workgroup,
                             "QueryExecutionContext": {"Database": query.database}}
    if query.output_location:
        start["ResultConfiguration"] = {"OutputLocation": query.output_location}
    query_id = athena.start_query_execution(**start)["QueryExecutionId"]
    with _running_lock:
        _running[query_id] = athena
    try:
        execution = _wait(athena, query_id, deadline, query.max_scanned_mb)
    except BaseException:  # a deadline, too much scanned, Ctrl-C, a failed poll: the query must not go on
        with contextlib.suppress(Exception):
            athena.stop_query_execution(QueryExecutionId=query_id)
        raise
    finally:
        with _running_lock:
            _running.pop(query_id, None)
    stats = _stats(execution, query, cutoff)
    state = execution["Status"]["State"]
    if state != "SUCCEEDED":
        reason = " ".join(str(execution["Status"].get("StateChangeReason") or "no reason given").split())
        raise AthenaError(f"the Athena query {query_id} {state.lower()}: {reason[:300]}")
    frame = _results(athena, query_id)
    frame.attrs["athena"] = stats
    return frame


def _wait(athena: Any, query_id: str, deadline: float, max_scanned_mb: float) -> dict[str, Any]:
    delay = 0.2
    while True:
        execution = athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]
        state = execution["Status"]["State"]
        if state in _DONE:
            return execution
        scanned = (execution.get("Statistics") or {}).get("DataScannedInBytes") or 0
        if scanned > max_scanned_mb * MB:
            raise AthenaError(f"the Athena query {query_id} was stopped: it had scanned {scanned / MB:.0f} MB, "
                              f"more than athena.max_scanned_mb ({max_scanned_mb:g}); narrow the window")
        left = deadline - time.monotonic()
        if left <= 0:
            raise AthenaError(f"the Athena query {query_id} did not finish in time ({state.lower()} when "
                              "rmsops stopped it); narrow the window or give the run more --budget")
        time.sleep(min(delay, left))
        delay = min(delay * 1.5, 2.0)


def _stats(execution: dict[str, Any], query: Query, cutoff_mb: float | None) -> dict[str, Any]:
    statistics = execution.get("Statistics") or {}
    scanned = int(statistics.get("DataScannedInBytes") or 0)
    return {"engine": "athena", "query_execution_id": execution.get("QueryExecutionId", ""),
            "workgroup": query.workgroup, "database": query.database,
            "data_scanned_bytes": scanned, "data_scanned_mb": round(scanned / MB, 1),
            "engine_execution_ms": int(statistics.get("EngineExecutionTimeInMillis") or 0),
            "max_scanned_mb": query.max_scanned_mb, "workgroup_cutoff_mb": cutoff_mb,
            "cutoff_enforced": cutoff_mb is not None and cutoff_mb <= query.max_scanned_mb}


def _results(athena: Any, query_id: str) -> pd.DataFrame:
    """Every page of the results; the first row of the first page is the header (a SELECT's)."""
    rows: list[list[str | None]] = []
    columns: list[dict[str, Any]] = []
    for page in athena.get_paginator("get_query_results").paginate(QueryExecutionId=query_id):
        result = page.get("ResultSet", {})
        columns = columns or result.get("ResultSetMetadata", {}).get("ColumnInfo", [])
        rows += [[cell.get("VarCharValue") for cell in row.get("Data", [])] for row in result.get("Rows", [])]
    names = [c.get("Name", f"_col{i}") for i, c in enumerate(columns)]
    if rows and rows[0] == names:
        rows = rows[1:]
    frame = pd.DataFrame([row + [None] * (len(names) - len(row)) for row in rows], columns=names)
    for info in columns:
        if str(info.get("Type", "")).lower() in _NUMERIC:
            frame[info["Name"]] = pd.to_numeric(frame[info["Name"]], errors="coerce")
    return frame
