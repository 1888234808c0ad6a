"""PostgreSQL performance (guide "Database Performance").

The guide's monitoring queries (long-running queries, connections by state, table sizes) and
the catalogue's checks, with PgHero's SQL shapes and thresholds (``lib/pghero/methods``):
``running_queries``, ``query_stats`` (pg_stat_statements, slow = mean ≥ 20 ms with ≥ 100
calls), ``blocked_queries`` (here with ``pg_blocking_pids``), ``table_sizes``,
``missing_indexes`` and the cache hit rates. The slowest slow SELECT is explained by
``rmsops.explain`` (EXPLAIN ANALYZE in a read-only, rolled-back transaction with a timeout).
Every statement runs on the read-only rmsops session.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from rmsops import explain, plots
from rmsops.findings import Finding, Severity
from rmsops.registry import CheckResult, check

if TYPE_CHECKING:
    from rmsops.context import Context

RUNBOOK = "07-database-performance"
MAX_FINDINGS = 10  # per check; the rest are summarised in one more finding

STEP_EXPLAIN = "Analyze slow queries with EXPLAIN ANALYZE (guide: Database Performance, step 1)"
STEP_INDEXES = "Add missing indexes (step 2)"
STEP_ANALYZE = "Update table statistics: ANALYZE (step 3)"
STEP_POOLING = "Consider connection pooling optimization (step 4)"

# --- SQL ---------------------------------------------------------------------------------------



def age_seconds_sql(timestamp: str) -> str:
    """Seconds since ``timestamp`` (SQL), measured against clock_timestamp(), not now(): now() is the
    start of rmsops' own statement, earlier than a query that started since, which came out as a
    negative age ("-0 s"). Never below 0; NULL stays NULL (GREATEST alone would make it 0)."""
    return (f"CASE WHEN {timestamp} IS NULL THEN NULL "
            f"ELSE GREATEST(EXTRACT(EPOCH FROM clock_timestamp() - {timestamp}), 0) END::float")


# PgHero running_queries: not idle, not us, this database, age from COALESCE(query_start, xact_start).
RUNNING_SQL = """
SELECT pid, usename AS user, application_name AS source, client_addr::text AS client, state,
       backend_type, wait_event_type, wait_event,
       COALESCE(query_start, xact_start) AS started_at,
       """ + age_seconds_sql("COALESCE(query_start, xact_start)") + """ AS duration_seconds,
       """ + age_seconds_sql("xact_start") + """ AS transaction_seconds,
       left(query, 2000) AS query
FROM pg_stat_activity
WHERE state <> 'idle' AND pid <> pg_backend_pid() AND datname = current_database()
  AND query <> '<insufficient privilege>'
ORDER BY COALESCE(query_start, xact_start)
"""

# The guide's "connection count by state", client backends only (as db.connections.by_state).
STATES_SQL = """
SELECT coalesce(state, 'unknown') AS state, count(*) AS connections
FROM pg_stat_activity
WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
GROUP BY 1 ORDER BY 2 DESC
"""

STATEMENTS_STATUS_SQL = """
SELECT (SELECT setting FROM pg_settings WHERE name = 'shared_preload_libraries') AS preload,
       EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements') AS created,
       (SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
        WHERE e.extname = 'pg_stat_statements') AS schema,
       current_setting('server_version_num')::int AS version
"""

# PgHero query_stats: total = plan + exec time, this database, calls > 0; grouped per statement
# over users. Top-level statements only (with pg_stat_statements.track = all, nested statements
# are counted inside their caller too); rmsops' own statements are left out.
STATEMENTS_SQL = """
WITH s AS (
  SELECT s.queryid, s.query, s.calls, s.rows, s.total_exec_time + s.total_plan_time AS total_ms,
         s.shared_blks_hit, s.shared_blks_read, r.rolname
  FROM {schema}.pg_stat_statements s
  LEFT JOIN pg_roles r ON r.oid = s.userid
  WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
    AND s.calls > 0 AND s.toplevel AND s.userid <> (SELECT oid FROM pg_roles WHERE rolname = current_user)
), g AS (
  SELECT queryid::text AS queryid, min(query) AS query, sum(calls)::bigint AS calls,
         sum(rows)::bigint AS rows, sum(total_ms)::float AS total_ms,
         sum(shared_blks_hit)::bigint AS shared_blks_hit, sum(shared_blks_read)::bigint AS shared_blks_read,
         string_agg(DISTINCT rolname, ', ') AS users
  FROM s GROUP BY queryid
)
SELECT queryid, users, calls, total_ms, total_ms / calls AS mean_ms,
       100.0 * total_ms / NULLIF(sum(total_ms) OVER (), 0) AS pct_total, rows,
       shared_blks_hit, shared_blks_read, length(query) AS query_chars, left(query, 5000) AS query
FROM g ORDER BY total_ms DESC LIMIT 50
"""
STATEMENTS_SQL_PRE14 = (STATEMENTS_SQL.replace("s.total_exec_time + s.total_plan_time", "s.total_time")
                        .replace(" AND s.toplevel", ""))
STATEMENTS_SQL_PRE13 = STATEMENTS_SQL_PRE14  # total_time until PostgreSQL 13
STATEMENTS_SQL_13 = STATEMENTS_SQL.replace(" AND s.toplevel", "")
STATEMENTS_RESET_SQL = "SELECT stats_reset FROM {schema}.pg_stat_statements_info"
INSUFFICIENT_PRIVILEGE = "<insufficient privilege>"

# Blocked sessions and their blockers (pg_blocking_pids, 9.6+, as pgwatch); only sessions waiting
# on a lock are asked, since pg_blocking_pids takes the lock manager's locks.
BLOCKED_SQL = """
SELECT blocked.pid AS blocked_pid, blocked.usename AS blocked_user,
       blocked.application_name AS blocked_source, blocked.wait_event AS lock_type,
       """ + age_seconds_sql("COALESCE({wait_start}, blocked.query_start)") + """ AS blocked_seconds,
       left(blocked.query, 1000) AS blocked_query,
       blocker.pid AS blocking_pid, blocker.usename AS blocking_user,
       blocker.application_name AS blocking_source, blocker.state AS blocking_state,
       """ + age_seconds_sql("blocker.xact_start") + """ AS blocking_transaction_seconds,
       left(blocker.query, 1000) AS blocking_query
FROM pg_stat_activity blocked
CROSS JOIN LATERAL unnest(pg_blocking_pids(blocked.pid)) AS b(pid)
LEFT JOIN pg_stat_activity blocker ON blocker.pid = b.pid
WHERE blocked.wait_event_type = 'Lock' AND blocked.pid <> pg_backend_pid()
  AND blocked.datname = current_database()
ORDER BY blocked_seconds DESC, blocked.pid, blocker.pid
"""
WAIT_START_14 = "(SELECT min(l.waitstart) FROM pg_locks l WHERE l.pid = blocked.pid AND NOT l.granted)"

# PgHero table_sizes with the split: heap (+ FSM/VM), indexes, TOAST (with its index).
TABLE_SIZES_SQL = """
SELECT n.nspname AS schema, c.relname AS table,
       pg_table_size(c.oid) - COALESCE(pg_total_relation_size(c.reltoastrelid), 0) AS table_bytes,
       pg_indexes_size(c.oid) AS index_bytes,
       COALESCE(pg_total_relation_size(c.reltoastrelid), 0) AS toast_bytes,
       pg_total_relation_size(c.oid) AS total_bytes,
       GREATEST(c.reltuples, 0)::bigint AS estimated_rows
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname !~ '^pg_toast'
ORDER BY total_bytes DESC, schema, "table" LIMIT 50
"""
DATABASE_SIZE_SQL = "SELECT pg_database_size(current_database()) AS bytes"

STALE_SQL = """
SELECT t.schemaname AS schema, t.relname AS table, t.n_live_tup, t.n_dead_tup, t.n_mod_since_analyze,
       t.last_analyze, t.last_autoanalyze, GREATEST(t.last_analyze, t.last_autoanalyze) AS analyzed_at,
       COALESCE(c.reloptions::text[] @> ARRAY['autovacuum_enabled=false'], false) AS autovacuum_disabled
FROM pg_stat_user_tables t JOIN pg_class c ON c.oid = t.relid
ORDER BY t.n_mod_since_analyze DESC, t.schemaname, t.relname
"""

# PgHero missing_indexes: idx_scan > 0 AND 100 * idx_scan / (seq_scan + idx_scan) < 95 AND
# n_live_tup >= 10000 (the judge applies the numbers).
SCANS_SQL = """
SELECT t.schemaname AS schema, t.relname AS table, t.n_live_tup AS estimated_rows, t.seq_scan,
       t.seq_tup_read, COALESCE(t.idx_scan, 0) AS idx_scan,
       CASE WHEN t.seq_scan + COALESCE(t.idx_scan, 0) = 0 THEN NULL
            ELSE 100.0 * COALESCE(t.idx_scan, 0) / (t.seq_scan + COALESCE(t.idx_scan, 0)) END AS index_use_pct,
       (SELECT count(*) FROM pg_index i WHERE i.indrelid = t.relid) AS indexes
FROM pg_stat_user_tables t
ORDER BY t.seq_tup_read DESC, t.schemaname, t.relname
"""

# PgHero table_hit_rate / index_hit_rate.
HIT_RATE_SQL = """
SELECT 'table' AS kind, COALESCE(sum(heap_blks_hit), 0)::bigint AS hit,
       COALESCE(sum(heap_blks_read), 0)::bigint AS read FROM pg_statio_user_tables
UNION ALL
SELECT 'index', COALESCE(sum(idx_blks_hit), 0)::bigint, COALESCE(sum(idx_blks_read), 0)::bigint
FROM pg_statio_user_indexes
"""
HIT_RATE_TABLES_SQL = """
SELECT schemaname AS schema, relname AS table, heap_blks_hit, heap_blks_read,
       COALESCE(idx_blks_hit, 0) AS idx_blks_hit, COALESCE(idx_blks_read, 0) AS idx_blks_read
FROM pg_statio_user_tables
ORDER BY heap_blks_read + COALESCE(idx_blks_read, 0) DESC, schemaname, relname LIMIT 20
"""


# --- helpers -----------------------------------------------------------------------------------


def _resource(ctx_or_instance: Any) -> str:
    name = ctx_or_instance if isinstance(ctx_or_instance, str) else ctx_or_instance.settings.database.instance
    return f"db:{name}"


def duration_text(seconds: float) -> str:
    """A duration for people: never negative (clocks and snapshots disagree by milliseconds), never "-0 s"."""
    if seconds != seconds:  # NaN: no start time recorded
        return "an unknown time"
    seconds = max(0.0, float(seconds))
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def size_text(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def one_line(text: Any, limit: int = 160) -> str:
    """SQL or a message as one short line (newlines and runs of spaces collapsed)."""
    flat = re.sub(r"\s+", " ", str(text or "")).strip()
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def clean(value: Any) -> Any:
    """A JSON-able scalar: NaN/NaT become None, numpy and pandas values plain Python."""
    if value is None:
        return None
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if hasattr(value, "item"):
        return value.item()
    return value


def record(row: Any, columns: list[str] | None = None) -> dict[str, Any]:
    data = row.to_dict() if hasattr(row, "to_dict") else dict(row)
    return {k: clean(v) for k, v in data.items() if columns is None or k in columns}


def quote_ident(name: str) -> str:
    return name if re.fullmatch(r"[a-z_][a-z0-9_$]*", name) else '"' + name.replace('"', '""') + '"'


def qualified(schema: str, table: str) -> str:
    return f"{quote_ident(str(schema))}.{quote_ident(str(table))}"


def server_version(ctx: Context) -> int:
    return ctx.memo("pg.server_version_num", lambda: explain.server_version_num(ctx.db))


def _capped(findings: list[Finding], check_id: str, resource: str, what: str) -> list[Finding]:
    """At most MAX_FINDINGS; the rest become one finding with their worst severity."""
    if len(findings) <= MAX_FINDINGS:
        return findings
    rest = findings[MAX_FINDINGS:]
    worst = min((f.severity for f in rest), key=lambda s: s.rank)
    return findings[:MAX_FINDINGS] + [Finding(
        check_id, worst, resource, f"{len(rest)} more {what}",
        f"Only the first {MAX_FINDINGS} are listed one by one; see the table for all of them.",
        {"more": len(rest), "resources": [f.resource for f in rest][:50]}, rest[0].resolution)]


# --- db.queries.long_running -------------------------------------------------------------------


def is_autovacuum(df: pd.DataFrame) -> pd.Series:
    if df.empty:
        return pd.Series(dtype=bool)
    return (df["backend_type"].fillna("").eq("autovacuum worker")
            | df["query"].fillna("").str.startswith("autovacuum:"))


def judge_long_running(df: pd.DataFrame, thresholds: dict[str, float], instance: str) -> list[Finding]:
    cid = "db.queries.long_running"
    warn, crit = thresholds["long_query_warning_seconds"], thresholds["long_query_critical_seconds"]
    limits = {"threshold_warning_seconds": warn, "threshold_critical_seconds": crit}
    if df.empty:
        return [Finding(cid, Severity.OK, _resource(instance), "No query running (every session is idle)",
                        "pg_stat_activity has no non-idle session in this database besides rmsops.",
                        {"running": 0, **limits})]
    autovac = is_autovacuum(df)
    queries = df[~autovac].sort_values("duration_seconds", ascending=False)
    vacuums = df[autovac].sort_values("duration_seconds", ascending=False)
    findings: list[Finding] = []
    for row in queries[queries["duration_seconds"] > warn].itertuples(index=False):
        seconds = float(row.duration_seconds)
        severity = Severity.CRITICAL if seconds > crit else Severity.WARNING
        waiting = f", waiting on {row.wait_event_type}:{row.wait_event}" if clean(row.wait_event) else ""
        state = str(row.state)
        what = "Transaction idle" if state.startswith("idle in transaction") else "Query running"
        findings.append(Finding(
            cid, severity, f"{_resource(instance)} pid {row.pid}",
            f"{what} for {duration_text(seconds)} (pid {row.pid}, {row.source or 'no application_name'})",
            f"{state}{waiting}; user {row.user}; over the {duration_text(warn)} threshold"
            f"{' and the critical ' + duration_text(crit) if severity == Severity.CRITICAL else ''}: "
            f"{one_line(row.query)}",
            {**record(row._asdict()), "query": one_line(row.query, 1000), **limits},
            f"Find the application ({row.source or 'see client address'}) that runs it and why it takes "
            f"so long ({STEP_EXPLAIN}). Cancelling it (pg_cancel_backend({row.pid})) or ending its "
            "session is a DBA decision; rmsops never does it."))
    findings = _capped(findings, cid, _resource(instance), "long-running queries")
    for row in vacuums[vacuums["duration_seconds"] > warn].itertuples(index=False):
        findings.append(Finding(
            cid, Severity.INFO, f"{_resource(instance)} pid {row.pid}",
            f"autovacuum running for {duration_text(float(row.duration_seconds))}",
            f"{one_line(row.query)}. Usually harmless; it only matters when it blocks DDL or is "
            "an anti-wraparound vacuum.", {**record(row._asdict()), **limits}))
    if not any(f.severity in (Severity.WARNING, Severity.CRITICAL) for f in findings):
        longest = float(queries["duration_seconds"].max()) if not queries.empty else 0.0
        findings.insert(0, Finding(
            cid, Severity.OK, _resource(instance),
            f"No query running longer than {duration_text(warn)}",
            f"{len(queries)} non-idle sessions, the longest for {duration_text(longest)}"
            f"{f'; {len(vacuums)} autovacuum workers' if len(vacuums) else ''}.",
            {"running": len(queries), "longest_seconds": round(longest, 1), **limits}))
    return findings


@check("db.queries.long_running", runbook=RUNBOOK)
def long_running(ctx: Context) -> CheckResult:
    """Queries and transactions running longer than the threshold (pg_stat_activity)."""
    df = ctx.db.frame(RUNNING_SQL)
    findings = judge_long_running(df, ctx.thresholds, ctx.settings.database.instance)
    return CheckResult(findings=findings, data=df)


# --- db.queries.slow ---------------------------------------------------------------------------

ENABLE_STATEMENTS = ("Enable pg_stat_statements: add pg_stat_statements to shared_preload_libraries "
                     "in the instance's DB parameter group (a static parameter: reboot the instance), "
                     "then run CREATE EXTENSION pg_stat_statements; in this database as a member of "
                     "rds_superuser. Check with SHOW shared_preload_libraries.")
CREATE_EXTENSION = ("pg_stat_statements is preloaded; run CREATE EXTENSION pg_stat_statements; in this "
                    "database as a member of rds_superuser.")


def statements_status(ctx: Context) -> dict[str, Any]:
    row = ctx.db.frame(STATEMENTS_STATUS_SQL).iloc[0]
    preload = clean(row["preload"])
    libraries = [p.strip().strip('"') for p in str(preload).split(",")] if preload is not None else None
    return {"preloaded": None if libraries is None else "pg_stat_statements" in libraries,
            "shared_preload_libraries": preload, "created": bool(row["created"]),
            "schema": clean(row["schema"]), "version": int(row["version"])}


def statements_frame(ctx: Context, version: int, schema: str = "public") -> pd.DataFrame:
    sql = STATEMENTS_SQL if version >= 140000 else STATEMENTS_SQL_13 if version >= 130000 else STATEMENTS_SQL_PRE13
    return ctx.db.frame(sql.replace("{schema}", quote_ident(schema)))


def slow_statements(df: pd.DataFrame, thresholds: dict[str, float]) -> pd.DataFrame:
    """PgHero's rule: mean ≥ slow_query_mean_ms over ≥ slow_query_min_calls calls."""
    if df.empty:
        return df
    mask = (df["calls"] >= thresholds["slow_query_min_calls"]) & (df["mean_ms"] >= thresholds["slow_query_mean_ms"])
    return df[mask].sort_values("total_ms", ascending=False)


def judge_slow(status: dict[str, Any], df: pd.DataFrame, thresholds: dict[str, float], instance: str,
               explanation: explain.Explanation | None = None, explained_queryid: str | None = None
               ) -> list[Finding]:
    cid = "db.queries.slow"
    resource = _resource(instance)
    limits = {"threshold_mean_ms": thresholds["slow_query_mean_ms"],
              "threshold_min_calls": thresholds["slow_query_min_calls"]}
    if status.get("preloaded") is False or not status.get("created"):
        if status.get("preloaded") is False:
            missing = "pg_stat_statements is not in shared_preload_libraries"
            resolution = ENABLE_STATEMENTS
        else:
            missing = "the pg_stat_statements extension is not created in this database"
            resolution = CREATE_EXTENSION if status.get("preloaded") else ENABLE_STATEMENTS
        return [Finding(cid, Severity.INFO, resource, "pg_stat_statements is not enabled: slow queries "
                        "cannot be listed", f"{missing} (shared_preload_libraries = "
                        f"{status.get('shared_preload_libraries')!r}).", {**status, **limits}, resolution)]
    if df.empty:
        return [Finding(cid, Severity.OK, resource, "pg_stat_statements has recorded no statement yet",
                        "No statement of other users since the last reset.", {**status, **limits})]
    slow = slow_statements(df, thresholds)
    findings = []
    for row in slow.itertuples(index=False):
        query = str(row.query)
        evidence = {**record(row._asdict(), ["queryid", "users", "calls", "total_ms", "mean_ms",
                                              "pct_total", "rows", "shared_blks_hit", "shared_blks_read"]),
                    "query": query[:1000], **limits}
        explained = ""
        if explanation is not None and str(row.queryid) == explained_queryid:
            evidence["explain"] = explanation.summary()
            explained = f" {_explain_sentence(explanation)}"
        findings.append(Finding(
            cid, Severity.WARNING, f"{resource} queryid {row.queryid}",
            f"Slow statement: {row.mean_ms:.0f} ms mean over {row.calls} calls "
            f"({row.pct_total:.0f}% of statement time)",
            f"{row.total_ms / 1000:.1f} s in total, mean {row.mean_ms:.1f} ms (threshold "
            f"{limits['threshold_mean_ms']:g} ms with ≥ {limits['threshold_min_calls']:g} calls): "
            f"{one_line(query)}.{explained}",
            evidence,
            f"{STEP_EXPLAIN}: the plan is in the evidence and the explain_plan table; then "
            f"{STEP_INDEXES[0].lower()}{STEP_INDEXES[1:]} for the scans it shows, and "
            f"{STEP_ANALYZE[0].lower()}{STEP_ANALYZE[1:]} when estimates are far from actual rows."))
    findings = _capped(findings, cid, resource, "slow statements")
    if not findings:
        top = df.sort_values("total_ms", ascending=False).iloc[0]
        findings.append(Finding(
            cid, Severity.OK, resource,
            f"No statement averages ≥ {limits['threshold_mean_ms']:g} ms over "
            f"≥ {limits['threshold_min_calls']:g} calls",
            f"{len(df)} statements; the most time goes to one of {top['mean_ms']:.1f} ms mean over "
            f"{top['calls']} calls: {one_line(top['query'])}.",
            {"statements": len(df), "top": record(top, ["queryid", "calls", "mean_ms", "total_ms"]),
             **limits}))
    return findings


def _explain_sentence(explanation: explain.Explanation) -> str:
    if explanation.mode == explain.ANALYZE:
        return (f"EXPLAIN ANALYZE (read-only, rolled back): {explanation.execution_ms or 0:.1f} ms, "
                f"{len(explanation.nodes)} plan nodes.")
    if explanation.mode in (explain.PLAIN, explain.GENERIC):
        return f"EXPLAIN ({explanation.mode} plan) shown; {explanation.note}".rstrip("; ") + "."
    return f"No plan: {explanation.note}."


def explain_target(slow: pd.DataFrame) -> pd.Series | None:
    """The slow statement to explain: the one with the most total time, if its text is complete."""
    if slow.empty:
        return None
    return slow.iloc[0]


def explain_slowest(ctx: Context, slow: pd.DataFrame) -> tuple[explain.Explanation | None, str | None]:
    row = explain_target(slow)
    if row is None:
        return None, None
    queryid = str(row["queryid"])
    if str(row["query"]) == INSUFFICIENT_PRIVILEGE:
        return explain.Explanation("", explain.SKIPPED, note=(
            "the monitor role cannot read other users' statement text: GRANT pg_read_all_stats "
            "(or pg_monitor) to it")), queryid
    if int(row["query_chars"]) > len(str(row["query"])):
        return explain.Explanation(str(row["query"]), explain.SKIPPED,
                                   note="the statement text is too long to explain here"), queryid
    try:
        result = explain.explain(ctx.db, str(row["query"]), ctx.thresholds["explain_timeout_ms"],
                                 server_version=server_version(ctx))
    except explain.UnsafeStatement as exc:
        result = explain.Explanation(str(row["query"]), explain.SKIPPED, note=f"refused: {exc}")
    return result, queryid


@check("db.queries.slow", runbook=RUNBOOK, quick=False,  # EXPLAIN ANALYZE: not for the daily check
       plot=lambda result, ctx: plot_statements(result, ctx))
def slow_queries(ctx: Context) -> CheckResult:
    """Slow statements from pg_stat_statements (PgHero: mean ≥ 20 ms, ≥ 100 calls), the slowest explained."""
    status = statements_status(ctx)
    if status["preloaded"] is False or not status["created"]:
        return CheckResult(findings=judge_slow(status, pd.DataFrame(), ctx.thresholds,
                                               ctx.settings.database.instance), data=pd.DataFrame())
    schema = status.get("schema") or "public"
    if status["version"] >= 140000:
        reset = ctx.db.frame(STATEMENTS_RESET_SQL.replace("{schema}", quote_ident(schema)))
        status["stats_reset"] = clean(reset.iat[0, 0]) if not reset.empty else None
    df = statements_frame(ctx, status["version"], schema)
    explanation, queryid = explain_slowest(ctx, slow_statements(df, ctx.thresholds))
    frames = {}
    if explanation is not None:
        frames["explain_plan"] = explanation.nodes
    findings = judge_slow(status, df, ctx.thresholds, ctx.settings.database.instance, explanation, queryid)
    return CheckResult(findings=findings, data=df, frames=frames)


def plot_statements(result: CheckResult, ctx: Context) -> Figure:
    """Top statements by total time (bars) and calls against mean time (scatter)."""
    df = result.data if result.data is not None else pd.DataFrame()
    fig = Figure(figsize=(11, 4.2))
    plots.fixed_margins(fig, 48, label_size=7, wspace=0.3)
    bars, scatter = fig.subplots(1, 2, width_ratios=[1.3, 1])
    for ax in (bars, scatter):
        ax.grid(True, alpha=0.3)
    bars.set_title("Top statements by total time", loc="left", fontsize=11)
    scatter.set_title("Calls against mean time", loc="left", fontsize=11)
    if df.empty:
        for ax in (bars, scatter):
            ax.text(0.5, 0.5, "no statements recorded", ha="center", va="center", transform=ax.transAxes,
                    color="#666")
        return fig
    mean_limit = ctx.thresholds["slow_query_mean_ms"]
    min_calls = ctx.thresholds["slow_query_min_calls"]
    slow = (df["calls"] >= min_calls) & (df["mean_ms"] >= mean_limit)
    top = df.sort_values("total_ms", ascending=False).head(10)
    labels = [one_line(q, 48) for q in top["query"]]
    colours = ["#c62828" if s else "#1565c0" for s in slow.loc[top.index]]
    bars.barh(range(len(top)), top["total_ms"] / 1000, color=colours)
    bars.set_yticks(range(len(top)), labels, fontsize=7)
    bars.invert_yaxis()
    bars.set_xlabel("total time (s)")
    scatter.scatter(df.loc[~slow, "calls"], df.loc[~slow, "mean_ms"], s=18, color="#1565c0", label="statement")
    scatter.scatter(df.loc[slow, "calls"], df.loc[slow, "mean_ms"], s=30, color="#c62828", label="slow")
    scatter.set_xscale("log")
    scatter.set_yscale("log")
    scatter.axhline(mean_limit, color="#ef6c00", linestyle="--", linewidth=1, label=f"{mean_limit:g} ms")
    scatter.axvline(min_calls, color="#f9a825", linestyle="--", linewidth=1, label=f"{min_calls:g} calls")
    scatter.set_xlabel("calls")
    scatter.set_ylabel("mean time (ms)")
    scatter.legend(fontsize=8, loc="upper right")  # not "best": it tries every place, for every point
    return fig


# --- db.locks.blocked --------------------------------------------------------------------------


def blocked_frame(ctx: Context) -> pd.DataFrame:
    wait_start = WAIT_START_14 if server_version(ctx) >= 140000 else "NULL::timestamptz"
    return ctx.db.frame(BLOCKED_SQL.replace("{wait_start}", wait_start))


def judge_blocked(df: pd.DataFrame, thresholds: dict[str, float], instance: str) -> list[Finding]:
    cid = "db.locks.blocked"
    resource = _resource(instance)
    limit = thresholds["blocked_warning_seconds"]
    if df.empty:
        return [Finding(cid, Severity.OK, resource, "No session is blocked by a lock",
                        "No session waits on a lock held by another.", {"blocked": 0, "threshold_seconds": limit})]
    findings = []
    waiting = []
    for pid, group in df.groupby("blocked_pid", sort=False):
        first = group.iloc[0]
        seconds = float(first["blocked_seconds"] or 0.0)
        blockers = [record(r, ["blocking_pid", "blocking_user", "blocking_source", "blocking_state",
                               "blocking_transaction_seconds", "blocking_query"]) for _, r in group.iterrows()]
        pids = ", ".join(str(b["blocking_pid"]) for b in blockers)
        evidence = {**record(first, ["blocked_pid", "blocked_user", "blocked_source", "lock_type",
                                     "blocked_seconds", "blocked_query"]),
                    "blocked_query": one_line(first["blocked_query"], 1000),
                    "blockers": [{**b, "blocking_query": one_line(b["blocking_query"], 1000)} for b in blockers],
                    "threshold_seconds": limit}
        if seconds <= limit:
            waiting.append((int(pid), seconds))
            continue
        head = blockers[0]
        who = head.get("blocking_source") or head.get("blocking_user")
        state = head.get("blocking_state") or "unknown state"
        age = head.get("blocking_transaction_seconds")
        age_text = f", transaction open {duration_text(float(age))}" if age is not None else ""
        findings.append(Finding(
            cid, Severity.WARNING, f"{resource} pid {pid}",
            f"pid {pid} blocked for {duration_text(seconds)} by pid {pids}",
            f"Blocked ({first['blocked_source'] or first['blocked_user']}): {one_line(first['blocked_query'], 120)} "
            f"— blocker pid {head['blocking_pid']} ({state}{age_text}, "
            f"{who}): {one_line(head.get('blocking_query'), 120)}.",
            evidence,
            f"The blocking transaction (pid {pids}) holds the lock: find it in the application and make it "
            "commit or roll back sooner; ending the session (pg_terminate_backend) is a DBA decision. "
            f"Set lock_timeout and idle_in_transaction_session_timeout; {STEP_POOLING[0].lower()}{STEP_POOLING[1:]}."))
    findings = _capped(findings, cid, resource, "blocked sessions")
    if waiting:
        longest = max(s for _, s in waiting)
        findings.append(Finding(
            cid, Severity.INFO, resource,
            f"{len(waiting)} session(s) waiting on a lock for up to {duration_text(longest)}",
            f"Below the {duration_text(limit)} threshold: pids {', '.join(str(p) for p, _ in waiting[:20])}.",
            {"waiting": [{"pid": p, "seconds": round(s, 1)} for p, s in waiting], "threshold_seconds": limit}))
    return findings


@check("db.locks.blocked", runbook=RUNBOOK, plot=lambda result, ctx: plot_locks(result, ctx))
def blocked(ctx: Context) -> CheckResult:
    """Sessions blocked by another session's lock (pg_blocking_pids), with their blockers."""
    df = blocked_frame(ctx)
    states = ctx.db.frame(STATES_SQL)
    findings = judge_blocked(df, ctx.thresholds, ctx.settings.database.instance)
    return CheckResult(findings=findings, data=df, frames={"connections_by_state": states})


def lock_levels(df: pd.DataFrame) -> dict[int, int]:
    """Column of each pid in the blocked → blocker graph: 0 for sessions that block but wait on no one."""
    edges: dict[int, set[int]] = {}
    for row in df.itertuples(index=False):
        edges.setdefault(int(row.blocked_pid), set()).add(int(row.blocking_pid))
    pids = set(edges) | {p for targets in edges.values() for p in targets}
    levels: dict[int, int] = {}

    def level(pid: int, seen: frozenset[int]) -> int:
        if pid in levels:
            return levels[pid]
        if pid in seen or pid not in edges:  # a cycle (deadlock in the making) or a root blocker
            return 0
        value = 1 + max(level(p, seen | {pid}) for p in edges[pid])
        levels[pid] = value
        return value

    for pid in sorted(pids):
        levels[pid] = level(pid, frozenset())
    return levels


def plot_locks(result: CheckResult, ctx: Context) -> Figure:
    """Connections by state (bars) beside the blocked → blocker graph."""
    states = result.frames.get("connections_by_state", pd.DataFrame(columns=["state", "connections"]))
    df = result.data if result.data is not None else pd.DataFrame()
    fig = Figure(figsize=(11, 3.8))
    plots.fixed_margins(fig, len("idle in transaction (aborted)"), wspace=0.1)
    left, right = fig.subplots(1, 2, width_ratios=[1, 1.4])
    left.set_title("Client connections by state", loc="left", fontsize=11)
    if states.empty:
        left.text(0.5, 0.5, "no client connections", ha="center", va="center", transform=left.transAxes)
    else:
        left.barh(states["state"].astype(str), states["connections"],
                  color=[plots.STATE_COLOURS.get(str(s), "#1565c0") for s in states["state"]])
        left.invert_yaxis()
        left.set_xlabel("connections")
        left.grid(True, axis="x", alpha=0.3)
    right.set_title("Blocked → blocker", loc="left", fontsize=11)
    right.set_axis_off()
    if df.empty:
        right.text(0.5, 0.5, "no blocked sessions", ha="center", va="center", transform=right.transAxes,
                   color="#666")
        return fig
    levels = lock_levels(df)
    columns: dict[int, list[int]] = {}
    for pid, lvl in sorted(levels.items(), key=lambda kv: (kv[1], kv[0])):
        columns.setdefault(lvl, []).append(pid)
    width = max(columns) + 1
    position = {}
    for lvl, pids in columns.items():
        for i, pid in enumerate(pids):
            position[pid] = ((lvl + 0.5) / width, 1 - (i + 1) / (len(pids) + 1))
    info: dict[int, str] = {}
    for row in df.itertuples(index=False):  # a session that waits is labelled by its wait
        info.setdefault(int(row.blocked_pid), f"waiting {duration_text(float(row.blocked_seconds or 0))}")
    for row in df.itertuples(index=False):
        info.setdefault(int(row.blocking_pid), str(row.blocking_state or ""))
    for row in df.drop_duplicates(["blocked_pid", "blocking_pid"]).itertuples(index=False):
        right.annotate("", xy=position[int(row.blocking_pid)], xytext=position[int(row.blocked_pid)],
                       xycoords="axes fraction", textcoords="axes fraction",
                       arrowprops={"arrowstyle": "-|>", "color": "#c62828", "shrinkA": 30, "shrinkB": 45,
                                   "mutation_scale": 14})
        middle = tuple((a + b) / 2 for a, b in zip(position[int(row.blocking_pid)],
                                                   position[int(row.blocked_pid)], strict=True))
        right.text(middle[0], middle[1] + 0.04, "waits for", ha="center", fontsize=7, color="#c62828",
                   transform=right.transAxes)
    for pid, (x, y) in position.items():
        blocked_here = levels[pid] > 0
        right.text(x, y, f"pid {pid}\n{info.get(pid, '')}", ha="center", va="center", fontsize=8,
                   transform=right.transAxes,
                   bbox={"boxstyle": "round", "fc": "#ffebee" if blocked_here else "#fff3e0",
                         "ec": "#c62828" if blocked_here else "#ef6c00"})
    return fig


# --- db.tables.size ----------------------------------------------------------------------------


def judge_table_sizes(df: pd.DataFrame, database_bytes: int | None, instance: str) -> list[Finding]:
    cid = "db.tables.size"
    resource = _resource(instance)
    evidence: dict[str, Any] = {"database_bytes": database_bytes, "tables": len(df)}
    db_text = f"Database {size_text(database_bytes)}" if database_bytes is not None else "Database size unknown"
    if df.empty:
        return [Finding(cid, Severity.INFO, resource, f"{db_text}; no user tables", "", evidence)]
    top = df.sort_values("total_bytes", ascending=False).head(5)
    evidence["largest"] = [record(r, ["schema", "table", "table_bytes", "index_bytes", "toast_bytes",
                                      "total_bytes", "estimated_rows"]) for _, r in top.iterrows()]
    first = top.iloc[0]
    detail = "; ".join(f"{r['schema']}.{r['table']} {size_text(r['total_bytes'])} (table "
                       f"{size_text(r['table_bytes'])}, indexes {size_text(r['index_bytes'])}, TOAST "
                       f"{size_text(r['toast_bytes'])})" for _, r in top.iterrows())
    return [Finding(cid, Severity.INFO, resource,
                    f"{db_text}; largest table {first['schema']}.{first['table']} "
                    f"{size_text(first['total_bytes'])} with indexes and TOAST",
                    f"Largest tables: {detail}.", evidence)]


@check("db.tables.size", runbook=RUNBOOK, plot=lambda result, ctx: plot_table_sizes(result, ctx))
def table_sizes(ctx: Context) -> CheckResult:
    """Table sizes with indexes and TOAST (the guide's table-size query, PgHero's shape)."""
    df = ctx.db.frame(TABLE_SIZES_SQL)
    database_bytes = ctx.db.scalar(DATABASE_SIZE_SQL)
    findings = judge_table_sizes(df, None if database_bytes is None else int(database_bytes),
                                 ctx.settings.database.instance)
    return CheckResult(findings=findings, data=df)


def plot_table_sizes(result: CheckResult, ctx: Context) -> Figure:
    df = result.data if result.data is not None else pd.DataFrame()
    top = df.head(15)
    fig = Figure(figsize=(9, max(2.4, 0.4 * len(top) + 1.3)))
    plots.fixed_margins(fig, max((len(f"{s}.{t}") for s, t in zip(top.get("schema", []), top.get("table", []),
                                                                     strict=True)), default=6))
    ax = fig.add_subplot()
    ax.set_title("Largest tables: table, indexes, TOAST", loc="left", fontsize=11)
    ax.grid(True, axis="x", alpha=0.3)
    if top.empty:
        ax.text(0.5, 0.5, "no user tables", ha="center", va="center", transform=ax.transAxes, color="#666")
        return fig
    names = [f"{s}.{t}" for s, t in zip(top["schema"], top["table"], strict=True)]
    left = pd.Series(0.0, index=top.index)
    for column, label, colour in (("table_bytes", "table", "#1565c0"), ("index_bytes", "indexes", "#ef6c00"),
                                  ("toast_bytes", "TOAST", "#6a1b9a")):
        values = top[column].astype(float) / 2**20
        ax.barh(names, values, left=left, label=label, color=colour)
        left += values
    ax.invert_yaxis()
    ax.set_xlabel("MB")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.legend(fontsize=8, loc="lower right")
    return fig


# --- db.stats.stale ----------------------------------------------------------------------------


def modified_pct(df: pd.DataFrame) -> pd.Series:
    """Rows modified since ANALYZE as % of live rows (inf when modified rows meet an empty table)."""
    if df.empty:
        return pd.Series(dtype=float)
    live = df["n_live_tup"].astype(float)
    mods = df["n_mod_since_analyze"].astype(float)
    pct = 100.0 * mods / live.where(live > 0)
    return pct.where(live > 0, math.inf).where(mods > 0, 0.0)


def stale_tables(df: pd.DataFrame, thresholds: dict[str, float]) -> pd.DataFrame:
    out = df.assign(modified_pct=modified_pct(df))
    if out.empty:
        return out
    mask = ((out["n_mod_since_analyze"] >= thresholds["stale_stats_min_rows"])
            & (out["modified_pct"] >= thresholds["stale_stats_modified_pct"]))
    return out[mask].sort_values("n_mod_since_analyze", ascending=False)


def judge_stale(df: pd.DataFrame, thresholds: dict[str, float], instance: str) -> list[Finding]:
    cid = "db.stats.stale"
    limits = {"threshold_modified_pct": thresholds["stale_stats_modified_pct"],
              "threshold_min_rows": thresholds["stale_stats_min_rows"]}
    stale = stale_tables(df, thresholds)
    findings = []
    for _, row in stale.iterrows():
        name = qualified(row["schema"], row["table"])
        pct = float(row["modified_pct"])
        pct_text = "all" if math.isinf(pct) else f"{pct:.0f}%"
        analyzed = clean(row["analyzed_at"])
        when = f"last analyzed {analyzed:%Y-%m-%d %H:%M} UTC" if analyzed is not None else "never analyzed"
        disabled = bool(row["autovacuum_disabled"])
        resolution = f"Update table statistics: ANALYZE {name}; (guide step 3)"
        if disabled:
            resolution += f", and turn autovacuum back on: ALTER TABLE {name} RESET (autovacuum_enabled);"
        evidence = {**record(row, ["schema", "table", "n_live_tup", "n_dead_tup", "n_mod_since_analyze",
                                   "last_analyze", "last_autoanalyze", "autovacuum_disabled"]),
                    "modified_pct": None if math.isinf(pct) else round(pct, 1), **limits}
        findings.append(Finding(
            cid, Severity.WARNING, name,
            f"Stale statistics on {name}: {pct_text} of rows modified since ANALYZE",
            f"{int(row['n_mod_since_analyze'])} rows modified against {int(row['n_live_tup'])} live rows; "
            f"{when}{'; autovacuum is disabled on this table' if disabled else ''}. The planner's "
            "estimates for it are off.", evidence, resolution))
    findings = _capped(findings, cid, _resource(instance), "tables with stale statistics")
    if not findings:
        worst = df.sort_values("n_mod_since_analyze", ascending=False).head(1)
        detail = (f"{len(df)} tables; the most modified is {worst.iloc[0]['schema']}.{worst.iloc[0]['table']} "
                  f"with {int(worst.iloc[0]['n_mod_since_analyze'])} rows since ANALYZE."
                  if not worst.empty else "No user tables.")
        findings.append(Finding(cid, Severity.OK, _resource(instance),
                                "Table statistics are up to date", detail, {"tables": len(df), **limits}))
    return findings


@check("db.stats.stale", runbook=RUNBOOK)
def stale_stats(ctx: Context) -> CheckResult:
    """Tables modified a lot since their last ANALYZE (n_mod_since_analyze against live rows)."""
    df = ctx.db.frame(STALE_SQL)
    return CheckResult(findings=judge_stale(df, ctx.thresholds, ctx.settings.database.instance),
                       data=df.assign(modified_pct=modified_pct(df)))


# --- db.indexes.missing ------------------------------------------------------------------------


def judge_missing_indexes(df: pd.DataFrame, thresholds: dict[str, float], instance: str) -> list[Finding]:
    cid = "db.indexes.missing"
    min_rows, use_pct = thresholds["missing_index_min_rows"], thresholds["missing_index_use_pct"]
    limits = {"threshold_min_rows": min_rows, "threshold_index_use_pct": use_pct}
    big = df[df["estimated_rows"] >= min_rows] if not df.empty else df
    # PgHero: a table with no index scan at all is "insufficient data", not a verdict
    judged = big[big["idx_scan"] > 0] if not big.empty else big
    flagged = judged[judged["index_use_pct"] < use_pct] if not judged.empty else judged
    findings = []
    for _, row in flagged.sort_values("seq_tup_read", ascending=False).iterrows():
        name = qualified(row["schema"], row["table"])
        findings.append(Finding(
            cid, Severity.WARNING, name,
            f"{name} is mostly read by sequential scans ({row['index_use_pct']:.0f}% index use)",
            f"{int(row['seq_scan'])} sequential scans read {int(row['seq_tup_read'])} rows against "
            f"{int(row['idx_scan'])} index scans, on about {int(row['estimated_rows'])} rows "
            f"(PgHero: ≥ {min_rows:g} rows and < {use_pct:g}% index use).",
            {**record(row), **limits},
            f"{STEP_INDEXES}: find the statements that filter {name} (db.queries.slow; its EXPLAIN shows "
            "Seq Scan nodes on it) and index the columns of their WHERE and JOIN clauses with CREATE INDEX "
            "CONCURRENTLY (it does not block writes)."))
    findings = _capped(findings, cid, _resource(instance), "tables read by sequential scans")
    if not findings:
        no_data = int((big["idx_scan"] == 0).sum()) if not big.empty else 0
        extra = (f" {no_data} of them have no index scan yet (insufficient data, as PgHero says)."
                 if no_data else "")
        findings.append(Finding(
            cid, Severity.OK, _resource(instance), "No large table is mostly read by sequential scans",
            f"{len(big)} tables with ≥ {min_rows:g} rows.{extra}", {"large_tables": len(big), **limits}))
    return findings


@check("db.indexes.missing", runbook=RUNBOOK)
def missing_indexes(ctx: Context) -> CheckResult:
    """Large tables mostly read by sequential scans (PgHero: ≥ 10 000 rows, < 95% index use)."""
    df = ctx.db.frame(SCANS_SQL)
    return CheckResult(findings=judge_missing_indexes(df, ctx.thresholds, ctx.settings.database.instance),
                       data=df)


# --- db.cache.hit_rate -------------------------------------------------------------------------


def judge_hit_rate(df: pd.DataFrame, thresholds: dict[str, float], instance: str) -> list[Finding]:
    cid = "db.cache.hit_rate"
    limit = thresholds["cache_hit_rate_pct"]
    findings = []
    for row in df.itertuples(index=False):
        resource = f"{_resource(instance)} {row.kind} cache"
        hit, read = int(row.hit), int(row.read)
        evidence = {"kind": row.kind, "hit": hit, "read": read, "threshold_pct": limit}
        if hit + read == 0:
            findings.append(Finding(cid, Severity.OK, resource, f"No {row.kind} block reads recorded yet",
                                    "The statistics were reset or nothing was read.", evidence))
            continue
        rate = 100.0 * hit / (hit + read)
        evidence["hit_rate_pct"] = round(rate, 2)
        detail = f"{hit} blocks from shared buffers, {read} from disk or the OS cache: {rate:.2f}%."
        if rate < limit:
            findings.append(Finding(
                cid, Severity.WARNING, resource, f"{row.kind.capitalize()} cache hit rate {rate:.1f}% "
                f"(below {limit:g}%)", detail, evidence,
                "The working set does not fit in memory: remove the full scans that push data out "
                f"({STEP_INDEXES[0].lower()}{STEP_INDEXES[1:]}) or move to an instance class with more "
                "memory (shared_buffers follows it on RDS)."))
        else:
            findings.append(Finding(cid, Severity.OK, resource, f"{row.kind.capitalize()} cache hit rate "
                                    f"{rate:.2f}%", detail, evidence))
    return findings


@check("db.cache.hit_rate", runbook=RUNBOOK)
def cache_hit_rate(ctx: Context) -> CheckResult:
    """Table and index cache hit rate (PgHero: ≥ 99%)."""
    df = ctx.db.frame(HIT_RATE_SQL)
    tables = ctx.db.frame(HIT_RATE_TABLES_SQL)
    return CheckResult(findings=judge_hit_rate(df, ctx.thresholds, ctx.settings.database.instance), data=df,
                       frames={"tables_by_reads": tables})
