"""PostgreSQL performance (guide "Database Performance").

The guide's monitoring queries (long-running queries, connections by state, table sizes) and
the catalogue's checks, with PgHero's thresholds: slow = mean ≥ 20 ms with ≥ 100 calls,
blocked sessions, table sizes, stale statistics, missing indexes and the cache hit rates. The
slowest slow SELECT is explained by ``rmsops.sources.explain`` (EXPLAIN ANALYZE in a read-only,
rolled-back transaction with a timeout). Every statement runs on the read-only rmsops session.

Each check fetches, judges and returns: the SQL (per server version) is in
``rmsops.sources.pg_queries``, the figures in ``rmsops.render.db_figures`` and the wording
helpers in ``rmsops.checks.dbperf_format``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import pandas as pd

from rmsops.checks.dbperf_format import capped, clean, instance_resource, qualified, record, size_text
from rmsops.core.findings import Finding, Severity
from rmsops.core.registry import CheckResult, check
from rmsops.render import db_figures
from rmsops.render.db_figures import duration_text, one_line
from rmsops.sources import explain, pg_queries

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from rmsops.core.context import Context

RUNBOOK = "07-database-performance"
# Check ids, declared in the catalogue (rmsops/core/runbooks.py); the judges take theirs as `cid`.
CACHE_HIT_RATE = "db.cache.hit_rate"
INDEXES_MISSING = "db.indexes.missing"
LOCKS_BLOCKED = "db.locks.blocked"
QUERIES_LONG_RUNNING = "db.queries.long_running"
QUERIES_SLOW = "db.queries.slow"
STATS_STALE = "db.stats.stale"
TABLES_SIZE = "db.tables.size"

STEP_EXPLAIN = "Analyze slow queries with EXPLAIN ANALYZE (guide: Database Performance, step 1)"
STEP_INDEXES = "Add missing indexes (step 2)"
STEP_ANALYZE = "Update table statistics: ANALYZE (step 3)"
STEP_POOLING = "Consider connection pooling optimization (step 4)"


def server_version(ctx: Context) -> int:
    """server_version_num, asked once per run: the SQL variants and EXPLAIN's options depend on it."""
    return ctx.memo("pg.server_version_num", lambda: explain.server_version_num(ctx.db))


def _data(result: CheckResult) -> pd.DataFrame:
    """The check's table for its figure; empty when the check had none."""
    return result.data if result.data is not None else pd.DataFrame()


# --- db.queries.long_running -------------------------------------------------------------------


def is_autovacuum(df: pd.DataFrame) -> pd.Series:
    if df.empty:
        return pd.Series(dtype=bool)
    return (df["backend_type"].fillna("").eq("autovacuum worker")
            | df["query"].fillna("").str.startswith("autovacuum:"))


def _long_running_finding(rows: pd.DataFrame, warn: float, crit: float, instance: str, cid: str) -> Finding:
    """One session, or several stuck the same way (longest first), as one finding."""
    row = next(rows.itertuples(index=False))
    seconds = float(row.duration_seconds)
    severity = Severity.CRITICAL if seconds > crit else Severity.WARNING
    waiting = f", waiting on {row.wait_event_type}:{row.wait_event}" if clean(row.wait_event) else ""
    state = str(row.state)
    idle = state.startswith("idle in transaction")
    source = row.source or "no application_name"
    pids = [int(p) for p in rows["pid"]]
    if len(pids) == 1:
        resource = f"{instance_resource(instance)} pid {row.pid}"
        what = "Transaction idle" if idle else "Query running"
        title = f"{what} for {duration_text(seconds)} (pid {row.pid}, {source})"
        cancel = f"pg_cancel_backend({row.pid})"
    else:
        resource = f"{instance_resource(instance)} pids {', '.join(map(str, pids[:10]))}" + \
            (f" and {len(pids) - 10} more" if len(pids) > 10 else "")
        title = (f"{len(pids)} {'transactions idle' if idle else 'queries running'} for up to "
                 f"{duration_text(seconds)} ({source}, pids {', '.join(map(str, pids[:5]))}"
                 f"{', …' if len(pids) > 5 else ''})")
        cancel = "pg_cancel_backend(pid) for each of them"
    sessions = [{"pid": int(r.pid), "duration_seconds": round(float(r.duration_seconds), 1), "state": str(r.state),
                 "started_at": r.started_at} for r in rows.itertuples(index=False)]
    return Finding(
        cid, severity, resource, title,
        f"{state}{waiting}; user {row.user}; over the {duration_text(warn)} threshold"
        f"{' and the critical ' + duration_text(crit) if severity == Severity.CRITICAL else ''}: "
        f"{one_line(row.query)}",
        {**record(row._asdict()), "query": one_line(row.query, 1000), "sessions": sessions[:50],
         "session_count": len(sessions), "threshold_warning_seconds": warn, "threshold_critical_seconds": crit},
        f"Find the application ({row.source or 'see client address'}) that runs it and why it takes "
        f"so long ({STEP_EXPLAIN}). Cancelling it ({cancel}) or ending the session is a DBA decision; "
        "rmsops never does it.")


def judge_long_running(df: pd.DataFrame, thresholds: dict[str, float], instance: str,
                       cid: str = QUERIES_LONG_RUNNING) -> list[Finding]:
    warn, crit = thresholds["long_query_warning_seconds"], thresholds["long_query_critical_seconds"]
    limits = {"threshold_warning_seconds": warn, "threshold_critical_seconds": crit}
    if df.empty:
        return [Finding(cid, Severity.OK, instance_resource(instance), "No query running (every session is idle)",
                        "pg_stat_activity has no non-idle session in this database besides rmsops.",
                        {"running": 0, **limits})]
    autovac = is_autovacuum(df)
    queries = df[~autovac].sort_values("duration_seconds", ascending=False)
    vacuums = df[autovac].sort_values("duration_seconds", ascending=False)
    findings: list[Finding] = []
    over = queries[queries["duration_seconds"] > warn]
    # One finding per problem: sessions of one application stuck the same way on the same statement
    # (a leaked pool, a stuck batch) are one finding listing its sessions, not one finding each.
    same = over.assign(_kind=over["state"].astype(str).str.startswith("idle in transaction"),
                       _text=over["query"].map(one_line), _source=over["source"].fillna(""))
    for _, group in same.groupby(["_source", "_kind", "_text"], sort=False):
        findings.append(_long_running_finding(group.drop(columns=["_kind", "_text", "_source"]), warn, crit,
                                              instance, cid))
    findings = capped(findings, cid, instance_resource(instance), "long-running queries")
    for row in vacuums[vacuums["duration_seconds"] > warn].itertuples(index=False):
        findings.append(Finding(
            cid, Severity.INFO, f"{instance_resource(instance)} pid {row.pid}",
            f"autovacuum running for {duration_text(float(row.duration_seconds))}",
            f"{one_line(row.query)}. Usually harmless; it only matters when it blocks DDL or is "
            "an anti-wraparound vacuum.", {**record(row._asdict()), **limits}))
    if not any(f.severity in (Severity.WARNING, Severity.CRITICAL) for f in findings):
        longest = float(queries["duration_seconds"].max()) if not queries.empty else 0.0
        findings.insert(0, Finding(
            cid, Severity.OK, instance_resource(instance),
            f"No query running longer than {duration_text(warn)}",
            f"{len(queries)} non-idle sessions, the longest for {duration_text(longest)}"
            f"{f'; {len(vacuums)} autovacuum workers' if len(vacuums) else ''}.",
            {"running": len(queries), "longest_seconds": round(longest, 1), **limits}))
    return findings


@check(QUERIES_LONG_RUNNING)
def long_running(ctx: Context) -> CheckResult:
    """Queries and transactions running longer than the threshold (pg_stat_activity)."""
    df = ctx.db.frame(pg_queries.RUNNING_SQL)
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
    row = ctx.db.frame(pg_queries.STATEMENTS_STATUS_SQL).iloc[0]
    preload = clean(row["preload"])
    libraries = [p.strip().strip('"') for p in str(preload).split(",")] if preload is not None else None
    return {"preloaded": None if libraries is None else "pg_stat_statements" in libraries,
            "shared_preload_libraries": preload, "created": bool(row["created"]),
            "schema": clean(row["schema"]), "version": int(row["version"])}


def statements_frame(ctx: Context, version: int, schema: str = "public") -> pd.DataFrame:
    return ctx.db.frame(pg_queries.statements_sql(version, schema))


def is_slow(df: pd.DataFrame, thresholds: dict[str, float]) -> pd.Series:
    """PgHero's rule, per statement: mean ≥ slow_query_mean_ms over ≥ slow_query_min_calls calls."""
    if df.empty:
        return pd.Series(False, index=df.index, dtype=bool)
    return (df["calls"] >= thresholds["slow_query_min_calls"]) & (df["mean_ms"] >= thresholds["slow_query_mean_ms"])


def slow_statements(df: pd.DataFrame, thresholds: dict[str, float]) -> pd.DataFrame:
    """The slow statements (``is_slow``), the most total time first."""
    if df.empty:
        return df
    return df[is_slow(df, thresholds)].sort_values("total_ms", ascending=False)


def judge_slow(status: dict[str, Any], df: pd.DataFrame, thresholds: dict[str, float], instance: str,
               explanation: explain.Explanation | None = None, explained_queryid: str | None = None
               , cid: str = QUERIES_SLOW) -> list[Finding]:
    resource = instance_resource(instance)
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
    findings = capped(findings, cid, resource, "slow statements")
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
    if str(row["query"]) == pg_queries.INSUFFICIENT_PRIVILEGE:
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


def plot_statements(result: CheckResult, ctx: Context) -> Figure:
    df = _data(result)
    return db_figures.statements_figure(df, is_slow(df, ctx.thresholds), ctx.thresholds["slow_query_mean_ms"],
                                        ctx.thresholds["slow_query_min_calls"])


@check(QUERIES_SLOW,  # EXPLAIN ANALYZE: not for the daily check
       plot=plot_statements)
def slow_queries(ctx: Context) -> CheckResult:
    """Slow statements from pg_stat_statements (PgHero: mean ≥ 20 ms, ≥ 100 calls), the slowest explained."""
    status = statements_status(ctx)
    if status["preloaded"] is False or not status["created"]:
        return CheckResult(findings=judge_slow(status, pd.DataFrame(), ctx.thresholds,
                                               ctx.settings.database.instance), data=pd.DataFrame())
    schema = status.get("schema") or "public"
    reset_sql = pg_queries.statements_reset_sql(status["version"], schema)
    if reset_sql is not None:
        reset = ctx.db.frame(reset_sql)
        status["stats_reset"] = clean(reset.iat[0, 0]) if not reset.empty else None
    df = statements_frame(ctx, status["version"], schema)
    explanation, queryid = explain_slowest(ctx, slow_statements(df, ctx.thresholds))
    frames = {}
    if explanation is not None:
        frames["explain_plan"] = explanation.nodes
    findings = judge_slow(status, df, ctx.thresholds, ctx.settings.database.instance, explanation, queryid)
    return CheckResult(findings=findings, data=df, frames=frames)


# --- db.locks.blocked --------------------------------------------------------------------------


def blocked_frame(ctx: Context) -> pd.DataFrame:
    return ctx.db.frame(pg_queries.blocked_sql(server_version(ctx)))


def judge_blocked(df: pd.DataFrame, thresholds: dict[str, float], instance: str,
                  cid: str = LOCKS_BLOCKED) -> list[Finding]:
    resource = instance_resource(instance)
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
    findings = capped(findings, cid, resource, "blocked sessions")
    if waiting:
        longest = max(s for _, s in waiting)
        findings.append(Finding(
            cid, Severity.INFO, resource,
            f"{len(waiting)} session(s) waiting on a lock for up to {duration_text(longest)}",
            f"Below the {duration_text(limit)} threshold: pids {', '.join(str(p) for p, _ in waiting[:20])}.",
            {"waiting": [{"pid": p, "seconds": round(s, 1)} for p, s in waiting], "threshold_seconds": limit}))
    return findings


def plot_locks(result: CheckResult, ctx: Context) -> Figure:
    states = result.frames.get("connections_by_state", pd.DataFrame(columns=["state", "connections"]))
    return db_figures.locks_figure(_data(result), states)


@check(LOCKS_BLOCKED, plot=plot_locks)
def blocked(ctx: Context) -> CheckResult:
    """Sessions blocked by another session's lock (pg_blocking_pids), with their blockers."""
    df = blocked_frame(ctx)
    states = ctx.db.frame(pg_queries.STATES_SQL)
    findings = judge_blocked(df, ctx.thresholds, ctx.settings.database.instance)
    return CheckResult(findings=findings, data=df, frames={"connections_by_state": states})


# --- db.tables.size ----------------------------------------------------------------------------


def judge_table_sizes(df: pd.DataFrame, database_bytes: int | None, instance: str,
                      cid: str = TABLES_SIZE) -> list[Finding]:
    resource = instance_resource(instance)
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


def plot_table_sizes(result: CheckResult, ctx: Context) -> Figure:
    return db_figures.table_sizes_figure(_data(result))


@check(TABLES_SIZE, plot=plot_table_sizes)
def table_sizes(ctx: Context) -> CheckResult:
    """Table sizes with indexes and TOAST (the guide's table-size query, PgHero's shape)."""
    df = ctx.db.frame(pg_queries.TABLE_SIZES_SQL)
    database_bytes = ctx.db.scalar(pg_queries.DATABASE_SIZE_SQL)
    findings = judge_table_sizes(df, None if database_bytes is None else int(database_bytes),
                                 ctx.settings.database.instance)
    return CheckResult(findings=findings, data=df)


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


def judge_stale(df: pd.DataFrame, thresholds: dict[str, float], instance: str, cid: str = STATS_STALE) -> list[Finding]:
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
    findings = capped(findings, cid, instance_resource(instance), "tables with stale statistics")
    if not findings:
        worst = df.sort_values("n_mod_since_analyze", ascending=False).head(1)
        detail = (f"{len(df)} tables; the most modified is {worst.iloc[0]['schema']}.{worst.iloc[0]['table']} "
                  f"with {int(worst.iloc[0]['n_mod_since_analyze'])} rows since ANALYZE."
                  if not worst.empty else "No user tables.")
        findings.append(Finding(cid, Severity.OK, instance_resource(instance),
                                "Table statistics are up to date", detail, {"tables": len(df), **limits}))
    return findings


@check(STATS_STALE)
def stale_stats(ctx: Context) -> CheckResult:
    """Tables modified a lot since their last ANALYZE (n_mod_since_analyze against live rows)."""
    df = ctx.db.frame(pg_queries.STALE_SQL)
    return CheckResult(findings=judge_stale(df, ctx.thresholds, ctx.settings.database.instance),
                       data=df.assign(modified_pct=modified_pct(df)))


# --- db.indexes.missing ------------------------------------------------------------------------


def judge_missing_indexes(df: pd.DataFrame, thresholds: dict[str, float], instance: str,
                          cid: str = INDEXES_MISSING) -> list[Finding]:
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
    findings = capped(findings, cid, instance_resource(instance), "tables read by sequential scans")
    if not findings:
        no_data = int((big["idx_scan"] == 0).sum()) if not big.empty else 0
        extra = (f" {no_data} of them have no index scan yet (insufficient data, as PgHero says)."
                 if no_data else "")
        findings.append(Finding(
            cid, Severity.OK, instance_resource(instance), "No large table is mostly read by sequential scans",
            f"{len(big)} tables with ≥ {min_rows:g} rows.{extra}", {"large_tables": len(big), **limits}))
    return findings


@check(INDEXES_MISSING)
def missing_indexes(ctx: Context) -> CheckResult:
    """Large tables mostly read by sequential scans (PgHero: ≥ 10 000 rows, < 95% index use)."""
    df = ctx.db.frame(pg_queries.SCANS_SQL)
    return CheckResult(findings=judge_missing_indexes(df, ctx.thresholds, ctx.settings.database.instance),
                       data=df)


# --- db.cache.hit_rate -------------------------------------------------------------------------


def judge_hit_rate(df: pd.DataFrame, thresholds: dict[str, float], instance: str,
                   cid: str = CACHE_HIT_RATE) -> list[Finding]:
    limit = thresholds["cache_hit_rate_pct"]
    findings = []
    for row in df.itertuples(index=False):
        resource = f"{instance_resource(instance)} {row.kind} cache"
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


@check(CACHE_HIT_RATE)
def cache_hit_rate(ctx: Context) -> CheckResult:
    """Table and index cache hit rate (PgHero: ≥ 99%)."""
    df = ctx.db.frame(pg_queries.HIT_RATE_SQL)
    tables = ctx.db.frame(pg_queries.HIT_RATE_TABLES_SQL)
    return CheckResult(findings=judge_hit_rate(df, ctx.thresholds, ctx.settings.database.instance), data=df,
                       frames={"tables_by_reads": tables})
