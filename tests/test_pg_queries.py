"""rmsops.sources.pg_queries: every statement against a real PostgreSQL, and every server-version
variant against the pg_stat_statements of its own era.

The server is this module's own (tests/pg.py's shared one runs without pg_stat_statements): the
PostgreSQL 15 of tests/pg.py's kind, with pg_stat_statements preloaded, and the roles of
production (rmsops_monitor with pg_monitor, rms_app). Statements run the product's way, through
a Context's read-only session as rmsops_monitor.

PostgreSQL 15 still ships the older pg_stat_statements versions (1.7 is PostgreSQL 12's, 1.8
13's, 1.9 14's) and its library still serves their views, so an old server's variant is run for
real against the view shape it was written for, each in a database of its own. What cannot run
on 15 at all is checked as text: the old variants select the same columns, in the same order,
as the current one (their select lists parsed), and never name a column their era lacks.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator

import pandas as pd
import psycopg
import pytest

from rmsops.sources import pg_queries
from rmsops.sources.pg_queries import quote_ident
from tests.pg import PgServer, poll, serve_with_roles

# The columns the judges of rmsops.checks.dbperf read, in the order the statements return them.
STATEMENT_COLUMNS = ["queryid", "users", "calls", "total_ms", "mean_ms", "pct_total", "rows", "shared_blks_hit",
                     "shared_blks_read", "query_chars", "query"]
BLOCKED_COLUMNS = ["blocked_pid", "blocked_user", "blocked_source", "lock_type", "blocked_seconds", "blocked_query",
                   "blocking_pid", "blocking_user", "blocking_source", "blocking_state",
                   "blocking_transaction_seconds", "blocking_query"]
RUNNING_COLUMNS = ["pid", "user", "source", "client", "state", "backend_type", "wait_event_type", "wait_event",
                   "started_at", "duration_seconds", "transaction_seconds", "query"]
CURRENT = 150000  # the test server's major version; every variant chosen from 14 on is the current one

# (id, the statement as the check asks for it on the test server, its columns)
EVERY_STATEMENT: list[tuple[str, Callable[[], str], list[str]]] = [
    ("running", lambda: pg_queries.RUNNING_SQL, RUNNING_COLUMNS),
    ("states", lambda: pg_queries.STATES_SQL, ["state", "connections"]),
    ("statements status", lambda: pg_queries.STATEMENTS_STATUS_SQL, ["preload", "created", "schema", "version"]),
    ("statements 14+", lambda: pg_queries.statements_sql(CURRENT), STATEMENT_COLUMNS),
    ("statements 13", lambda: pg_queries.statements_sql(130000), STATEMENT_COLUMNS),  # 1.10 still has its columns
    ("statements reset 14+", lambda: pg_queries.statements_reset_sql(CURRENT), ["stats_reset"]),
    ("blocked 14+", lambda: pg_queries.blocked_sql(CURRENT), BLOCKED_COLUMNS),
    ("blocked before 14", lambda: pg_queries.blocked_sql(130000), BLOCKED_COLUMNS),
    ("table sizes", lambda: pg_queries.TABLE_SIZES_SQL,
     ["schema", "table", "table_bytes", "index_bytes", "toast_bytes", "total_bytes", "estimated_rows"]),
    ("database size", lambda: pg_queries.DATABASE_SIZE_SQL, ["bytes"]),
    ("stale", lambda: pg_queries.STALE_SQL,
     ["schema", "table", "n_live_tup", "n_dead_tup", "n_mod_since_analyze", "last_analyze", "last_autoanalyze",
      "analyzed_at", "autovacuum_disabled"]),
    ("scans", lambda: pg_queries.SCANS_SQL,
     ["schema", "table", "estimated_rows", "seq_scan", "seq_tup_read", "idx_scan", "index_use_pct", "indexes"]),
    ("hit rate", lambda: pg_queries.HIT_RATE_SQL, ["kind", "hit", "read"]),
    ("hit rate tables", lambda: pg_queries.HIT_RATE_TABLES_SQL,
     ["schema", "table", "heap_blks_hit", "heap_blks_read", "idx_blks_hit", "idx_blks_read"]),
]


# =============================================================================================
# The select list of a statement, read from its text
# =============================================================================================

_TOKEN = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\w+|\S")


def _tokens_at_depth(sql: str) -> list[tuple[str, int]]:
    """The tokens of ``sql`` (quoted text kept whole), each with its parenthesis depth."""
    out, depth = [], 0
    for token in _TOKEN.findall(sql):
        if token == ")":
            depth -= 1
        out.append((token, depth))
        if token == "(":
            depth += 1
    return out


def _column_name(item: list[tuple[str, int]]) -> str:
    """What PostgreSQL names a select-list item: its alias after AS, else its last name (s.x -> x)."""
    aliases = [i for i, (token, depth) in enumerate(item) if depth == 0 and token.upper() == "AS"]
    name = item[aliases[-1] + 1][0] if aliases else item[-1][0]
    return name[1:-1].replace('""', '"') if name.startswith('"') else name.lower()


def select_list(sql: str) -> list[str]:
    """Output column names of the statement's main SELECT: the first at depth 0, so after a WITH
    (its CTEs are in parentheses) and, in a UNION, the first branch, whose names the result takes."""
    tokens = _tokens_at_depth(sql)
    start = next(i for i, (token, depth) in enumerate(tokens) if depth == 0 and token.upper() == "SELECT") + 1
    end = next((i for i, (token, depth) in enumerate(tokens)
                if i > start and depth == 0 and token.upper() == "FROM"), len(tokens))
    items: list[list[tuple[str, int]]] = [[]]
    for token, depth in tokens[start:end]:
        if token == "," and depth == 0:
            items.append([])
        else:
            items[-1].append((token, depth))
    return [_column_name(item) for item in items]


def test_select_list_reads_aliases_qualified_names_quotes_ctes_and_unions():
    sql = """WITH a AS (SELECT 1 AS hidden, 2 AS also_hidden)
             SELECT s.queryid, coalesce(x, ',') AS "Mixed, Name", f(a, b)::float AS total, "table",
                    CASE WHEN y THEN 1 ELSE 2 END AS band, Rows
             FROM a UNION ALL SELECT 'z', 1, 2, 3, 4, 5 FROM b"""
    assert select_list(sql) == ["queryid", "Mixed, Name", "total", "table", "band", "rows"]
    assert select_list("SELECT pg_database_size(current_database()) AS bytes") == ["bytes"]


# =============================================================================================
# The server, and statements run as rmsops runs them
# =============================================================================================


@pytest.fixture(scope="module")
def stats_pg() -> Iterator[PgServer]:
    yield from serve_with_roles(max_connections=20)


@pytest.fixture
def frame(stats_pg: PgServer, make_context, monkeypatch) -> Callable[..., pd.DataFrame]:
    """``frame(sql, dbname=None)``: the rows of one statement, as rmsops_monitor on a read-only
    session (``Database.frame``, which also refuses anything but one reading statement)."""
    monkeypatch.setenv("PGPASSFILE", "/nonexistent/rmsops-test-pgpass")
    monkeypatch.setenv("PGPASSWORD", stats_pg.monitor_password)
    contexts = {}

    def run(sql: str, dbname: str | None = None) -> pd.DataFrame:
        name = dbname or stats_pg.dbname
        if name not in contexts:
            contexts[name] = make_context(database={
                "host": stats_pg.host, "port": stats_pg.port, "dbname": name, "user": stats_pg.monitor_user,
                "sslmode": "disable"})
        return contexts[name].db.frame(sql)

    return run


def needs_stat_statements(pg: PgServer) -> None:
    if not pg.server.has_stat_statements:
        pytest.skip("this PostgreSQL has no pg_stat_statements")


@pytest.mark.parametrize(("sql", "columns"), [pytest.param(sql, columns, id=name)
                                              for name, sql, columns in EVERY_STATEMENT])
def test_every_statement_runs_on_the_server_and_returns_its_columns(stats_pg, frame, sql, columns):
    if "pg_stat_statements" in sql():
        needs_stat_statements(stats_pg)
    df = frame(sql())
    assert list(df.columns) == columns
    assert select_list(sql()) == columns  # the text reading below agrees with the server


def test_the_status_names_the_server_version_the_variants_are_chosen_by(stats_pg, frame):
    needs_stat_statements(stats_pg)
    [row] = frame(pg_queries.STATEMENTS_STATUS_SQL).itertuples(index=False)
    assert row.created and row.schema == "public" and "pg_stat_statements" in row.preload
    assert row.version // 10000 == CURRENT // 10000


# =============================================================================================
# pg_stat_statements of each era: the variant of its server version, run for real
# =============================================================================================

ERAS = [  # (server_version_num, the pg_stat_statements version that server ships, schema it is in)
    pytest.param(120000, "1.7", "Stats 12", id="12"),  # a schema that needs quoting
    pytest.param(130000, "1.8", "stats13", id="13"),
    pytest.param(140000, "1.9", "public", id="14"),
    pytest.param(150000, "1.10", "public", id="15"),
]
NEWER = {120000: 130000, 130000: 140000}  # the next variant, which this era's view cannot serve
SLEEPS = 4


def era_database(pg: PgServer, extension: str, schema: str) -> str:
    """A database whose pg_stat_statements is at ``extension`` in ``schema``, with rms_app having
    run ``SELECT pg_sleep($1)`` SLEEPS times there."""
    dbname = "pgss_" + extension.replace(".", "_")
    with pg.server.connect() as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {dbname}")
    with pg.server.connect(dbname=dbname) as admin:
        admin.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
        admin.execute(f"GRANT USAGE ON SCHEMA {quote_ident(schema)} TO PUBLIC")
        admin.execute(f"CREATE EXTENSION pg_stat_statements VERSION '{extension}' SCHEMA {quote_ident(schema)}")
        installed = admin.execute("SELECT extversion FROM pg_extension WHERE extname = 'pg_stat_statements'")
        assert installed.fetchone()[0] == extension
    with pg.connect_app(dbname=dbname, autocommit=True) as app:
        for _ in range(SLEEPS):
            app.execute("SELECT pg_sleep(0.005)")
    return dbname


@pytest.mark.parametrize(("version", "extension", "schema"), ERAS)
def test_each_statements_variant_reads_the_view_of_its_era(stats_pg, frame, version, extension, schema):
    needs_stat_statements(stats_pg)
    dbname = era_database(stats_pg, extension, schema)
    df = frame(pg_queries.statements_sql(version, schema), dbname)
    assert list(df.columns) == STATEMENT_COLUMNS
    [sleep] = df[df["query"] == "SELECT pg_sleep($1)"].itertuples(index=False)
    assert sleep.calls == SLEEPS and sleep.users == stats_pg.app_user
    assert sleep.total_ms > SLEEPS * 4 and sleep.mean_ms == pytest.approx(sleep.total_ms / SLEEPS)
    reset_sql = pg_queries.statements_reset_sql(version, schema)
    if version >= pg_queries.PG14:
        assert list(frame(reset_sql, dbname).columns) == ["stats_reset"]
    else:  # and the 14+ statement would indeed fail here: pg_stat_statements_info does not exist yet
        assert reset_sql is None
        with pytest.raises(psycopg.errors.UndefinedTable):
            frame(pg_queries.STATEMENTS_RESET_SQL_14.format(schema=quote_ident(schema)), dbname)
    if version in NEWER:  # this era's view really lacks what the next variant reads
        with pytest.raises(psycopg.errors.UndefinedColumn):
            frame(pg_queries.statements_sql(NEWER[version], schema), dbname)


# =============================================================================================
# Blocked sessions: both variants on a real lock wait
# =============================================================================================


def test_both_blocked_variants_find_a_real_lock_wait_and_its_blocker(stats_pg, frame):
    with stats_pg.connect_app() as holder, stats_pg.connect_app() as waiter, \
            stats_pg.server.connect() as admin:
        holder.execute("UPDATE app_orders SET status = 'held' WHERE id = 1")  # not committed
        errors: list[BaseException] = []

        def wait() -> None:
            try:
                waiter.execute("UPDATE app_orders SET status = 'waiting' WHERE id = 1")
            except psycopg.Error as exc:
                errors.append(exc)

        thread = threading.Thread(target=wait, daemon=True)
        thread.start()
        try:
            poll(lambda: admin.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s",
                                       (waiter.info.backend_pid,)).fetchone(),
                 lambda row: row is not None and row[0] == "Lock", what="the UPDATE waiting on the lock")
            for version in (130000, CURRENT):
                df = frame(pg_queries.blocked_sql(version))
                assert list(df.columns) == BLOCKED_COLUMNS
                [row] = df[df["blocked_pid"] == waiter.info.backend_pid].itertuples(index=False)
                assert row.blocking_pid == holder.info.backend_pid and row.blocking_state == "idle in transaction"
                assert row.blocked_seconds >= 0 and "SET status = 'waiting'" in row.blocked_query
        finally:
            holder.rollback()
            thread.join(timeout=10)
            waiter.rollback()
    assert not thread.is_alive() and errors == []


# =============================================================================================
# The variants as text, and which one each server version gets
# =============================================================================================


@pytest.mark.parametrize(("old", "current", "columns"), [
    pytest.param(pg_queries.STATEMENTS_SQL_PRE13, pg_queries.STATEMENTS_SQL_14, STATEMENT_COLUMNS, id="statements <13"),
    pytest.param(pg_queries.STATEMENTS_SQL_13, pg_queries.STATEMENTS_SQL_14, STATEMENT_COLUMNS, id="statements 13"),
    pytest.param(pg_queries.BLOCKED_SQL_PRE14, pg_queries.BLOCKED_SQL_14, BLOCKED_COLUMNS, id="blocked <14"),
])
def test_an_older_servers_variant_selects_the_same_columns_in_the_same_order(old, current, columns):
    assert select_list(old) == select_list(current) == columns


@pytest.mark.parametrize(("variant", "not_yet"), [
    pytest.param(pg_queries.STATEMENTS_SQL_PRE13, ("total_exec_time", "total_plan_time", "toplevel"), id="<13"),
    pytest.param(pg_queries.STATEMENTS_SQL_13, ("toplevel", "total_time"), id="13"),  # total_time: gone in 13
    pytest.param(pg_queries.BLOCKED_SQL_PRE14, ("waitstart",), id="blocked <14"),
])
def test_an_older_servers_variant_names_no_column_its_server_lacks(variant, not_yet):
    assert not set(re.findall(r"\w+", variant)) & set(not_yet)


STATEMENT_VARIANTS = {"pre13": pg_queries.STATEMENTS_SQL_PRE13, "13": pg_queries.STATEMENTS_SQL_13,
                      "14": pg_queries.STATEMENTS_SQL_14}
BLOCKED_VARIANTS = {"pre14": pg_queries.BLOCKED_SQL_PRE14, "14": pg_queries.BLOCKED_SQL_14}


def test_the_variants_really_differ():
    """Else the chooser's test below could not tell them apart."""
    assert len(set(STATEMENT_VARIANTS.values())) == 3 and len(set(BLOCKED_VARIANTS.values())) == 2


@pytest.mark.parametrize(("version", "statements", "blocked", "has_reset"), [
    (90600, "pre13", "pre14", False),
    (120000, "pre13", "pre14", False),
    (129999, "pre13", "pre14", False),
    (130000, "13", "pre14", False),
    (139999, "13", "pre14", False),
    (140000, "14", "14", True),
    (150000, "14", "14", True),
    (170000, "14", "14", True),
])
def test_each_server_version_gets_its_variant(version, statements, blocked, has_reset):
    quoted = '"Stats 12"'
    assert pg_queries.statements_sql(version, "Stats 12") == STATEMENT_VARIANTS[statements].format(schema=quoted)
    assert pg_queries.blocked_sql(version) is BLOCKED_VARIANTS[blocked]
    reset = pg_queries.statements_reset_sql(version, "Stats 12")
    assert reset == (f"SELECT stats_reset FROM {quoted}.pg_stat_statements_info" if has_reset else None)


def test_the_schema_is_quoted_only_when_postgresql_needs_it():
    assert [quote_ident(n) for n in ("public", "stats_13$", "Stats 12", 'a"b', "1st")] == [
        "public", "stats_13$", '"Stats 12"', '"a""b"', '"1st"']
