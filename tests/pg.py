"""Fixtures for the database checks: one real throwaway PostgreSQL for the session, roles like
production's, a Context pointed at it, and real load (held connections, idle-in-transaction).

``conftest.py`` re-exports the fixtures: ``pg_server`` (session), ``pg_admin``, ``monitor_env``
and ``hold_connections`` (per test). Every test that uses ``pg_admin`` (the others depend on it)
starts with no other client connection on the server and must end the same way, because the
saturation tests count real connections.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest

from rmsops.demo.localpg import LocalPostgres

MAX_CONNECTIONS = 20
MONITOR_ROLE = "rmsops_monitor"
APP_ROLE = "rms_app"
APP_NAME = "rms-backend"
ADMIN_APP_NAME = "pytest-admin"
SETTLE_SECONDS = 10.0

CLIENT_BACKENDS_SQL = "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"


@dataclass
class PgServer:
    """The running server and the credentials of its roles."""

    server: LocalPostgres
    monitor_password: str
    app_password: str
    monitor_user: str = MONITOR_ROLE
    app_user: str = APP_ROLE

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def dbname(self) -> str:
        return self.server.dbname

    def connect_as(self, user: str, password: str, **kw: Any) -> psycopg.Connection:
        kw.setdefault("connect_timeout", 5)
        return psycopg.connect(self.server.conninfo(user=user, password=password), **kw)

    def connect_app(self, **kw: Any) -> psycopg.Connection:
        kw.setdefault("application_name", APP_NAME)
        return self.connect_as(self.app_user, self.app_password, **kw)

    def connect_monitor(self, **kw: Any) -> psycopg.Connection:
        return self.connect_as(self.monitor_user, self.monitor_password, **kw)


def _setup_roles(server: LocalPostgres, monitor_password: str, app_password: str) -> None:
    with server.connect() as conn:
        conn.execute(f"CREATE ROLE {MONITOR_ROLE} LOGIN PASSWORD '{monitor_password}'")
        conn.execute(f"GRANT pg_monitor TO {MONITOR_ROLE}")
        conn.execute(f"CREATE ROLE {APP_ROLE} LOGIN PASSWORD '{app_password}'")
        conn.execute("CREATE TABLE app_orders (id serial PRIMARY KEY, status text NOT NULL)")
        conn.execute(f"ALTER TABLE app_orders OWNER TO {APP_ROLE}")
        conn.execute("INSERT INTO app_orders (status) SELECT 'new' FROM generate_series(1, 50)")
        # Write privileges the monitor role should never be able to use through rmsops: they make
        # the read-only tests meaningful (without the read-only session these would succeed).
        conn.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON app_orders TO {MONITOR_ROLE}")
        conn.execute(f"GRANT USAGE ON SEQUENCE app_orders_id_seq TO {MONITOR_ROLE}")
        conn.execute(f"GRANT CREATE ON SCHEMA public TO {MONITOR_ROLE}")
        conn.execute("CREATE TABLE monitor_owned (id int)")
        conn.execute(f"ALTER TABLE monitor_owned OWNER TO {MONITOR_ROLE}")


def serve_with_roles(**options: Any) -> Iterator[PgServer]:
    """A started throwaway PostgreSQL (``LocalPostgres(**options)``) with the roles rmsops_monitor
    (pg_monitor) and rms_app, fresh passwords; stopped when the generator closes (fixtures yield it)."""
    server = LocalPostgres(**options).start()
    try:
        monitor_password = "mon-" + secrets.token_urlsafe(18)
        app_password = "app-" + secrets.token_urlsafe(18)
        _setup_roles(server, monitor_password, app_password)
        yield PgServer(server, monitor_password, app_password)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A real PostgreSQL with max_connections=20, roles rmsops_monitor (pg_monitor) and rms_app."""
    yield from serve_with_roles(max_connections=MAX_CONNECTIONS, want_stat_statements=False)


def poll(fetch: Callable[[], Any], accept: Callable[[Any], bool], timeout: float = SETTLE_SECONDS,
         what: str = "condition") -> Any:
    """Call fetch until accept(value); pg_stat_activity lags a closing backend by a moment."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in {timeout:.0f} s; last value {value!r}")
        time.sleep(0.05)


class PgAdmin:
    """A superuser observer connection (it occupies one client slot, counted as such)."""

    def __init__(self, pg: PgServer):
        self.pg = pg
        self.conn = pg.server.connect(application_name=ADMIN_APP_NAME)
        self.pid = int(self.conn.execute("SELECT pg_backend_pid()").fetchone()[0])

    def rows(self, sql: str, params: Any = None) -> list[tuple]:
        return self.conn.execute(sql, params).fetchall()

    def value(self, sql: str, params: Any = None) -> Any:
        return self.conn.execute(sql, params).fetchone()[0]

    def client_backends(self) -> int:
        """Client backends on the server, this observer included."""
        return int(self.value(CLIENT_BACKENDS_SQL))

    def others(self) -> list[tuple]:
        return self.rows("SELECT pid, usename, application_name, state FROM pg_stat_activity "
                         "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()")

    def wait_alone(self, timeout: float = SETTLE_SECONDS) -> None:
        poll(self.others, lambda rows: not rows, timeout, "no other client connection")

    def limits(self) -> tuple[int, int]:
        """(max_connections, slots non-superusers cannot use), read from the server."""
        max_connections = int(self.value("SELECT current_setting('max_connections')::int"))
        reserved = int(self.value(
            "SELECT current_setting('superuser_reserved_connections')::int"
            " + coalesce(current_setting('reserved_connections', true), '0')::int"))
        return max_connections, reserved

    def state_of(self, pid: int) -> tuple | None:
        rows = self.rows("SELECT application_name, usename, state FROM pg_stat_activity WHERE pid = %s", (pid,))
        return rows[0] if rows else None

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def pg_admin(pg_server: PgServer) -> Iterator[PgAdmin]:
    """Waits until the server has no other client; at teardown, fails if a test left any behind."""
    admin = PgAdmin(pg_server)
    try:
        admin.wait_alone()
        yield admin
        leftovers: list[tuple] = []
        try:
            admin.wait_alone()
        except AssertionError:
            leftovers = admin.others()
        assert not leftovers, f"the test left client connections open: {leftovers}"
    finally:
        admin.close()


@dataclass
class Held:
    connections: list[psycopg.Connection] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.connections)

    def close(self) -> None:
        for conn in self.connections:
            if not conn.closed:
                conn.close()
        self.connections.clear()


class ConnectionHolder:
    """Opens real application connections (application_name rms-backend) and keeps them open."""

    def __init__(self, pg: PgServer, admin: PgAdmin):
        self.pg = pg
        self.admin = admin
        self.groups: list[Held] = []

    def __call__(self, n: int, idle_in_transaction: int = 0) -> Held:
        """Hold n connections; the first ``idle_in_transaction`` of them are left idle in a
        transaction (alternately ``BEGIN; SELECT 1`` and an uncommitted UPDATE of its own row)."""
        if idle_in_transaction > n:
            raise ValueError("idle_in_transaction > n")
        held = Held()
        self.groups.append(held)
        base_idle = self._idle_in_transaction()
        base_apps = self._app_backends()
        for i in range(n):
            in_tx = i < idle_in_transaction
            conn = self.pg.connect_app(autocommit=not in_tx)
            held.connections.append(conn)
            if in_tx and i % 2:
                conn.execute("UPDATE app_orders SET status = 'held' WHERE id = %s", (i + 1,))
            elif in_tx:
                conn.execute("SELECT 1")  # psycopg opened the transaction (BEGIN) first
        poll(lambda: (self._app_backends(), self._idle_in_transaction()),
             lambda v: v == (base_apps + n, base_idle + idle_in_transaction),
             what=f"{n} held connections, {idle_in_transaction} idle in transaction")
        return held

    def until_refused(self, limit: int = 4 * MAX_CONNECTIONS) -> tuple[Held, psycopg.OperationalError]:
        """Open application connections until the server refuses one; returns them and the error."""
        held = Held()
        self.groups.append(held)
        for _ in range(limit):
            try:
                held.connections.append(self.pg.connect_app(autocommit=True))
            except psycopg.OperationalError as exc:
                return held, exc
        raise AssertionError(f"the server accepted {limit} connections; max_connections not applied?")

    def _app_backends(self) -> int:
        return int(self.admin.value(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
            "AND application_name = %s", (APP_NAME,)))

    def _idle_in_transaction(self) -> int:
        return int(self.admin.value(
            "SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%%' "
            "AND application_name = %s", (APP_NAME,)))

    def close(self) -> None:
        for held in self.groups:
            held.close()


@pytest.fixture
def hold_connections(pg_server: PgServer, pg_admin: PgAdmin) -> Iterator[ConnectionHolder]:
    """``hold_connections(n, idle_in_transaction=k)``; everything is closed at teardown."""
    holder = ConnectionHolder(pg_server, pg_admin)
    try:
        yield holder
    finally:
        holder.close()


@pytest.fixture
def monitor_env(pg_server: PgServer, pg_admin: PgAdmin, make_context, monkeypatch: pytest.MonkeyPatch):
    """Build a Context whose database is the test server, as rmsops_monitor, sslmode disable.

    ``monitor_env(password=..., secret=None, window="1h", thresholds=None, database={...}, **env)``:
    the password goes to PGPASSWORD (libpq reads it; ``password=None`` unsets it); ``secret`` names
    a Secrets Manager secret for ``database.password_secret`` (create it under ``mock_aws``).
    """
    monkeypatch.setenv("PGPASSFILE", "/nonexistent/rmsops-test-pgpass")
    built = []
    default = object()

    def build(*, password: Any = default, secret: str | None = None, window: str = "1h",
              thresholds: dict | None = None, database: dict | None = None, **changes: Any):
        if password is default:
            password = pg_server.monitor_password
        if password is None:
            monkeypatch.delenv("PGPASSWORD", raising=False)
        else:
            monkeypatch.setenv("PGPASSWORD", password)
        db = {"host": pg_server.host, "port": pg_server.port, "dbname": pg_server.dbname,
              "user": pg_server.monitor_user, "sslmode": "disable"}
        if secret is not None:
            db["password_secret"] = secret
        db.update(database or {})
        ctx = make_context(window=window, thresholds=thresholds, database=db, **changes)
        built.append(ctx)
        return ctx

    yield build
    for ctx in built:  # before pg_admin's teardown counts what is left
        ctx.close()
