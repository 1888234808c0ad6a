"""Secrets: a whole real triage bundle, its zip and the terminal output, searched byte by byte.

The triage runs against the served incident demo with an AWS secret access key, a PGPASSWORD and
the database password fetched from Secrets Manager (the demo's ``database.password_secret``) all
in play. None of them, nor their base64 form, may appear in any file of the bundle, in the zip, in
the audit records or in what the command printed.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import zipfile
from pathlib import Path

import boto3
import pytest
import yaml

from rmsops import cli

AWS_SECRET = "rmsopsTESTsecretKEY/9f8e7d6c5b4a39281706+zz"
PGPASSWORD = "pg-env-password-51d0c3a7e2"


def with_real_keys(demo_env_file: Path, folder: Path, aws_secret: str,
                   pgpassword: str) -> tuple[Path, pytest.MonkeyPatch]:
    """The demo's environment signed with a real-looking key from the environment (its loopback-only
    dummy credentials switched off), with a PGPASSWORD in play; undo the monkeypatch when done."""
    settings = yaml.safe_load(Path(demo_env_file).read_text())
    settings["aws"]["local_test_credentials"] = False
    env_file = folder / "demo-with-keys.yaml"
    env_file.write_text(yaml.safe_dump(settings))
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", aws_secret)
    monkeypatch.setenv("PGPASSWORD", pgpassword)
    return env_file, monkeypatch


@pytest.fixture(scope="module")
def triaged(demo_incident, tmp_path_factory):
    """A full triage with real credentials in use (moto takes any key; the demo's loopback-only
    dummy credentials are switched off so the key in the environment is the one signed with)."""
    folder = tmp_path_factory.mktemp("secrets")
    env_file, monkeypatch = with_real_keys(demo_incident.env_file, folder, AWS_SECRET, PGPASSWORD)
    settings = yaml.safe_load(env_file.read_text())
    out = folder / "bundle"
    try:
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = cli.main(["triage", "-e", str(env_file), "-o", str(out)])
        secretsmanager = boto3.client("secretsmanager", endpoint_url=settings["aws"]["endpoint_url"],
                                      region_name=settings["aws"]["region"])
        db_password = secretsmanager.get_secret_value(
            SecretId=settings["database"]["password_secret"])["SecretString"]
    finally:
        monkeypatch.undo()
    return out, code, stdout.getvalue() + stderr.getvalue(), db_password


def _needles(db_secret: str) -> dict[str, bytes]:
    try:  # the secret may be JSON ({"password": ...}) or the bare password
        password = json.loads(db_secret)["password"]
    except (ValueError, KeyError, TypeError):
        password = db_secret
    found = {"aws secret key": AWS_SECRET, "PGPASSWORD": PGPASSWORD, "database password": password}
    needles = {}
    for name, value in found.items():
        needles[name] = value.encode()
        needles[f"{name} (base64)"] = base64.b64encode(value.encode())
    return needles


def test_the_triage_really_ran_with_the_secrets_in_use(triaged):
    out, code, printed, db_secret = triaged
    assert code == 1, printed  # the incident's findings: every runbook ran
    assert (out / "02-database-connections" / "02-database-connections.html").exists()
    assert len(db_secret) >= 8


def test_no_secret_appears_in_any_file_of_the_bundle_or_its_zip_or_the_output(triaged):
    out, _, printed, db_secret = triaged
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) > 50
    searched = {str(p.relative_to(out)): p.read_bytes() for p in files}
    with zipfile.ZipFile(out.with_name(out.name + ".zip")) as archive:
        searched |= {f"zip:{name}": archive.read(name) for name in archive.namelist()}
    searched["terminal output"] = printed.encode()
    audits = [name for name in searched if name.endswith("audit.jsonl")]
    assert audits, "the dry-run actions' audit records are part of the search"
    leaks = [(what, where) for what, needle in _needles(db_secret).items()
             for where, data in searched.items() if needle in data]
    assert leaks == []


def test_passwords_written_in_quoted_text_are_masked_and_nothing_else():
    from rmsops.core import secrets

    assert secrets.redact("CREATE ROLE app LOGIN PASSWORD 'it''s-secret' CONNECTION LIMIT 5") == \
        "CREATE ROLE app LOGIN PASSWORD '********' CONNECTION LIMIT 5"
    assert secrets.redact("host=db password=hunter2 dbname=rms") == "host=db password=******** dbname=rms"
    assert secrets.redact("postgresql://app:hunter2@db/rms") == "postgresql://app:********@db/rms"
    said = 'FATAL:  password authentication failed for user "rmsops_monitor"'
    assert secrets.redact(said) == said  # the reason stays readable


def test_a_redacting_stream_masks_a_secret_written_in_pieces_and_holds_nothing_back():
    from rmsops.core import secrets

    secrets.register("pieces-of-a-secret")
    out = io.StringIO()
    stream = secrets.RedactingWriter(out)
    print("first line, harmless", file=stream)
    for piece in ("token: pieces-", "of-a-", "secret; dsn host=db password=", "hunter2\nlast, unended"):
        stream.write(piece)
    assert out.getvalue() == "first line, harmless\ntoken: ********; dsn host=db password=********\n"
    stream.flush()  # what is held is written at the flush (the runner flushes as it ends)
    assert out.getvalue().endswith("\nlast, unended")


@pytest.mark.parametrize("source", ["pgpass", "service file"])
def test_a_password_libpq_found_itself_is_masked(source, monitor_env, pg_server, pg_admin, tmp_path, monkeypatch):
    """PGPASSWORD unset, the password only in a .pgpass file (PGPASSFILE) or a service file
    (PGSERVICEFILE): rmsops never fetched it, libpq did. A session of the application runs a
    statement carrying it; db.queries.long_running quotes the statement in its finding and table."""
    import threading

    from rmsops.core import secrets
    from rmsops.render import report
    from tests.pg import poll

    monkeypatch.setattr(secrets, "_known", set())  # nothing registered by earlier tests
    password = pg_server.monitor_password
    ssl_password = "sslkey-" + base64.b32encode(os.urandom(10)).decode()
    if source == "pgpass":
        pgpass = tmp_path / "pgpass"
        pgpass.write_text(f"{pg_server.host}:{pg_server.port}:*:{pg_server.monitor_user}:{password}\n")
        pgpass.chmod(0o600)
        monkeypatch.setenv("PGPASSFILE", str(pgpass))
    else:  # the rest of the connection comes from the environment file; libpq adds the service's
        service = tmp_path / "pg_service.conf"
        service.write_text(f"[rms-monitor]\npassword={password}\nsslpassword={ssl_password}\n")
        service.chmod(0o600)
        monkeypatch.setenv("PGSERVICEFILE", str(service))
        monkeypatch.setenv("PGSERVICE", "rms-monitor")
    ctx = monitor_env(password=None, thresholds={"long_query_warning_seconds": 0.2})
    assert "PGPASSWORD" not in os.environ

    statement = f"SELECT pg_sleep(30) /* leaked: {password} */"
    app = pg_server.connect_app(autocommit=True)
    app_pid = app.info.backend_pid
    worker = threading.Thread(target=lambda: _run_quietly(app, statement), daemon=True)
    worker.start()
    try:
        poll(lambda: pg_admin.value("SELECT max(EXTRACT(EPOCH FROM now() - query_start))::float FROM "
                                    "pg_stat_activity WHERE pid = %s AND state = 'active'", (app_pid,)),
             lambda seconds: seconds is not None and seconds > 0.5, what="the statement running")
        result = ctx.run("db.queries.long_running")
    finally:
        pg_admin.value("SELECT pg_cancel_backend(%s)", (app_pid,))
        worker.join(10)
        app.close()
    assert ctx.db.connection().info.password == password  # libpq's password, not one rmsops passed

    csv = report.write_csv(result.data, tmp_path / "tables" / "db.queries.long_running.csv").read_text()
    shown = {
        "findings html": report.findings_html(result.findings, "t"),
        "findings text": report.findings_text(result.findings) + " ".join(
            report.clean(f.detail, 600) for f in result.findings),
        "findings json": json.dumps([f.to_dict() for f in result.findings], default=str),
        "table html": report.table_html(result.data),
        "csv": csv,
        "redact": secrets.redact(statement),
    }
    assert [where for where, text in shown.items() if password in text] == []
    quoted = [f for f in result.findings if f"pid {app_pid}" in f.resource]
    assert quoted and f"leaked: {secrets.REDACTED}" in quoted[0].to_dict()["detail"]  # it was there
    if source == "service file":
        assert secrets.redact(f"key {ssl_password}") == f"key {secrets.REDACTED}"


def _run_quietly(conn, statement: str) -> None:
    with contextlib.suppress(Exception):  # cancelled at the end of the test
        conn.execute(statement)
