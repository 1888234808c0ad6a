"""Runbooks end to end against the served demo: the CLI, the reports, papermill, failures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from rmsops import cli
from rmsops.core import runbooks
from rmsops.core.config import load
from rmsops.core.findings import Severity, read_document
from rmsops.core.window import resolve
from rmsops.execution.runner import collect_findings, run_runbook

ROOT = Path(__file__).resolve().parent.parent


def severities(findings) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for f in findings:
        out.setdefault(f.check, set()).add(f.severity.value)
    return out


def test_run_writes_notebook_html_and_findings(demo_incident, tmp_path, capsys):
    out = tmp_path / "inc"
    code = cli.main(["run", "01", "-e", str(demo_incident.env_file), "-o", str(out)])
    stdout = capsys.readouterr().out
    assert code == 1  # warning/critical findings
    stem = "01-application-not-responding"
    notebook, html, findings_json = out / f"{stem}.ipynb", out / f"{stem}.html", out / "findings.json"
    assert notebook.exists() and html.exists() and findings_json.exists()
    doc, findings = read_document(findings_json)
    assert doc["environment"] == "demo"
    assert {f.check for f in findings} == set(runbooks.find("01").checks)
    sev = severities(findings)
    assert "critical" in sev["app.alb.target_health"] and "critical" in sev["app.health.endpoint"]
    assert "critical" in sev["app.alb.5xx"] and "warning" in sev["app.ecs.capacity"]
    # the executed notebook alone is the evidence: the same findings can be read back from it
    recovered = collect_findings(nbformat.read(notebook, as_version=4))
    assert [f.to_dict() for f in recovered] == [f.to_dict() for f in findings]
    # the HTML stands alone: plots embedded as data, code hidden, findings shown
    text = html.read_text()
    assert text.count("data:image/svg+xml;base64") >= 2
    assert "rb.run(" not in text and "rms-backend: no healthy target" in text
    assert str(html) in stdout and "CRITICAL" in stdout
    # the dry-run action left its audit record beside the report
    audit = [json.loads(line) for line in (out / "audit.jsonl").read_text().splitlines()]
    assert audit and all(r["dry_run"] for r in audit) and audit[0]["action"] == "force-new-deployment"


def test_unreachable_database_is_exit_3_and_everything_else_still_written(demo_incident, tmp_path, capsys):
    raw = yaml.safe_load(demo_incident.env_file.read_text())
    raw["database"]["port"] = 1  # nothing listens there
    env = tmp_path / "broken-db.yaml"
    env.write_text(yaml.safe_dump(raw))
    out = tmp_path / "out"
    code = cli.main(["run", "02", "-e", str(env), "-o", str(out)])
    assert code == 3
    _, findings = read_document(out / "findings.json")
    sev = severities(findings)
    assert sev["db.connectivity"] == {"critical"}
    assert sev["db.connections.saturation"] == {"error"} and sev["db.connections.by_state"] == {"error"}
    assert sev["db.rds.status"] == {"ok"}  # AWS still answers: that finding is intact
    assert (out / "02-database-connections.html").exists()
    detail = next(f.detail for f in findings if f.check == "db.connections.saturation")
    assert "database unreachable (refused)" in detail and "Traceback" not in detail


def test_a_runbook_that_fails_midway_keeps_its_findings_and_errors_the_rest(demo_incident, tmp_path, monkeypatch):
    broken_dir = tmp_path / "notebooks"
    broken_dir.mkdir()
    rb = runbooks.find("01")
    nb = nbformat.read(rb.notebook, as_version=4)
    at = next(i for i, c in enumerate(nb.cells) if "app.ecs.capacity" in c.source) + 1
    nb.cells.insert(at, nbformat.v4.new_code_cell('raise RuntimeError("the kernel met trouble")'))
    nbformat.write(nb, broken_dir / rb.notebook.name)
    monkeypatch.setattr(runbooks, "notebooks_dir", lambda: broken_dir)
    settings = load(demo_incident.env_file)
    outcome = run_runbook(rb, settings, resolve("1h"), tmp_path / "out")
    assert outcome.status == "failed" and "RuntimeError: the kernel met trouble" in outcome.error
    sev = severities(outcome.findings)
    assert "critical" in sev["app.health.endpoint"] and "warning" in sev["app.ecs.capacity"]  # ran before
    for cid in ("app.ecs.unhealthy_tasks", "app.alb.target_health", "app.alb.5xx"):  # never reached
        assert sev[cid] == {"error"}
    assert outcome.html and outcome.html.exists() and outcome.findings_json.exists()


def test_stock_papermill_command_runs_a_notebook(demo_incident, tmp_path):
    out = tmp_path / "out.ipynb"
    done = subprocess.run([str(Path(sys.executable).parent / "papermill"), "--no-progress-bar",
                           str(ROOT / "notebooks" / "02-database-connections.ipynb"), str(out),
                           "-p", "env", str(demo_incident.env_file)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    sev = severities(collect_findings(nbformat.read(out, as_version=4)))
    assert "warning" in sev["db.connections.by_state"] and sev["db.connectivity"] == {"ok"}


def test_check_healthy_demo_is_exit_0(demo_healthy, capsys):
    code = cli.main(["check", "-e", str(demo_healthy.env_file), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0
    assert doc["findings"] and {f["severity"] for f in doc["findings"]} <= {"ok", "info"}


def test_check_incident_is_exit_1_and_lists_the_problems(demo_incident, capsys):
    code = cli.main(["check", "-e", str(demo_incident.env_file), "--problems-only"])
    out = capsys.readouterr().out
    assert code == 1
    assert "app.alb.target_health" in out and "db.connections.by_state" in out
    assert " OK " not in out


@pytest.mark.parametrize("bad", ["thresholds={'no_such_threshold': 1}"])
def test_bad_threshold_dict_is_exit_2_before_running(demo_incident, tmp_path, capsys, bad):
    code = cli.main(["run", "01", "-e", str(demo_incident.env_file), "-o", str(tmp_path / "o"), "-p", bad])
    assert code == 2 and not (tmp_path / "o").exists()
    assert "unknown threshold 'no_such_threshold'" in capsys.readouterr().err


def test_findings_severity_values_are_the_spec_ones(demo_incident, tmp_path):
    out = tmp_path / "o"
    cli.main(["run", "02", "-e", str(demo_incident.env_file), "-o", str(out)])
    _, findings = read_document(out / "findings.json")
    assert {f.severity for f in findings} <= set(Severity)
    assert all(f.guide_section == "2. Database Connection Issues" for f in findings)
