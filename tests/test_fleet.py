"""Fleet triage and check: several environments at once, one bundle each, one fleet index.

The members are copies of the served demos' environment files under other names (a real fleet's
environments are separate accounts or regions; the demo has one of each scenario)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from rmsops import cli
from rmsops.core import config
from rmsops.core.errors import UserError
from rmsops.core.findings import Finding, Severity
from rmsops.core.window import Window
from rmsops.execution import bundle, fleet

WINDOW = Window(datetime(2026, 11, 28, 19, tzinfo=UTC), datetime(2026, 11, 28, 20, tzinfo=UTC))


def _copy(env_file: Path, folder: Path, name: str) -> Path:
    raw = yaml.safe_load(env_file.read_text())
    raw["name"] = name
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _level(level: int, criticals: int = 1) -> list[Finding]:
    return ([Finding("escalation.level", Severity.CRITICAL if level == 0 else Severity.WARNING, "env",
                     f"Escalation level {level}", "", {"level": level})]
            + [Finding("app.alb.5xx", Severity.CRITICAL, "alb", "5xx")] * criticals)


def _result(label: str, findings: list[Finding] | None = None, error: str = "", code: int = 1):
    return fleet.MemberResult(fleet.Member(label, label=label), exit_code=code, error=error,
                              findings=findings or [], environment=label, status="complete")


# --- who is in the fleet ----------------------------------------------------------------------------

def test_a_fleet_file_lists_names_paths_and_regions_relative_to_itself(tmp_path, env_file):
    one = env_file()  # name: test
    (tmp_path / "fleet").mkdir()
    fleet_file = tmp_path / "fleet" / "fleet.yaml"
    fleet_file.write_text(yaml.safe_dump({"environments": [
        f"../{one.name}", {"env": f"../{one.name}", "regions": ["eu-west-1", "us-west-2"]}, "staging"]}))
    found = fleet.members([str(one)], str(fleet_file))
    assert [(Path(m.env).name if "/" in m.env else m.env, m.region, m.label) for m in found] == [
        (one.name, None, "test"), (one.name, None, "test-2"), (one.name, "eu-west-1", "test-eu-west-1"),
        (one.name, "us-west-2", "test-us-west-2"), ("staging", None, "staging")]
    assert found[0].args() == ["-e", str(one)] and found[2].args()[-2:] == ["--region", "eu-west-1"]


@pytest.mark.parametrize("content, expected", [
    ("[", "malformed YAML"),
    ("name: production", "expected a list of environments"),
    ("- {env: x, regions: us-east-1}", "entry 1: regions: expected a list"),
    ("- production\n- {region: x}", "entry 2: expected a name"),
    ("- {env: production, regions: [nowhere]}", "'nowhere' is not an AWS region"),
])
def test_a_bad_fleet_file_is_one_line(tmp_path, content, expected):
    path = tmp_path / "fleet.yaml"
    path.write_text(content)
    with pytest.raises(UserError, match=expected) as caught:
        fleet.members([], str(path))
    assert "\n" not in str(caught.value)


def test_jobs_are_shared_and_never_exceeded():
    assert fleet.shares(1, 4) == (1, 4)
    assert fleet.shares(2, 4) == (2, 2)
    assert fleet.shares(3, 4) == (3, 1)
    assert fleet.shares(6, 4) == (4, 1)  # two wait for a free slot
    for members in range(1, 9):
        for jobs in range(1, 9):
            at_once, each = fleet.shares(members, jobs)
            assert at_once * each <= max(jobs, 1) and at_once >= 1 and each >= 1


def test_a_region_override_travels_through_the_environment(env_file, monkeypatch):
    path = env_file()
    assert config.in_region(config.load(path), "eu-west-1").aws.region == "eu-west-1"
    monkeypatch.setenv(config.REGION_OVERRIDE, "ap-southeast-2")  # what --region sets for the kernels
    assert config.load(path).aws.region == "ap-southeast-2"
    monkeypatch.setenv(config.REGION_OVERRIDE, "mars-1")
    with pytest.raises(config.ConfigError, match="not an AWS region"):
        config.load(path)


# --- ranking and writing ----------------------------------------------------------------------------

def test_environments_rank_errors_first_then_by_escalation_level_then_criticals():
    results = [_result("calm", _level(1)), _result("db", _level(2)), _result("down", _level(0)),
               _result("broken", error="cannot read"), _result("vendor", _level(3)),
               _result("down-worse", _level(0, criticals=4))]
    assert [r.member.label for r in fleet.ranked(results)] == ["broken", "down-worse", "down", "vendor", "db", "calm"]
    assert fleet.exit_code([_result("a", code=1), _result("b", code=0)]) == 1
    assert fleet.exit_code([_result("a", code=1), fleet.MemberResult(fleet.Member("b", label="b"))]) == 3


def test_the_fleet_index_and_findings_escape_and_tag_everything():
    hostile = [Finding("app.alb.5xx", Severity.CRITICAL, "alb", "<script>alert(1)</script>", "")]
    results = [_result("<b>prod</b>", hostile), _result("broken", error="<img src=x onerror=alert(1)>", code=2)]
    page = fleet.index_html(results, WINDOW)
    assert "<script>" not in page and "<img" not in page and "&lt;script&gt;" in page
    document = fleet.findings_document(results, WINDOW)
    assert document["schema"] == fleet.FINDINGS_SCHEMA
    assert [f["environment"] for f in document["findings"]] == ["<b>prod</b>"]
    assert {e["member"]: e["status"] for e in document["environments"]} == {"<b>prod</b>": "complete",
                                                                          "broken": "error"}


# --- against the served demos -----------------------------------------------------------------------

def test_check_of_several_environments_ranks_them_and_keeps_going_past_a_broken_one(
        demo_incident, demo_healthy, tmp_path, capsys):
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: broken\naws: [\n")
    code = cli.main(["check", "-e", str(demo_healthy.env_file), "-e", str(demo_incident.env_file),
                     "-e", str(broken), "--json"])
    document = json.loads(capsys.readouterr().out)
    assert code == 2  # the worst of: 0 (healthy), 1 (incident), 2 (the broken file)
    rows = {row["member"]: row for row in document["environments"]}
    assert rows["broken"]["error"].startswith(f"{broken}: malformed YAML")
    tagged = {f["environment"] for f in document["findings"]}
    assert tagged == {yaml.safe_load(demo_incident.env_file.read_text())["name"]}  # both demos are named demo
    members = [row["member"] for row in document["environments"]]
    assert members[:2] == ["demo", "demo-2"] and len({f["member"] for f in document["findings"]}) == 2
    by_member = {m: [f for f in document["findings"] if f["member"] == m] for m in ("demo", "demo-2")}
    assert not [f for f in by_member["demo"] if f["severity"] in ("warning", "critical", "error")]
    assert any(f["check"] == "app.alb.5xx" and f["severity"] == "critical" for f in by_member["demo-2"])


def test_fleet_triage_writes_a_bundle_each_and_an_index_that_ranks_them(demo_incident, tmp_path):
    a = _copy(demo_incident.env_file, tmp_path, "prod-a")
    b = _copy(demo_incident.env_file, tmp_path, "prod-b")
    out = tmp_path / "fleet"
    code = cli.main(["triage", "-e", str(a), "-e", str(b), "-o", str(out), "--runbook", "01", "--runbook", "18",
                     "--jobs", "2"])
    assert code == 1
    for name in ("prod-a", "prod-b"):
        assert bundle.verify(out / name).files_ok and (out / f"{name}.zip").is_file()
    document = json.loads((out / "findings.json").read_text())
    assert {f["environment"] for f in document["findings"]} == {"prod-a", "prod-b"}
    levels = {row["environment"]: row["escalation_level"] for row in document["environments"]}
    assert levels == {"prod-a": 0, "prod-b": 0}
    page = (out / "index.html").read_text()
    assert 'href="prod-a/index.html"' in page and "Escalation level 0" in page


def test_sigterm_to_a_fleet_triage_keeps_every_bundle_and_writes_the_index(demo_incident, tmp_path):
    a = _copy(demo_incident.env_file, tmp_path, "prod-a")
    b = _copy(demo_incident.env_file, tmp_path, "prod-b")
    out = tmp_path / "fleet"
    process = subprocess.Popen([sys.executable, "-m", "rmsops.cli", "triage", "-e", str(a), "-e", str(b),
                                "-o", str(out), "--runbook", "16", "--runbook", "07"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 90
    while len(list(out.glob(".*.partial-*"))) < 2:  # both triages own their signals from here on
        assert time.monotonic() < deadline and process.poll() is None, process.stderr.read()
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 3, stderr
    for name in ("prod-a", "prod-b"):
        assert bundle.read_manifest(out / name)["status"] == "incomplete"
    assert "interrupted" in stderr and (out / "index.html").is_file() and "fleet index:" in stdout
