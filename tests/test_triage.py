"""`rmsops triage` against the served demo: the bundle, verify, diff, and runbooks that fail or hang."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import nbformat
import pytest

from rmsops import cli
from rmsops.core import runbooks
from rmsops.core.config import load
from rmsops.core.findings import Severity, read_document
from rmsops.core.window import resolve
from rmsops.execution import bundle, triage

FAST = ["01", "02"]  # enough to exercise concurrency without the whole catalogue


def run_triage(env_file: Path, out: Path, names=FAST, *extra: str) -> int:
    args = ["triage", "-e", str(env_file), "-o", str(out)]
    for name in names:
        args += ["--runbook", name]
    return cli.main([*args, *extra])


@pytest.fixture(scope="module")
def incident_bundle(demo_incident, tmp_path_factory):
    out = tmp_path_factory.mktemp("triage") / "incident"
    code = run_triage(demo_incident.env_file, out)
    return out, code


def test_bundle_has_every_artefact(incident_bundle):
    out, code = incident_bundle
    assert code == 1
    for stem in ("01-application-not-responding", "02-database-connections"):
        folder = out / stem
        assert (folder / f"{stem}.ipynb").exists() and (folder / f"{stem}.html").exists()
        assert (folder / "findings.json").exists()
        assert list((folder / "plots").glob("*.svg")), "plots saved as SVG"
        assert list((folder / "tables").glob("*.csv")), "tables saved as CSV"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["environment"] == "demo"
    assert manifest["run_by"]["aws"]["arn"].startswith("arn:aws:")
    assert set(manifest["runbooks"]) == {"01-application-not-responding", "02-database-connections"}
    assert all(info["status"] == "done" for info in manifest["runbooks"].values())
    assert manifest["versions"]["rmsops"] and manifest["first_finding_seconds"] > 0
    index = (out / "index.html").read_text()
    assert "01-application-not-responding/01-application-not-responding.html#check-app.alb.target_health" in index
    assert "<img src='" in index and "Run by" in index
    archive = out.with_name(out.name + ".zip")
    assert f"{out.name}/manifest.json" in zipfile.ZipFile(archive).namelist()
    assert not list(out.parent.glob(f".{out.name}.partial-*")), "no staging folder left behind"


def test_the_index_links_land_on_an_anchor_in_the_report(incident_bundle):
    out, _ = incident_bundle
    html = (out / "01-application-not-responding" / "01-application-not-responding.html").read_text()
    assert 'id="check-app.alb.target_health"' in html


def test_merged_findings_hold_every_runbook(incident_bundle):
    out, _ = incident_bundle
    _, findings = read_document(out / "findings.json")
    assert {f.runbook for f in findings} == {"01-application-not-responding", "02-database-connections"}
    assert any(f.severity == Severity.CRITICAL for f in findings)


def test_verify_passes_then_fails_after_one_byte_changes(incident_bundle, tmp_path, capsys):
    out, _ = incident_bundle
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(out), str(copy)], check=True)
    assert cli.main(["verify", str(copy)]) == 0
    target = copy / "02-database-connections" / "findings.json"
    data = bytearray(target.read_bytes())
    data[10] ^= 0x20
    target.write_bytes(bytes(data))
    assert cli.main(["verify", str(copy)]) == 1
    assert "changed  02-database-connections/findings.json" in capsys.readouterr().out


def test_diff_incident_then_healthy_shows_the_incident_resolved(incident_bundle, demo_healthy, tmp_path, capsys):
    out, _ = incident_bundle
    healthy = tmp_path / "healthy"
    assert run_triage(demo_healthy.env_file, healthy) == 0
    capsys.readouterr()
    assert cli.main(["diff", str(out), str(healthy)]) == 0
    text = capsys.readouterr().out
    result = bundle.diff(out, healthy)
    assert result.resolved and not result.new and not result.still
    assert {f.check for f in result.resolved} >= {"app.alb.target_health", "db.connections.by_state"}
    assert "resolved (" in text


def test_existing_bundle_is_not_overwritten_without_force(incident_bundle, demo_incident, capsys):
    out, _ = incident_bundle
    before = (out / "manifest.json").read_text()
    assert run_triage(demo_incident.env_file, out) == 2
    assert "--force" in capsys.readouterr().err
    assert (out / "manifest.json").read_text() == before


def _broken_notebooks(tmp_path: Path, stem: str, cell: str) -> Path:
    """A copy of the notebooks in which ``stem`` meets ``cell`` right after its first check."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    for source in sorted(runbooks.notebooks_dir().glob("*.ipynb")):
        nb = nbformat.read(source, as_version=4)
        if source.stem == stem:
            at = next(i for i, c in enumerate(nb.cells) if "rb.run(" in c.source) + 1
            nb.cells.insert(at, nbformat.v4.new_code_cell(cell))
        nbformat.write(nb, folder / source.name)
    return folder


@pytest.mark.parametrize(("cell", "status"), [
    ('raise RuntimeError("boom")', "failed"),
    ("import os; os._exit(9)", "failed"),  # the kernel dies
    ("import time; time.sleep(120)", "timeout"),  # hangs past the runbook's timeout
], ids=["exception", "dead-kernel", "hang"])
def test_a_failing_runbook_leaves_every_other_report_intact(demo_incident, tmp_path, monkeypatch, cell, status):
    broken = _broken_notebooks(tmp_path, "01-application-not-responding", cell)
    monkeypatch.setattr(runbooks, "notebooks_dir", lambda: broken)
    settings = load(demo_incident.env_file)
    selected = [runbooks.find("01"), runbooks.find("02")]
    began = time.monotonic()
    result = triage.run(settings, resolve("1h"), tmp_path / "bundle", selected, timeout=45)
    assert time.monotonic() - began < 120
    outcomes = {o.runbook.stem: o for o in result.outcomes}
    broken, fine = outcomes["01-application-not-responding"], outcomes["02-database-connections"]
    assert broken.status == status, broken.error
    assert fine.status == "done", fine.error
    assert result.exit_code == 3
    sev: dict[str, set[Severity]] = {}
    for f in broken.findings:
        sev.setdefault(f.check, set()).add(f.severity)
    assert Severity.CRITICAL in sev["app.health.endpoint"]  # ran before the failure: kept
    assert sev["app.alb.5xx"] == {Severity.ERROR}  # never reached: an error finding says why
    assert any(f.severity == Severity.WARNING for f in fine.findings)
    assert (tmp_path / "bundle" / "02-database-connections" / "02-database-connections.html").exists()
    assert bundle.verify(tmp_path / "bundle").ok


def test_a_relative_output_folder_works_with_concurrent_runbooks(demo_incident, tmp_path, monkeypatch, capsys):
    """papermill changes the working directory while a notebook runs: relative paths must not break."""
    monkeypatch.chdir(tmp_path)
    code = run_triage(demo_incident.env_file, Path("reports/rel"), ["01", "02", "07", "14"])
    assert code == 1, capsys.readouterr().err
    manifest = json.loads((tmp_path / "reports" / "rel" / "manifest.json").read_text())
    assert {info["status"] for info in manifest["runbooks"].values()} == {"done"}


def test_the_slowest_runbooks_start_first():
    order = triage.slowest_first(triage.default_selection())
    assert sorted(rb.stem for rb in order) == sorted(rb.stem for rb in triage.default_selection())
    costs = [rb.cost for rb in order]
    assert costs == sorted(costs, reverse=True) and costs[0] > costs[-1]


def test_the_command_imports_no_pandas_even_to_take_the_timeline(demo_incident, tmp_path):
    """The runbooks and the timeline are drawn in runners: what comes back to the command is plain
    data (a class of the drawing modules, unpickled, would import pandas into it: 0.4 s, on the path
    to the bundle). With escalation, the timeline is drawn and its marks listed on the first page."""
    out = tmp_path / "light"
    probe = ("import sys\n"
             "from rmsops import cli\n"
             f"code = cli.main(['triage', '-e', {str(demo_incident.env_file)!r}, '-o', {str(out)!r}, "
             "'--runbook', '01', '--runbook', '18'])\n"
             "print(code, sorted(m for m in ('pandas', 'matplotlib', 'psycopg', 'nbconvert') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=240)
    assert done.stdout.strip().splitlines()[-1] == "1 []", done.stdout[-2000:] + done.stderr[-2000:]
    index = (out / "index.html").read_text()
    assert "<img src='timeline.svg'" in index and "Marked on the timeline" in index
