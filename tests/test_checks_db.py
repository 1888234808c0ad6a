"""02 database-connections: the judges as pure functions, then every check against a real
PostgreSQL (tests/pg.py: max_connections=20, real connections, real idle-in-transaction sessions)
and moto (RDS, CloudWatch, Secrets Manager)."""

from __future__ import annotations

import json
import math
import re
import secrets
import socket
import time
from datetime import UTC, datetime, timedelta

import boto3
import pandas as pd
import psycopg
import pytest
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID

from rmsops.checks.database import (
    LIMIT_REACHED,
    judge_by_state,
    judge_rds_status,
    judge_saturation,
    judge_trend,
)
from rmsops.core import failure, findings, registry, thresholds
from rmsops.core.db import APPLICATION_NAME, LOCK_TIMEOUT_MS
from rmsops.core.findings import Finding, Severity
from rmsops.core.registry import CheckResult
from tests.pg import APP_NAME, MONITOR_ROLE, PgAdmin, PgServer, poll

INSTANCE = "rms-production-db"
REGION = "us-east-1"
RUNBOOK = "02-database-connections"
SECRET_NAME = "rms/test/rmsops-monitor"
DEFAULTS = thresholds.merge()


# ----------------------------------------------------------------------------------- helpers


def only(result: CheckResult) -> Finding:
    assert len(result.findings) == 1, result.findings
    return result.findings[0]


def by_check(results: list[CheckResult]) -> dict[str, Finding]:
    return {r.check: only(r) for r in results}


def closed_port() -> int:
    """A local TCP port nothing listens on (bound once by us, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def create_rds_instance(name: str = INSTANCE) -> None:
    boto3.client("rds", region_name=REGION).create_db_instance(
        DBInstanceIdentifier=name, DBInstanceClass="db.t3.medium", Engine="postgres",
        AllocatedStorage=100, MasterUsername="rms_admin", MasterUserPassword="not-the-monitor-pw")


def set_rds_status(status: str, name: str = INSTANCE) -> None:
    from moto.rds.models import rds_backends

    rds_backends[DEFAULT_ACCOUNT_ID][REGION].databases[name].status = status


def put_connections(values: dict[datetime, float], instance: str = INSTANCE) -> None:
    """AWS/RDS DatabaseConnections datapoints, as RDS publishes them (one a minute)."""
    dims = [{"Name": "DBInstanceIdentifier", "Value": instance}]
    data = [{"MetricName": "DatabaseConnections", "Dimensions": dims, "Timestamp": ts, "Value": float(v),
             "Unit": "Count"} for ts, v in values.items()]
    cw = boto3.client("cloudwatch", region_name=REGION)
    for offset in range(0, len(data), 20):
        cw.put_metric_data(Namespace="AWS/RDS", MetricData=data[offset:offset + 20])


def as_ms(shown: str) -> int:
    """A SHOW value of a time setting (``4321ms``, ``2s``, ``1min``) in milliseconds."""
    match = re.fullmatch(r"(\d+)(ms|s|min|h|d)?", shown)
    assert match, shown
    return int(match.group(1)) * {"ms": 1, None: 1, "s": 1000, "min": 60_000, "h": 3_600_000,
                                  "d": 86_400_000}[match.group(2)]


def sleep_into_timeout(ctx) -> str:
    """Run a statement longer than the statement timeout; return failure.describe() of the error.

    The exception is not kept (unlike pytest.raises's excinfo): Database.frame drops the session
    on QueryCanceled without closing it, and a live traceback would keep that connection open.
    """
    try:
        ctx.db.frame("SELECT pg_sleep(3)")
    except psycopg.errors.QueryCanceled as exc:
        return failure.describe(exc)
    raise AssertionError("pg_sleep(3) was not cancelled by the statement timeout")


def one_line(finding: Finding) -> None:
    assert finding.detail and "\n" not in finding.detail, finding.detail
    assert "Traceback" not in finding.detail and 'File "' not in finding.detail


# ----------------------------------------------------------------------- judge_saturation


@pytest.mark.parametrize(("used", "expected"), [
    (0, Severity.OK),
    (79, Severity.OK),          # just below 80 %
    (80, Severity.WARNING),     # 80 % exactly
    (94, Severity.WARNING),
    (95, Severity.CRITICAL),    # 95 % exactly
    (103, Severity.CRITICAL),   # superusers in the reserved slots: above 100 %
])
def test_judge_saturation_bands(used: int, expected: Severity) -> None:
    # 103 max, 3 reserved: 100 available, so used is the percentage
    (f,) = judge_saturation(used, 103, 3, DEFAULTS, INSTANCE)
    assert f.severity == expected
    assert f.check == "db.connections.saturation" and f.resource == f"db:{INSTANCE}"
    assert f.evidence["available"] == 100 and f.evidence["percent"] == pytest.approx(used, abs=0.05)
    assert (f.resolution == LIMIT_REACHED) == (expected != Severity.OK)


def test_judge_saturation_reserved_slots_reduce_available() -> None:
    (without,) = judge_saturation(78, 100, 0, DEFAULTS, INSTANCE)
    (reserved,) = judge_saturation(78, 100, 3, DEFAULTS, INSTANCE)
    assert without.severity == Severity.OK  # 78 of 100
    assert reserved.severity == Severity.WARNING  # 78 of 97 = 80.4 %
    assert reserved.evidence["available"] == 97 and reserved.evidence["reserved"] == 3


def test_judge_saturation_thresholds_overridden() -> None:
    (default,) = judge_saturation(85, 100, 0, DEFAULTS, INSTANCE)
    (lenient,) = judge_saturation(85, 100, 0, thresholds.merge({"db_saturation_warning_pct": 90}), INSTANCE)
    (strict,) = judge_saturation(85, 100, 0, thresholds.merge({"db_saturation_critical_pct": 85}), INSTANCE)
    assert (default.severity, lenient.severity, strict.severity) == (
        Severity.WARNING, Severity.OK, Severity.CRITICAL)
    assert lenient.evidence["warning_pct"] == 90


# ------------------------------------------------------------------------- judge_by_state

STATE_COLUMNS = ["state", "connections", "oldest_seconds"]
IDLE_COLUMNS = ["pid", "user", "application_name", "client", "idle_seconds", "transaction_seconds", "last_query"]


def state_frame(counts: dict[str, int]) -> pd.DataFrame:
    return pd.DataFrame([(s, n, 1.0) for s, n in counts.items()], columns=STATE_COLUMNS)


def idle_frame(ages: list[float], app: str = APP_NAME) -> pd.DataFrame:
    return pd.DataFrame([(1000 + i, "rms_app", app, "10.0.1.5", age, age + 1.0, "SELECT 1")
                         for i, age in enumerate(ages)], columns=IDLE_COLUMNS)


def test_judge_by_state_six_idle_in_transaction_warns() -> None:
    (f,) = judge_by_state(state_frame({"idle": 10, "idle in transaction": 6}), idle_frame([30.0] * 6),
                          DEFAULTS, INSTANCE)
    assert f.severity == Severity.WARNING
    assert f.evidence["idle_in_transaction"] == 6 and len(f.evidence["sessions"]) == 6
    assert APP_NAME in f.detail and "idle_in_transaction_session_timeout" in f.resolution


def test_judge_by_state_five_is_the_limit() -> None:
    (f,) = judge_by_state(state_frame({"idle in transaction": 5}), idle_frame([30.0] * 5), DEFAULTS, INSTANCE)
    assert f.severity == Severity.OK


@pytest.mark.parametrize(("oldest", "expected"), [(301.0, Severity.WARNING), (299.0, Severity.OK)])
def test_judge_by_state_two_but_one_old(oldest: float, expected: Severity) -> None:
    (f,) = judge_by_state(state_frame({"idle in transaction": 2}), idle_frame([12.0, oldest]), DEFAULTS, INSTANCE)
    assert f.severity == expected
    assert f.evidence["oldest_idle_in_transaction_seconds"] == pytest.approx(oldest)


def test_judge_by_state_none_idle_in_transaction() -> None:
    (f,) = judge_by_state(state_frame({"idle": 12, "active": 3}), idle_frame([]), DEFAULTS, INSTANCE)
    assert f.severity == Severity.OK
    assert f.evidence["by_state"] == {"idle": 12, "active": 3} and f.evidence["sessions"] == []


@pytest.mark.parametrize("empty", [pd.DataFrame(), None])
def test_judge_by_state_empty_frames(empty: pd.DataFrame | None) -> None:
    states = empty if empty is not None else pd.DataFrame(columns=STATE_COLUMNS)
    idle = empty if empty is not None else pd.DataFrame(columns=IDLE_COLUMNS)
    (f,) = judge_by_state(states, idle, DEFAULTS, INSTANCE)
    assert f.severity == Severity.OK
    assert "no client connections" in f.detail


# ---------------------------------------------------------------------------- judge_trend


def trend_frame(values: list[float]) -> pd.DataFrame:
    start = datetime(2026, 11, 28, 19, 0, tzinfo=UTC)
    return pd.DataFrame({"timestamp": pd.to_datetime([start + timedelta(minutes=i) for i in range(len(values))]),
                         "id": "conn", "label": "DatabaseConnections", "value": values})


def test_judge_trend_empty_is_info() -> None:
    (f,) = judge_trend(trend_frame([]), 100, DEFAULTS, INSTANCE)
    assert f.severity == Severity.INFO


def test_judge_trend_unknown_limit_is_info() -> None:
    (f,) = judge_trend(trend_frame([10, 99, 20]), None, DEFAULTS, INSTANCE)
    assert f.severity == Severity.INFO and f.evidence["peak"] == 99


@pytest.mark.parametrize(("peak", "expected"), [
    (81, Severity.WARNING), (90, Severity.WARNING), (80, Severity.OK), (40, Severity.OK)])
def test_judge_trend_peak_against_limit(peak: float, expected: Severity) -> None:
    (f,) = judge_trend(trend_frame([10, peak, 20]), 100, DEFAULTS, INSTANCE)
    assert f.severity == expected
    assert f.evidence["peak"] == peak and f.evidence["peak_pct"] == pytest.approx(peak)
    assert f.evidence["peak_at"] == datetime(2026, 11, 28, 19, 1, tzinfo=UTC)


# ------------------------------------------------------------------------ judge_rds_status


@pytest.mark.parametrize(("status", "expected"), [
    ("available", Severity.OK), ("storage-full", Severity.CRITICAL), ("rebooting", Severity.CRITICAL),
    ("not found", Severity.CRITICAL)])
def test_judge_rds_status(status: str, expected: Severity) -> None:
    df = pd.DataFrame([{"instance": INSTANCE, "status": status, "class": "db.t3.medium", "engine": "postgres",
                        "version": "15.5", "multi_az": None, "storage_gb": 100, "endpoint": ""}])
    (f,) = judge_rds_status(df)
    assert f.severity == expected and f.resource == f"db:{INSTANCE}"
    assert f.evidence["status"] == status and f.evidence["multi_az"] is None
    if expected != Severity.OK:
        assert status in f.title or INSTANCE in f.title


# ------------------------------------------------------------------- db.connectivity (real)


def test_connectivity_ok(monitor_env) -> None:
    result = monitor_env().run("db.connectivity")
    f = only(result)
    assert f.severity == Severity.OK, f.detail
    assert f.evidence["error_class"] == "" and bool(result.data.iloc[0]["ok"]) is True
    assert f.runbook == RUNBOOK and f.guide_section.startswith("2.")


def test_connectivity_refused(monitor_env) -> None:
    f = only(monitor_env(database={"port": closed_port()}).run("db.connectivity"))
    assert f.severity == Severity.CRITICAL
    assert f.evidence["error_class"] == "refused"
    assert "security group" in f.resolution
    one_line(f)


def test_connectivity_wrong_password(monitor_env) -> None:
    wrong = "wrong-" + secrets.token_urlsafe(16)
    f = only(monitor_env(password=wrong).run("db.connectivity"))
    # error, no longer critical (issue 9): the server answered; only rmsops' own password is wrong,
    # which says nothing about the database's health.
    assert f.severity == Severity.ERROR
    assert f.evidence["error_class"] == "auth" and f.evidence["database_down"] is False
    assert f.title.startswith("rmsops could not get into PostgreSQL (auth)")
    assert "password authentication failed" in f.detail and "PGPASSWORD" in f.resolution
    assert wrong not in json.dumps(f.to_dict())
    one_line(f)


def test_connectivity_too_many_connections(monitor_env, hold_connections, pg_admin: PgAdmin) -> None:
    held, refusal = hold_connections.until_refused()
    max_connections, reserved = pg_admin.limits()
    # the server refused an ordinary role exactly when only the reserved slots were left
    assert pg_admin.client_backends() == len(held) + 1 == max_connections - reserved
    assert "remaining connection slots are reserved" in str(refusal)

    ctx = monitor_env()
    f = only(ctx.run("db.connectivity"))
    assert f.severity == Severity.CRITICAL  # the guide's very symptom: the applications meet it too
    assert f.evidence["error_class"] == "too_many_connections" and f.evidence["database_down"] is True
    assert "saturated" in f.title and "max_connections" in f.title
    assert f.resolution == LIMIT_REACHED
    saturation = only(ctx.run("db.connections.saturation"))
    assert saturation.severity == Severity.ERROR and "too_many_connections" in saturation.detail
    one_line(saturation)


# ----------------------------------------------------------- db.connections.saturation (real)


def test_saturation_ok_with_few_connections(monitor_env, hold_connections, pg_admin: PgAdmin) -> None:
    hold_connections(2)
    result = monitor_env().run("db.connections.saturation")
    f = only(result)
    max_connections, reserved = pg_admin.limits()
    # observer + 2 held + rmsops itself, all seen by the server
    assert f.evidence["used"] == pg_admin.client_backends() == 4
    assert (f.evidence["max_connections"], f.evidence["reserved"]) == (max_connections, reserved)
    assert f.severity == Severity.OK
    assert f.evidence["percent"] < DEFAULTS["db_saturation_warning_pct"]


def test_saturation_and_states_leave_out_other_rmsops_sessions(monitor_env, hold_connections, pg_server: PgServer,
                                                               pg_admin: PgAdmin) -> None:
    """A triage's concurrent runbooks each hold a session: the database is not judged by our load
    (else a triage sees one connection more than `rmsops check`); they are counted apart."""
    hold_connections(2)
    with pg_server.connect_monitor(application_name=APPLICATION_NAME, autocommit=True) as other_run:
        other_run.execute("SELECT 1")
        ctx = monitor_env()
        f = only(ctx.run("db.connections.saturation"))
        seen = pg_admin.client_backends()
        assert f.evidence["used"] == seen - 1  # all but the other rmsops session; ours counts
        result = ctx.run("db.connections.saturation")
        assert int(result.data["other_rmsops_sessions"].iloc[0]) == 1
        states = ctx.run("db.connections.by_state").data
        assert int(states["connections"].sum()) == seen - 2  # neither ours nor the other run's


def test_saturation_threshold_override_with_real_connections(monitor_env, hold_connections) -> None:
    hold_connections(2)
    f = only(monitor_env(thresholds={"db_saturation_warning_pct": 10}).run("db.connections.saturation"))
    assert f.evidence["percent"] >= 10 and f.severity == Severity.WARNING


@pytest.mark.parametrize("band", ["warning", "critical"])
def test_saturation_band_with_real_connections(band: str, monitor_env, hold_connections, pg_admin: PgAdmin) -> None:
    max_connections, reserved = pg_admin.limits()
    available = max_connections - reserved
    # the fewest client connections that reach the band's threshold
    target = math.ceil(available * DEFAULTS[f"db_saturation_{band}_pct"] / 100)
    assert target <= available, "the server is too small to reach this band with ordinary roles"
    if band == "warning":
        assert 100 * target / available < DEFAULTS["db_saturation_critical_pct"], "no room for a warning band"
    observers = pg_admin.client_backends()
    hold_connections(target - observers - 1)  # rmsops's own session is the last one
    f = only(monitor_env().run("db.connections.saturation"))
    assert f.evidence["used"] == pg_admin.client_backends() == target
    assert f.evidence["available"] == available
    assert f.severity == Severity(band)
    assert f.resolution == LIMIT_REACHED


# ------------------------------------------------------------- db.connections.by_state (real)


def test_by_state_real_idle_in_transaction(monitor_env, hold_connections, pg_admin: PgAdmin) -> None:
    held = hold_connections(8, idle_in_transaction=6)
    stuck = {c.info.backend_pid for c in held.connections[:6]}
    ctx = monitor_env()
    result = ctx.run("db.connections.by_state")
    f = only(result)
    assert f.severity == Severity.WARNING, f.detail
    assert f.evidence["idle_in_transaction"] == 6
    assert f.evidence["by_state"]["idle in transaction"] == 6
    assert {s["pid"] for s in f.evidence["sessions"]} == stuck
    assert {s["application_name"] for s in f.evidence["sessions"]} == {APP_NAME}
    assert APP_NAME in f.detail
    assert result.frames["idle_in_transaction"]["last_query"].str.startswith("UPDATE").sum() == 3

    held.close()
    poll(pg_admin.others, lambda rows: [r for r in rows if r[2] == APP_NAME] == [], what="held connections gone")
    after = only(ctx.run("db.connections.by_state"))
    assert after.severity == Severity.OK
    assert after.evidence["idle_in_transaction"] == 0
    assert "idle in transaction" not in after.evidence["by_state"]


# --------------------------------------------------------------- unreachable DB, RDS via moto


def test_unreachable_db_errors_while_rds_status_is_judged(monitor_env) -> None:
    with mock_aws():
        create_rds_instance()
        ctx = monitor_env(database={"port": closed_port()})
        results = by_check(ctx.run_all(RUNBOOK))
    assert results["db.rds.status"].severity == Severity.OK
    assert results["db.connectivity"].severity == Severity.CRITICAL
    for cid in ("db.connections.saturation", "db.connections.by_state"):
        f = results[cid]
        assert f.severity == Severity.ERROR, f
        assert f.detail.startswith("database unreachable (refused)")
        one_line(f)
    assert results["db.connections.trend"].severity == Severity.INFO


def test_rds_status_available(make_context) -> None:
    with mock_aws():
        create_rds_instance()
        result = make_context().run("db.rds.status")
    f = only(result)
    assert f.severity == Severity.OK
    assert f.evidence["engine"] == "postgres" and f.evidence["class"] == "db.t3.medium"


def test_rds_status_missing_instance(make_context) -> None:
    with mock_aws():
        create_rds_instance("some-other-db")
        f = only(make_context().run("db.rds.status"))
    assert f.severity == Severity.CRITICAL
    assert "not found" in f.title


def test_rds_status_storage_full(make_context) -> None:
    with mock_aws():
        create_rds_instance()
        set_rds_status("storage-full")
        f = only(make_context().run("db.rds.status"))
    assert f.severity == Severity.CRITICAL
    assert "storage-full" in f.title and f.evidence["status"] == "storage-full"


# ----------------------------------------------------- db.connections.trend (moto + real limit)


@pytest.mark.parametrize(("peak_share", "expected"), [(0.9, Severity.WARNING), (0.3, Severity.OK)])
def test_trend_against_real_max_connections(peak_share: float, expected: Severity, monitor_env,
                                            pg_admin: PgAdmin) -> None:
    max_connections, _ = pg_admin.limits()
    peak = round(peak_share * max_connections)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    series = {now - timedelta(minutes=m, seconds=-5): 2.0 + m % 3 for m in range(1, 31)}
    peak_at = now - timedelta(minutes=12, seconds=-5)
    series[peak_at] = float(peak)
    with mock_aws():
        put_connections(series)
        put_connections({peak_at: 1000.0}, instance="another-db")  # another instance: ignored
        result = monitor_env().run("db.connections.trend")
    f = only(result)
    assert f.evidence["limit"] == max_connections
    assert f.evidence["peak"] == peak
    assert f.severity == expected
    assert len(result.data) == 30


def test_trend_peak_survives_wider_periods(monitor_env, pg_admin: PgAdmin) -> None:
    """Over 2 days the period is 120 s, so each bucket holds two one-minute datapoints: the
    peak minute must still count in full (the Maximum statistic, not the Average)."""
    max_connections, _ = pg_admin.limits()
    peak = round(0.9 * max_connections)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    series = {now - timedelta(minutes=m, seconds=-5): 2.0 for m in range(1, 31)}
    series[now - timedelta(minutes=12, seconds=-5)] = float(peak)
    with mock_aws():
        put_connections(series)
        result = monitor_env(window="2d").run("db.connections.trend")
    f = only(result)
    # 30 one-minute datapoints in 120 s buckets (moto anchors them at the window start); the
    # peak's bucket always holds a neighbour minute too, since both neighbours are 2.0
    assert len(result.data) in (15, 16)
    assert f.evidence["peak"] == peak and f.evidence["limit"] == max_connections
    assert f.severity == Severity.WARNING


def test_trend_no_datapoints_is_info(monitor_env, pg_admin: PgAdmin) -> None:
    with mock_aws():
        f = only(monitor_env().run("db.connections.trend"))
    assert f.severity == Severity.INFO
    assert f.evidence["limit"] == pg_admin.limits()[0]


# ----------------------------------------------------------------------- session safety


def test_session_is_read_only(monitor_env, pg_server: PgServer, pg_admin: PgAdmin) -> None:
    writes = ["INSERT INTO app_orders (status) VALUES ('written-by-rmsops')",
              "CREATE TABLE rmsops_must_not_exist (id int)",
              "DROP TABLE monitor_owned"]
    # control: the monitor role itself has the privileges, so only the session can stop these
    with pg_server.connect_monitor() as conn:
        for sql in writes:
            conn.execute(sql)
        conn.rollback()
    rows_before = pg_admin.value("SELECT count(*) FROM app_orders")

    ctx = monitor_env()
    for sql in writes:
        # two layers: rmsops refuses anything but one reading statement ...
        with pytest.raises(PermissionError, match="single read-only statements"):
            ctx.db.frame(sql)
        # ... and the session itself is read-only, even when the guard is bypassed
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction, match="read-only transaction"):
            ctx.db.connection().execute(sql)
    for sneaky in ["BEGIN READ WRITE", "SELECT 1; DROP TABLE monitor_owned", "set default_transaction_read_only = off"]:
        with pytest.raises(PermissionError):
            ctx.db.frame(sneaky)
    assert ctx.db.frame("SELECT ';' AS semicolon_in_a_literal").iat[0, 0] == ";"
    assert pg_admin.value("SELECT count(*) FROM app_orders") == rows_before
    assert pg_admin.value("SELECT to_regclass('rmsops_must_not_exist') IS NULL") is True
    assert pg_admin.value("SELECT to_regclass('monitor_owned') IS NOT NULL") is True
    assert ctx.db.scalar("SELECT count(*) FROM app_orders") == rows_before  # the session still works


def test_session_settings(monitor_env, pg_admin: PgAdmin) -> None:
    ctx = monitor_env(database={"statement_timeout_ms": 4321})
    assert as_ms(ctx.db.scalar("SHOW statement_timeout")) == 4321
    assert as_ms(ctx.db.scalar("SHOW lock_timeout")) == LOCK_TIMEOUT_MS
    assert ctx.db.scalar("SHOW default_transaction_read_only") == "on"
    assert ctx.db.scalar("SHOW transaction_read_only") == "on"
    pid = int(ctx.db.scalar("SELECT pg_backend_pid()"))
    assert pg_admin.state_of(pid) == (APPLICATION_NAME, MONITOR_ROLE, "idle")
    assert APPLICATION_NAME == "rmsops"


def test_statement_timeout(monitor_env, pg_admin: PgAdmin) -> None:
    ctx = monitor_env(database={"statement_timeout_ms": 300})
    assert as_ms(ctx.db.scalar("SHOW statement_timeout")) == 300
    started = time.monotonic()
    assert "statement timeout" in sleep_into_timeout(ctx)
    assert time.monotonic() - started < 2.5

    def sleepy(c) -> CheckResult:
        c.db.frame("SELECT pg_sleep(3)")
        return CheckResult(findings=[])

    spec = registry.CheckSpec("test.db.sleep", RUNBOOK, "2. Database Connection Issues", sleepy, "sleep")
    f = only(registry.run(spec, ctx))
    assert f.severity == Severity.ERROR
    assert f.detail == ("the query hit the statement timeout (database.statement_timeout_ms); "
                        "the database is busy")
    # the session is usable afterwards and nobody from rmsops is left in a transaction
    assert ctx.db.scalar("SELECT 1") == 1
    assert pg_admin.value("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
                          "AND state <> 'idle'", (APPLICATION_NAME,)) == 0


def test_a_lock_timeout_is_a_busy_database_not_a_lost_connection(monitor_env, pg_admin: PgAdmin) -> None:
    """A migration holds ACCESS EXCLUSIVE on a table: the monitor's query on it hits the 2 s
    lock_timeout (LockNotAvailable, an OperationalError), which said 'database connection lost'."""
    ctx = monitor_env()
    pid = ctx.db.scalar("SELECT pg_backend_pid()")
    with pg_admin.conn.transaction():
        pg_admin.conn.execute("LOCK TABLE app_orders IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(psycopg.errors.LockNotAvailable) as caught:
            ctx.db.frame("SELECT count(*) FROM app_orders")
        f = only(ctx.run("db.tables.size"))  # pg_total_relation_size waits for the lock too
    described = failure.describe(caught.value)
    assert "connection lost" not in described
    assert f"lock timeout ({LOCK_TIMEOUT_MS // 1000} s)" in described and "db.locks.blocked" in described
    assert f.severity == Severity.ERROR and f.detail == described
    assert ctx.db.scalar("SELECT pg_backend_pid()") == pid  # the session is fine: not lost


def test_statement_timeout_keeps_the_session(monitor_env) -> None:
    ctx = monitor_env(database={"statement_timeout_ms": 300})
    pid = ctx.db.scalar("SELECT pg_backend_pid()")
    sleep_into_timeout(ctx)
    assert ctx.db.scalar("SELECT pg_backend_pid()") == pid


def test_never_idle_in_transaction_after_the_checks(monitor_env, pg_admin: PgAdmin) -> None:
    with mock_aws():
        create_rds_instance()
        ctx = monitor_env()
        results = by_check(ctx.run_all(RUNBOOK))
    assert {cid: f.severity for cid, f in results.items()} == {
        "db.rds.status": Severity.OK, "db.connectivity": Severity.OK, "db.connections.saturation": Severity.OK,
        "db.connections.by_state": Severity.OK, "db.connections.trend": Severity.INFO}
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        ctx.db.connection().execute("DELETE FROM app_orders")
    ours = pg_admin.rows("SELECT pid, usename, state FROM pg_stat_activity WHERE application_name = %s",
                         (APPLICATION_NAME,))
    assert len(ours) == 1, ours
    pid, user, state = ours[0]
    assert (user, state) == (MONITOR_ROLE, "idle")
    assert pid == ctx.db.scalar("SELECT pg_backend_pid()")


# ------------------------------------------------------------------- the password stays secret


@pytest.mark.parametrize("right", [True, False], ids=["right-password", "wrong-password"])
def test_secret_password_never_in_findings(right: bool, monitor_env, pg_server: PgServer) -> None:
    password = pg_server.monitor_password if right else "wrong-" + secrets.token_urlsafe(16)
    with mock_aws():
        create_rds_instance()
        boto3.client("secretsmanager", region_name=REGION).create_secret(
            Name=SECRET_NAME, SecretString=json.dumps({"username": MONITOR_ROLE, "password": password}))
        ctx = monitor_env(password=None, secret=SECRET_NAME)  # no PGPASSWORD: only the secret
        results = ctx.run_all(RUNBOOK)
    all_findings = [f for r in results for f in r.findings]
    text = json.dumps(findings.document(all_findings, "test", ctx.window.start, ctx.window.end))
    assert password not in text
    connectivity = by_check(results)["db.connectivity"]
    if right:
        assert connectivity.severity == Severity.OK
        assert all(f.severity != Severity.ERROR for f in all_findings)
    else:
        # error, no longer critical (issue 9): the secret holds a wrong password, the database is fine
        assert connectivity.severity == Severity.ERROR
        assert connectivity.evidence["error_class"] == "auth"
        assert "password authentication failed" in connectivity.detail


# ----------------------------------- db.connectivity: "the database is down" or "rmsops could not get in"


def test_role_connection_limit_is_rmsops_locked_out_not_the_database(monitor_env, pg_server: PgServer,
                                                                   pg_admin: PgAdmin) -> None:
    """The monitor role's own CONNECTION LIMIT (3 in docs/postgres-monitoring-role.sql), used up by
    other rmsops runs: PostgreSQL says 'too many connections for role'. This pinned CRITICAL
    'Cannot connect' (too_many_connections) before issue 9; the database is fine, so: error."""
    role, password = "rmsops_limited", "lim-" + secrets.token_urlsafe(16)
    pg_admin.conn.execute(f"DROP ROLE IF EXISTS {role}")
    pg_admin.conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}' CONNECTION LIMIT 2")
    pg_admin.conn.execute(f"GRANT pg_monitor TO {role}")
    held = [pg_server.connect_as(role, password, autocommit=True) for _ in range(2)]
    try:
        ctx = monitor_env(password=password, database={"user": role})
        f = only(ctx.run("db.connectivity"))
        assert f.severity == Severity.ERROR and "too many connections for role" in f.detail
        assert f.evidence["error_class"] == "role_limit" and f.evidence["database_down"] is False
        assert "own role's connection limit" in f.title and "CONNECTION LIMIT" in f.resolution
        assert "says nothing about the database's health" in f.detail
        one_line(f)
        saturation = only(ctx.run("db.connections.saturation"))
        assert saturation.severity == Severity.ERROR and "role_limit" in saturation.detail
    finally:
        for conn in held:
            conn.close()


def test_server_max_connections_reached_by_a_superuser_too_is_critical(monitor_env, hold_connections,
                                                                       pg_admin: PgAdmin) -> None:
    """Every slot taken, the reserved ones too: 'sorry, too many clients already' (the guide's symptom)."""
    held, _ = hold_connections.until_refused()
    max_connections, _ = pg_admin.limits()
    supers = []
    try:
        while pg_admin.client_backends() < max_connections:
            supers.append(pg_admin.pg.server.connect())
        f = only(monitor_env().run("db.connectivity"))
        assert "too many clients already" in f.detail
        assert f.severity == Severity.CRITICAL and f.evidence["error_class"] == "too_many_connections"
        assert f.title.startswith("PostgreSQL is saturated") and f.evidence["database_down"] is True
    finally:
        for conn in supers:
            conn.close()
        held.close()


def test_no_password_at_all_is_an_error(monitor_env) -> None:
    f = only(monitor_env(password=None).run("db.connectivity"))  # no PGPASSWORD, no .pgpass, no secret
    assert f.severity == Severity.ERROR and f.evidence["error_class"] == "auth"
    assert "no password supplied" in f.detail and "password_secret" in f.resolution


def test_password_secret_missing_is_an_error_naming_the_secret_check(monitor_env) -> None:
    with mock_aws():  # the secret was never created
        ctx = monitor_env(password=None, secret=SECRET_NAME)
        f = only(ctx.run("db.connectivity"))
        saturation = only(ctx.run("db.connections.saturation"))
    assert f.severity == Severity.ERROR and f.evidence["error_class"] == "credentials"
    assert "ResourceNotFoundException" in f.detail and "could not get the database password" in f.detail
    assert "secretsmanager:GetSecretValue" in f.resolution and "password could not be fetched" in f.title
    one_line(f)
    assert saturation.severity == Severity.ERROR and "credentials" in saturation.detail


def test_secrets_manager_unreachable_is_an_error_not_a_down_database(monitor_env) -> None:
    dead = f"http://127.0.0.1:{closed_port()}"
    ctx = monitor_env(password=None, secret=SECRET_NAME,
                      aws={"region": REGION, "endpoint_url": dead, "local_test_credentials": True})
    f = only(ctx.run("db.connectivity"))
    assert f.severity == Severity.ERROR and f.evidence["error_class"] == "credentials"
    assert "could not get the database password" in f.detail
    one_line(f)


def test_login_not_permitted_is_an_error(monitor_env, pg_admin: PgAdmin) -> None:
    role, password = "rmsops_nologin", "nol-" + secrets.token_urlsafe(16)
    pg_admin.conn.execute(f"DROP ROLE IF EXISTS {role}")
    pg_admin.conn.execute(f"CREATE ROLE {role} NOLOGIN PASSWORD '{password}'")
    f = only(monitor_env(password=password, database={"user": role}).run("db.connectivity"))
    assert f.severity == Severity.ERROR and f.evidence["error_class"] == "permission"
    assert "not permitted to log in" in f.detail


def test_no_connect_privilege_on_the_database_is_an_error(monitor_env, pg_admin: PgAdmin) -> None:
    pg_admin.conn.execute("DROP DATABASE IF EXISTS rms_private")
    pg_admin.conn.execute("CREATE DATABASE rms_private")
    try:
        pg_admin.conn.execute("REVOKE CONNECT ON DATABASE rms_private FROM PUBLIC")
        f = only(monitor_env(database={"dbname": "rms_private"}).run("db.connectivity"))
        assert f.severity == Severity.ERROR and f.evidence["error_class"] == "permission"
        assert "permission denied for database" in f.detail and "GRANT CONNECT" in f.resolution
    finally:
        pg_admin.conn.execute("DROP DATABASE IF EXISTS rms_private")


@pytest.mark.parametrize("message, kind, severity", [
    ('connection to server at "10.0.0.5", port 5432 failed: FATAL:  the database system is starting up',
     "unavailable", Severity.CRITICAL),
    ('connection to server at "10.0.0.5", port 5432 failed: FATAL:  the database system is shutting down',
     "unavailable", Severity.CRITICAL),
    ('connection to server at "10.0.0.5", port 5432 failed: FATAL:  sorry, too many clients already',
     "too_many_connections", Severity.CRITICAL),
    ('connection to server at "10.0.0.5", port 5432 failed: FATAL:  remaining connection slots are reserved '
     'for roles with the SUPERUSER attribute', "too_many_connections", Severity.CRITICAL),
    ('connection to server at "10.0.0.5", port 5432 failed: timeout expired', "timeout", Severity.CRITICAL),
    ('could not translate host name "db.example" to address: Name or service not known', "dns", Severity.CRITICAL),
    ('connection to server at "10.0.0.5", port 5432 failed: FATAL:  too many connections for role "rmsops_monitor"',
     "role_limit", Severity.ERROR),
    ('connection to server at "10.0.0.5", port 5432 failed: FATAL:  no pg_hba.conf entry for host "10.0.1.7", '
     'user "rmsops_monitor", database "rms", no encryption', "permission", Severity.ERROR),
    ('connection to server at "10.0.0.5", port 5432 failed: FATAL:  permission denied for database "rms"',
     "permission", Severity.ERROR),
    ('connection to server at "10.0.0.5", port 5432 failed: fe_sendauth: no password supplied', "auth",
     Severity.ERROR),
    # libpq tried two addresses: what the server answered wins over the address that refused
    ('connection to server at "::1", port 5432 failed: Connection refused\nconnection to server at "127.0.0.1", '
     'port 5432 failed: FATAL:  too many connections for role "rmsops_monitor"', "role_limit", Severity.ERROR),
])
def test_connect_errors_tell_a_down_database_from_rmsops_locked_out(message: str, kind: str,
                                                                    severity: Severity) -> None:
    from rmsops.checks.database import judge_connectivity
    from rmsops.core.db import ConnectAttempt, classify_connect_error

    assert classify_connect_error(psycopg.OperationalError(message)) == kind
    f = judge_connectivity(ConnectAttempt(False, 0.1, kind, message.splitlines()[0]), "db:x", {"error_class": kind})
    assert f.severity == severity and f.evidence["database_down"] is (severity == Severity.CRITICAL)
    assert f.resolution
