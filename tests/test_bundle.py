"""The incident bundle: manifest hashes, verify after tampering, zip, diff between triages."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rmsops import bundle, cli
from rmsops.errors import UserError
from rmsops.findings import Finding, Severity, document, write_document
from rmsops.progress import Progress

START, END = datetime(2026, 11, 28, 19, tzinfo=UTC), datetime(2026, 11, 28, 20, tzinfo=UTC)


def finding(check: str, severity: str, resource: str = "r") -> Finding:
    return Finding(check, Severity(severity), resource, f"{check} is {severity}", runbook="01-x")


def make_bundle(folder: Path, findings: list[Finding]) -> Path:
    (folder / "01-x" / "plots").mkdir(parents=True)
    (folder / "01-x" / "01-x.html").write_text("<html>report</html>")
    (folder / "01-x" / "plots" / "a.png").write_bytes(b"\x89PNG fake")
    write_document(folder / "findings.json", document(findings, "demo", START, END))
    bundle.write_manifest(folder, {"status": "complete", "environment": "demo"})
    return folder


def test_manifest_lists_every_file_with_its_hash(tmp_path):
    folder = make_bundle(tmp_path / "b", [finding("app.alb.5xx", "critical")])
    manifest = json.loads((folder / "manifest.json").read_text())
    assert set(manifest["files"]) == {"findings.json", "01-x/01-x.html", "01-x/plots/a.png"}
    assert manifest["files"]["01-x/plots/a.png"]["sha256"] == bundle.sha256(folder / "01-x" / "plots" / "a.png")
    assert manifest["status"] == "complete"
    assert bundle.verify(folder).ok


def test_verify_detects_one_changed_byte_a_missing_and_an_added_file(tmp_path, capsys):
    folder = make_bundle(tmp_path / "b", [finding("app.alb.5xx", "critical")])
    report = folder / "01-x" / "01-x.html"
    data = bytearray(report.read_bytes())
    data[3] ^= 0x01
    report.write_bytes(bytes(data))
    (folder / "01-x" / "plots" / "a.png").unlink()
    (folder / "planted.txt").write_text("not evidence")
    result = bundle.verify(folder)
    assert (result.changed, result.missing, result.added) == (["01-x/01-x.html"], ["01-x/plots/a.png"],
                                                              ["planted.txt"])
    assert cli.main(["verify", str(folder)]) == 1
    out = capsys.readouterr().out
    assert "changed  01-x/01-x.html" in out and "FAILED" in out


def test_verify_cli_ok_and_bad_input(tmp_path, capsys):
    folder = make_bundle(tmp_path / "b", [])
    assert cli.main(["verify", str(folder)]) == 0
    assert "ok: all 3 files match" in capsys.readouterr().out
    assert cli.main(["verify", str(tmp_path / "nope")]) == 2
    (folder / "manifest.json").write_text("{not json")
    assert cli.main(["verify", str(folder)]) == 2
    assert "damaged" in capsys.readouterr().err


def test_zip_holds_the_whole_bundle(tmp_path):
    folder = make_bundle(tmp_path / "inc-42", [])
    archive = bundle.make_zip(folder, tmp_path / "inc-42.zip")
    names = set(zipfile.ZipFile(archive).namelist())
    assert names == {"inc-42/findings.json", "inc-42/01-x/01-x.html", "inc-42/01-x/plots/a.png",
                     "inc-42/manifest.json"}


def test_move_into_place_refuses_to_overwrite_without_force(tmp_path):
    target = tmp_path / "bundle"
    target.mkdir()
    (target / "old.txt").write_text("old")
    staging = tmp_path / ".bundle.partial"
    staging.mkdir()
    (staging / "new.txt").write_text("new")
    with pytest.raises(UserError, match="--force"):
        bundle.move_into_place(staging, target, force=False)
    assert (target / "old.txt").exists()
    bundle.move_into_place(staging, target, force=True)
    assert (target / "new.txt").exists() and not (target / "old.txt").exists() and not staging.exists()


def test_diff_resolved_new_and_still_failing(tmp_path, capsys):
    before = make_bundle(tmp_path / "a", [
        finding("app.alb.5xx", "critical"), finding("db.connectivity", "critical"),
        finding("app.ecs.capacity", "warning", "svc"), finding("db.rds.status", "ok")])
    after = make_bundle(tmp_path / "b", [
        finding("app.alb.5xx", "ok"), finding("db.connectivity", "warning"),
        finding("app.ecs.capacity", "ok", "svc"), finding("db.rds.status", "critical")])
    result = bundle.diff(before, after)
    assert {f.check for f in result.resolved} == {"app.alb.5xx", "app.ecs.capacity"}
    assert [f.check for f in result.new] == ["db.rds.status"]
    assert [(a.severity.value, b.severity.value) for a, b in result.still] == [("critical", "warning")]
    assert cli.main(["diff", str(before), str(after)]) == 1
    out = capsys.readouterr().out
    assert "resolved (2)" in out and "new (1)" in out and "critical → warning" in out


def test_diff_all_resolved_is_exit_0(tmp_path, capsys):
    before = make_bundle(tmp_path / "a", [finding("app.alb.5xx", "critical")])
    after = make_bundle(tmp_path / "b", [finding("app.alb.5xx", "ok")])
    assert cli.main(["diff", str(before), str(after)]) == 0
    assert cli.main(["diff", str(before), str(tmp_path / "missing")]) == 2


def test_progress_is_quiet_off_a_terminal_and_counts_findings():
    stream = io.StringIO()
    with Progress(["01-x", "02-y"], stream=stream) as progress:
        progress.state("01-x", "running")
        progress.findings("01-x", [finding("app.alb.5xx", "critical"), finding("a", "ok")])
        progress.state("01-x", "done")
    assert stream.getvalue() == ""
    assert progress.first_finding_seconds is not None
    lines = progress.render()
    assert "1 critical" in lines[1] and "1 ok" in lines[1] and "done" in lines[1]
    assert "queued" in lines[2]
    assert "latest: CRITICAL app.alb.5xx" in lines[-1]


def test_progress_draws_live_on_a_terminal():
    stream = io.StringIO()
    with Progress(["01-x"], stream=stream, live=True) as progress:
        progress.state("01-x", "running")
    assert "01-x" in stream.getvalue() and "running" in stream.getvalue()
