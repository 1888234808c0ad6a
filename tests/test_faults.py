"""Faults during an incident: the run completes, other checks are unaffected, the failed ones become
`error` findings that say why, the exit code is the documented one and the bundle is written.

Injected here (the database faults that need a real server — refused, wrong password,
max_connections, statement timeout — are in test_checks_db.py; dead and hanging kernels and
Ctrl-C in test_triage.py):

* AWS throttling (``ThrottlingException``, EC2's ``RequestLimitExceeded``) and ``AccessDenied``:
  moto never answers so, so a botocore ``before-send`` handler answers in its place, on the real
  client, and the real retry configuration does the rest;
* an unreachable AWS endpoint; the database going away in the middle of a runbook;
* a disk that fills up, an output folder that cannot be written, SIGTERM during a triage.
"""

from __future__ import annotations

import errno
import json
import signal
import subprocess
import sys
import time

from botocore.awsrequest import AWSResponse

from rmsops import bundle, cli, triage
from rmsops.aws import AwsClients
from rmsops.context import Context
from rmsops.findings import Severity
from rmsops.window import resolve


class _Body:
    def __init__(self, data: bytes):
        self._data = data

    def stream(self, **_):
        yield self._data


def _answer(status: int, body: bytes, content_type: str = "application/x-amz-json-1.1"):
    return lambda request, **_: AWSResponse(request.url, status, {"Content-Type": content_type}, _Body(body))


def _json_error(code: str, message: str = "injected by the test") -> bytes:
    return json.dumps({"__type": code, "message": message}).encode()


def _inject(monkeypatch, service: str, answer, times: int | None = None) -> list[int]:
    """Make ``service``'s calls get ``answer`` (the first ``times`` calls, or all) before moto sees them."""
    sent: list[int] = []
    original = AwsClients.client

    def client(self, name: str):
        made = original(self, name)
        if name == service:
            def handler(request, **kw):
                sent.append(1)
                if times is None or len(sent) <= times:
                    return answer(request, **kw)
                return None
            made.meta.events.register("before-send", handler, unique_id=f"rmsops-test-fault-{service}")
        return made

    monkeypatch.setattr(AwsClients, "client", client)
    return sent


def _context(env_file) -> Context:
    return Context.open(str(env_file), runbook="01-application-not-responding")


def test_throttling_is_retried_with_backoff_and_the_check_succeeds(demo_incident, monkeypatch):
    sent = _inject(monkeypatch, "ecs", _answer(400, _json_error("ThrottlingException", "Rate exceeded")), times=2)
    ctx = _context(demo_incident.env_file)
    result = ctx.run("app.ecs.capacity")
    assert len(sent) >= 3  # two throttled attempts, then the real answer
    assert Severity.ERROR not in {f.severity for f in result.findings}


def test_throttling_that_never_ends_is_an_error_in_bounded_time(demo_incident, monkeypatch):
    _inject(monkeypatch, "ecs", _answer(400, _json_error("ThrottlingException", "Rate exceeded")))
    ctx = _context(demo_incident.env_file)
    began = time.monotonic()
    [finding] = ctx.run("app.ecs.capacity").findings
    assert time.monotonic() - began < 30
    assert finding.severity == Severity.ERROR
    assert "throttled ecs:DescribeServices" in finding.detail and "retries ran out" in finding.detail


def test_ec2_request_limit_exceeded_is_retried_too(demo_incident, monkeypatch):
    body = (b"<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded."
            b"</Message></Error></Errors><RequestID>x</RequestID></Response>")
    sent = _inject(monkeypatch, "ec2", _answer(503, body, "text/xml"), times=1)
    ctx = Context.open(str(demo_incident.env_file), runbook="09-environment-drift")
    result = ctx.run("drift.network.security_groups")
    assert len(sent) >= 2
    assert Severity.ERROR not in {f.severity for f in result.findings}


def test_access_denied_on_one_service_names_the_permission_and_spares_the_rest(demo_incident, monkeypatch):
    _inject(monkeypatch, "ecs", _answer(400, _json_error("AccessDeniedException", "not authorized")))
    ctx = _context(demo_incident.env_file)
    results = {check: ctx.run(check) for check in ("app.ecs.capacity", "app.alb.target_health", "app.alb.5xx")}
    [denied] = results["app.ecs.capacity"].findings
    assert denied.severity == Severity.ERROR
    assert "grant ecs:DescribeServices" in denied.detail
    for check in ("app.alb.target_health", "app.alb.5xx"):  # elbv2 and cloudwatch still answer
        assert Severity.ERROR not in {f.severity for f in results[check].findings}


def test_an_unreachable_aws_endpoint_is_exit_3_in_bounded_time(env_file, capsys):
    dead = env_file(aws={"region": "us-east-1", "endpoint_url": "http://127.0.0.1:9", "local_test_credentials": True})
    began = time.monotonic()
    code = cli.main(["check", "01", "-e", str(dead)])
    out, err = capsys.readouterr()
    assert time.monotonic() - began < 60
    assert code == 3, out + err
    assert "Traceback" not in out + err
    assert "ERROR" in out and "127.0.0.1:9" in out


def test_the_database_going_away_mid_runbook_errors_the_rest_only(monitor_env, pg_admin):
    ctx = monitor_env()
    assert ctx.run("db.connectivity").findings[0].severity == Severity.OK
    pg_admin.conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'rmsops'")
    after = ctx.run("db.connections.saturation").findings  # the session it had is gone
    again = ctx.run("db.connections.by_state").findings
    for findings in (after, again):
        assert findings and all(f.severity in set(Severity) for f in findings)
    assert any(f.severity != Severity.ERROR for f in again), "a new session is opened for the next check"


def test_a_full_disk_leaves_no_bundle_presented_as_complete(demo_incident, tmp_path, monkeypatch, capsys):
    def full(*_, **__):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(bundle, "write_manifest", full)
    out = tmp_path / "inc"
    code = cli.main(["triage", "-e", str(demo_incident.env_file), "-o", str(out), "--runbook", "01"])
    _, err = capsys.readouterr()
    assert code == 3
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1].startswith("rmsops: error: ") and "No space left on device" in lines[-1], err
    assert "Traceback" not in err
    assert not out.exists(), "an unfinished bundle is never moved into place"


def test_an_output_folder_that_cannot_be_written_is_one_clear_line(demo_incident, capsys):
    code = cli.main(["triage", "-e", str(demo_incident.env_file), "-o", "/proc/rmsops-cannot-write/inc"])
    _, err = capsys.readouterr()
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "cannot write" in lines[0] and "choose another -o" in lines[0], err


def test_sigterm_during_a_triage_stops_cleanly_with_an_incomplete_bundle(demo_incident, tmp_path):
    out = tmp_path / "terminated"
    process = subprocess.Popen([sys.executable, "-m", "rmsops.cli", "triage", "-e", str(demo_incident.env_file),
                                "-o", str(out), "--runbook", "01", "--runbook", "02", "--jobs", "1"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".terminated.partial-*/*/findings.json")) and time.monotonic() < deadline:
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 3, stderr
    assert json.loads((out / "manifest.json").read_text())["status"] == "incomplete"
    assert bundle.verify(out).ok
    assert "Traceback" not in stderr


def test_a_triage_of_an_unreachable_environment_still_writes_every_report(env_file, tmp_path):
    dead = env_file(aws={"region": "us-east-1", "endpoint_url": "http://127.0.0.1:9", "local_test_credentials": True},
                    database={"port": 9})
    result = triage.run(Context.open(str(dead)).settings, resolve("1h"), tmp_path / "b",
                        [triage.runbooks.find("01"), triage.runbooks.find("02")])
    assert result.exit_code == 3 or any(f.severity == Severity.ERROR for f in result.findings)
    for stem in ("01-application-not-responding", "02-database-connections"):
        assert (tmp_path / "b" / stem / f"{stem}.html").exists()
    assert bundle.verify(tmp_path / "b").ok
