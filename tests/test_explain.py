"""rmsops.sources.explain: what may be EXPLAINed and how, then the real thing against tests/pg.py's PostgreSQL
(as rmsops_monitor, which has write grants on app_orders: only the read-only transaction and the
refusals keep the data unchanged)."""

from __future__ import annotations

import time

import psycopg
import pytest

from rmsops.sources import explain
from rmsops.sources.explain import ANALYZE, FAILED, GENERIC, PLAIN, SKIPPED, UnsafeStatement, parse

# ----------------------------------------------------------------------------- the parser


@pytest.mark.parametrize("sql", [
    "SELECT 1; DELETE FROM app_orders",
    "SELECT 1; SELECT 2",
    "select 1;\nupdate app_orders set status = 'x'",
    "COMMIT",
    "SELECT 1 FROM app_orders WHERE true COMMIT",
    "ROLLBACK",
    "BEGIN",
    "START TRANSACTION READ WRITE",
    "SELECT 'unterminated",
    "SELECT $$ never closed",
    "SELECT 1 /* unterminated comment",
    "",
    "  ;  ",
])
def test_more_than_one_statement_or_transaction_control_is_refused(sql):
    with pytest.raises(UnsafeStatement):
        parse(sql)


@pytest.mark.parametrize("sql", [
    "SELECT ';' AS semicolon",
    "SELECT $$a; COMMIT$$ AS body",
    "SELECT $tag$ ; DELETE FROM x $tag$",
    "SELECT 1 /* ; COMMIT; /* nested ; */ still comment */",
    'SELECT 1 AS "a;b"',
    "SELECT E'it\\'s; fine'",
    "SELECT 'it''s; fine'",
    "SELECT 1 -- ; COMMIT",
    "SELECT 1;",
    "SELECT 1; -- trailing comment",
    "WITH x AS (SELECT 1 AS a) SELECT a FROM x",
    "(SELECT 1) UNION ALL (SELECT 2)",
])
def test_one_select_with_separators_only_inside_literals_or_comments_is_analyzable(sql):
    statement = parse(sql)
    assert statement.analyzable, statement.reason
    assert not statement.sql.rstrip().endswith(";")


@pytest.mark.parametrize(("sql", "word"), [
    ("UPDATE app_orders SET status = 'x'", "UPDATE"),
    ("DELETE FROM app_orders", "DELETE"),
    ("INSERT INTO app_orders (status) VALUES ('x')", "INSERT"),
    ("WITH d AS (DELETE FROM app_orders RETURNING id) SELECT count(*) FROM d", "DELETE"),
    ("WITH u AS (UPDATE app_orders SET status = 'x' RETURNING id) SELECT * FROM u", "UPDATE"),
    ("SELECT * INTO copy_of_orders FROM app_orders", "INTO"),
    ("SELECT * FROM app_orders FOR UPDATE", "UPDATE"),
    ("SELECT * FROM app_orders FOR SHARE", "SHARE"),
    ("SELECT nextval('app_orders_id_seq')", "nextval"),
    ("SELECT pg_terminate_backend(pid) FROM pg_stat_activity", "pg_terminate_backend"),
    ("SELECT pg_advisory_lock(1)", "pg_advisory_lock"),
    ("SELECT set_config('work_mem', '1GB', false)", "set_config"),
    ("SELECT lo_unlink(1)", "lo_unlink"),
    ("VALUES (1)", "VALUES"),
])
def test_data_modifying_or_side_effect_statements_are_only_planned(sql, word):
    statement = parse(sql)
    assert not statement.analyzable
    assert word in statement.reason
    mode, command = explain.explain_command(statement, 150000)
    assert mode == PLAIN and command == f"EXPLAIN (FORMAT JSON) {sql}"


def test_a_side_effect_name_in_a_string_or_as_a_column_is_not_a_call():
    assert parse("SELECT 'pg_terminate_backend(1)' AS text, nextval_count FROM t").analyzable


def test_non_ascii_letters_belong_to_the_identifier_as_postgresql_reads_them():
    """PostgreSQL takes any non-ASCII character, beyond U+FFFF too, as a letter of an identifier:
    `😀commit` is a column, not COMMIT; `ä;` still ends at the semicolon."""
    assert parse("SELECT 😀commit, ünïcode_x FROM t").analyzable
    assert parse("SELECT 😀commit, ünïcode_x FROM t").words == ("SELECT", "😀COMMIT", "ÜNÏCODE_X", "FROM", "T")
    with pytest.raises(UnsafeStatement):
        parse("SELECT ä; COMMIT")
    with pytest.raises(UnsafeStatement):
        parse("SELECT 😀 COMMIT")


def test_placeholders_are_found_outside_literals_only():
    assert parse("SELECT * FROM app_orders WHERE id = $1").has_params
    assert not parse("SELECT '$1' AS literal, $$ $2 $$ AS body").has_params


@pytest.mark.parametrize(("version", "mode"), [(150007, SKIPPED), (160002, GENERIC), (170000, GENERIC)])
def test_normalized_text_needs_generic_plan_from_postgresql_16(version, mode):
    statement = parse("SELECT * FROM app_orders WHERE id = $1 AND status = $2")
    got, command = explain.explain_command(statement, version)
    assert got == mode
    if mode == GENERIC:
        assert command == f"EXPLAIN (GENERIC_PLAN, FORMAT JSON) {statement.sql}"
    else:
        assert "PostgreSQL 16" in command


def test_analyzable_select_gets_analyze_and_buffers_unless_asked_for_a_plain_plan():
    statement = parse("SELECT count(*) FROM app_orders;")
    assert explain.explain_command(statement, 150000) == (
        ANALYZE, "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT count(*) FROM app_orders")
    assert explain.explain_command(statement, 150000, analyze=False)[0] == PLAIN


def test_plan_nodes_flattens_depth_first_with_subplans_named():
    plan = [{"Plan": {
        "Node Type": "Hash Join", "Plan Rows": 10, "Actual Rows": 8, "Actual Loops": 1, "Actual Total Time": 3.5,
        "Hash Cond": "(a.id = b.a_id)",
        "Plans": [
            {"Node Type": "Seq Scan", "Relation Name": "a", "Plan Rows": 100, "Actual Rows": 100,
             "Filter": "(x > 1)", "Rows Removed by Filter": 5, "Shared Hit Blocks": 3, "Shared Read Blocks": 1},
            {"Node Type": "Hash", "Plans": [
                {"Node Type": "Index Scan", "Relation Name": "b", "Index Name": "b_pkey",
                 "Index Cond": "(id = 1)", "Parent Relationship": "SubPlan", "Subplan Name": "SubPlan 1"}]},
        ]}, "Planning Time": 0.2, "Execution Time": 3.7}]
    nodes = explain.plan_nodes(plan)
    assert list(nodes["node"]) == ["Hash Join", "Seq Scan", "Hash", "SubPlan 1: Index Scan"]
    assert list(nodes["depth"]) == [0, 1, 1, 2]
    assert nodes.loc[1, "relation"] == "a" and nodes.loc[1, "rows_removed_by_filter"] == 5
    assert nodes.loc[3, "index"] == "b_pkey" and nodes.loc[3, "condition"] == "Index Cond: (id = 1)"
    assert explain.plan_nodes(None).empty and list(explain.plan_nodes([]).columns) == explain.NODE_COLUMNS


# ------------------------------------------------------------------ against a real PostgreSQL


def orders(admin) -> int:
    return int(admin.value("SELECT count(*) FROM app_orders"))


def session_is_clean(ctx) -> None:
    """The rmsops session is idle (not in a transaction), read-only, with its own timeout again."""
    conn = ctx.db.connection()
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert ctx.db.scalar("SHOW transaction_read_only") == "on"
    assert ctx.db.scalar("SHOW statement_timeout") == "15s"  # DatabaseSettings.statement_timeout_ms
    assert ctx.db.scalar("SELECT 1") == 1


def test_explain_analyze_runs_a_select_and_returns_the_measured_plan(monitor_env, pg_admin):
    ctx = monitor_env()
    result = explain.explain(ctx.db, "SELECT status, count(*) FROM app_orders GROUP BY status;", 5000)
    assert result.mode == ANALYZE and result.note == ""
    assert result.execution_ms is not None and result.planning_ms is not None
    scan = result.nodes[result.nodes["relation"] == "app_orders"].iloc[0]
    assert scan["node"] == "Seq Scan" and scan["actual_rows"] == orders(pg_admin)
    assert scan["shared_hit"] is not None  # BUFFERS
    summary = result.summary()
    assert summary["mode"] == ANALYZE and summary["nodes"][0]["node"] == result.nodes.iloc[0]["node"]
    session_is_clean(ctx)


def test_data_modifying_statements_are_planned_never_executed(monitor_env, pg_admin):
    ctx = monitor_env()
    before = orders(pg_admin)
    for sql in ("DELETE FROM app_orders",
                "WITH d AS (DELETE FROM app_orders RETURNING id) SELECT count(*) FROM d",
                "UPDATE app_orders SET status = 'explained'"):
        result = explain.explain(ctx.db, sql, 5000)
        assert result.mode == PLAIN, (sql, result.note)
        assert result.execution_ms is None and "not executed" in result.note
        assert result.nodes.iloc[0]["node"] in ("ModifyTable", "Aggregate")
    with pytest.raises(UnsafeStatement):
        explain.explain(ctx.db, "SELECT 1; DELETE FROM app_orders", 5000)
    assert orders(pg_admin) == before
    assert int(pg_admin.value("SELECT count(*) FROM app_orders WHERE status = 'explained'")) == 0
    session_is_clean(ctx)


def test_a_select_calling_a_writing_function_is_stopped_by_the_read_only_transaction(monitor_env, pg_admin):
    pg_admin.conn.execute("CREATE FUNCTION rmsops_test_writer() RETURNS int LANGUAGE sql AS "
                          "$$ INSERT INTO app_orders (status) VALUES ('written') RETURNING id $$")
    try:
        ctx = monitor_env()
        before = orders(pg_admin)
        result = explain.explain(ctx.db, "SELECT rmsops_test_writer()", 5000)
        assert result.mode == FAILED
        assert "ReadOnlySqlTransaction" in result.note and "read-only transaction stopped it" in result.note
        assert orders(pg_admin) == before
        session_is_clean(ctx)
    finally:
        pg_admin.conn.execute("DROP FUNCTION rmsops_test_writer()")


def test_a_slow_statement_is_cancelled_by_the_timeout_and_the_session_stays_usable(monitor_env, pg_admin):
    ctx = monitor_env()
    started = time.monotonic()
    result = explain.explain(ctx.db, "SELECT pg_sleep(5)", 300)
    elapsed = time.monotonic() - started
    assert elapsed < 3, f"the 300 ms timeout did not stop pg_sleep(5) ({elapsed:.1f} s)"
    assert result.mode == PLAIN  # the estimated plan instead
    assert "cancelled by the 300 ms statement timeout" in result.note
    assert result.execution_ms is None and not result.nodes.empty
    session_is_clean(ctx)
    # and the session still runs EXPLAIN ANALYZE afterwards
    assert explain.explain(ctx.db, "SELECT 1", 5000).mode == ANALYZE


def test_normalized_statement_text_is_skipped_on_15_or_generic_on_16(monitor_env, pg_admin):
    ctx = monitor_env()
    version = explain.server_version_num(ctx.db)
    result = explain.explain(ctx.db, "SELECT * FROM app_orders WHERE id = $1", 5000)
    if version >= explain.GENERIC_PLAN_VERSION:
        assert result.mode == GENERIC and result.nodes.iloc[0]["relation"] == "app_orders"
    else:
        assert result.mode == SKIPPED and "PostgreSQL 16" in result.note and result.plan is None
    session_is_clean(ctx)


def test_no_select_privilege_is_a_note_naming_the_grant(monitor_env, pg_admin):
    pg_admin.conn.execute("CREATE TABLE rmsops_private (secret text)")
    try:
        ctx = monitor_env()
        result = explain.explain(ctx.db, "SELECT * FROM rmsops_private", 5000)
        assert result.mode == FAILED
        assert "InsufficientPrivilege" in result.note and "pg_read_all_data" in result.note
        session_is_clean(ctx)
    finally:
        pg_admin.conn.execute("DROP TABLE rmsops_private")
