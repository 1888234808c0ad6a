"""Notifications of a bundle: the message says what a responder needs, reaches webhooks, SNS and commands,
survives failures with retries, and never carries a secret or a Slack control sequence."""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from rmsops.core import secrets
from rmsops.core.config import AwsSettings
from rmsops.core.errors import UserError
from rmsops.core.findings import Finding, Severity, document, write_document
from rmsops.execution import bundle, notify
from tests.webhook import HOOK_PATH

START, END = datetime(2026, 11, 28, 19, tzinfo=UTC), datetime(2026, 11, 28, 20, tzinfo=UTC)
LEVEL_TITLE = "Escalation level 0 (critical issue): System completely unavailable"


def finding(check: str, severity: str, title: str = "", runbook: str = "01-x", detail: str = "") -> Finding:
    return Finding(check, Severity(severity), f"res:{check}", title or f"{check} is {severity}", detail=detail,
                   runbook=runbook)


def escalation(title: str = LEVEL_TITLE, detail: str = "app.health.endpoint critical: HTTP 503") -> Finding:
    return finding("escalation.level", "critical", title, runbook="18-escalation", detail=detail)


def make_bundle(folder: Path, findings: list[Finding], status: str = "complete") -> Path:
    folder.mkdir(parents=True)
    write_document(folder / "findings.json", document(findings, "demo", START, END))
    bundle.write_manifest(folder, {"status": status, "environment": "demo"})
    return folder


@pytest.fixture
def incident(tmp_path) -> Path:
    """Seven criticals (out of order), a warning and an ok, judged level 0."""
    criticals = [finding(f"app.check{i}", "critical", runbook=f"0{9 - i}-x") for i in range(7)]
    return make_bundle(tmp_path / "inc", [finding("app.slow", "warning"), *criticals, escalation(),
                                          finding("app.fine", "ok")])


def send(targets, message, folder, **kwargs):
    lines: list[str] = []
    result = notify.deliver(targets, message, folder, attempts=3, backoff_seconds=0.01, log=lines.append, **kwargs)
    return result, lines


# --- composing ------------------------------------------------------------------------------------


def test_a_webhook_receives_the_level_the_top_criticals_in_order_and_the_digest(incident, receiver):
    hook = receiver(200)
    message = notify.compose(incident, ["rms-alb-5xx"], "demo", joined=["rms-p99"])
    [delivery], lines = send([notify.parse_target(hook.url)], message, incident)
    assert (delivery.ok, delivery.attempts, delivery.target, lines) == (True, 1, hook.url[:-len(HOOK_PATH)] + "/…", [])
    [body] = hook.bodies
    assert hook.paths == [HOOK_PATH] and body == {"text": message.text, "blocks": message.blocks}
    text = body["text"]
    assert "demo" in text and "rms-alb-5xx" in text and "rms-p99" in text and "complete" in text
    assert LEVEL_TITLE in text and "HTTP 503" in text  # the level and why
    # the five most urgent criticals, in the report's order (runbook 03 before 09), then how many more
    shown = [f"app.check{i}" for i in (6, 5, 4, 3, 2)]
    assert [text.index(f"`{c}` res:{c}") for c in shown] == sorted(text.index(f"`{c}`") for c in shown)
    assert "app.check1" not in text and "app.check0" not in text and "and 2 more" in text
    assert "app.slow" not in text and "critical 8, error 0, warning 1, info 0, ok 1" in text
    assert str(incident) in text and bundle.manifest_digest(incident) in text
    kinds = [b["type"] for b in body["blocks"]]
    assert kinds == ["header", "section", "section", "context"]
    assert "Escalation level 0 (critical issue)" in body["blocks"][0]["text"]["text"]
    assert LEVEL_TITLE in body["blocks"][1]["text"]["text"]
    assert "`app.check6`" in body["blocks"][2]["text"]["text"]
    assert bundle.manifest_digest(incident) in body["blocks"][3]["elements"][0]["text"]


def test_many_long_findings_stay_within_slacks_limits(tmp_path):
    folder = make_bundle(tmp_path / "big", [finding(f"c{i}", "critical", "x" * 5000) for i in range(300)]
                         + [escalation(detail="y" * 20_000)], status="incomplete")
    message = notify.compose(folder, [f"alarm-{i}" for i in range(40)], "demo")
    assert len(message.text) <= 40_000 and len(message.blocks) <= 50
    assert all(len(b["text"]["text"]) <= 3000 for b in message.blocks if b["type"] == "section")
    assert len(message.blocks[0]["text"]["text"]) <= 150
    assert "and 295 more" in message.text and "and 30 more" in message.text and "INCOMPLETE" in message.text


def test_hostile_findings_text_is_escaped_and_secrets_redacted(tmp_path):
    hostile = "<!channel> <http://evil|click> & *bold* \x1b[31mred"
    token = "tok-9c2e7a-never-shown"
    folder = make_bundle(tmp_path / "h", [finding("app.x", "critical", hostile, detail=token),
                                          escalation(f"Escalation level 0 (x): {hostile}", f"why {token}")])
    secrets.register(token)  # after the bundle was written: compose itself must redact it
    message = notify.compose(folder, [f"alarm <!here> {token}"], "demo")
    for out in (message.text, json.dumps(message.blocks, ensure_ascii=False)):
        assert "<!channel>" not in out and "<http" not in out and "<!here>" not in out and "\x1b" not in out
        assert token not in out and secrets.REDACTED in out
        assert "&lt;!channel&gt; &lt;http://evil|click&gt; &amp; *bold*" in out


@pytest.mark.parametrize("damage", [None, "{not json", '{"schema": "rmsops.findings/1", "findings": [{"x": 1}]}'])
def test_a_missing_or_damaged_findings_file_still_composes(tmp_path, damage):
    folder = make_bundle(tmp_path / "d", [escalation()])
    if damage is None:
        (folder / "findings.json").unlink()
    else:
        (folder / "findings.json").write_text(damage)
    message = notify.compose(folder, ["rms-alb-5xx"], "demo")
    assert "findings unreadable" in message.text and "rms-alb-5xx" in message.text
    assert bundle.manifest_digest(folder) in message.text and len(message.blocks) == 4


# --- targets --------------------------------------------------------------------------------------


def test_parse_target_accepts_the_three_forms_with_labels_safe_to_print():
    hook = notify.parse_target(f"https://hooks.example.com{HOOK_PATH}")
    assert (hook.kind, hook.label) == ("webhook", "https://hooks.example.com/…")
    assert HOOK_PATH not in repr(hook) and HOOK_PATH not in secrets.redact(f"posting to {hook.value}")
    topic = notify.parse_target("sns:arn:aws:sns:eu-west-1:123456789012:rms-alerts")
    assert (topic.kind, topic.value, topic.label) == ("sns", "arn:aws:sns:eu-west-1:123456789012:rms-alerts",
                                                      "arn:aws:sns:eu-west-1:123456789012:rms-alerts")
    cmd = notify.parse_target(f"cmd:{sys.executable} -c 'print(1)' --token s3cr3t")
    assert (cmd.kind, cmd.label) == ("cmd", Path(sys.executable).name)


@pytest.mark.parametrize("spec", ["ftp://x", "sns:not-an-arn", "cmd:", "", "  ", "cmd:no-such-program-rmsops",
                                  f"hooks.example.com{HOOK_PATH}", f"ftp://files.example.com{HOOK_PATH}"])
def test_parse_target_rejects_other_forms_in_one_line_without_echoing_a_path(spec):
    with pytest.raises(UserError) as caught:
        notify.parse_target(spec)
    said = str(caught.value)
    assert "\n" not in said and (notify.FORMS in said or "not found" in said)
    assert "services" not in said and "hook-path-secret" not in said


# --- delivering -----------------------------------------------------------------------------------


def test_a_webhook_answering_500_twice_is_retried_until_it_takes(incident, receiver):
    hook = receiver(500, 500, 200)
    [delivery], lines = send([notify.parse_target(hook.url)], notify.compose(incident, ["a"], "demo"), incident)
    assert (delivery.ok, delivery.attempts, delivery.error) == (True, 3, "")
    assert len(hook.bodies) == 3 and len(lines) == 2


def test_a_webhook_always_failing_is_reported_and_its_path_never_logged(incident, receiver):
    hook = receiver(500)
    [delivery], lines = send([notify.parse_target(hook.url)], notify.compose(incident, ["a"], "demo"), incident)
    assert (delivery.ok, delivery.attempts) == (False, 3) and "HTTP 500" in delivery.error
    assert len(lines) == 3 and all(delivery.target in line and "HTTP 500" in line for line in lines)
    assert not [text for text in [*lines, delivery.error, delivery.target] if "hook-path-secret" in text]


def test_an_unreachable_webhook_fails_quickly_and_does_not_stop_the_other_targets(incident, receiver, tmp_path):
    hook = receiver(200)
    closed = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    dead = f"http://127.0.0.1:{closed.server_port}{HOOK_PATH}"
    closed.server_close()  # nothing listens there now: connection refused
    began = time.monotonic()
    targets = [notify.parse_target(dead), notify.parse_target(hook.url)]
    results, lines = send(targets, notify.compose(incident, ["a"], "demo"), incident)
    assert time.monotonic() - began < 5
    assert [(d.ok, d.attempts) for d in results] == [(False, 3), (True, 1)]
    assert "cannot reach" in results[0].error and "hook-path-secret" not in "".join(lines) + results[0].error


def test_sns_publishes_the_message_with_a_short_ascii_subject(incident):
    with mock_aws():
        sns, sqs = boto3.client("sns", region_name="eu-west-1"), boto3.client("sqs", region_name="eu-west-1")
        arn = sns.create_topic(Name="rms-alerts")["TopicArn"]
        queue = sqs.create_queue(QueueName="inbox")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=queue_arn)
        message = notify.compose(incident, ["rms-alb-5xx-é" + "x" * 150], "demo")
        [delivery], lines = send([notify.parse_target(f"sns:{arn}")], message, incident,
                                 aws=AwsSettings(region="us-east-1"))
        [received] = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1)["Messages"]
    assert (delivery.ok, delivery.attempts, delivery.target, lines) == (True, 1, arn, [])
    envelope = json.loads(received["Body"])
    assert envelope["Message"] == message.text
    subject = envelope["Subject"]
    assert subject.startswith("rmsops demo: Escalation level 0") and len(subject) < 100 and subject.isascii()


def test_a_command_gets_the_findings_path_and_the_bundle_folder(incident, tmp_path):
    out = tmp_path / "seen.json"
    script = tmp_path / "hook.py"
    script.write_text("import json, os, sys\n"
                      f"open({str(out)!r}, 'w').write(json.dumps([sys.argv[1:], os.environ['RMSOPS_BUNDLE']]))\n")
    target = notify.parse_target(f"cmd:{sys.executable} {script} --flag 'two words'")
    [delivery], lines = send([target], notify.compose(incident, ["a"], "demo"), incident)
    assert (delivery.ok, delivery.attempts, lines) == (True, 1, [])
    assert json.loads(out.read_text()) == [["--flag", "two words", str(incident / "findings.json")], str(incident)]


def test_a_failing_command_is_retried_and_reported_with_its_last_stderr_line_redacted(incident, tmp_path):
    token = "cmd-token-4b8e-never-shown"
    secrets.register(token)
    script = tmp_path / "fail.py"
    script.write_text("import sys\n"
                      "open(sys.argv[0] + '.runs', 'a').write('x')\n"
                      f"print('first line', file=sys.stderr); print('denied for {token}', file=sys.stderr)\n"
                      "sys.exit(1)\n")
    [delivery], lines = send([notify.parse_target(f"cmd:{sys.executable} {script}")],
                             notify.compose(incident, ["a"], "demo"), incident)
    assert (delivery.ok, delivery.attempts) == (False, 3) and (tmp_path / "fail.py.runs").read_text() == "xxx"
    assert "exit code 1" in delivery.error and "denied for" in delivery.error and "first line" not in delivery.error
    assert len(lines) == 3 and not [t for t in [*lines, delivery.error] if token in t]
