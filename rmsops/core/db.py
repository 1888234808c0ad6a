"""The read-only PostgreSQL session every database check uses.

Safety: autocommit (rmsops itself never sits idle in a transaction), every
transaction read-only, a statement timeout and a lock timeout, and an
``application_name`` so the DBA can see us. Settings are applied with SET after
connecting because RDS Proxy rejects startup options.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pandas as pd
import psycopg

from rmsops.core import secrets
from rmsops.core.config import DatabaseSettings

APPLICATION_NAME = "rmsops"
LOCK_TIMEOUT_MS = 2_000


class DatabaseUnavailable(Exception):
    """Could not connect. ``kind`` says whether the database is down or rmsops could not get in:

    * the database (or the way to it) is down: ``refused``, ``timeout``, ``dns``, ``unavailable``
      (starting up, shutting down, in recovery), ``too_many_connections`` (the server's
      ``max_connections`` or the database's connection limit: what the applications meet too);
    * rmsops could not get in, the database may be fine: ``role_limit`` (rmsops' own role's
      CONNECTION LIMIT), ``auth`` (password authentication failed, no password), ``permission``
      (no CONNECT privilege, no pg_hba.conf entry, login not allowed, no such role or database),
      ``credentials`` (the password could not be fetched: Secrets Manager, an IAM token);
    * ``other``: anything else.
    """

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


# The kinds of DatabaseUnavailable that say nothing about the database's health: rmsops itself
# could not get in (an error finding: the check could not run), not "the database is down".
ACCESS_KINDS = frozenset({"role_limit", "auth", "permission", "credentials"})


@dataclass(frozen=True)
class ConnectAttempt:
    ok: bool
    seconds: float
    kind: str = ""
    message: str = ""


_READ_ONLY_STATEMENTS = ("select", "with", "show", "explain", "values", "table")


def refuse_unless_read_only(sql: str) -> None:
    """Defence in depth beside the read-only session: one reading statement, nothing else.

    (``BEGIN READ WRITE`` would otherwise lift the session default.)
    """
    text = sql.strip().rstrip(";").strip()
    first = text.split(None, 1)[0].lower() if text else ""
    if first not in _READ_ONLY_STATEMENTS or ";" in _without_literals(text):
        raise PermissionError(f"rmsops runs only single read-only statements, not {first.upper() or 'nothing'}")


def _without_literals(sql: str) -> str:
    """The SQL with quoted strings and identifiers removed, to look for statement separators."""
    return re.sub(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"", "", sql)


def classify_connect_error(exc: BaseException) -> str:
    """The kind of a connection failure (see :class:`DatabaseUnavailable`), from libpq's message.

    libpq may try several addresses and join their messages: what the server itself answered
    (authentication, limits, permissions) wins over a refused or timed-out address.
    """
    text = str(exc).lower()
    if "too many connections for role" in text:
        return "role_limit"
    if ("too many clients" in text or "too many connections" in text
            or "remaining connection slots are reserved" in text):
        return "too_many_connections"  # the server's max_connections, or the database's limit
    if ("the database system is starting up" in text or "the database system is shutting down" in text
            or "the database system is in recovery mode" in text
            or "the database system is not yet accepting connections" in text
            or "the database system is not accepting connections" in text):
        return "unavailable"
    if "password authentication failed" in text or "no password supplied" in text or (
            "authentication" in text and "failed" in text):
        return "auth"
    if ("no pg_hba.conf entry" in text or "pg_hba.conf rejects connection" in text
            or "permission denied for database" in text or "is not permitted to log in" in text
            or (("role \"" in text or "database \"" in text) and "does not exist" in text)):
        return "permission"
    if "timeout expired" in text or "timed out" in text:
        return "timeout"
    if "connection refused" in text or "could not connect" in text or "no route to host" in text:
        return "refused"
    if "could not translate host name" in text or "name or service not known" in text:
        return "dns"
    return "other"


class Database:
    """Connects on first use; one connection per run, guarded by a lock for threaded checks."""

    def __init__(self, settings: DatabaseSettings, password: Callable[[], str | None],
                 connect_timeout: float = 5.0):
        self.settings = settings
        self._password = password
        self._connect_timeout = connect_timeout
        self._conn: psycopg.Connection | None = None
        self._failure: DatabaseUnavailable | None = None
        self._lock = threading.RLock()

    def _connect(self) -> psycopg.Connection:
        s = self.settings
        kwargs: dict[str, Any] = dict(
            host=s.host, port=s.port, dbname=s.dbname, user=s.user, sslmode=s.sslmode,
            connect_timeout=max(1, round(self._connect_timeout)),
            application_name=APPLICATION_NAME, autocommit=True,
        )
        try:
            password = self._password()
        except Exception as exc:  # Secrets Manager or IAM token failed: the DB is out of reach
            reason = secrets.redact(str(exc).strip().splitlines()[0] if str(exc).strip() else "")
            raise DatabaseUnavailable(
                "credentials", f"could not get the database password: {type(exc).__name__}: {reason}"
            ) from None
        if password:
            secrets.register(password)
            kwargs["password"] = password
        try:
            conn = psycopg.connect(**kwargs)
        except psycopg.Error as exc:
            message = secrets.redact(str(exc).strip().splitlines()[0] if str(exc).strip() else
                                     type(exc).__name__)
            raise DatabaseUnavailable(classify_connect_error(exc), message) from None
        register_connection_secrets(conn)
        conn.read_only = True
        conn.execute("SET default_transaction_read_only = on")
        conn.execute(f"SET statement_timeout = {int(s.statement_timeout_ms)}")
        conn.execute(f"SET lock_timeout = {LOCK_TIMEOUT_MS}")
        conn.execute("SET idle_in_transaction_session_timeout = 60000")
        return conn

    def connection(self) -> psycopg.Connection:
        """The open session; raises DatabaseUnavailable (remembered, so checks fail fast)."""
        with self._lock:
            if self._failure is not None:
                raise self._failure
            if self._conn is None or self._conn.closed:
                try:
                    self._conn = self._connect()
                except DatabaseUnavailable as exc:
                    self._failure = exc
                    raise
            return self._conn

    def probe(self) -> ConnectAttempt:
        """Connect (or, when connected, round-trip a SELECT 1), timed, for the connectivity check."""
        started = time.monotonic()
        try:
            self.frame("SELECT 1")
        except DatabaseUnavailable as exc:
            return ConnectAttempt(False, time.monotonic() - started, exc.kind, str(exc))
        except psycopg.Error as exc:
            reason = secrets.redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
            return ConnectAttempt(False, time.monotonic() - started, classify_connect_error(exc), reason)
        return ConnectAttempt(True, time.monotonic() - started)

    @contextlib.contextmanager
    def session(self) -> Iterator[psycopg.Connection]:
        """The connection, held exclusively (for EXPLAIN's own read-only transaction)."""
        with self._lock:
            yield self.connection()

    def frame(self, sql: str, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """Run one read-only statement and return its rows as a DataFrame."""
        refuse_unless_read_only(sql)
        with self._lock:
            conn = self.connection()
            try:
                with conn.cursor() as cur:
                    cur.execute(sql, params)
                    columns = [c.name for c in cur.description or []]
                    rows = cur.fetchall() if cur.description else []
            except psycopg.OperationalError:
                # A statement timeout leaves a healthy session; a lost server does not.
                if conn.broken or conn.closed:
                    conn.close()
                    self._conn = None
                raise
        return pd.DataFrame(rows, columns=columns)

    def scalar(self, sql: str, params: dict[str, Any] | None = None) -> Any:
        df = self.frame(sql, params)
        return None if df.empty else df.iat[0, 0]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and not self._conn.closed:
                self._conn.close()
            self._conn = None


def register_connection_secrets(conn: psycopg.Connection) -> None:
    """Mask what libpq found by itself: the password it used may come from a ``.pgpass`` file
    (PGPASSFILE) or a service file (PGSERVICEFILE) that rmsops never read. ``info.password``
    (PQpass) returns the one the connection really used; the other password-like options
    (``sslpassword``, shown with dispchar ``*``) are registered too."""
    secrets.register(conn.info.password)
    for option in conn.pgconn.info:
        if option.dispchar == b"*" and option.val:
            secrets.register(option.val.decode("utf-8", errors="replace"))


def secret_password(secret_value: str) -> str:
    """A Secrets Manager value: the RDS-style JSON ({"password": ...}) or the plain password."""
    try:
        data = json.loads(secret_value)
    except ValueError:
        return secret_value
    if isinstance(data, dict) and isinstance(data.get("password"), str):
        return data["password"]
    raise ValueError("the secret is JSON without a 'password' field")
