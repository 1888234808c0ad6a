"""07 database-performance: the judges as pure functions, every check against a real PostgreSQL with
real load, then the served demo (db-slow-queries, incident, healthy) and the notebook under papermill.

The shared server of tests/pg.py runs without pg_stat_statements; it serves the "extension not
preloaded" case. Everything else runs on a PostgreSQL of this module's own, started with
pg_stat_statements (when the system has it) and small shared_buffers (2 MB) so that a real cache
miss can be produced: the same roles as tests/pg.py (rmsops_monitor with pg_monitor, rms_app).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import nbformat
import pandas as pd
import psycopg
import pytest
from matplotlib.figure import Figure

from rmsops.checks import dbperf, dbperf_format
from rmsops.core import registry, thresholds
from rmsops.core.context import Context
from rmsops.core.findings import Finding, Severity
from rmsops.execution.runner import collect_findings
from rmsops.render import db_figures
from rmsops.sources import pg_queries
from tests.demo_server import served
from tests.judging import CRITICAL, ERROR, INFO, OK, WARNING
from tests.pg import APP_NAME, PgServer, poll, serve_with_roles

RUNBOOK = "07-database-performance"
INSTANCE = "rms-production-db"
DEFAULTS = thresholds.merge()
ROOT = Path(__file__).resolve().parent.parent


def limits(**overrides: float) -> dict[str, float]:
    return {**DEFAULTS, **overrides}


def severities(findings: list[Finding]) -> list[Severity]:
    return [f.severity for f in findings]


# =============================================================================================
# Layer 1: judges
# =============================================================================================

RUNNING_COLUMNS = ["pid", "user", "source", "client", "state", "backend_type", "wait_event_type", "wait_event",
                   "started_at", "duration_seconds", "transaction_seconds", "query"]


def running(*rows: tuple) -> pd.DataFrame:
    full = [(pid, "rms_app", app, "10.0.1.7", state, backend, None, None, datetime(2026, 11, 28, tzinfo=UTC),
             seconds, seconds, query) for pid, app, state, backend, seconds, query in rows]
    return pd.DataFrame(full, columns=RUNNING_COLUMNS)


def test_long_running_bands_warning_over_5_min_critical_over_30():
    df = running((11, "rms-backend", "active", "client backend", 299.0, "SELECT 1"),
                 (12, "rms-backend", "active", "client backend", 301.0, "SELECT slow()"),
                 (13, "rms-worker", "idle in transaction", "client backend", 1801.0, "UPDATE t SET x = 1"))
    findings = dbperf.judge_long_running(df, DEFAULTS, INSTANCE)
    by_pid = {f.evidence.get("pid"): f for f in findings}
    assert set(by_pid) == {12, 13}
    assert by_pid[12].severity is WARNING and "SELECT slow()" in by_pid[12].detail
    assert by_pid[13].severity is CRITICAL and by_pid[13].title.startswith("Transaction idle for 30.0 min")
    assert by_pid[13].resource == f"db:{INSTANCE} pid 13" and "pg_cancel_backend(13)" in by_pid[13].resolution


def test_long_running_autovacuum_is_separate_information_not_a_warning():
    df = running((21, "", "active", "autovacuum worker", 4000.0, "autovacuum: VACUUM public.reservations"),
                 (22, "rms-backend", "active", "client backend", 3.0, "SELECT 1"))
    findings = dbperf.judge_long_running(df, DEFAULTS, INSTANCE)
    assert severities(findings) == [OK, INFO]
    assert "autovacuum" in findings[1].title and findings[0].evidence["running"] == 1


def test_long_running_nothing_running_and_many_sessions_capped():
    assert severities(dbperf.judge_long_running(running(), DEFAULTS, INSTANCE)) == [OK]
    many = running(*[(100 + i, "app", "active", "client backend", 400.0 + i, f"SELECT {i}") for i in range(14)])
    findings = dbperf.judge_long_running(many, DEFAULTS, INSTANCE)
    assert len(findings) == dbperf_format.MAX_FINDINGS + 1
    assert findings[-1].title == "4 more long-running queries" and findings[-1].severity is WARNING
    assert findings[0].evidence["pid"] == 113  # the longest first


def test_long_running_sessions_stuck_the_same_way_are_one_finding():
    """The demo's leaked pool: eight sessions of one application idle in the same transaction."""
    leaked = [(200 + i, "rms-backend", "idle in transaction", "client backend", 400.0 + 60 * i, "SELECT 1")
              for i in range(8)]
    other = (300, "rms-worker", "idle in transaction", "client backend", 2000.0, "SELECT 1")  # another app
    findings = dbperf.judge_long_running(running(*leaked, other), DEFAULTS, INSTANCE)
    assert len(findings) == 2
    worker, pool = findings  # longest first
    assert worker.evidence["pid"] == 300 and worker.evidence["session_count"] == 1
    assert pool.severity is WARNING and pool.title.startswith("8 transactions idle for up to 13.7 min (rms-backend")
    assert [s["pid"] for s in pool.evidence["sessions"]] == [207, 206, 205, 204, 203, 202, 201, 200]
    assert pool.resource == f"db:{INSTANCE} pids 207, 206, 205, 204, 203, 202, 201, 200"
    critical = dbperf.judge_long_running(running(*leaked), {**DEFAULTS, "long_query_critical_seconds": 800.0},
                                         INSTANCE)
    assert [f.severity for f in critical] == [CRITICAL]  # the worst session decides


@pytest.mark.parametrize("seconds, text", [(-0.4, "0 s"), (-1e-6, "0 s"), (-0.0, "0 s"), (-3.0, "0 s"),
                                           (float("nan"), "an unknown time")])
def test_duration_text_is_never_negative(seconds, text):
    assert db_figures.duration_text(seconds) == text  # it said "-0 s" for a query that had just started
    assert [db_figures.duration_text(s) for s in (0.4, 59.6, 150.0)] == ["0 s", "60 s", "2.5 min"]


def test_ages_are_measured_against_the_clock_not_the_statement_start():
    from rmsops.checks import database

    for sql in (pg_queries.RUNNING_SQL, pg_queries.BLOCKED_SQL_14, pg_queries.BLOCKED_SQL_PRE14,
                database.BY_STATE_SQL, database.IDLE_IN_TRANSACTION_SQL):
        assert "now()" not in sql and "clock_timestamp()" in sql


STATEMENT_COLUMNS = ["queryid", "users", "calls", "total_ms", "mean_ms", "pct_total", "rows", "shared_blks_hit",
                     "shared_blks_read", "query_chars", "query"]
ENABLED = {"preloaded": True, "created": True, "version": 150000, "shared_preload_libraries": "pg_stat_statements"}


def statements(*rows: tuple) -> pd.DataFrame:
    full = [(str(qid), "rms_app", calls, calls * mean, mean, 0.0, calls, 0, 0, len(q), q)
            for qid, calls, mean, q in rows]
    df = pd.DataFrame(full, columns=STATEMENT_COLUMNS)
    df["pct_total"] = 100 * df["total_ms"] / df["total_ms"].sum() if len(df) else []
    return df


def test_slow_rule_is_pghero_mean_20_ms_with_100_calls():
    df = statements((1, 100, 20.0, "SELECT a"), (2, 99, 500.0, "SELECT b"), (3, 5000, 19.9, "SELECT c"),
                    (4, 150, 45.0, "SELECT d"))
    findings = dbperf.judge_slow(ENABLED, df, DEFAULTS, INSTANCE)
    assert [f.evidence["queryid"] for f in findings] == ["4", "1"]  # by total time
    assert all(f.severity is WARNING for f in findings)
    assert findings[0].title == "Slow statement: 45 ms mean over 150 calls (4% of statement time)"  # 6.75 of 157.75 s
    assert "EXPLAIN ANALYZE" in findings[0].resolution and "add missing indexes" in findings[0].resolution


def test_slow_none_is_ok_with_the_top_statement_and_empty_is_ok():
    df = statements((1, 100, 2.0, "SELECT a"), (2, 10, 50.0, "SELECT b"))
    [finding] = dbperf.judge_slow(ENABLED, df, DEFAULTS, INSTANCE)
    assert finding.severity is OK and "SELECT b" in finding.detail
    [empty] = dbperf.judge_slow(ENABLED, statements(), DEFAULTS, INSTANCE)
    assert empty.severity is OK and "no statement" in empty.title


@pytest.mark.parametrize(("status", "says"), [
    ({"preloaded": False, "created": False, "shared_preload_libraries": ""}, "shared_preload_libraries"),
    ({"preloaded": False, "created": True, "shared_preload_libraries": "auto_explain"}, "reboot"),
    ({"preloaded": True, "created": False, "shared_preload_libraries": "pg_stat_statements"}, "CREATE EXTENSION"),
    ({"preloaded": None, "created": False, "shared_preload_libraries": None}, "parameter group"),
])
def test_missing_extension_is_info_saying_how_to_enable_it(status, says):
    [finding] = dbperf.judge_slow(status, pd.DataFrame(), DEFAULTS, INSTANCE)
    assert finding.severity is INFO and says in finding.resolution
    assert "CREATE EXTENSION pg_stat_statements" in finding.resolution


def test_statement_text_hidden_by_missing_privilege_is_not_explained():
    slow = statements((9, 500, 80.0, pg_queries.INSUFFICIENT_PRIVILEGE))
    explanation, queryid = dbperf.explain_slowest(None, slow)  # decided before any database access
    assert queryid == "9" and explanation.mode == "skipped" and "pg_read_all_stats" in explanation.note
    [finding] = dbperf.judge_slow(ENABLED, slow, DEFAULTS, INSTANCE, explanation, queryid)
    assert finding.severity is WARNING and finding.evidence["explain"]["mode"] == "skipped"
    assert "No plan: the monitor role cannot read" in finding.detail


BLOCKED_COLUMNS = ["blocked_pid", "blocked_user", "blocked_source", "lock_type", "blocked_seconds", "blocked_query",
                   "blocking_pid", "blocking_user", "blocking_source", "blocking_state",
                   "blocking_transaction_seconds", "blocking_query"]


def blocked_rows(*rows: tuple) -> pd.DataFrame:
    full = [(blocked, "rms_app", "rms-backend", "transactionid", seconds, f"UPDATE t WHERE id = {blocked}",
             blocker, "rms_app", "rms-worker", "idle in transaction", 900.0, "UPDATE t SET x = 1")
            for blocked, seconds, blocker in rows]
    return pd.DataFrame(full, columns=BLOCKED_COLUMNS)


def test_blocked_longer_than_a_minute_is_a_warning_naming_both_sides():
    df = blocked_rows((31, 61.0, 30), (31, 61.0, 29), (32, 59.0, 30))
    findings = dbperf.judge_blocked(df, DEFAULTS, INSTANCE)
    assert severities(findings) == [WARNING, INFO]
    warning = findings[0]
    assert warning.title == "pid 31 blocked for 61 s by pid 30, 29"
    assert [b["blocking_pid"] for b in warning.evidence["blockers"]] == [30, 29]
    assert "UPDATE t WHERE id = 31" in warning.detail and "idle in transaction" in warning.detail
    assert findings[1].evidence["waiting"] == [{"pid": 32, "seconds": 59.0}]
    assert severities(dbperf.judge_blocked(blocked_rows(), DEFAULTS, INSTANCE)) == [OK]


def test_lock_levels_put_root_blockers_left_and_survive_a_cycle():
    df = blocked_rows((3, 5.0, 2), (2, 5.0, 1), (4, 5.0, 1))
    assert db_figures.lock_levels(df) == {1: 0, 2: 1, 3: 2, 4: 1}
    cycle = blocked_rows((5, 1.0, 6), (6, 1.0, 5))
    assert set(db_figures.lock_levels(cycle)) == {5, 6}


STALE_COLUMNS = ["schema", "table", "n_live_tup", "n_dead_tup", "n_mod_since_analyze", "last_analyze",
                 "last_autoanalyze", "analyzed_at", "autovacuum_disabled"]


def stale_rows(*rows: tuple) -> pd.DataFrame:
    full = [("public", name, live, 0, mods, None, None, None, disabled) for name, live, mods, disabled in rows]
    return pd.DataFrame(full, columns=STALE_COLUMNS)


def test_stale_needs_both_the_share_and_the_count_of_modified_rows():
    df = stale_rows(("big", 100_000, 9_999, False),     # 9.999 %: below 10 %
                    ("hot", 20_000, 2_000, False),      # 10 % and 2000 rows: stale
                    ("tiny", 50, 500, False),           # 1000 %, but only 500 rows
                    ("emptied", 0, 1_500, True),        # all rows gone since ANALYZE
                    ("Mixed Case", 1_000, 1_000, False))
    findings = dbperf.judge_stale(df, DEFAULTS, INSTANCE)
    assert [f.resource for f in findings] == ["public.hot", "public.emptied", 'public."Mixed Case"']
    assert findings[0].resolution.startswith("Update table statistics: ANALYZE public.hot;")
    assert "RESET (autovacuum_enabled)" in findings[1].resolution and findings[1].evidence["modified_pct"] is None
    assert "all of rows" in findings[1].title
    assert 'ANALYZE public."Mixed Case";' in findings[2].resolution


def test_stale_none_is_ok():
    [finding] = dbperf.judge_stale(stale_rows(("a", 10_000, 10, False)), DEFAULTS, INSTANCE)
    assert finding.severity is OK and "public.a with 10 rows" in finding.detail
    assert severities(dbperf.judge_stale(stale_rows(), DEFAULTS, INSTANCE)) == [OK]


SCAN_COLUMNS = ["schema", "table", "estimated_rows", "seq_scan", "seq_tup_read", "idx_scan", "index_use_pct", "indexes"]


def scan_rows(*rows: tuple) -> pd.DataFrame:
    full = [("public", name, est, seq, seq * est, idx, None if seq + idx == 0 else 100.0 * idx / (seq + idx), 1)
            for name, est, seq, idx in rows]
    return pd.DataFrame(full, columns=SCAN_COLUMNS)


def test_missing_index_is_pghero_10000_rows_below_95_pct_with_some_index_use():
    df = scan_rows(("events", 10_000, 6, 94),      # 94 %: flagged
                   ("orders", 10_000, 5, 95),      # 95 %: fine
                   ("small", 9_999, 100, 1),       # too small
                   ("unused", 50_000, 100, 0))     # no index scan yet: insufficient data (PgHero)
    findings = dbperf.judge_missing_indexes(df, DEFAULTS, INSTANCE)
    assert [f.resource for f in findings] == ["public.events"]
    assert findings[0].severity is WARNING and "94% index use" in findings[0].title
    assert "CREATE INDEX CONCURRENTLY" in findings[0].resolution
    [ok] = dbperf.judge_missing_indexes(df[df["table"] != "events"], DEFAULTS, INSTANCE)
    assert ok.severity is OK and "1 of them have no index scan yet" in ok.detail


@pytest.mark.parametrize(("hit", "read", "expected"), [(99, 1, OK), (989, 11, WARNING), (0, 0, OK)])
def test_cache_hit_rate_below_99_pct_is_a_warning(hit, read, expected):
    df = pd.DataFrame([("table", hit, read), ("index", 1000, 0)], columns=["kind", "hit", "read"])
    findings = dbperf.judge_hit_rate(df, DEFAULTS, INSTANCE)
    assert severities(findings) == [expected, OK]
    assert findings[0].resource == f"db:{INSTANCE} table cache"


def test_table_sizes_is_information_with_the_largest_tables():
    df = pd.DataFrame([("public", "b", 3 * 2**20, 2**20, 0, 4 * 2**20, 1000),
                       ("public", "a", 2**20, 0, 5 * 2**20, 6 * 2**20, 10)],
                      columns=["schema", "table", "table_bytes", "index_bytes", "toast_bytes", "total_bytes",
                               "estimated_rows"])
    [finding] = dbperf.judge_table_sizes(df, 20 * 2**20, INSTANCE)
    assert finding.severity is INFO
    assert finding.title == "Database 20.0 MB; largest table public.a 6.0 MB with indexes and TOAST"
    assert [t["table"] for t in finding.evidence["largest"]] == ["a", "b"]
    assert dbperf.judge_table_sizes(df.head(0), None, INSTANCE)[0].severity is INFO


# =============================================================================================
# Layer 2: against a real PostgreSQL with real load
# =============================================================================================


@pytest.fixture(scope="module")
def perf_pg() -> Iterator[PgServer]:
    yield from serve_with_roles(max_connections=20, settings={"shared_buffers": "2MB"})


@pytest.fixture
def admin(perf_pg: PgServer) -> Iterator[psycopg.Connection]:
    conn = perf_pg.server.connect(application_name="pytest-admin")
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def perf_ctx(perf_pg: PgServer, make_context, monkeypatch):
    """``perf_ctx(thresholds={...}, dbname=...)``: a Context on the module's server as rmsops_monitor."""
    monkeypatch.setenv("PGPASSFILE", "/nonexistent/rmsops-test-pgpass")
    monkeypatch.setenv("PGPASSWORD", perf_pg.monitor_password)
    built: list[Context] = []

    def build(thresholds: dict | None = None, dbname: str | None = None) -> Context:
        ctx = make_context(thresholds=thresholds, database={
            "host": perf_pg.host, "port": perf_pg.port, "dbname": dbname or perf_pg.dbname,
            "user": perf_pg.monitor_user, "sslmode": "disable"})
        built.append(ctx)
        return ctx

    yield build
    for ctx in built:
        ctx.close()


@contextlib.contextmanager
def app_connections(pg: PgServer, n: int, autocommit: bool = True) -> Iterator[list[psycopg.Connection]]:
    conns = [pg.connect_app(autocommit=autocommit) for _ in range(n)]
    try:
        yield conns
    finally:
        for conn in conns:
            conn.close()


def flushed(conn: psycopg.Connection) -> None:
    """Publish this backend's table statistics now (they are flushed when it goes idle)."""
    conn.execute("SELECT pg_stat_force_next_flush()")
    conn.execute("SELECT 1")


def run_check(ctx: Context, check_id: str):
    result = ctx.run(check_id)
    assert all(f.severity is not ERROR for f in result.findings), result.findings
    spec = registry.get(check_id)
    if spec.plot is not None:
        assert isinstance(spec.plot(result, ctx), Figure)
    return result


class Sleeper:
    """A statement running in its own thread on its own connection until cancelled."""

    def __init__(self, conn: psycopg.Connection, sql: str, params: tuple = ()):
        self.conn = conn
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(sql, params), daemon=True)
        self.thread.start()

    def _run(self, sql: str, params: tuple) -> None:
        try:
            self.conn.execute(sql, params or None)
        except psycopg.Error as exc:
            self.error = exc

    def stop(self) -> None:
        if self.thread.is_alive():
            self.conn.cancel()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive()


def activity(admin: psycopg.Connection, pid: int) -> tuple | None:
    return admin.execute("SELECT state, wait_event_type, extract(epoch FROM now() - query_start) "
                         "FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()


def test_long_running_query_and_idle_transaction_against_lowered_thresholds(perf_pg, perf_ctx, admin):
    with app_connections(perf_pg, 2) as (sleeping, idle), app_connections(perf_pg, 1, autocommit=False) as (in_tx,):
        idle.execute("SELECT count(*) FROM app_orders").fetchone()  # then idle: never long-running
        in_tx.execute("SELECT 1").fetchone()  # BEGIN; SELECT 1; and nothing more: idle in transaction
        sleeper = Sleeper(sleeping, "SELECT pg_sleep(30)")
        try:
            poll(lambda: activity(admin, sleeping.info.backend_pid),
                 lambda row: row is not None and row[0] == "active" and row[2] > 0.8, what="pg_sleep running")
            result = run_check(perf_ctx(thresholds={"long_query_warning_seconds": 0.5,
                                                    "long_query_critical_seconds": 3600}), "db.queries.long_running")
            by_pid = {f.evidence.get("pid"): f for f in result.findings}
            assert set(by_pid) == {sleeping.info.backend_pid, in_tx.info.backend_pid}
            running_finding = by_pid[sleeping.info.backend_pid]
            assert running_finding.severity is WARNING and "pg_sleep(30)" in running_finding.detail
            assert running_finding.evidence["source"] == APP_NAME
            assert by_pid[in_tx.info.backend_pid].title.startswith("Transaction idle for")
            critical = run_check(perf_ctx(thresholds={"long_query_warning_seconds": 0.2,
                                                      "long_query_critical_seconds": 0.5}), "db.queries.long_running")
            assert {f.severity for f in critical.findings} == {CRITICAL}
            calm = run_check(perf_ctx(), "db.queries.long_running")
            assert severities(calm.findings) == [OK] and calm.findings[0].evidence["running"] == 2
        finally:
            sleeper.stop()
    assert isinstance(sleeper.error, psycopg.errors.QueryCanceled)


SLOW_COST = ("SELECT count(*) FROM app_orders a WHERE EXISTS "
             "(SELECT FROM slow_cost c WHERE pg_sleep(c.seconds) IS NOT NULL)")


def test_slow_statements_from_real_load_and_the_slowest_select_explained(perf_pg, perf_ctx, admin):
    if not perf_pg.server.has_stat_statements:
        pytest.skip("this PostgreSQL has no pg_stat_statements")
    admin.execute("CREATE TABLE IF NOT EXISTS slow_cost (seconds float8 NOT NULL)")
    admin.execute("TRUNCATE slow_cost")
    admin.execute("INSERT INTO slow_cost VALUES (0.03)")
    admin.execute("GRANT SELECT ON slow_cost TO rms_app, rmsops_monitor")
    admin.execute("SELECT pg_stat_statements_reset()")

    def load(conn: psycopg.Connection) -> None:
        for _ in range(18):
            conn.execute("SELECT pg_sleep(0.021)")  # normalized: SELECT pg_sleep($1)
            conn.execute(SLOW_COST).fetchone()  # no constants: kept verbatim, can be EXPLAIN ANALYZEd
        for _ in range(25):
            conn.execute("SELECT count(*) FROM app_orders").fetchone()  # fast

    with app_connections(perf_pg, 6) as conns:
        threads = [threading.Thread(target=load, args=(c,)) for c in conns]
        for t in threads:
            t.start()
        conns[0].execute("SELECT pg_sleep(0.05)::text")  # slow but called 5 times only
        for _ in range(4):
            conns[0].execute("SELECT pg_sleep(0.05)::text")
        for t in threads:
            t.join()
    ctx = perf_ctx()
    result = run_check(ctx, "db.queries.slow")
    warnings = [f for f in result.findings if f.severity is WARNING]
    assert len(warnings) == 2 and len(result.findings) == 2
    cost, sleep = warnings
    assert cost.evidence["query"] == SLOW_COST and cost.evidence["calls"] == 108
    assert cost.evidence["mean_ms"] >= 30 and sleep.evidence["mean_ms"] >= 21
    assert sleep.evidence["query"] == "SELECT pg_sleep($1)" and sleep.evidence["calls"] == 108
    assert "explain" not in sleep.evidence  # only the slowest statement is explained
    plan = cost.evidence["explain"]
    assert plan["mode"] == "analyze" and plan["execution_ms"] >= 30
    assert {"slow_cost", "app_orders"} <= {n["relation"] for n in plan["nodes"]}
    assert "EXPLAIN ANALYZE (read-only, rolled back)" in cost.detail
    nodes = result.frames["explain_plan"]
    assert nodes.iloc[0]["actual_total_ms"] >= 30
    data = result.data
    assert set(data["query"]) >= {SLOW_COST, "SELECT pg_sleep($1)", "SELECT count(*) FROM app_orders",
                                  "SELECT pg_sleep($1)::text"}
    assert not data["users"].str.contains("rmsops_monitor").any()  # our own statements are left out
    fewer = run_check(perf_ctx(thresholds={"slow_query_min_calls": 109}), "db.queries.slow")
    assert severities(fewer.findings) == [OK]
    assert ctx.db.connection().info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_pg_stat_statements_not_preloaded_is_info(monitor_env, pg_admin):
    if "pg_stat_statements" in pg_admin.value("SHOW shared_preload_libraries"):
        pytest.skip("the shared test server preloads pg_stat_statements")
    ctx = monitor_env()
    result = run_check(ctx, "db.queries.slow")
    [finding] = result.findings
    assert finding.severity is INFO and finding.evidence["preloaded"] is False
    assert "shared_preload_libraries" in finding.resolution and "reboot" in finding.resolution


def test_pg_stat_statements_not_created_in_the_database_is_info(perf_pg, perf_ctx, admin):
    if not perf_pg.server.has_stat_statements:
        pytest.skip("this PostgreSQL has no pg_stat_statements")
    admin.execute("DROP DATABASE IF EXISTS noext")
    admin.execute("CREATE DATABASE noext")
    try:
        ctx = perf_ctx(dbname="noext")
        [finding] = run_check(ctx, "db.queries.slow").findings
        assert finding.severity is INFO and finding.evidence == {**finding.evidence, "preloaded": True,
                                                                 "created": False}
        assert finding.resolution.startswith("pg_stat_statements is preloaded; run CREATE EXTENSION")
        ctx.close()
    finally:
        admin.execute("DROP DATABASE noext WITH (FORCE)")


def test_a_session_blocked_by_an_uncommitted_update_names_its_blocker(perf_pg, perf_ctx, admin):
    with app_connections(perf_pg, 2, autocommit=False) as (holder, waiter):
        holder.execute("UPDATE app_orders SET status = 'held' WHERE id = 1")  # not committed
        blocked = Sleeper(waiter, "UPDATE app_orders SET status = 'waiting' WHERE id = 1")
        try:
            poll(lambda: activity(admin, waiter.info.backend_pid),
                 lambda row: row is not None and row[1] == "Lock" and row[2] > 0.6, what="the UPDATE blocked")
            result = run_check(perf_ctx(thresholds={"blocked_warning_seconds": 0.5}), "db.locks.blocked")
            [finding] = result.findings
            assert finding.severity is WARNING
            assert finding.evidence["blocked_pid"] == waiter.info.backend_pid
            assert [b["blocking_pid"] for b in finding.evidence["blockers"]] == [holder.info.backend_pid]
            assert finding.evidence["blockers"][0]["blocking_state"] == "idle in transaction"
            assert "SET status = 'waiting'" in finding.evidence["blocked_query"]
            assert "SET status = 'held'" in finding.evidence["blockers"][0]["blocking_query"]
            assert finding.title.startswith(f"pid {waiter.info.backend_pid} blocked for")
            states = result.frames["connections_by_state"]
            assert dict(zip(states["state"], states["connections"], strict=True)) == {
                "active": 1, "idle in transaction": 1, "idle": 1}  # the idle one: this test's admin
            [info] = run_check(perf_ctx(), "db.locks.blocked").findings  # default: 60 s
            assert info.severity is INFO and "waiting on a lock" in info.title
        finally:
            holder.rollback()
            blocked.stop()
            waiter.rollback()
    assert blocked.error is None
    [after] = run_check(perf_ctx(), "db.locks.blocked").findings
    assert after.severity is OK


def test_a_query_that_started_after_our_transaction_never_has_a_negative_age(perf_pg, admin):
    """now() is the start of the observer's transaction: a query that began since came out negative
    ("-0 s"). The SQL measures against clock_timestamp() and clamps at 0."""
    with app_connections(perf_pg, 2, autocommit=False) as (holder, waiter), \
            perf_pg.server.connect(autocommit=False) as observer:
        holder.execute("UPDATE app_orders SET status = 'held' WHERE id = 2")  # not committed
        observer.execute("SELECT now()")  # the observer's transaction (and now()) starts here
        time.sleep(0.3)
        blocked = Sleeper(waiter, "UPDATE app_orders SET status = 'waiting' WHERE id = 2")
        try:
            poll(lambda: activity(admin, waiter.info.backend_pid),
                 lambda row: row is not None and row[1] == "Lock", what="the UPDATE blocked")
            version = int(observer.execute("SHOW server_version_num").fetchone()[0])
            running = observer.execute(pg_queries.RUNNING_SQL).fetchall()
            blocked_rows = observer.execute(pg_queries.blocked_sql(version)).fetchall()
            [waiting] = [r for r in running if r[0] == waiter.info.backend_pid]
            assert waiting[9] >= 0 and waiting[10] >= 0  # duration_seconds, transaction_seconds
            [row] = [r for r in blocked_rows if r[0] == waiter.info.backend_pid]
            assert row[4] >= 0  # blocked_seconds
        finally:
            observer.rollback()
            holder.rollback()
            blocked.stop()
            waiter.rollback()


def test_table_sizes_split_table_indexes_and_toast(perf_pg, perf_ctx, admin):
    admin.execute("DROP TABLE IF EXISTS documents")
    admin.execute("CREATE TABLE documents (id int PRIMARY KEY, body text)")
    admin.execute("INSERT INTO documents SELECT i, (SELECT string_agg(md5(random()::text || i || g), '') "
                  "FROM generate_series(1, 200) AS g) FROM generate_series(1, 40) AS i")  # ~6 kB each: TOAST
    result = run_check(perf_ctx(), "db.tables.size")
    [finding] = result.findings
    assert finding.severity is INFO and finding.title.startswith("Database ")
    row = result.data.set_index("table").loc["documents"]
    assert row["toast_bytes"] > 0 and row["index_bytes"] > 0 and row["table_bytes"] > 0
    assert row["table_bytes"] + row["index_bytes"] + row["toast_bytes"] == row["total_bytes"]
    assert row["total_bytes"] == admin.execute("SELECT pg_total_relation_size('documents')").fetchone()[0]
    assert finding.evidence["database_bytes"] == admin.execute(
        "SELECT pg_database_size(current_database())").fetchone()[0]
    admin.execute("DROP TABLE documents")


def table_stat(ctx: Context, sql: str, table: str) -> pd.Series | None:
    df = ctx.db.frame(sql)
    rows = df[df["table"] == table]
    return None if rows.empty else rows.iloc[0]


def test_stale_statistics_on_a_table_without_autovacuum_until_analyze(perf_pg, perf_ctx, admin):
    admin.execute("DROP TABLE IF EXISTS rate_changes")
    admin.execute("CREATE TABLE rate_changes (id serial PRIMARY KEY, rate numeric) WITH (autovacuum_enabled = false)")
    admin.execute("INSERT INTO rate_changes (rate) SELECT i FROM generate_series(1, 3000) AS i")
    admin.execute("UPDATE rate_changes SET rate = rate + 1 WHERE id <= 500")
    flushed(admin)
    ctx = perf_ctx()
    poll(lambda: table_stat(ctx, pg_queries.STALE_SQL, "rate_changes"),
         lambda row: row is not None and row["n_mod_since_analyze"] == 3500, what="modifications counted")
    result = run_check(ctx, "db.stats.stale")
    finding = {f.resource: f for f in result.findings}["public.rate_changes"]
    assert finding.severity is WARNING
    assert finding.evidence["n_mod_since_analyze"] == 3500 and finding.evidence["autovacuum_disabled"] is True
    assert finding.resolution.startswith("Update table statistics: ANALYZE public.rate_changes;")
    assert "never analyzed" in finding.detail
    admin.execute("ANALYZE rate_changes")
    after = run_check(ctx, "db.stats.stale")
    assert "public.rate_changes" not in {f.resource for f in after.findings}
    admin.execute("DROP TABLE rate_changes")


def test_a_large_table_read_by_sequential_scans_until_an_index_is_used(perf_pg, perf_ctx, admin):
    admin.execute("DROP TABLE IF EXISTS booking_events")
    admin.execute("CREATE TABLE booking_events (id int PRIMARY KEY, booking int, kind text)")
    admin.execute("INSERT INTO booking_events SELECT i, i % 997, 'paid' FROM generate_series(1, 12000) AS i")
    flushed(admin)  # the insert's counts before ANALYZE, or they land on top of its row estimate
    admin.execute("ANALYZE booking_events")
    admin.execute("SELECT kind FROM booking_events WHERE id = 7").fetchall()  # one index scan
    for k in range(25):  # no index on booking: sequential scans
        admin.execute("SELECT count(*) FROM booking_events WHERE booking = %s", (k,)).fetchone()
    flushed(admin)
    ctx = perf_ctx()
    poll(lambda: table_stat(ctx, pg_queries.SCANS_SQL, "booking_events"),
         lambda row: row is not None and row["idx_scan"] >= 1 and row["seq_scan"] >= 25, what="scans counted")
    result = run_check(ctx, "db.indexes.missing")
    finding = {f.resource: f for f in result.findings}["public.booking_events"]
    assert finding.severity is WARNING and finding.evidence["estimated_rows"] == 12000
    assert finding.evidence["index_use_pct"] < 5
    admin.execute("CREATE INDEX booking_events_booking_idx ON booking_events (booking)")
    admin.execute("SELECT count(*) FROM generate_series(1, 1000) AS g "  # 1000 index lookups
                  "WHERE (SELECT kind FROM booking_events WHERE id = g) IS NOT NULL").fetchone()
    flushed(admin)
    poll(lambda: table_stat(ctx, pg_queries.SCANS_SQL, "booking_events"),
         lambda row: row is not None and row["idx_scan"] >= 1000, what="index scans counted")
    after = run_check(ctx, "db.indexes.missing")
    assert "public.booking_events" not in {f.resource for f in after.findings}
    admin.execute("DROP TABLE booking_events")


def test_cache_hit_rate_of_a_table_larger_than_shared_buffers_then_of_a_hot_table(perf_pg, perf_ctx, admin):
    admin.execute("DROP TABLE IF EXISTS cold_archive, hot_rates")
    admin.execute("CREATE TABLE cold_archive (id int, payload text)")
    admin.execute("INSERT INTO cold_archive SELECT i, repeat('x', 400) FROM generate_series(1, 10000) AS i")  # ~4.5 MB
    admin.execute("CREATE TABLE hot_rates (id int, rate int)")
    admin.execute("INSERT INTO hot_rates SELECT i, i FROM generate_series(1, 100) AS i")
    flushed(admin)  # the inserts' pending counts first, or they land after the reset
    admin.execute("SELECT pg_stat_reset()")  # this database's counters only: start from zero
    for _ in range(3):  # bigger than shared_buffers (2 MB): read through a small ring, page by page
        admin.execute("SELECT count(*) FROM cold_archive").fetchone()
    flushed(admin)
    ctx = perf_ctx()
    poll(lambda: ctx.db.frame(pg_queries.HIT_RATE_SQL).set_index("kind").loc["table", "read"],
         lambda read: read > 1000, what="cold reads counted")
    result = run_check(ctx, "db.cache.hit_rate")
    table = {f.evidence["kind"]: f for f in result.findings}["table"]
    assert table.severity is WARNING and table.evidence["hit_rate_pct"] < 50
    assert result.frames["tables_by_reads"].iloc[0]["table"] == "cold_archive"
    flushed(admin)
    admin.execute("SELECT pg_stat_reset()")
    for _ in range(20):
        admin.execute("SELECT sum(rate) FROM hot_rates").fetchone()
    flushed(admin)
    poll(lambda: ctx.db.frame(pg_queries.HIT_RATE_SQL).set_index("kind").loc["table", "hit"],
         lambda hit: hit >= 20, what="hot hits counted")
    hot = {f.evidence["kind"]: f for f in run_check(ctx, "db.cache.hit_rate").findings}
    assert hot["table"].severity is OK and hot["table"].evidence["hit_rate_pct"] == 100.0
    admin.execute("DROP TABLE cold_archive, hot_rates")


def test_an_unreachable_database_is_an_error_finding_for_every_check(make_context):
    ctx = make_context(database={"host": "127.0.0.1", "port": 1})
    for result in ctx.run_all(RUNBOOK):
        assert severities(result.findings) == [ERROR], result.check


# =============================================================================================
# Layer 3: the served demo and the notebook
# =============================================================================================


def demo_results(scenario: str, **threshold_overrides: float) -> dict[str, list[Finding]]:
    ctx = Context.open(served(scenario).env_file, threshold_overrides=threshold_overrides or None)
    try:
        return {r.check: r.findings for r in ctx.run_all(RUNBOOK)}
    finally:
        ctx.close()


def test_demo_db_slow_queries_shows_each_fault():
    results = demo_results("db-slow-queries")
    assert not [f for fs in results.values() for f in fs if f.severity is ERROR]
    [slow] = [f for f in results["db.queries.slow"] if f.severity is WARNING]
    assert slow.evidence["calls"] >= 100 and slow.evidence["mean_ms"] >= 20
    assert slow.evidence["explain"]["mode"] == "analyze"
    assert "demo_report_cost" in {n["relation"] for n in slow.evidence["explain"]["nodes"]}
    assert [(f.severity, f.resource) for f in results["db.stats.stale"]] == [(WARNING, "public.rate_history")]
    assert [(f.severity, f.resource) for f in results["db.indexes.missing"]] == [
        (WARNING, "public.reservation_events")]
    assert severities(results["db.locks.blocked"]) == [INFO]  # the wait started with the demo
    blocked = demo_results("db-slow-queries", blocked_warning_seconds=0.1)["db.locks.blocked"]
    assert severities(blocked) == [WARNING]
    assert blocked[0].evidence["blockers"][0]["blocking_state"] == "idle in transaction"


def test_demo_incident_has_something_for_database_performance():
    results = demo_results("incident")
    assert [(f.severity, f.resource) for f in results["db.stats.stale"]] == [(WARNING, "public.rate_history")]
    assert not [f for fs in results.values() for f in fs if f.severity is ERROR]


def test_demo_healthy_has_nothing_above_info():
    results = demo_results("healthy")
    loud = [f for fs in results.values() for f in fs if f.severity in (WARNING, CRITICAL, ERROR)]
    assert not loud, loud
    assert severities(results["db.cache.hit_rate"]) == [OK, OK]


def test_notebook_runs_under_papermill_against_the_demo(tmp_path):
    demo = served("db-slow-queries")
    out = tmp_path / "07.ipynb"
    done = subprocess.run([str(Path(sys.executable).parent / "papermill"), "--no-progress-bar",
                           str(ROOT / "notebooks" / f"{RUNBOOK}.ipynb"), str(out), "-p", "env", str(demo.env_file)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    notebook = nbformat.read(out, as_version=4)
    found = {f.check: f.severity for f in collect_findings(notebook) if f.severity is WARNING}
    assert {"db.queries.slow", "db.stats.stale", "db.indexes.missing"} <= set(found)
    images = sum("data:image/svg+xml;base64," in o.get("data", {}).get("text/html", "")
                 for c in notebook.cells for o in c.get("outputs", []))
    assert images >= 3  # statements, locks, table sizes
