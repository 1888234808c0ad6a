"""`rmsops demo` as a newcomer runs it: end to end, and stopped with Ctrl-C or SIGTERM."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rmsops.core import runbooks
from rmsops.core.findings import read_document
from rmsops.execution import bundle, triage

EXPECTED_INCIDENT = {  # what each seeded fault must turn into
    "app.health.endpoint": "critical", "app.alb.target_health": "critical", "app.alb.5xx": "critical",
    "app.ecs.capacity": "warning", "app.ecs.unhealthy_tasks": "warning",
    "db.connections.saturation": "warning", "db.connections.by_state": "warning",
    "db.connections.trend": "warning",
}


def rmsops(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rmsops.cli", *args], capture_output=True, text=True,
                          timeout=300, **kw)


def worst(findings, check: str) -> str:
    order = ["critical", "error", "warning", "info", "ok"]
    return min((f.severity.value for f in findings if f.check == check), key=order.index)


def test_demo_incident_end_to_end(tmp_path):
    done = rmsops("demo", "-o", str(tmp_path / "report"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"report:   {tmp_path / 'report' / 'index.html'}" in done.stdout
    _, findings = read_document(tmp_path / "report" / "findings.json")
    assert {cid: worst(findings, cid) for cid in EXPECTED_INCIDENT} == EXPECTED_INCIDENT
    assert worst(findings, "db.rds.status") == "ok" and worst(findings, "db.connectivity") == "ok"
    for rb in [*triage.default_selection(), runbooks.find(triage.ESCALATION)]:
        assert (tmp_path / "report" / rb.stem / f"{rb.stem}.html").exists()
    assert bundle.verify(tmp_path / "report").ok and (tmp_path / "report.zip").exists()
    assert "everything it started is stopped" in done.stdout


def test_demo_healthy_has_no_warning(tmp_path):
    done = rmsops("demo", "--scenario", "healthy", "-o", str(tmp_path / "report"))
    assert done.returncode == 0, done.stderr[-3000:]
    _, findings = read_document(tmp_path / "report" / "findings.json")
    assert findings and {f.severity.value for f in findings} <= {"ok", "info"}


def test_unknown_scenario_is_exit_2():
    done = rmsops("demo", "--scenario", "meteor")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("rmsops: error: ")
    assert "healthy" in done.stderr and "Traceback" not in done.stderr


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_serve_stops_everything_on_a_signal(tmp_path, sig):
    env_file = tmp_path / "demo.yaml"
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "rmsops.cli", "demo", "--serve", "--env-file",
                                    str(env_file)], stdout=out, stderr=subprocess.STDOUT,
                                   # a shell that ran us in the background ignores SIGINT; the demo must not
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not env_file.exists():
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
    text = env_file.read_text()
    pg_port = int(re.search(r"port: (\d+)", text).group(1))
    moto_port = int(re.search(r"endpoint_url: http://127.0.0.1:(\d+)", text).group(1))
    assert _port_open(pg_port) and _port_open(moto_port)
    process.send_signal(sig)
    assert process.wait(timeout=60) == 0  # stopping is how serving ends: no undocumented exit code
    assert not env_file.exists(), "the environment file is only valid while the demo runs"
    assert not _port_open(pg_port) and not _port_open(moto_port)
    datadirs = [p for p in Path("/dev/shm").glob("rmsops-pg-*") if str(pg_port) in _safe_read(p)]
    assert not datadirs, "a temp cluster was left behind"


def _safe_read(folder: Path) -> str:
    try:
        return (folder / "data" / "postmaster.pid").read_text()
    except OSError:
        return ""
