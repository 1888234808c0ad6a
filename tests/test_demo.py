"""The embedded demo environment, checked through rmsops' real code path.

Each scenario is started once, every registered check runs against it through
``Context.open(env_file)`` (plain boto3 and psycopg, as in production), the demo
is stopped, and the tests then look at what was recorded.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import pytest

from rmsops.core import config, registry
from rmsops.core.context import Context
from rmsops.core.errors import UserError
from rmsops.core.findings import Severity
from rmsops.core.registry import CheckResult
from rmsops.demo import SCENARIOS, DemoEnvironment, scenarios
from rmsops.demo import environment as demo_environment

PROBLEM = {Severity.WARNING, Severity.CRITICAL}
BAD = PROBLEM | {Severity.ERROR}


def _alive(pid: int) -> bool:
    """True if *pid* is a live (non-zombie) process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return False
    return fields[0] != "Z"


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Run:
    """What one scenario showed while it ran, and what it left behind after stop()."""

    demo: DemoEnvironment
    settings: config.Settings
    results: dict[str, CheckResult]
    progress: list[str]
    postgres_pid: int
    paths: list[Path] = field(default_factory=list)  # env file, its temp dir, the PG base dir
    ports: list[int] = field(default_factory=list)  # moto, health server, PostgreSQL

    def severities(self, check_id: str, resource_part: str = "") -> set[Severity]:
        return {f.severity for f in self.results[check_id].findings if resource_part in f.resource}


def _run(scenario: str) -> Run:
    progress: list[str] = []
    demo = DemoEnvironment(progress=progress.append).start(scenario)
    try:
        assert demo.env_file is not None and demo.postgres is not None
        settings = config.load(demo.env_file)
        pid = int((demo.postgres.datadir / "postmaster.pid").read_text().split()[0])
        paths = [demo.env_file, demo.env_file.parent, demo.postgres.datadir.parent]
        ports = [urlparse(demo.endpoint_url).port, urlparse(settings.health_urls["api"]).port,
                 demo.postgres.port]
        ctx = Context.open(demo.env_file)
        try:
            registry.load_all()
            results = {cid: ctx.run(cid) for cid in sorted(registry.REGISTRY)}
        finally:
            ctx.close()
    finally:
        demo.stop()
    return Run(demo, settings, results, progress, pid, paths, ports)


@pytest.fixture(scope="module")
def runs() -> Iterator[dict[str, Run]]:
    """Both scenarios, one after the other (moto's state is per process: one demo at a time)."""
    yield {name: _run(name) for name in ("incident", "healthy")}


def _explain(run: Run, check_id: str) -> str:
    return "; ".join(f"{f.severity.value} {f.resource}: {f.title} ({f.detail})"
                     for f in run.results[check_id].findings)


# --- the incident --------------------------------------------------------------------------------

@pytest.mark.parametrize(("check_id", "resource"), [
    ("app.health.endpoint", "/api/health"),
    ("app.ecs.capacity", "rms-backend"),
    ("app.ecs.unhealthy_tasks", "rms-backend"),
    ("app.alb.target_health", "rms-backend"),
    ("app.alb.5xx", "rms-alb"),
    ("db.connections.saturation", ""),
    ("db.connections.by_state", ""),
    ("db.connections.trend", ""),
])
def test_incident_is_flagged(runs: dict[str, Run], check_id: str, resource: str) -> None:
    run = runs["incident"]
    assert run.severities(check_id, resource) & PROBLEM, _explain(run, check_id)
    assert Severity.ERROR not in run.severities(check_id), _explain(run, check_id)


@pytest.mark.parametrize("check_id", ["db.rds.status", "db.connectivity"])
def test_incident_database_is_reachable(runs: dict[str, Run], check_id: str) -> None:
    run = runs["incident"]
    assert run.severities(check_id) == {Severity.OK}, _explain(run, check_id)


def test_incident_frontend_is_fine(runs: dict[str, Run]) -> None:
    run = runs["incident"]
    for check_id in ("app.ecs.capacity", "app.ecs.unhealthy_tasks", "app.alb.target_health"):
        assert run.severities(check_id, "rms-frontend") == {Severity.OK}, _explain(run, check_id)
    frontend = run.settings.health_urls["frontend"]
    assert {f.severity for f in run.results["app.health.endpoint"].findings
            if f.resource == frontend} == {Severity.OK}


def test_incident_numbers(runs: dict[str, Run]) -> None:
    run = runs["incident"]
    saturation = run.results["db.connections.saturation"].findings[0].evidence
    assert saturation["max_connections"] == 30 and saturation["reserved"] == 3
    assert saturation["used"] == 23 + 1  # the held application connections and rmsops itself
    by_state = run.results["db.connections.by_state"].findings[0].evidence
    assert by_state["idle_in_transaction"] == 8
    assert {s["application_name"] for s in by_state["sessions"]} == {"rms-backend"}
    assert {s["user"] for s in by_state["sessions"]} == {"rms_app"}
    targets = run.results["app.alb.target_health"].data
    backend = targets[targets["group"] == "rms-backend"]
    assert set(backend["state"]) == {"unhealthy"}
    assert set(backend["reason"]) == {"Target.ResponseCodeMismatch", "Target.Timeout"}
    assert all(t.startswith("10.0.10.") for t in targets["target"])  # task IPs in the task subnet


def test_incident_env_file(runs: dict[str, Run]) -> None:
    run = runs["incident"]
    s = run.settings
    assert s.name == "demo" and not s.protected
    assert s.aws.local_test_credentials and s.aws.endpoint_url == run.demo.endpoint_url
    assert s.cluster == "rms-production" and s.services == ("rms-backend", "rms-frontend")
    assert s.alb_name == "rms-alb" and s.target_groups == ("rms-backend", "rms-frontend")
    db = s.database
    assert (db.instance, db.host, db.dbname, db.user, db.sslmode) == (
        "rms-production-db", "127.0.0.1", "rms", "rmsops_monitor", "disable")
    assert db.password_secret == "rms/demo/rmsops-monitor"
    assert s.cloudfront_comment == "RMS Frontend"
    assert set(s.log_groups) == {"backend", "frontend", "rds", "waf", "waf_cloudfront"}
    assert set(s.health_urls) == {"api", "frontend"}


def test_progress_lines(runs: dict[str, Run]) -> None:
    lines = runs["incident"].progress
    assert any("PostgreSQL" in line for line in lines)
    assert any("moto" in line for line in lines)
    assert lines[-1].startswith("demo environment ready")
    assert {"moto", "aws", "postgres", "database", "total", "stop"} <= set(runs["incident"].demo.timings)


# --- the healthy scenario ------------------------------------------------------------------------

def test_healthy_has_no_problem(runs: dict[str, Run]) -> None:
    run = runs["healthy"]
    assert set(run.results) >= set(runs["incident"].results)
    bad = [f"{cid}: {_explain(run, cid)}" for cid, result in run.results.items()
           if {f.severity for f in result.findings} & BAD]
    assert not bad, "\n".join(bad)


# --- lifecycle -----------------------------------------------------------------------------------

@pytest.mark.parametrize("scenario", ["incident", "healthy"])
def test_stop_leaves_nothing_behind(runs: dict[str, Run], scenario: str) -> None:
    run = runs[scenario]
    assert not _alive(run.postgres_pid)
    for path in run.paths:
        assert not path.exists(), path
    for port in run.ports:
        assert not _listening(port), port
    assert not run.demo.running
    run.demo.stop()  # idempotent


def test_unknown_scenario_is_a_user_error() -> None:
    with pytest.raises(UserError, match="incident") as info:
        DemoEnvironment().start("outage")
    assert "healthy" in str(info.value)
    with pytest.raises(UserError):
        scenarios.get("")
    assert {"incident", "healthy"} <= set(SCENARIOS)


def test_one_demo_per_process() -> None:
    first, second = DemoEnvironment(), DemoEnvironment()
    first._claim()
    try:
        with pytest.raises(UserError, match="already running"):
            second._claim()
    finally:
        first._release()
    second._claim()
    second._release()


def test_interrupted_start_cleans_up(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Ctrl-C while AWS is being seeded: start() undoes everything, then re-raises."""
    from rmsops.demo import seed_aws

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(seed_aws, "seed", interrupted)
    demo = DemoEnvironment()
    env_file = tmp_path / "demo.yaml"
    with pytest.raises(KeyboardInterrupt):
        demo.start("incident", env_file=env_file)
    assert demo.postgres is not None
    assert not demo.postgres.datadir.parent.exists()
    assert not env_file.exists()
    assert not _listening(urlparse(demo.endpoint_url).port)
    assert not demo.running
    assert demo_environment._active is None


def test_missing_postgres_is_a_user_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Said before anything starts, not after seeding AWS."""
    monkeypatch.setenv("RMSOPS_PG_BINDIR", str(tmp_path))
    demo = DemoEnvironment()
    with pytest.raises(UserError, match="initdb"):
        demo.start("healthy")
    assert not demo.running and demo.endpoint_url == ""
    assert demo_environment._active is None


def test_metric_data_is_sparse_like_an_alb() -> None:
    """HTTPCode counts only for minutes with errors; DatabaseConnections every minute."""
    from datetime import UTC, datetime, timedelta

    from rmsops.demo import seed_aws

    scenario = SCENARIOS["healthy"]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    scenario_minutes = len(scenario.elb_502)
    minutes = [(start + timedelta(minutes=i), i) for i in range(scenario_minutes)]
    data = seed_aws.metric_data(scenario, "app/rms-alb/0123456789abcdef", minutes)
    by_metric: dict[str, list[dict]] = {}
    for items in data.values():
        for item in items:
            by_metric.setdefault(item["MetricName"], []).append(item)
    assert len(by_metric["HTTPCode_ELB_502_Count"]) == sum(1 for v in scenario.elb_502 if v) < scenario_minutes
    assert "HTTPCode_ELB_503_Count" not in by_metric
    assert len(by_metric["DatabaseConnections"]) == scenario_minutes
    assert all(i["Dimensions"] == [{"Name": "DBInstanceIdentifier", "Value": "rms-production-db"}]
               for i in by_metric["DatabaseConnections"])
