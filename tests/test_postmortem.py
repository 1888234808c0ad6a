"""`rmsops postmortem`: a write-up drafted from a real triage of the served demo (one triage for the
module, runbooks 01, 10 and 18: the 5xx, the alarms, the recent changes and the verdict).

Run with ``-p tests.demo_server``.
"""

from __future__ import annotations

import json
import re
import shutil
from html import unescape
from pathlib import Path
from urllib.parse import unquote

import pandas as pd
import pytest

from rmsops import cli
from rmsops.core import secrets
from rmsops.core.errors import UserError
from rmsops.core.findings import SCHEMA, read_document
from rmsops.execution import bundle, postmortem

RUNBOOKS = ("01", "10", "18")
FIVE_XX_TABLE = "01-application-not-responding/tables/app.alb.5xx.csv"
CHANGES_TABLE = "18-escalation/tables/escalation.recent_changes.csv"
ALARMS_TABLE = "10-monitoring-overview/tables/metrics.alarms.csv"
HOSTILE = "| <script>alert(1)</script> [x](http://evil) `tick` \n# Owned"


@pytest.fixture(scope="module")
def triaged(demo_incident, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("postmortem") / "incident"
    args = ["triage", "-e", str(demo_incident.env_file), "-o", str(out)]
    for name in RUNBOOKS:
        args += ["--runbook", name]
    assert cli.main(args) == 1  # the incident: warnings and criticals
    return out


def _copy(triaged: Path, tmp_path: Path, name: str) -> Path:
    return Path(shutil.copytree(triaged, tmp_path / name))


def _edit_findings(folder: Path, edit) -> None:
    path = folder / "findings.json"
    doc = json.loads(path.read_text())
    edit(doc["findings"])
    path.write_text(json.dumps(doc))


def _one(events: list[postmortem.Event], test) -> postmortem.Event:
    found = [event for event in events if test(event)]
    assert len(found) == 1, [e.what for e in events]
    return found[0]


def _utc(text: str):
    return pd.Timestamp(text).tz_convert("UTC").to_pydatetime()


def test_timeline_merges_changes_alarms_symptoms_triage_and_actions_in_time_order(triaged, tmp_path):
    later = tmp_path / "later-audit.jsonl"
    later.write_text(json.dumps({"at": "2099-01-01T00:00:00Z", "user": "oncall", "environment": "demo",
                                 "action": "rollback-service", "target": "rms-backend", "dry_run": False,
                                 "outcome": "done", "detail": "rolled back to rms-backend:1"}) + "\n")
    events = postmortem.draft(triaged, tmp_path / "pm.md", audit=later).timeline
    assert [e.at for e in events] == sorted(e.at for e in events)

    changes = pd.read_csv(triaged / CHANGES_TABLE)
    deployment = changes[changes["kind"] == "deployment"].iloc[0]
    deployed = _one(events, lambda e: e.what.startswith(f"deployment: {deployment['what']} by "))
    assert deployed.at == _utc(deployment["time"]) and deployed.source == "ECS"
    assert "rms-backend:2" in deployed.what
    for change in changes[changes["kind"] == "api change"].itertuples():
        row = _one(events, lambda e, c=change: e.what.startswith(f"api change: {c.what} by {c.who}"))
        assert row.at == _utc(change.time) and row.source == "CloudTrail"

    alarms = pd.read_csv(triaged / ALARMS_TABLE)
    assert "rms-production-alb-5xx" in set(alarms["alarm"])
    for alarm in alarms.itertuples():
        row = _one(events, lambda e, a=alarm: e.what.startswith(f"Alarm {a.alarm} "))
        assert row.at == _utc(alarm.since) and row.source == "CloudWatch alarm" and "went to ALARM" in row.what

    recorded = [(log.relative_to(triaged).as_posix(), json.loads(line))
                for log in sorted(triaged.glob("*/audit.jsonl")) for line in log.read_text().splitlines()]
    assert recorded, "the runbooks' dry runs are audited"
    actions = [e for e in events if e.source.endswith("/audit.jsonl") and e.source != str(later)]
    assert len({e.what for e in actions}) == len(actions), "one row per dry run, however many runbooks propose it"
    for source, record in recorded:
        [row] = [e for e in actions if e.what.startswith(f"{record['user']} ran {record['action']} on "
                                                         f"{record['target']} (dry run, planned)")
                 and source in e.source.split(", ")]
        assert row.at <= _utc(record["at"])
    assert {s for e in actions for s in e.source.split(", ")} == {s for s, _ in recorded}
    assert events[-1].source == str(later) and "rollback-service on rms-backend (REAL change, done)" in events[-1].what

    first_5xx = _one(events, lambda e: e.what.startswith("First ALB 5xx period above the threshold"))
    started = _one(events, lambda e: e.what.startswith("Triage started"))
    ended = _one(events, lambda e: e.what.startswith("Triage ended"))
    assert "escalation level 0" in ended.what
    order = [events.index(e) for e in (deployed, first_5xx, started, *actions, ended)]
    assert order == sorted(order), "deployment, then 5xx, then the triage, its dry runs and its end"
    manifest = bundle.read_manifest(triaged)
    assert started.at == _utc(manifest["started_at"]) and ended.at == _utc(manifest["ended_at"])


def test_impact_is_the_5xx_tables_sums(triaged, tmp_path):
    raw = pd.read_csv(triaged / FIVE_XX_TABLE)
    sums = raw.groupby("label")["value"].sum()
    finding = next(f for f in read_document(triaged / "findings.json")[1] if f.check == "app.alb.5xx")
    threshold, period = finding.evidence["threshold_per_period"], finding.evidence["period_seconds"]
    above = pd.to_datetime(raw.loc[raw["value"] > threshold, "timestamp"], utc=True)
    assert not above.empty, "the seeded incident has 5xx above the threshold"

    draft = postmortem.draft(triaged, tmp_path / "pm.md")
    impact = draft.impact
    elb, target = int(sums["HTTPCode_ELB_5XX_Count"]), int(sums.get("HTTPCode_Target_5XX_Count", 0))
    assert impact.elb_5xx == elb == finding.evidence["metrics"]["HTTPCode_ELB_5XX_Count"]["total"]
    assert impact.failed == {"HTTPCode_ELB_5XX_Count": elb, "HTTPCode_Target_5XX_Count": target}
    assert impact.first_above == above.min()
    assert impact.end_above == above.max() + pd.Timedelta(seconds=period)
    assert impact.periods_above == above.nunique()
    text = postmortem.markdown(draft)
    assert f"- **5xx responses:** {elb} (HTTPCode_ELB_5XX_Count total" in text
    assert f"- **Failed requests:** {elb + target} = " in text
    assert "ECS service rms-backend (cluster rms-production)" in text


def test_evidence_links_resolve_to_the_files_and_their_sha256(triaged, tmp_path, capsys):
    assert cli.main(["postmortem", str(triaged)]) == 0
    out = Path(capsys.readouterr().out.strip())
    assert out == triaged.parent / f"{triaged.name}-postmortem.md", "beside the bundle, never in it"
    text = out.read_text()
    manifest = bundle.read_manifest(triaged)
    links = re.findall(r"^\| \[[^\]]+\]\(([^)\s]+)\) \| `([0-9a-f]{64})` \|$", text, re.MULTILINE)
    assert sorted(unquote(href) for href, _ in links) == sorted(f"{triaged.name}/{n}" for n in manifest["files"])
    for href, digest in links:
        path = out.parent / unquote(href)
        assert path.is_file()
        assert digest == bundle.sha256(path) == manifest["files"][unquote(href).split("/", 1)[1]]["sha256"]
    assert text.index(f"({triaged.name}/01-application-not-responding/01-application-not-responding.html)") < \
        text.index(f"({triaged.name}/01-application-not-responding/tables/"), "reports first"
    assert bundle.manifest_digest(triaged) in text and "Links are relative to this file." in text
    assert bundle.verify(triaged).ok, "nothing was written into the bundle"

    elsewhere = tmp_path / "docs" / "example.html"  # not above the bundle: links are NAME/<path in the bundle>
    postmortem.write(triaged, elsewhere)
    page = elsewhere.read_text()
    hrefs = [unquote(unescape(h)) for h in re.findall(r'<a href="([^"]+)">', page)]
    assert len(hrefs) == len(manifest["files"]) and all(h.startswith(f"{triaged.name}/") for h in hrefs)
    assert all((triaged.parent / h).is_file() for h in hrefs)
    assert page.startswith("<!doctype html>") and ".rmsops table" in page and "put this file beside it" in page


def _hostile_bundle(triaged: Path, tmp_path: Path, secret: str) -> Path:
    copy = _copy(triaged, tmp_path, "hostile")
    _edit_findings(copy, lambda findings: findings.append({
        "check": "app.health.endpoint", "runbook": "01-application-not-responding", "severity": "critical",
        "resource": f"http://api/{secret}", "title": f"{HOSTILE} {secret}", "detail": secret, "evidence": {},
        "resolution": f"call [me](http://evil) with {secret}", "guide_section": "1. Application Not Responding"}))
    (copy / "audit.jsonl").write_text(json.dumps({  # `rmsops action -o BUNDLE` appends here
        "at": "2099-01-01T00:00:00Z", "user": "mallory|x", "action": "<img src=x onerror=alert(1)>",
        "target": "t", "dry_run": False, "outcome": "done", "detail": f"| [y](http://evil) {secret}"}) + "\n")
    return copy


def test_hostile_text_is_escaped_and_secrets_redacted_in_markdown_and_html(triaged, tmp_path):
    secret = "pm-s3cr3t-7f2a9c"
    secrets.register(secret)
    copy = _hostile_bundle(triaged, tmp_path, secret)
    md = postmortem.write(copy, tmp_path / "pm.md").read_text()
    page = postmortem.write(copy, tmp_path / "pm.md", html=True).read_text()  # --html wins over the suffix
    for text in (md, page):
        assert secret not in text
    assert postmortem.md_escape(secrets.REDACTED) in md and secrets.REDACTED in page

    unescaped = [line for line in md.splitlines() if re.search(r"(?<!\\)[<>]", line.removeprefix("> "))]
    assert not unescaped, "no HTML of its own: every < and > escaped (a leading '> ' is our quote)"
    assert "\\<script\\>" in md and "\\<img src=x" in md and "\\`tick\\`" in md
    assert "[x](http://evil)" not in md and "\\[x\\](http://evil)" in md and "[me](" not in md
    assert not re.search(r"^#+ Owned", md, re.MULTILINE), "a title cannot start a heading"
    for marker in ("Owned", "mallory"):  # timeline rows: the finding's title, the audit record's user
        row = next(line for line in md.splitlines() if line.startswith("| ") and marker in line)
        assert len(re.findall(r"(?<!\\)\|", row)) == 4, row  # three columns, whatever the text held

    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<img" not in page and "&lt;img src=x" in page
    assert 'href="http://evil"' not in page and "href='http://evil'" not in page


def test_incomplete_partial_bundle_says_so_and_what_is_missing(triaged, tmp_path):
    copy = _copy(triaged, tmp_path, "partial")
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest.update(status="incomplete", stopped="interrupted by SIGTERM")
    manifest["runbooks"]["10-monitoring-overview"] = {"status": "interrupted", "seconds": 2.0,
                                                      "error": "interrupted by SIGTERM"}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    (copy / ALARMS_TABLE).unlink()
    (copy / FIVE_XX_TABLE).unlink()

    md = postmortem.write(copy, tmp_path / "pm.md").read_text()
    assert "> **INCOMPLETE BUNDLE:** the triage was interrupted by SIGTERM." in md
    assert "10-monitoring-overview (interrupted: interrupted by SIGTERM)" in md
    assert "built on missing evidence" in md
    assert "alarm state changes (10-monitoring-overview's metrics.alarms table)" in md  # not in this bundle
    assert "**Impact, how long:** not measured" in md
    assert "from the app.alb.5xx finding's evidence" in md, "the finding's totals still count"
    assert "app.alb.5xx.csv (not in the folder)" in md.replace("*", "").replace("\\", "")
    assert "Triage ended: bundle INCOMPLETE (interrupted by SIGTERM)" in md


def test_not_a_bundle_is_a_user_error_and_exit_2(tmp_path, capsys):
    with pytest.raises(UserError, match="is not a folder"):
        postmortem.write(tmp_path / "missing")
    with pytest.raises(UserError, match=r"not an rmsops bundle \(no manifest.json\)"):
        postmortem.write(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"schema": bundle.MANIFEST_SCHEMA, "files": {}}))
    (tmp_path / "findings.json").write_text("{not json")
    with pytest.raises(UserError, match="findings.json is not a valid findings document"):
        postmortem.write(tmp_path)
    (tmp_path / "findings.json").write_text(json.dumps({"schema": SCHEMA, "findings": []}))
    minimal = postmortem.write(tmp_path, tmp_path.parent / "minimal.md").read_text()  # nothing in it, no failure
    assert "not measured" in minimal and "not judged" in minimal
    (tmp_path / "audit.jsonl").write_text('{"at": "2026-12-02T18:50:31Z"}\nnot json\n')
    with pytest.raises(UserError, match=r"audit.jsonl, line 2: not an audit record"):
        postmortem.write(tmp_path, tmp_path.parent / "minimal.md")

    for argv in (["postmortem", str(tmp_path / "missing")], ["postmortem", str(tmp_path)]):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("rmsops: error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_after_appends_whether_the_fix_worked(triaged, tmp_path, capsys):
    after = _copy(triaged, tmp_path, "after")

    def fixed(findings: list[dict]) -> None:
        for finding in findings:
            if finding["check"] == "app.alb.5xx":
                finding["severity"] = "ok"
        findings.append({"check": "db.connectivity", "runbook": "01-application-not-responding",
                         "severity": "critical", "resource": "db:rms-production-db",
                         "title": "connection refused", "evidence": {}})

    _edit_findings(after, fixed)
    out = tmp_path / "pm.md"
    assert cli.main(["postmortem", str(triaged), str(after), "-o", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    md = out.read_text()
    assert md.index("## Did the fix work?") > md.index("## Action items"), "appended at the end"
    section = md.split("## Did the fix work?", 1)[1]
    expected = bundle.diff(triaged, after)
    assert [f.check for f in expected.resolved] == ["app.alb.5xx"] and len(expected.new) == 1
    assert "**Not yet:" in section
    assert "### Resolved (1)" in section and "alb:rms-alb" in section.split("### New")[0]
    assert "### New (1)" in section and "connection refused" in section.split("### Still failing")[0]
    assert f"### Still failing ({len(expected.still)})" in section and len(expected.still) > 3
    assert all(b.title.split(":")[0] in section for _, b in expected.still)


def test_the_first_screen_marks_and_lists_the_deployment_before_the_5xx(triaged):
    """The triage draws its timeline once escalation has kept the recent changes (drawn while
    escalation ran, it had none): the seeded bad deployment is on the picture and in the list under
    it, before the 5xx above the threshold."""
    index = (triaged / "index.html").read_text()
    assert "<img src='timeline.svg'" in index
    marked = index[index.index("Marked on the timeline"):index.index("<h1>")]
    assert "deployment: rms-backend -&gt; rms-backend:2" in marked
    assert marked.index("deployment: rms-backend") < marked.index("5xx above threshold from here")
