"""Demo seeding for 07 database-performance and 14 backup-recovery.

Database (``seed_db``), every scenario first settles the base schema so that a healthy
database looks healthy to the 07 checks. Right after the base load the statistics describe the
load, not the application: every page was "read" once (relation extension counts as a read),
the only scans are the index builds, and the load's inserts reached the statistics after its
ANALYZE (they ran in one transaction), so n_mod_since_analyze equals every row. As a DBA does
after a bulk load or a migration, the table statistics are reset (``pg_stat_reset()``), the
tables analyzed, and the application's steady traffic replayed as the app role (5 000
reservations looked up by id): index use and cache hit rate as a warm RMS database shows them.

Then per scenario, all real load on the demo PostgreSQL:

* ``incident``: ``rate_history`` with autovacuum off and 4 000 rows written since its (never)
  ANALYZE: stale statistics.
* ``db-slow-queries``: the stale ``rate_history``; ``reservation_events`` (11 000 rows, looked up
  by ``reservation_id``, which has no index) read by sequential scans; a slow report statement
  called 108 times at ~22 ms (pg_sleep stands in for an expensive computation; the statement
  has no literals, so pg_stat_statements keeps it verbatim and the runbook can EXPLAIN ANALYZE
  it on PostgreSQL 15), run from 12 application connections in parallel (~0.2 s); and a row
  lock held by one application connection (an uncommitted UPDATE) that a second one waits on,
  both kept until the demo stops. The wait starts with the demo: it shows as ``info`` and turns
  into a warning after ``blocked_warning_seconds`` (60 s).

AWS (``seed_aws``), what moto cannot be told through the API:

* daily automated snapshots of the last 6 days are created through the backend
  (``create_auto_snapshot``) and their ``created`` time set; the instance's create time is set
  30 days back;
* ``healthy`` and ``db-slow-queries``: a manual snapshot taken 10 hours ago;
* ``incident``: the newest manual snapshot is 3 days old, and ``LatestRestorableTime`` lags
  40 minutes (moto computes it as "now"; ``DBInstance.latest_restorable_time`` is patched for
  the demo instance until the demo stops).
"""

from __future__ import annotations

import contextlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import psycopg

from rmsops.demo import layout
from rmsops.demo.seed_db import APP_NAME, APP_ROLE, MONITOR_ROLE

if TYPE_CHECKING:
    from rmsops.demo.areas.seeding import AwsSeed, DbSeed

SLOW_SECONDS = 0.022
SLOW_CALLS_PER_CONNECTION = 9
SLOW_CONNECTIONS = 12  # 108 calls: above PgHero's 100
STALE_ROWS = 4000
EVENT_ROWS = 11000  # above PgHero's 10 000 rows
EVENT_SEQ_SCANS = 25
STEADY_LOOKUPS = 5000
LOCKED_ROOM = 17

SLOW_REPORT = ("SELECT r.room_type, count(*) AS rooms, min(r.nightly_rate) AS from_rate FROM rooms r "
               "WHERE EXISTS (SELECT FROM demo_report_cost c WHERE pg_sleep(c.seconds) IS NOT NULL) "
               "GROUP BY r.room_type ORDER BY r.room_type")
HOLD_LOCK = "UPDATE rooms SET nightly_rate = nightly_rate WHERE id = %s"
WAIT_FOR_LOCK = "UPDATE rooms SET nightly_rate = 139 WHERE id = %s"
STEADY_TRAFFIC = ("SELECT count(*) FROM generate_series(1, %s) AS g "  # one index lookup per id
                  "WHERE (SELECT r.status FROM reservations r WHERE r.id = g * 3) IS NOT NULL")
EVENT_LOOKUP = "SELECT event, at FROM reservation_events WHERE reservation_id = %s ORDER BY at"
EVENT_BY_ID = "SELECT event, at FROM reservation_events WHERE id = %s"


def seed_db(env: DbSeed) -> None:
    conn = env.conn
    settle_base_tables(conn, env.app_conninfo)
    name = env.scenario.name
    if name in ("incident", "db-slow-queries"):
        stale_rate_history(conn)
    if name == "db-slow-queries":
        sequentially_scanned_events(conn, env.app_conninfo)
        slow_report(conn, env.app_conninfo)
        hold_row_lock(conn, env.app_conninfo, env.cleanup)
    flush_stats(conn)


def _version(conn: psycopg.Connection) -> int:
    return int(conn.execute("SHOW server_version_num").fetchone()[0])


def flush_stats(conn: psycopg.Connection) -> None:
    """Make this backend's pending table statistics visible now (PostgreSQL 15+), not in ~10 s."""
    if _version(conn) >= 150000:
        conn.execute("SELECT pg_stat_force_next_flush()")
        conn.execute("SELECT 1")  # the flush happens when the backend goes idle after the call


def _app(conninfo: str, autocommit: bool = True) -> psycopg.Connection:
    return psycopg.connect(conninfo, application_name=APP_NAME, autocommit=autocommit, connect_timeout=10)


def settle_base_tables(conn: psycopg.Connection, app_conninfo: str) -> None:
    flush_stats(conn)  # the base load's counts first, so that the reset really forgets them
    conn.execute("SELECT pg_stat_reset()")
    conn.execute("ANALYZE rooms, guests, reservations")
    with _app(app_conninfo) as app:
        app.execute(STEADY_TRAFFIC, (STEADY_LOOKUPS,)).fetchone()
        flush_stats(app)


def stale_rate_history(conn: psycopg.Connection) -> None:
    conn.execute("CREATE TABLE rate_history (id bigserial PRIMARY KEY, room_id int NOT NULL, "
                  "nightly_rate numeric(8, 2) NOT NULL, changed_at timestamptz NOT NULL DEFAULT now()) "
                  "WITH (autovacuum_enabled = false)")
    conn.execute(f"GRANT SELECT, INSERT ON rate_history TO {APP_ROLE}")
    conn.execute("INSERT INTO rate_history (room_id, nightly_rate, changed_at) "
                 "SELECT 1 + i %% 200, 89 + i %% 200, now() - i * interval '5 minutes' "
                 "FROM generate_series(1, %s) AS i", (STALE_ROWS,))


def sequentially_scanned_events(conn: psycopg.Connection, app_conninfo: str) -> None:
    conn.execute("CREATE TABLE reservation_events (id bigserial PRIMARY KEY, reservation_id bigint NOT NULL, "
                 "event text NOT NULL, at timestamptz NOT NULL DEFAULT now())")
    conn.execute("INSERT INTO reservation_events (reservation_id, event, at) "
                 "SELECT 1 + (i * 13) %% 20000, "
                 "(ARRAY['created', 'paid', 'checked_in', 'checked_out', 'cancelled'])[1 + i %% 5], "
                 "now() - i * interval '3 minutes' FROM generate_series(1, %s) AS i", (EVENT_ROWS,))
    conn.execute(f"GRANT SELECT ON reservation_events TO {APP_ROLE}")
    flush_stats(conn)
    conn.execute("ANALYZE reservation_events")
    with _app(app_conninfo) as app:
        app.execute(EVENT_BY_ID, (1,)).fetchall()
        for k in range(EVENT_SEQ_SCANS):
            app.execute(EVENT_LOOKUP, (1 + 97 * k,)).fetchall()
        flush_stats(app)


def slow_report(conn: psycopg.Connection, app_conninfo: str) -> None:
    conn.execute("CREATE TABLE demo_report_cost (seconds float8 NOT NULL)")
    conn.execute("INSERT INTO demo_report_cost VALUES (%s)", (SLOW_SECONDS,))
    conn.execute(f"GRANT SELECT ON demo_report_cost TO {APP_ROLE}")
    # EXPLAIN needs SELECT on what the statement reads: the monitor role gets it for these two
    conn.execute(f"GRANT SELECT ON rooms, demo_report_cost TO {MONITOR_ROLE}")

    def calls(_: int) -> None:
        with _app(app_conninfo) as app:
            for _ in range(SLOW_CALLS_PER_CONNECTION):
                app.execute(SLOW_REPORT).fetchall()

    with ThreadPoolExecutor(max_workers=SLOW_CONNECTIONS, thread_name_prefix="rms-demo-slow") as pool:
        for future in [pool.submit(calls, k) for k in range(SLOW_CONNECTIONS)]:
            future.result()


class RowLock:
    """One application connection holds a row lock; another waits for it until ``release()``."""

    def __init__(self, app_conninfo: str, room: int):
        self.room = room
        self.holder = _app(app_conninfo, autocommit=False)
        self.holder.execute(HOLD_LOCK, (room,))  # BEGIN (implicit) ... never committed
        self.holder_pid = self.holder.info.backend_pid
        self.waiter = _app(app_conninfo, autocommit=False)
        self.waiter_pid = self.waiter.info.backend_pid
        self._thread = threading.Thread(target=self._wait, name="rms-demo-lock-waiter", daemon=True)
        self._thread.start()

    def _wait(self) -> None:
        with contextlib.suppress(psycopg.Error):
            self.waiter.execute(WAIT_FOR_LOCK, (self.room,))
            self.waiter.rollback()

    def release(self) -> None:
        with contextlib.suppress(Exception):
            self.holder.close()  # the server rolls the transaction back: the waiter goes on
        self._thread.join(timeout=5)
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                self.waiter.cancel()
            self._thread.join(timeout=5)
        with contextlib.suppress(Exception):
            self.waiter.close()


def hold_row_lock(conn: psycopg.Connection, app_conninfo: str, cleanup: Any) -> RowLock:
    lock = RowLock(app_conninfo, LOCKED_ROOM)
    cleanup("demo row lock (db-slow-queries)", lock.release)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        row = conn.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s",
                           (lock.waiter_pid,)).fetchone()
        if row and row[0] == "Lock":
            break
        time.sleep(0.02)
    return lock


# --- AWS ---------------------------------------------------------------------------------------


def seed_aws(env: AwsSeed) -> None:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.rds.models import rds_backends

    backend = rds_backends[DEFAULT_ACCOUNT_ID][layout.REGION]
    instance = backend.databases[layout.DB_INSTANCE]
    now = env.now.astimezone(UTC).replace(tzinfo=None)  # moto keeps naive UTC datetimes
    instance.instance_create_time = now - timedelta(days=30)
    for days in range(6, 0, -1):  # the daily backups of the last days, in the 03:00 UTC window
        moment = (now - timedelta(days=days)).replace(hour=3, minute=7, second=0, microsecond=0)
        snap = backend.create_auto_snapshot(layout.DB_INSTANCE,
                                            f"rds:{layout.DB_INSTANCE}-{moment:%Y-%m-%d-%H-%M}")
        snap.created = moment
    rds = env.client("rds")
    manual_age = timedelta(days=3) if env.scenario.name == "incident" else timedelta(hours=10)
    snapshot_id = f"{layout.DB_INSTANCE}-before-release-{(now - manual_age):%Y%m%d-%H%M}"
    rds.create_db_snapshot(DBInstanceIdentifier=layout.DB_INSTANCE, DBSnapshotIdentifier=snapshot_id)
    backend.database_snapshots[snapshot_id].created = now - manual_age
    if env.scenario.name == "incident":
        lag_restorable_time(layout.DB_INSTANCE, timedelta(minutes=40), env.cleanup)


def lag_restorable_time(instance_id: str, lag: timedelta, cleanup: Any) -> None:
    """moto answers LatestRestorableTime = now: make it lag for one instance until cleanup."""
    from unittest import mock

    from moto.rds.models import DBInstance

    original = DBInstance.latest_restorable_time

    def lagging(self: DBInstance) -> datetime:
        moment = original.fget(self)
        return moment - lag if self.db_instance_identifier == instance_id else moment

    patcher = mock.patch.object(DBInstance, "latest_restorable_time", property(lagging))
    patcher.start()
    cleanup("RDS LatestRestorableTime lag", patcher.stop)
