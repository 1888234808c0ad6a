"""The findings contract: fields, document shape, exit codes, and escaping in reports."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pandas as pd
import pytest

from rmsops.core import registry
from rmsops.core.findings import (
    FIELD_ORDER,
    SCHEMA,
    Finding,
    Severity,
    document,
    exit_code,
    read_document,
    sort_by_urgency,
    write_document,
)
from rmsops.core.registry import CheckResult, CheckSpec
from rmsops.render import report


def _f(severity: str, check: str = "app.alb.5xx", title: str = "t", **kw) -> Finding:
    return Finding(check=check, severity=Severity(severity), resource="alb:rms-alb", title=title, **kw)


def test_document_has_the_spec_shape(tmp_path):
    start, end = datetime(2026, 11, 28, 19, tzinfo=UTC), datetime(2026, 11, 28, 20, tzinfo=UTC)
    finding = _f("warning", evidence={"at": start, "peak": 3.5}).placed("01-application-not-responding", "1. X")
    doc = document([finding], "production", start, end, generated_at=end)
    assert doc["schema"] == SCHEMA == "rmsops.findings/1"
    assert doc["window"] == {"start": "2026-11-28T19:00:00Z", "end": "2026-11-28T20:00:00Z"}
    assert list(doc["findings"][0]) == list(FIELD_ORDER)
    assert doc["findings"][0]["evidence"] == {"at": "2026-11-28T19:00:00Z", "peak": 3.5}
    path = tmp_path / "findings.json"
    write_document(path, doc)
    assert json.loads(path.read_text())["environment"] == "production"
    _, back = read_document(path)
    assert back[0].severity is Severity.WARNING and back[0].runbook == "01-application-not-responding"


@pytest.mark.parametrize(("severities", "code"), [
    ([], 0), (["ok", "info"], 0), (["ok", "warning"], 1), (["critical"], 1),
    (["warning", "error"], 3), (["error"], 3),
])
def test_exit_codes_follow_the_spec(severities, code):
    assert exit_code([_f(s) for s in severities]) == code


def test_sorting_puts_critical_first_ok_last():
    ordered = sort_by_urgency([_f("ok"), _f("warning"), _f("critical"), _f("error"), _f("info")])
    assert [f.severity.value for f in ordered] == ["critical", "error", "warning", "info", "ok"]


def _spec(fn) -> CheckSpec:
    return CheckSpec("app.alb.5xx", "01-application-not-responding", "1. Application Not Responding", fn,
                     "ALB 5xx")


def test_a_check_that_raises_becomes_an_error_finding():
    def broken(ctx):
        raise ValueError("boom\nsecond line")

    result = registry.run(_spec(broken), ctx=None)
    (finding,) = result.findings
    assert finding.severity is Severity.ERROR
    assert finding.detail == "ValueError: boom" and finding.runbook == "01-application-not-responding"


def test_a_check_with_no_finding_is_reported_as_a_bug():
    result = registry.run(_spec(lambda ctx: CheckResult(findings=[])), ctx=None)
    assert result.findings[0].severity is Severity.ERROR and "no finding" in result.findings[0].detail


def test_findings_html_escapes_hostile_text():
    hostile = _f("critical", title="<script>alert(1)</script>", detail='<img src=x onerror="x()">',
                 resolution="\x1b[31mred\x1b[0m")
    html = report.findings_html([hostile])
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<img" not in html and "\x1b" not in html


def test_tables_escape_cells_and_cap_length():
    df = pd.DataFrame({"query": ["<b>x</b>" + "y" * 1000], "n": [1]})
    html = report.table_html(df)
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html
    assert "y" * 400 not in html


def test_clean_handles_invalid_utf8_and_controls():
    assert report.clean(b"ok \xff\x1b[2J") == "ok \ufffd\ufffd[2J"
