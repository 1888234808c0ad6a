"""Every statement the database-performance checks (``rmsops.checks.dbperf``) run on PostgreSQL.

Kept apart from the judges so that the SQL can be read, reviewed and tested on its own
(tests/test_pg_queries.py runs each statement against a real server). A statement that differs
between server versions is written out in full once per version, and a small function picks
it by ``server_version_num``: a variant derived from another by text substitution silently
stops differing when the base is reformatted, and nothing notices until an old server fails.

Shapes and thresholds follow PgHero (``lib/pghero/methods``). Every statement is one read-only
SELECT: ``rmsops.core.db`` refuses anything else.
"""

from __future__ import annotations

import re

PG13 = 130000  # pg_stat_statements 1.8: total_plan_time and total_exec_time instead of total_time
PG14 = 140000  # pg_stat_statements 1.9: toplevel, pg_stat_statements_info; pg_locks.waitstart

# What PostgreSQL shows instead of the text of another role's statement to a role without
# pg_read_all_stats (pg_stat_activity.query, pg_stat_statements.query).
INSUFFICIENT_PRIVILEGE = "<insufficient privilege>"


def quote_ident(name: str) -> str:
    """``name`` as an SQL identifier: as is when PostgreSQL would read it back unchanged, else quoted."""
    return name if re.fullmatch(r"[a-z_][a-z0-9_$]*", name) else '"' + name.replace('"', '""') + '"'


def age_seconds_sql(timestamp: str) -> str:
    """Seconds since ``timestamp`` (SQL), measured against clock_timestamp(), not now(): now() is the
    start of rmsops' own statement, earlier than a query that started since, which came out as a
    negative age ("-0 s"). Never below 0; NULL stays NULL (GREATEST alone would make it 0)."""
    return (f"CASE WHEN {timestamp} IS NULL THEN NULL "
            f"ELSE GREATEST(EXTRACT(EPOCH FROM clock_timestamp() - {timestamp}), 0) END::float")


# --- db.queries.long_running -------------------------------------------------------------------

# PgHero running_queries: not idle, not us, this database, age from COALESCE(query_start, xact_start).
RUNNING_SQL = f"""
SELECT pid, usename AS user, application_name AS source, client_addr::text AS client, state,
       backend_type, wait_event_type, wait_event,
       COALESCE(query_start, xact_start) AS started_at,
       {age_seconds_sql("COALESCE(query_start, xact_start)")} AS duration_seconds,
       {age_seconds_sql("xact_start")} AS transaction_seconds,
       left(query, 2000) AS query
FROM pg_stat_activity
WHERE state <> 'idle' AND pid <> pg_backend_pid() AND datname = current_database()
  AND query <> '<insufficient privilege>'
ORDER BY COALESCE(query_start, xact_start)
"""

# --- db.queries.slow ---------------------------------------------------------------------------

STATEMENTS_STATUS_SQL = """
SELECT (SELECT setting FROM pg_settings WHERE name = 'shared_preload_libraries') AS preload,
       EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements') AS created,
       (SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
        WHERE e.extname = 'pg_stat_statements') AS schema,
       current_setting('server_version_num')::int AS version
"""


def _statements_sql(total_ms: str, only_toplevel: bool) -> str:
    """PgHero query_stats: total = plan + exec time, this database, calls > 0; grouped per statement
    over users; rmsops' own statements left out. ``{schema}`` stays for the extension's schema,
    quoted (statements_sql)."""
    toplevel = " AND s.toplevel" if only_toplevel else ""
    return f"""
WITH s AS (
  SELECT s.queryid, s.query, s.calls, s.rows, {total_ms} AS total_ms,
         s.shared_blks_hit, s.shared_blks_read, r.rolname
  FROM {{schema}}.pg_stat_statements s
  LEFT JOIN pg_roles r ON r.oid = s.userid
  WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
    AND s.calls > 0{toplevel} AND s.userid <> (SELECT oid FROM pg_roles WHERE rolname = current_user)
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


# Top-level statements only: with pg_stat_statements.track = all, nested statements are counted
# inside their caller too.
STATEMENTS_SQL_14 = _statements_sql("s.total_exec_time + s.total_plan_time", only_toplevel=True)
# PostgreSQL 13 (pg_stat_statements 1.8): no toplevel column yet, so with track = all a nested
# statement is counted both on its own and inside its caller; nothing tells them apart.
STATEMENTS_SQL_13 = _statements_sql("s.total_exec_time + s.total_plan_time", only_toplevel=False)
# Before PostgreSQL 13 (pg_stat_statements ≤ 1.7): one total_time, execution only (planning was
# not timed), and no toplevel column either.
STATEMENTS_SQL_PRE13 = _statements_sql("s.total_time", only_toplevel=False)

# pg_stat_statements_info exists from PostgreSQL 14 (pg_stat_statements 1.9) only.
STATEMENTS_RESET_SQL_14 = "SELECT stats_reset FROM {schema}.pg_stat_statements_info"


def statements_sql(server_version_num: int, schema: str = "public") -> str:
    """The pg_stat_statements read for this server, from the extension's ``schema``."""
    if server_version_num >= PG14:
        template = STATEMENTS_SQL_14
    elif server_version_num >= PG13:
        template = STATEMENTS_SQL_13
    else:
        template = STATEMENTS_SQL_PRE13
    return template.format(schema=quote_ident(schema))


def statements_reset_sql(server_version_num: int, schema: str = "public") -> str | None:
    """When pg_stat_statements was last reset, or None where the server cannot say (before 14)."""
    if server_version_num >= PG14:
        return STATEMENTS_RESET_SQL_14.format(schema=quote_ident(schema))
    return None


# --- db.locks.blocked --------------------------------------------------------------------------

def _blocked_sql(waiting_since: str) -> str:
    """Blocked sessions and their blockers (pg_blocking_pids, 9.6+, as pgwatch); only sessions
    waiting on a lock are asked, since pg_blocking_pids takes the lock manager's locks."""
    return f"""
SELECT blocked.pid AS blocked_pid, blocked.usename AS blocked_user,
       blocked.application_name AS blocked_source, blocked.wait_event AS lock_type,
       {age_seconds_sql(waiting_since)} AS blocked_seconds,
       left(blocked.query, 1000) AS blocked_query,
       blocker.pid AS blocking_pid, blocker.usename AS blocking_user,
       blocker.application_name AS blocking_source, blocker.state AS blocking_state,
       {age_seconds_sql("blocker.xact_start")} AS blocking_transaction_seconds,
       left(blocker.query, 1000) AS blocking_query
FROM pg_stat_activity blocked
CROSS JOIN LATERAL unnest(pg_blocking_pids(blocked.pid)) AS b(pid)
LEFT JOIN pg_stat_activity blocker ON blocker.pid = b.pid
WHERE blocked.wait_event_type = 'Lock' AND blocked.pid <> pg_backend_pid()
  AND blocked.datname = current_database()
ORDER BY blocked_seconds DESC, blocked.pid, blocker.pid
"""


# From 14, pg_locks says when the wait began (waitstart); the statement's start is the fallback.
BLOCKED_SQL_14 = _blocked_sql("COALESCE((SELECT min(l.waitstart) FROM pg_locks l WHERE l.pid = blocked.pid "
                              "AND NOT l.granted), blocked.query_start)")
# Before 14 pg_locks has no waitstart: the blocked statement's start stands in for the wait's.
BLOCKED_SQL_PRE14 = _blocked_sql("blocked.query_start")


def blocked_sql(server_version_num: int) -> str:
    """The blocked-sessions read for this server."""
    return BLOCKED_SQL_14 if server_version_num >= PG14 else BLOCKED_SQL_PRE14


# The guide's "connection count by state", client backends only (as db.connections.by_state).
STATES_SQL = """
SELECT coalesce(state, 'unknown') AS state, count(*) AS connections
FROM pg_stat_activity
WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
GROUP BY 1 ORDER BY 2 DESC
"""

# --- db.tables.size ----------------------------------------------------------------------------

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

# --- db.stats.stale ----------------------------------------------------------------------------

STALE_SQL = """
SELECT t.schemaname AS schema, t.relname AS table, t.n_live_tup, t.n_dead_tup, t.n_mod_since_analyze,
       t.last_analyze, t.last_autoanalyze, GREATEST(t.last_analyze, t.last_autoanalyze) AS analyzed_at,
       COALESCE(c.reloptions::text[] @> ARRAY['autovacuum_enabled=false'], false) AS autovacuum_disabled
FROM pg_stat_user_tables t JOIN pg_class c ON c.oid = t.relid
ORDER BY t.n_mod_since_analyze DESC, t.schemaname, t.relname
"""

# --- db.indexes.missing ------------------------------------------------------------------------

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

# --- db.cache.hit_rate -------------------------------------------------------------------------

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
