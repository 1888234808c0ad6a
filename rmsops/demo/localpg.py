"""Start and stop a real, throwaway PostgreSQL server (demo environment and tests).

Usage::

    with LocalPostgres(max_connections=50) as pg:
        with pg.connect() as conn:
            conn.execute("SELECT 1")

The cluster lives in a private temp dir, listens on 127.0.0.1 on a free port with
scram-sha-256 password auth for TCP, and is removed again by ``stop()`` (also
registered with ``atexit``).  Only the stdlib and psycopg 3 are used.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import pwd
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from rmsops.core import processes

__all__ = ["LocalPostgres", "LocalPostgresError", "find_bindir"]

BINDIR_ENV = "RMSOPS_PG_BINDIR"
_REQUIRED_BINARIES = ("initdb", "pg_ctl", "postgres")
_FALLBACK_USER = "rmsops-pg"
_START_ATTEMPTS = 3


class LocalPostgresError(RuntimeError):
    """The local throwaway PostgreSQL server could not be found, started or stopped."""


# --------------------------------------------------------------------------- binaries


def _has_binaries(path: Path) -> bool:
    return all(os.access(path / name, os.X_OK) for name in _REQUIRED_BINARIES)


def _version_key(path: Path) -> tuple[int, ...]:
    # /usr/lib/postgresql/<version>/bin -> numeric sort on <version>
    parts = path.parent.name.split(".")
    return tuple(int(p) if p.isdigit() else -1 for p in parts)


def _pgserver_bindir() -> Path | None:
    try:
        spec = importlib.util.find_spec("pgserver")  # does not import the package
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    roots = [Path(p) for p in spec.submodule_search_locations or []]
    if not roots and spec.origin:
        roots = [Path(spec.origin).parent]
    for root in roots:
        candidate = root / "pginstall" / "bin"
        if _has_binaries(candidate):
            return candidate
    return None


def find_bindir() -> Path:
    """Locate a directory holding initdb, pg_ctl and postgres.

    Order: ``$RMSOPS_PG_BINDIR``, ``pg_config --bindir``, the highest
    ``/usr/lib/postgresql/*/bin``, then the binaries bundled with the ``pgserver`` wheel.
    """
    env = os.environ.get(BINDIR_ENV)
    if env:
        path = Path(env).expanduser().absolute()
        if _has_binaries(path):
            return path
        raise LocalPostgresError(
            f"{BINDIR_ENV}={env} does not contain executable "
            f"{', '.join(_REQUIRED_BINARIES)}; point it at a PostgreSQL bin directory "
            f"(e.g. /usr/lib/postgresql/15/bin) or unset it"
        )

    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.SubprocessError):
            out = None
        if out is not None and out.returncode == 0 and out.stdout.strip():
            path = Path(out.stdout.strip())
            if _has_binaries(path):
                return path

    debian = sorted(
        (p for p in Path("/usr/lib/postgresql").glob("*/bin") if _has_binaries(p)),
        key=_version_key,
    )
    if debian:
        return debian[-1]

    bundled = _pgserver_bindir()
    if bundled is not None:
        return bundled

    raise LocalPostgresError(
        "no PostgreSQL server binaries (initdb, pg_ctl, postgres) found; install them "
        "(Debian/Ubuntu: apt-get install postgresql), or `pip install pgserver`, or set "
        f"{BINDIR_ENV} to the directory that contains initdb"
    )


def _stat_statements_available(bindir: Path) -> bool:
    lib = bindir.parent / "lib"
    return any((d / "pg_stat_statements.so").is_file() for d in (lib, lib / "postgresql"))


# --------------------------------------------------------------------------- helpers


def _scratch_dir() -> str:
    """Memory-backed /dev/shm when usable (initdb is ~2.5x faster there), else the temp dir.

    $TMPDIR, when set, wins: the user chose where temporary files go.
    """
    shm = "/dev/shm"
    if "TMPDIR" not in os.environ and os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK):
        return shm
    return tempfile.gettempdir()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_as_user() -> str | None:
    """The unprivileged account to run PostgreSQL as when we are root, else None."""
    if os.geteuid() != 0:
        return None
    if shutil.which("runuser") is None:
        raise LocalPostgresError(
            "running as root but `runuser` (util-linux) is not installed; PostgreSQL refuses "
            "to run as root, so install util-linux or run as an unprivileged user"
        )
    for name in ("postgres", _FALLBACK_USER):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            pass
    try:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
             _FALLBACK_USER],
            capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        with contextlib.suppress(KeyError):
            pwd.getpwnam(_FALLBACK_USER)  # a concurrent process created it first
            return _FALLBACK_USER
        detail = getattr(exc, "stderr", "") or exc
        raise LocalPostgresError(
            f"running as root and could not create system user {_FALLBACK_USER!r} for "
            f"PostgreSQL ({str(detail).strip()}); create an unprivileged user or run as non-root"
        ) from exc
    return _FALLBACK_USER


def _chown_tree(path: Path, user: str) -> None:
    pw = pwd.getpwnam(user)
    os.chown(path, pw.pw_uid, pw.pw_gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(os.path.join(root, name), pw.pw_uid, pw.pw_gid, follow_symlinks=False)


def _read_pid(datadir: Path) -> int | None:
    try:
        first = (datadir / "postmaster.pid").read_text().split("\n", 1)[0].strip()
        return int(first)
    except (OSError, ValueError):
        return None


def _tail(path: Path, lines: int = 5, start: int = 0) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(start)
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return "(no server log)"
    kept = [ln.strip() for ln in text.splitlines() if ln.strip()][-lines:]
    return " | ".join(kept) if kept else "(server log empty)"


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


# --------------------------------------------------------------------------- server


@dataclass
class LocalPostgres:
    """A throwaway PostgreSQL cluster on 127.0.0.1; ``start()`` it, ``stop()`` removes it."""

    max_connections: int = 100
    settings: dict[str, str] = field(default_factory=dict)  # extra ``-c key=value``
    want_stat_statements: bool = True
    bindir: Path | None = None

    # filled by start()
    host: str = field(default="127.0.0.1", init=False)
    port: int = field(default=0, init=False)
    dbname: str = field(default="rms", init=False)
    superuser: str = field(default="postgres", init=False)
    superuser_password: str = field(default="", init=False, repr=False)
    has_stat_statements: bool = field(default=False, init=False)
    datadir: Path = field(default=Path(), init=False)

    _basedir: Path | None = field(default=None, init=False, repr=False, compare=False)
    _user: str | None = field(default=None, init=False, repr=False, compare=False)
    _pid: int | None = field(default=None, init=False, repr=False, compare=False)
    _owner_pid: int = field(default=0, init=False, repr=False, compare=False)
    _stopping: bool = field(default=False, init=False, repr=False, compare=False)
    _atexit_registered: bool = field(default=False, init=False, repr=False, compare=False)

    # ------------------------------------------------------------------ public API

    def start(self) -> LocalPostgres:
        """initdb + start a fresh cluster, create database ``rms``; returns self."""
        if self._basedir is not None:
            raise LocalPostgresError("LocalPostgres already started; call stop() first")
        bindir = Path(self.bindir).absolute() if self.bindir is not None else find_bindir()
        if not _has_binaries(bindir):
            raise LocalPostgresError(f"{bindir} does not contain {', '.join(_REQUIRED_BINARIES)}")
        self.bindir = bindir
        self._user = _run_as_user()
        self.superuser_password = secrets.token_urlsafe(24)
        self._owner_pid = os.getpid()
        if not self._atexit_registered:
            atexit.register(self._atexit_stop)
            self._atexit_registered = True

        self._basedir = Path(tempfile.mkdtemp(prefix="rmsops-pg-", dir=_scratch_dir()))
        self.datadir = self._basedir / "data"
        try:
            os.chmod(self._basedir, 0o755)  # the unprivileged server user must traverse it
            self._initdb()
            self._start_server()
            self._post_start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server and delete its temp dir; idempotent and re-entrancy safe."""
        if self._stopping or self._basedir is None:
            return
        self._stopping = True
        try:
            basedir = self._basedir
            pid = self._pid or _read_pid(self.datadir)
            if pid is not None and processes.alive(pid):
                self._shutdown(pid)
            shutil.rmtree(basedir, ignore_errors=True)
            if basedir.exists():  # pragma: no cover - e.g. a file still being written
                time.sleep(0.2)
                shutil.rmtree(basedir, ignore_errors=True)
            self._basedir = None
            self._pid = None
            if self._atexit_registered:
                atexit.unregister(self._atexit_stop)
                self._atexit_registered = False
        finally:
            # If a signal handler interrupted us, a later stop() (e.g. atexit) retries.
            self._stopping = False

    def conninfo(
        self, user: str | None = None, password: str | None = None, dbname: str | None = None
    ) -> str:
        """libpq ``key=value`` string over TCP; the superuser unless *user* is given."""
        if user is None:
            user = self.superuser
            if password is None:
                password = self.superuser_password
        params: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "dbname": dbname or self.dbname,
            "user": user,
        }
        if password is not None:
            params["password"] = password
        return make_conninfo("", **params)

    def connect(self, **kw: Any) -> psycopg.Connection:
        """psycopg connection as the superuser (autocommit); *kw* overrides conn params."""
        kw.setdefault("autocommit", True)
        return psycopg.connect(self.conninfo(), **kw)

    def __enter__(self) -> LocalPostgres:
        if self._basedir is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ internals

    def _cmd(self, binary: str, *args: str) -> list[str]:
        assert self.bindir is not None
        cmd = [str(self.bindir / binary), *args]
        if self._user is not None:
            cmd = ["runuser", "-u", self._user, "--", *cmd]
        return cmd

    def _run(self, cmd: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            cmd,
            cwd=self._basedir,
            env=_clean_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    @property
    def _logfile(self) -> Path:
        assert self._basedir is not None
        return self._basedir / "server.log"

    @property
    def _sockdir(self) -> Path:
        assert self._basedir is not None
        return self._basedir / "sock"

    def _initdb(self) -> None:
        assert self._basedir is not None
        pwfile = self._basedir / "pwfile"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(self.superuser_password + "\n")
        self._sockdir.mkdir(mode=0o700)
        if self._user is not None:
            _chown_tree(self._basedir, self._user)
        try:
            res = self._run(
                self._cmd(
                    "initdb",
                    "-D", str(self.datadir),
                    f"--username={self.superuser}",
                    f"--pwfile={pwfile}",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "-E", "UTF8",
                    "--locale=C",
                    "--no-sync",
                    "--no-instructions",
                ),
                timeout=120,
            )  # fmt: skip
        except (OSError, subprocess.SubprocessError) as exc:
            raise LocalPostgresError(f"initdb could not run with {self.bindir}: {exc}") from exc
        finally:
            pwfile.unlink(missing_ok=True)
        if res.returncode != 0:
            lines = [ln for ln in (res.stderr or res.stdout).splitlines() if ln.strip()][-5:]
            raise LocalPostgresError(
                f"initdb failed (exit {res.returncode}) with {self.bindir}: " + " | ".join(lines)
            )

    def _server_options(self, port: int, stat_statements: bool) -> str:
        opts: dict[str, str] = {
            "listen_addresses": self.host,
            "port": str(port),
            "unix_socket_directories": str(self._sockdir),
            "max_connections": str(self.max_connections),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
        }
        if stat_statements:
            opts["shared_preload_libraries"] = "pg_stat_statements"
            opts["pg_stat_statements.track"] = "all"
        opts.update({str(k): str(v) for k, v in self.settings.items()})
        return " ".join(f"-c {shlex.quote(f'{k}={v}')}" for k, v in opts.items())

    def _start_server(self) -> None:
        stat_statements = self.want_stat_statements and _stat_statements_available(self.bindir)
        last_error = ""
        for attempt in range(1, _START_ATTEMPTS + 1):
            port = _free_port()
            offset = self._logfile.stat().st_size if self._logfile.exists() else 0
            cmd = self._cmd(
                "pg_ctl", "start", "-w", "-t", "30",
                "-D", str(self.datadir),
                "-l", str(self._logfile),
                "-o", self._server_options(port, stat_statements),
            )  # fmt: skip
            try:
                res = self._run(cmd, timeout=60)
                rc: int | str = res.returncode
            except subprocess.TimeoutExpired:
                rc = "timeout"
            if rc == 0:
                self.port = port
                self._pid = _read_pid(self.datadir)
                self.has_stat_statements = stat_statements
                return
            # pg_ctl may have left a half-started postmaster behind (e.g. on timeout).
            pid = _read_pid(self.datadir)
            if pid is not None and processes.alive(pid):
                self._shutdown(pid)
            log = _tail(self._logfile, start=offset)
            last_error = f"pg_ctl start exited {rc} on port {port} (attempt {attempt}): {log}"
            if "Address already in use" in log or "could not create any TCP/IP" in log:
                continue  # port clash: another process grabbed the port; pick a new one
            if stat_statements and "pg_stat_statements" in log:
                stat_statements = False  # library present but unusable; start without it
                continue
            break
        raise LocalPostgresError(f"PostgreSQL failed to start ({self.bindir}): {last_error}")

    def _post_start(self) -> None:
        with psycopg.connect(self.conninfo(dbname="postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.dbname}"')
        if self.has_stat_statements:
            try:
                with self.connect() as conn:
                    conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            except psycopg.Error:
                # .so preloaded but the extension's SQL/control files are missing.
                self.has_stat_statements = False

    def _shutdown(self, pid: int) -> None:
        """Stop the postmaster *pid*: fast, then immediate, then SIGKILL its process group."""
        for mode, timeout in (("fast", "20"), ("immediate", "10")):
            cmd = self._cmd("pg_ctl", "stop", "-w", "-t", timeout, "-m", mode, "-D", str(self.datadir))
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                self._run(cmd, timeout=int(timeout) + 10)
            if not processes.alive(pid):
                return
        # pg_ctl starts the postmaster via setsid(), so its pgid is its pid.
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while processes.alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)

    def _atexit_stop(self) -> None:
        # Forked children inherit atexit handlers; only the process that started it stops it.
        if os.getpid() == self._owner_pid:
            self.stop()
