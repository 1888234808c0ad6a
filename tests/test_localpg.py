"""Tests for rmsops.demo.localpg against a real throwaway PostgreSQL server (no mocks)."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from rmsops.demo.localpg import LocalPostgres, LocalPostgresError, find_bindir

MAX_CONNECTIONS = 37  # deliberately not a default, so SHOW proves it was applied
# Extra settings; the second one checks shell quoting (space, apostrophe, %).
SETTINGS = {"work_mem": "7MB", "log_line_prefix": "%m [%p] rms's demo "}


def _alive(pid: int) -> bool:
    """True if *pid* is a live (non-zombie) process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return False
    return fields[0] != "Z"


def _port_refuses(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        try:
            s.connect(("127.0.0.1", port))
        except ConnectionRefusedError:
            return True
    return False


@pytest.fixture(scope="module")
def pg() -> Iterator[LocalPostgres]:
    server = LocalPostgres(max_connections=MAX_CONNECTIONS, settings=SETTINGS)
    with server:
        yield server
    assert not server.datadir.parent.exists()


@pytest.fixture
def world_readable_dir() -> Iterator[Path]:
    # Not tmp_path: when root, the stub binaries are run via `runuser` as an unprivileged
    # user, which cannot traverse pytest's 0700 basetemp.
    path = Path(tempfile.mkdtemp(prefix="rmsops-pg-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _stub_bindir(root: Path, script: str) -> Path:
    bindir = root / "bin"
    bindir.mkdir()
    for name in ("initdb", "pg_ctl", "postgres"):
        exe = bindir / name
        exe.write_text(script)
        exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH | 0o444)
    return bindir


# ------------------------------------------------------------------ running server


def test_starts_and_accepts_connection(pg: LocalPostgres) -> None:
    assert pg.host == "127.0.0.1"
    assert pg.port > 0
    with pg.connect() as conn:
        row = conn.execute("SELECT current_database(), current_user, 1 + 1").fetchone()
        assert row == ("rms", "postgres", 2)
        assert conn.autocommit
    # conninfo() is a usable libpq string too, and can target another database.
    with psycopg.connect(pg.conninfo(dbname="postgres")) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("postgres",)


def test_settings_applied(pg: LocalPostgres) -> None:
    with pg.connect() as conn:
        assert conn.execute("SHOW max_connections").fetchone() == (str(MAX_CONNECTIONS),)
        for name, value in SETTINGS.items():
            assert conn.execute(f"SHOW {name}").fetchone() == (value,)
        assert conn.execute("SHOW fsync").fetchone() == ("off",)


def test_pg_stat_statements(pg: LocalPostgres) -> None:
    assert pg.has_stat_statements is True
    with pg.connect() as conn:
        conn.execute("SELECT 42")
        (count,) = conn.execute("SELECT count(*) FROM pg_stat_statements").fetchone()
        assert count >= 1
        assert conn.execute("SHOW pg_stat_statements.track").fetchone() == ("all",)


def test_wrong_password_rejected_over_tcp(pg: LocalPostgres) -> None:
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(pg.conninfo(password="definitely-wrong"), connect_timeout=5)
    with pg.connect() as conn:
        conn.execute("CREATE ROLE app LOGIN PASSWORD 'app-secret'")
    with psycopg.connect(pg.conninfo(user="app", password="app-secret")) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("app",)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(pg.conninfo(user="app", password="nope"), connect_timeout=5)


# ------------------------------------------------------------------ lifecycle


def test_stop_removes_process_port_and_tempdir() -> None:
    server = LocalPostgres(max_connections=10, want_stat_statements=False).start()
    try:
        assert server.has_stat_statements is False
        port, basedir = server.port, server.datadir.parent
        pid = int((server.datadir / "postmaster.pid").read_text().split()[0])
        with server.connect() as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert basedir.is_dir() and _alive(pid)
    finally:
        server.stop()
    assert not basedir.exists()
    assert not _alive(pid)
    assert _port_refuses(port)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(server.conninfo(), connect_timeout=2)
    server.stop()  # idempotent


def test_start_failure_is_readable_and_cleans_up(world_readable_dir: Path) -> None:
    script = "#!/bin/sh\necho 'initdb: stub refuses' >&2\nexit 1\n"
    bindir = _stub_bindir(world_readable_dir, script)
    before = set(Path(tempfile.gettempdir()).glob("rmsops-pg-*"))
    server = LocalPostgres(bindir=bindir)
    with pytest.raises(LocalPostgresError, match="stub refuses") as excinfo:
        server.start()
    assert "\n" not in str(excinfo.value)
    assert set(Path(tempfile.gettempdir()).glob("rmsops-pg-*")) == before
    server.stop()  # still a no-op after a failed start


# ------------------------------------------------------------------ find_bindir


def test_find_bindir_default_has_binaries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RMSOPS_PG_BINDIR", raising=False)
    bindir = find_bindir()
    for name in ("initdb", "pg_ctl", "postgres"):
        assert os.access(bindir / name, os.X_OK)


def test_find_bindir_honours_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("RMSOPS_PG_BINDIR", raising=False)
    real = find_bindir()
    alt = tmp_path / "alt-bin"
    alt.mkdir()
    for name in ("initdb", "pg_ctl", "postgres"):
        (alt / name).symlink_to(real / name)
    monkeypatch.setenv("RMSOPS_PG_BINDIR", str(alt))
    assert find_bindir() == alt


def test_find_bindir_env_empty_dir_errors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RMSOPS_PG_BINDIR", str(tmp_path))
    with pytest.raises(LocalPostgresError, match="RMSOPS_PG_BINDIR") as excinfo:
        find_bindir()
    assert "initdb" in str(excinfo.value)
