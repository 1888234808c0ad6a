"""`rmsops watch`: an alarm entering ALARM gives one triage, one bundle and one message.

AWS is moto: ``put_metric_alarm`` then ``set_alarm_state`` put an alarm into ALARM (moto never
evaluates alarms itself). Messages go to a webhook receiver on 127.0.0.1. The unit tests seed the
triage: ``FakeTriage`` writes a small bundle where ``rmsops triage`` would, so each test takes
milliseconds; the last test runs the real command against the served demo, whose incident has
its 5xx and latency alarms in ALARM.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
import yaml
from moto import mock_aws

from rmsops import cli
from rmsops.core import config
from rmsops.core.errors import UserError
from rmsops.core.findings import Finding, Severity, document, write_document
from rmsops.execution import bundle, notify, watch
from rmsops.sources import alarms as alarm_source

LB = "app/rms-alb/50dc6c495c0c9188"


@pytest.fixture
def aws():
    with mock_aws():
        yield boto3.client("cloudwatch", region_name="us-east-1")


def _alarm(cloudwatch, name: str, dimensions: list[dict], state: str = "ALARM") -> None:
    cloudwatch.put_metric_alarm(AlarmName=name, Namespace="AWS/ApplicationELB", MetricName="HTTPCode_ELB_5XX_Count",
                                Dimensions=dimensions, Statistic="Sum", Period=60, EvaluationPeriods=1,
                                Threshold=10.0, ComparisonOperator="GreaterThanThreshold")
    cloudwatch.set_alarm_state(AlarmName=name, StateValue=state, StateReason=f"test: {state}")


def _on_alb(cloudwatch, name: str) -> None:
    _alarm(cloudwatch, name, [{"Name": "LoadBalancer", "Value": LB}])


class FakeTriage(watch.Watcher):
    """Seeds the triage: writes the bundle ``rmsops triage`` would (one critical finding and the
    escalation level) and starts a child that exits 1 at once, or that runs until stopped."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.launched: list[watch.Incident] = []
        self.hold = False  # True: the triage runs until it is stopped

    def _launch(self, incident: watch.Incident) -> subprocess.Popen:
        self.launched.append(incident)
        folder = self.out / incident.folder
        folder.mkdir(parents=True)
        findings = [Finding("app.alb.5xx", Severity.CRITICAL, "alb:rms-alb", "Sustained 5xx errors", "2200 5xx"),
                    Finding("escalation.level", Severity.CRITICAL, "environment:test",
                            "Escalation level 0 (critical issue)", "the API health check fails")]
        window = incident.window
        write_document(folder / "findings.json", document(findings, "test", datetime.fromisoformat(window["start"]),
                                                          datetime.fromisoformat(window["end"])))
        bundle.write_manifest(folder, {"status": "complete", "environment": "test", "window": window})
        program = "import time; time.sleep(60)" if self.hold else "import sys; sys.exit(1)"
        return subprocess.Popen([sys.executable, "-c", program])


def _watcher(env_file, tmp_path: Path, targets=(), cls=FakeTriage, **changes) -> watch.Watcher:
    settings = config.load(env_file(**changes))
    options = watch.Options(interval=timedelta(seconds=0.2), notify_attempts=3, notify_backoff_seconds=0.01)
    return cls(settings, tmp_path / "incidents", targets, options, log=lambda line: None)


def _run_once(watcher: watch.Watcher) -> int:
    return watcher.run(once=True, stop=threading.Event())


def _bundles(watcher: watch.Watcher) -> list[str]:
    return sorted(p.name for p in watcher.out.iterdir() if p.is_dir())


# --- which alarms -------------------------------------------------------------------------------

def test_alarms_on_the_environments_resources_are_watched_and_no_others(aws, env_file):
    settings = config.load(env_file())
    _on_alb(aws, "alb-5xx")
    _alarm(aws, "tg-unhealthy", [{"Name": "TargetGroup", "Value": "targetgroup/rms-backend/73e2d6bc24d8a067"}])
    _alarm(aws, "db-cpu", [{"Name": "DBInstanceIdentifier", "Value": "rms-production-db"}])
    _alarm(aws, "svc-mem", [{"Name": "ClusterName", "Value": "rms-production"},
                            {"Name": "ServiceName", "Value": "rms-backend"}])
    _alarm(aws, "other-alb", [{"Name": "LoadBalancer", "Value": "app/rms-alb-staging/1234"}])
    _alarm(aws, "other-db", [{"Name": "DBInstanceIdentifier", "Value": "billing-db"}])
    _alarm(aws, "calm-alb", [{"Name": "LoadBalancer", "Value": LB}], state="OK")
    names = [a.name for a in alarm_source.firing(aws, settings)]
    assert sorted(names) == ["alb-5xx", "db-cpu", "svc-mem", "tg-unhealthy"]


def test_named_alarms_and_a_prefix_replace_the_default(aws, env_file):
    settings = config.load(env_file(alarms={"names": ["other-db", "calm"], "prefix": "rms-"}))
    _on_alb(aws, "alb-5xx")  # on the ALB, but neither named nor prefixed
    _alarm(aws, "other-db", [{"Name": "DBInstanceIdentifier", "Value": "billing-db"}])
    _alarm(aws, "rms-anything", [])
    _alarm(aws, "calm", [], state="OK")  # named, but not firing
    _alarm(aws, "rms-calm", [], state="INSUFFICIENT_DATA")
    assert sorted(a.name for a in alarm_source.firing(aws, settings)) == ["other-db", "rms-anything"]


def test_a_bad_alarms_section_is_one_line(env_file):
    with pytest.raises(config.ConfigError, match="alarms.names: expected list"):
        config.load(env_file(alarms={"names": "rms-alb-5xx"}))


# --- one triage, one message --------------------------------------------------------------------

def test_an_alarm_gives_one_bundle_and_one_message(aws, env_file, tmp_path, receiver):
    hook = receiver()
    _on_alb(aws, "rms-alb-5xx")
    watcher = _watcher(env_file, tmp_path, [notify.parse_target(hook.url)])
    assert _run_once(watcher) == 1  # the triage's exit status: it found a critical problem
    assert len(_bundles(watcher)) == 1 and _bundles(watcher)[0].endswith("-rms-alb-5xx")
    assert len(hook.delivered) == 1
    text = hook.delivered[0]["text"]
    assert "rms-alb-5xx" in text and "Escalation level 0" in text and "test" in text
    assert bundle.manifest_digest(watcher.out / _bundles(watcher)[0]) in text
    incident = watcher.state.latest()
    assert incident.exit_code == 1 and incident.notified[0]["ok"] is True
    start, end = (datetime.fromisoformat(incident.window[k]) for k in ("start", "end"))
    fired = alarm_source.firing(aws, watcher.settings)[0].since
    assert abs(start - (fired - watch.DEFAULT_LOOKBACK)) < timedelta(seconds=1) and end >= fired.replace(microsecond=0)


def test_a_restart_does_not_triage_the_same_alarm_again(aws, env_file, tmp_path, receiver):
    hook = receiver()
    _on_alb(aws, "rms-alb-5xx")
    assert _run_once(_watcher(env_file, tmp_path, [notify.parse_target(hook.url)])) == 1
    again = _watcher(env_file, tmp_path, [notify.parse_target(hook.url)])
    assert _run_once(again) == 0
    assert len(_bundles(again)) == 1 and len(hook.delivered) == 1


def test_alarms_within_the_cooldown_join_the_incident_and_later_ones_start_another(aws, env_file, tmp_path):
    _on_alb(aws, "first")
    watcher = _watcher(env_file, tmp_path)
    watcher.hold = True  # the first triage is still running when the second alarm fires
    try:
        watcher.poll()
        _alarm(aws, "second", [{"Name": "DBInstanceIdentifier", "Value": "rms-production-db"}])
        watcher.poll()
        assert watcher.busy and len(watcher.launched) == 1
        assert watcher.state.latest().alarms == ["first", "second"]
    finally:
        watcher.hold = False
        watcher.stop_triage()
    # Finished now: an alarm firing within the cooldown still joins it ...
    _alarm(aws, "third", [{"Name": "ServiceName", "Value": "rms-frontend"}])
    watcher.poll()
    assert len(watcher.launched) == 1 and watcher.state.latest().alarms == ["first", "second", "third"]
    # ... one firing after it starts another incident.
    watcher.options.cooldown = timedelta(0)
    watcher.state.latest().ended_at = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    _alarm(aws, "fourth", [{"Name": "ServiceName", "Value": "rms-backend"}])
    watcher.poll()
    watcher.stop_triage()
    assert len(watcher.launched) == 2 and watcher.state.latest().alarms == ["fourth"]
    assert len(_bundles(watcher)) == 2


def test_alarms_seen_together_are_one_triage_whose_window_covers_them(aws, env_file, tmp_path):
    _on_alb(aws, "a-5xx")
    _alarm(aws, "b-db", [{"Name": "DBInstanceIdentifier", "Value": "rms-production-db"}])
    watcher = _watcher(env_file, tmp_path)
    assert _run_once(watcher) == 1
    incident = watcher.state.latest()
    assert len(watcher.launched) == 1 and sorted(incident.alarms) == ["a-5xx", "b-db"]
    earliest = min(a.since for a in alarm_source.firing(aws, watcher.settings))
    start = datetime.fromisoformat(incident.window["start"])
    assert abs(start - (earliest - watch.DEFAULT_LOOKBACK)) < timedelta(seconds=1)


def test_a_webhook_that_fails_is_retried_and_reported_and_the_bundle_kept(aws, env_file, tmp_path, receiver):
    flaky, down = receiver(500, 500, 200), receiver(500)
    _on_alb(aws, "rms-alb-5xx")
    logged: list[str] = []
    watcher = _watcher(env_file, tmp_path, [notify.parse_target(flaky.url), notify.parse_target(down.url)])
    watcher.log = logged.append
    assert _run_once(watcher) == 3  # a notification that could not be delivered
    assert len(flaky.delivered) == 1 and not down.delivered  # the flaky one got it on the third attempt
    delivered = {d["ok"]: d for d in watcher.state.latest().notified}
    assert delivered[True]["attempts"] == 3 and delivered[False]["attempts"] == 3
    assert "500" in delivered[False]["error"]
    assert len(_bundles(watcher)) == 1 and (watcher.out / _bundles(watcher)[0] / "manifest.json").is_file()
    assert not [line for line in logged if "hook-path-secret" in line]
    assert any("FAILED" in line for line in logged)


def test_a_restart_sends_the_message_the_last_watcher_owed(aws, env_file, tmp_path, receiver):
    hook = receiver()
    _on_alb(aws, "rms-alb-5xx")
    first = _watcher(env_file, tmp_path)  # no target: nothing owed, recorded as sent to nobody
    _run_once(first)
    first.state.latest().notified = None  # as if it died between the bundle and the message
    first.state.save()
    second = _watcher(env_file, tmp_path, [notify.parse_target(hook.url)])
    assert _run_once(second) == 0 and len(hook.delivered) == 1 and not second.launched


def test_aws_unreachable_is_one_line_and_exit_3(env_file, tmp_path):
    watcher = _watcher(env_file, tmp_path, aws={"region": "us-east-1", "endpoint_url": "http://127.0.0.1:9"})
    logged: list[str] = []
    watcher.log = logged.append
    assert _run_once(watcher) == 3
    assert len(logged) == 1 and logged[0].startswith("could not read the alarms:") and "\n" not in logged[0]


def test_a_damaged_state_file_and_a_second_watcher_are_bad_input(env_file, tmp_path):
    out = tmp_path / "incidents"
    out.mkdir()
    with watch.Lock(out, "test"), pytest.raises(UserError, match="another `rmsops watch`"):
        watch.Lock(out, "test").__enter__()
    watch.state_path(out, "test").write_text("{not json")
    with pytest.raises(UserError, match="damaged.*move it aside"):
        _watcher(env_file, tmp_path)


def test_the_command_line_rejects_bad_options_in_one_line(env_file, tmp_path, capsys):
    path = str(env_file())
    for args, expected in ((["--interval", "soon"], "--interval 'soon' is not a duration"),
                           (["--notify", "ftp://x"], "ftp"),
                           (["--runbook", "99"], "99"),
                           (["-p", "no_such_threshold=1"], "no_such_threshold")):
        assert cli.main(["watch", "-e", path, "-o", str(tmp_path / "o"), "--once", *args]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and expected in err and "Traceback" not in err


# --- the real thing ------------------------------------------------------------------------------

def test_watch_once_against_the_served_demo(demo_incident, tmp_path, receiver):
    """The demo incident's 5xx and latency alarms are in ALARM: one triage of them, one message;
    the next look (cron's next minute) repeats nothing."""
    hook = receiver()
    targets = tmp_path / "targets"
    targets.write_text(f"# the team's channel\n{hook.url}\n")
    out = tmp_path / "incidents"
    command = [sys.executable, "-m", "rmsops.cli", "watch", "-e", str(demo_incident.env_file), "-o", str(out),
               "--once", "--notify", f"@{targets}", "--runbook", "01", "--runbook", "18"]
    first = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert first.returncode == 1, first.stderr
    assert "hook-path-secret" not in first.stderr + first.stdout
    bundles = [p for p in out.iterdir() if p.is_dir()]
    assert len(bundles) == 1 and len(hook.delivered) == 1
    text = hook.delivered[0]["text"]
    assert "rms-production-alb-5xx" in text and "rms-production-api-latency-p99" in text
    assert "Escalation level" in text and bundle.manifest_digest(bundles[0]) in text
    assert bundle.verify(bundles[0]).files_ok
    state = json.loads(watch.state_path(out, yaml.safe_load(demo_incident.env_file.read_text())["name"]).read_text())
    assert len(state["incidents"]) == 1
    second = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    assert len([p for p in out.iterdir() if p.is_dir()]) == 1 and len(hook.delivered) == 1


def _wait_for(condition, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "waited in vain"
        time.sleep(0.05)


def test_sigterm_during_a_triage_writes_an_incomplete_bundle_and_still_tells(demo_incident, tmp_path, receiver):
    """systemctl stop while the triage runs: the watcher stops it the way a person would, the bundle
    is written and marked incomplete, the message says so, and the watcher exits 0."""
    hook = receiver()
    out = tmp_path / "incidents"
    watcher = subprocess.Popen(
        [sys.executable, "-m", "rmsops.cli", "watch", "-e", str(demo_incident.env_file), "-o", str(out),
         "--interval", "1s", "--notify", hook.url, "--runbook", "16", "--runbook", "07"],
        stderr=subprocess.PIPE, text=True)
    said: list[str] = []
    for line in watcher.stderr:  # wait until the triage has started, then stop the watcher
        said.append(line)
        if "triage of" in line:
            _wait_for(lambda: list(out.glob(".*.partial-*")))  # the triage took over its signals
            watcher.send_signal(signal.SIGTERM)
            break
    said += watcher.stderr.readlines()
    assert watcher.wait(timeout=150) == 0, "".join(said)
    [folder] = [p for p in out.iterdir() if p.is_dir()]
    assert bundle.read_manifest(folder)["status"] == "incomplete"
    assert len(hook.delivered) == 1 and "INCOMPLETE" in hook.delivered[0]["text"]
    assert any("stopping the running triage" in line for line in said)
    with watch.Lock(out, yaml.safe_load(demo_incident.env_file.read_text())["name"]):
        pass  # released: the next watcher may start
