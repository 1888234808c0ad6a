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
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from botocore.awsrequest import AWSResponse

from rmsops import cli
from rmsops.core import runbooks
from rmsops.core.aws import AwsClients
from rmsops.core.context import Context
from rmsops.core.findings import Severity
from rmsops.core.window import resolve
from rmsops.execution import bundle, triage
from tests.throttled_aws import ThrottlingServer


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

    def client(self, name: str, region: str | None = None):
        made = original(self, name, region)
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


def _kernels_and_temp_folders_left(tmp: Path) -> list[str]:
    """Processes whose command line names the run's private TMPDIR (the zygote and its kernels)."""
    left = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(tmp) in text and cmdline.parent.name != str(os.getpid()):
            left.append(f"pid {cmdline.parent.name}: {text[:120]}")
    return left + [f"temp {p.name}" for p in tmp.iterdir()]


@pytest.mark.parametrize(("moment", "signum"), [("before the first runbook starts", signal.SIGTERM),
                                                 ("after the first runbook finished", signal.SIGINT)])
def test_a_signal_at_any_moment_leaves_an_incomplete_bundle_that_keeps_finished_work(
        demo_incident, tmp_path, moment, signum):
    out, tmp = tmp_path / "stopped", tmp_path / "tmp"
    tmp.mkdir()
    process = subprocess.Popen([sys.executable, "-m", "rmsops.cli", "triage", "-e", str(demo_incident.env_file),
                                "-o", str(out), "--runbook", "01", "--runbook", "02", "--jobs", "1"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "TMPDIR": str(tmp)})
    ready = ".stopped.partial-*" if moment.startswith("before") else ".stopped.partial-*/*/findings.json"
    deadline = time.monotonic() + 90
    while not list(tmp_path.glob(ready)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(tmp_path.glob(ready)), f"the triage never reached the moment: {moment}"
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=90)
    assert process.returncode == 3, stderr
    assert "Traceback" not in stderr and signum.name in stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "incomplete" and signum.name in manifest["stopped"]
    merged = json.loads((out / "findings.json").read_text())["findings"]
    states = {stem: info["status"] for stem, info in manifest["runbooks"].items()}
    finished = [stem for stem, state in states.items() if state == "done"]
    for stem in finished:  # every finished runbook's findings are in the merged findings, as they were
        own = json.loads((out / stem / "findings.json").read_text())["findings"]
        assert own and [f for f in merged if f["runbook"] == stem] == own
        assert f"{stem}/{stem}.html" in (out / "index.html").read_text()
    if moment.startswith("after"):
        assert finished, states  # the first one at least (under load the second may finish before the signal)
    else:
        assert set(states.values()) == {"not run"}
    for stem, state in states.items():  # the unfinished say so, check by check; what ran before the signal is kept
        if state != "done":
            own = [f for f in merged if f["runbook"] == stem]
            stopped = [f for f in own if f["severity"] == "error"]
            assert stopped and all("interrupted" in f["detail"] for f in stopped), own
            assert {f["check"] for f in own} == {entry.id for entry in runbooks.runs(runbooks.find(stem))}
    assert bundle.verify(out).ok and f"manifest sha256: {bundle.manifest_digest(out)}" in stdout
    assert not list(tmp_path.glob(".stopped.partial-*")), "no staging folder left behind"
    time.sleep(0.5)  # the zygote's children are killed as it stops; give the kernel a moment to go
    assert _kernels_and_temp_folders_left(tmp) == []


def test_a_triage_whose_time_budget_runs_out_keeps_what_finished(demo_incident, tmp_path, capsys):
    out = tmp_path / "budget"
    # 16 waits 2.4 s for the incident's payment gateway: a 2-second budget runs out however fast the rest
    code = cli.main(["triage", "-e", str(demo_incident.env_file), "-o", str(out), "--runbook", "01",
                     "--runbook", "16", "--runbook", "18", "--budget", "2"])
    _, err = capsys.readouterr()
    assert code == 3, err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "incomplete" and "time budget ran out (2 s)" in manifest["stopped"]
    findings = json.loads((out / "findings.json").read_text())["findings"]
    assert {f["runbook"] for f in findings} == {"01-application-not-responding", "16-external-dependencies",
                                                "18-escalation"}
    assert all("time budget" in f["detail"] for f in findings if f["severity"] == "error")
    # Escalation did not run as a runbook, but its level is still judged on what there is: a lower bound.
    [level] = [f for f in findings if f["check"] == "escalation.level"]
    assert level["severity"] != "error" and "stopped triage" in level["detail"]
    assert level["evidence"]["missing_inputs"], "it names what it could not see"
    assert level["evidence"]["level"] == 0 or (level["evidence"]["lower_bound"] and "(at least" in level["title"])
    assert bundle.verify(out).ok


def test_a_triage_of_an_unreachable_environment_still_writes_every_report(env_file, tmp_path):
    dead = env_file(aws={"region": "us-east-1", "endpoint_url": "http://127.0.0.1:9", "local_test_credentials": True},
                    database={"port": 9})
    result = triage.run(Context.open(str(dead)).settings, resolve("1h"), tmp_path / "b",
                        [triage.runbooks.find("01"), triage.runbooks.find("02")])
    assert result.exit_code == 3 or any(f.severity == Severity.ERROR for f in result.findings)
    for stem in ("01-application-not-responding", "02-database-connections"):
        assert (tmp_path / "b" / stem / f"{stem}.html").exists()
    assert bundle.verify(tmp_path / "b").ok


# --- AWS throttling every call: tests/throttled_aws.py answers in each service's own protocol -----

@pytest.fixture
def throttled_env(demo_incident, tmp_path):
    """The demo environment with its AWS endpoint replaced by one that throttles every call (the
    database stays reachable, so the database checks that need no AWS keep working)."""
    with ThrottlingServer() as server:
        settings = yaml.safe_load(Path(demo_incident.env_file).read_text())
        settings["aws"]["endpoint_url"] = server.url
        path = tmp_path / "throttled.yaml"
        path.write_text(yaml.safe_dump(settings))
        yield path, server


def test_every_aws_call_throttled_check_ends_in_its_budget_with_errors_that_say_so(throttled_env, capsys):
    env_file, server = throttled_env
    began = time.monotonic()
    code = cli.main(["check", "-e", str(env_file), "--json"])
    seconds = time.monotonic() - began
    out, err = capsys.readouterr()
    findings = json.loads(out)["findings"]
    errors = [f for f in findings if f["severity"] == "error"]
    assert code == 3 and "Traceback" not in err
    assert seconds < 60, f"{seconds:.0f} s: retries are capped per call and per run"  # was 439-491 s
    assert len(errors) >= 30 and any(f["severity"] != "error" for f in findings), "AWS-free checks still ran"
    throttled = [f for f in errors if "AWS throttled" in f["detail"]]
    assert len(throttled) >= 20
    for f in throttled:  # which API, and why it gave up
        assert re.search(r"AWS throttled [a-z0-9-]+:[A-Z]\w+ \(\w+\); ", f["detail"]), f["detail"]
        assert re.search(r"retries ran out|retry budget|not retried|time budget", f["detail"]), f["detail"]
    # Shared failed fetches and saturated services: far fewer calls than checks times attempts.
    assert sum(server.calls.values()) < 120, server.calls


def test_every_aws_call_throttled_triage_writes_its_bundle_with_errors(throttled_env, tmp_path):
    env_file, server = throttled_env
    out = tmp_path / "throttled"
    done = subprocess.run([sys.executable, "-m", "rmsops.cli", "triage", "-e", str(env_file), "-o", str(out),
                           "--runbook", "01", "--runbook", "03", "--runbook", "08"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert {info["status"] for info in manifest["runbooks"].values()} == {"done"}, manifest["runbooks"]
    findings = json.loads((out / "findings.json").read_text())["findings"]
    assert any("AWS throttled ecs:DescribeServices" in f["detail"] for f in findings if f["severity"] == "error")
    assert server.calls["ecs.DescribeServices"] >= 1


def test_a_failed_fetch_is_shared_by_the_checks_of_a_run(demo_incident, monkeypatch):
    sent = _inject(monkeypatch, "ecs", _answer(400, _json_error("AccessDeniedException", "not authorized")))
    ctx = _context(demo_incident.env_file)
    first = ctx.run("app.ecs.capacity").findings
    asked = len(sent)
    again = ctx.run("deploy.ecs.rollout").findings
    assert len(sent) == asked, "the second check reused the failed describe_services"
    assert all(f.severity == Severity.ERROR and "grant ecs:DescribeServices" in f.detail for f in first + again)


def test_an_http_500_with_a_body_that_is_not_xml_says_http_500(demo_incident, monkeypatch):
    _inject(monkeypatch, "elbv2", _answer(500, b"upstream connect error or disconnect/reset before headers",
                                          "text/plain"))
    ctx = _context(demo_incident.env_file)
    [finding] = ctx.run("app.alb.target_health").findings
    assert finding.severity == Severity.ERROR
    assert "HTTP 500" in finding.detail and "AWS elasticloadbalancing:Describe" in finding.detail
    assert "parse" not in finding.detail.lower()


def test_run_into_an_unwritable_folder_is_one_line_and_exit_2(demo_incident, capsys):
    code = cli.main(["run", "01", "-e", str(demo_incident.env_file), "-o", "/proc/rmsops-cannot-write/run"])
    _, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "cannot write" in lines[0], err


def test_an_unexpected_exception_is_exit_3_in_one_line(demo_incident, monkeypatch, capsys):
    def broken(*_, **__):
        raise RuntimeError("a bug in rmsops")

    monkeypatch.setattr(cli, "print_findings", broken)
    code = cli.main(["check", "01", "-e", str(demo_incident.env_file)])
    _, err = capsys.readouterr()
    assert code == 3 and "Traceback" not in err
    assert err.strip().splitlines() == ["rmsops: error: could not run: RuntimeError: a bug in rmsops (an unexpected "
                                        "error; please report it with the command you ran)"]
    assert "RMSOPS_DEADLINE" not in os.environ, "a run's deadline ends with it"
