"""The demo database: the monitor role, an RMS-like schema and the scenario's connection load.

Roles:

* ``rmsops_monitor`` -- what rmsops logs in as: LOGIN, ``pg_monitor``, CONNECTION LIMIT 5,
  the password stored in the Secrets Manager secret.
* ``rms_app`` -- the application. The held connections are opened as this ordinary role so
  they compete for the same non-reserved slots as the monitor role, as on RDS.

The load is real: ``ConnectionLoad`` keeps N connections open (``application_name``
``rms-backend``), K of them idle in transaction holding row locks, until ``close()``.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
from psycopg import sql

MONITOR_ROLE = "rmsops_monitor"
APP_ROLE = "rms_app"
APP_NAME = "rms-backend"

SCHEMA_SQL = """
CREATE TABLE rooms (
    id serial PRIMARY KEY,
    number text NOT NULL UNIQUE,
    floor int NOT NULL,
    room_type text NOT NULL,
    nightly_rate numeric(8, 2) NOT NULL
);
CREATE TABLE guests (
    id serial PRIMARY KEY,
    full_name text NOT NULL,
    email text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE reservations (
    id bigserial PRIMARY KEY,
    guest_id int NOT NULL,
    room_id int NOT NULL,
    check_in date NOT NULL,
    check_out date NOT NULL,
    status text NOT NULL,
    total numeric(10, 2) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK (check_out > check_in)
);
INSERT INTO rooms (number, floor, room_type, nightly_rate)
SELECT (f * 100 + r)::text, f,
       (ARRAY['single', 'double', 'twin', 'suite'])[1 + (f * 100 + r) % 4],
       (ARRAY[89, 129, 119, 289])[1 + (f * 100 + r) % 4]
FROM generate_series(1, 8) AS f, generate_series(1, 25) AS r;

INSERT INTO guests (full_name, email, created_at)
SELECT (ARRAY['Ana', 'Ben', 'Chloe', 'David', 'Emma', 'Farid', 'Grace', 'Hugo', 'Iris', 'Jon'])[1 + g % 10]
       || ' ' ||
       (ARRAY['Silva', 'Novak', 'Meyer', 'Okafor', 'Rossi', 'Tanaka', 'Dubois', 'Larsen'])[1 + g / 10 % 8],
       'guest' || g || '@example.com',
       now() - (g % 900) * interval '1 day'
FROM generate_series(1, 5000) AS g;

INSERT INTO reservations (guest_id, room_id, check_in, check_out, status, total, created_at, updated_at)
SELECT 1 + (i * 7919) % 5000, 1 + (i * 31) % 200,
       current_date - 400 + i / 40, current_date - 400 + i / 40 + 1 + i % 6,
       CASE WHEN i % 17 = 0 THEN 'cancelled'
            WHEN current_date - 400 + i / 40 < current_date THEN 'completed'
            ELSE 'confirmed' END,
       (1 + i % 6) * (89 + i % 200),
       now() - (20000 - i) * interval '30 minutes', now() - (20000 - i) * interval '20 minutes'
FROM generate_series(1, 20000) AS i;

-- constraints and indexes after the bulk load: one pass instead of one check per row
ALTER TABLE reservations ADD FOREIGN KEY (guest_id) REFERENCES guests (id),
                         ADD FOREIGN KEY (room_id) REFERENCES rooms (id);
CREATE INDEX reservations_guest_idx ON reservations (guest_id);
CREATE INDEX reservations_room_dates_idx ON reservations (room_id, check_in);

GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO rms_app;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO rms_app;
ANALYZE rooms, guests, reservations;
"""

IDLE_QUERY = ("SELECT r.id, r.check_in, r.status, g.full_name FROM reservations r "
              "JOIN guests g ON g.id = r.guest_id WHERE r.check_in >= current_date AND r.room_id = %s "
              "ORDER BY r.check_in LIMIT 20")
LOCKING_QUERY = "SELECT id, status, total FROM reservations WHERE id = %s FOR UPDATE"
LOCKING_UPDATE = "UPDATE reservations SET updated_at = now() WHERE id = %s"


def create_roles_and_schema(conn: psycopg.Connection, monitor_password: str, app_password: str) -> None:
    """Run once on a fresh ``rms`` database as the superuser (autocommit connection)."""
    conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} CONNECTION LIMIT 5").format(
        sql.Identifier(MONITOR_ROLE), sql.Literal(monitor_password)))
    conn.execute(sql.SQL("GRANT pg_monitor TO {}").format(sql.Identifier(MONITOR_ROLE)))
    conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
        sql.Identifier(APP_ROLE), sql.Literal(app_password)))
    with conn.transaction():
        conn.execute(SCHEMA_SQL)


class ConnectionLoad:
    """Connections held open as the application until ``close()`` (idempotent, thread-safe)."""

    def __init__(self, conninfo: str):
        self._conninfo = conninfo
        self._conns: list[psycopg.Connection] = []
        self._lock = threading.Lock()

    @property
    def count(self) -> int:
        return len(self._conns)

    def open(self, total: int, idle_in_transaction: int) -> ConnectionLoad:
        """Open *total* connections; the first *idle_in_transaction* lock a distinct row and stay
        in their transaction, the others ran a read and sit idle."""
        if idle_in_transaction > total:
            raise ValueError("idle_in_transaction cannot exceed total")
        rows = [1000 + 97 * k for k in range(total)]

        def one(k: int) -> None:
            conn = psycopg.connect(self._conninfo, application_name=APP_NAME, autocommit=False,
                                   connect_timeout=10)
            with self._lock:
                self._conns.append(conn)
            if k < idle_in_transaction:  # BEGIN (implicit); lock a row; never commit
                conn.execute(LOCKING_QUERY, (rows[k],)).fetchall()
                conn.execute(LOCKING_UPDATE, (rows[k],))
            else:
                conn.execute(IDLE_QUERY, (1 + k % 200,)).fetchall()
                conn.commit()

        if total:
            with ThreadPoolExecutor(max_workers=min(8, total), thread_name_prefix="rms-demo-db") as pool:
                for future in [pool.submit(one, k) for k in range(total)]:
                    future.result()
        return self

    def close(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(Exception):  # one bad connection must not stop the teardown
                conn.close()


def seed(superuser_conn: psycopg.Connection, app_conninfo: str, monitor_password: str, app_password: str,
         held: int, idle_in_transaction: int) -> ConnectionLoad:
    create_roles_and_schema(superuser_conn, monitor_password, app_password)
    load = ConnectionLoad(app_conninfo)
    try:
        return load.open(held, idle_in_transaction)
    except BaseException:
        load.close()
        raise


def new_password() -> str:
    return secrets.token_urlsafe(24)


def connection_summary(conn: psycopg.Connection) -> dict[str, Any]:
    """``state -> count`` of the client backends, for progress lines and tests."""
    rows = conn.execute("SELECT coalesce(state, 'unknown'), count(*) FROM pg_stat_activity "
                        "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() "
                        "GROUP BY 1").fetchall()
    return {state: int(n) for state, n in rows}
