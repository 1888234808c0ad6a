"""Runbook 13 (data-breach-response): the timeline and the credentials, judged and fetched.

IAM users, access keys and Secrets Manager secrets come from moto; an access key's age and last
use cannot be set through the API, so they are written on moto's IAM backend objects. CloudTrail
``lookup_events`` is stubbed with botocore's ``Stubber`` (moto does not implement it), which checks
each request against the real API model.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from rmsops.checks import breach
from rmsops.core.findings import Severity
from rmsops.sources import cloudtrail
from tests.judging import thresholds
from tests.test_checks_security import WAF_GROUP, put_lines, waf_line
from tests.test_cloudtrail import raw_event

OK, INFO, WARNING, ERROR = Severity.OK, Severity.INFO, Severity.WARNING, Severity.ERROR
RUNBOOK = "13-data-breach-response"
T0 = datetime(2026, 11, 28, 19, 0, tzinfo=UTC)


# =============================================================================================
# breach.timeline
# =============================================================================================

def entry(minutes: float, source: str, actor: str, event: str, detail: str = "") -> dict:
    return {"time": T0 + timedelta(minutes=minutes), "source": source, "actor": actor, "event": event,
            "detail": detail}


def test_condense_folds_repeats_within_the_gap_only():
    frame = breach.timeline_frame([entry(0, "waf", "1.1.1.1", "BLOCK /login"),
                                   entry(2, "waf", "1.1.1.1", "BLOCK /login"),
                                   entry(3, "cloudtrail", "root", "ConsoleLogin"),
                                   entry(4, "waf", "1.1.1.1", "BLOCK /login"),
                                   entry(20, "waf", "1.1.1.1", "BLOCK /login"),
                                   entry(21, "waf", "2.2.2.2", "BLOCK /login")])
    condensed = breach.condense(frame)
    assert [(r.source, r.actor, r.count) for r in condensed.itertuples()] == [
        ("waf", "1.1.1.1", 3), ("cloudtrail", "root", 1), ("waf", "1.1.1.1", 1), ("waf", "2.2.2.2", 1)]
    first = condensed.iloc[0]
    assert first["first"] == T0 and first["last"] == T0 + timedelta(minutes=4)


def test_timeline_frame_sorts_by_time():
    frame = breach.timeline_frame([entry(5, "app", "app", "ERROR"), entry(1, "waf", "x", "BLOCK /")])
    assert list(frame["source"]) == ["waf", "app"]
    assert breach.timeline_frame([]).empty


def test_judge_timeline_is_info_with_the_timeline_as_evidence():
    frame = breach.timeline_frame([entry(1, "cloudtrail", "root (1.2.3.4)", "ConsoleLogin (signin)"),
                                   entry(2, "waf", "1.1.1.1", "BLOCK /api/login"),
                                   entry(3, "app", "1.1.1.1", "auth failure")])
    [finding] = breach.judge_timeline(frame, breach.condense(frame), {"waf": WAF_GROUP}, (T0, T0 + timedelta(hours=1)))
    assert finding.severity is INFO and finding.check == "breach.timeline"
    assert finding.evidence["events_by_source"] == {"cloudtrail": 1, "waf": 1, "app": 1}
    assert [e["source"] for e in finding.evidence["timeline"]] == ["cloudtrail", "waf", "app"]
    assert finding.evidence["timeline"][0]["first"] == "2026-11-28T19:01:00Z"
    assert "document the incident timeline" in finding.resolution
    json.dumps(finding.to_dict())  # evidence is JSON as it stands


def test_judge_timeline_caps_the_evidence_and_handles_nothing():
    frame = breach.timeline_frame([entry(i, "waf", f"10.0.{i // 250}.{i % 250}", "BLOCK /") for i in range(300)])
    [finding] = breach.judge_timeline(frame, breach.condense(frame), {}, (T0, T0))
    assert finding.evidence["entries"] == 300 and finding.evidence["shown"] == breach.EVIDENCE_ENTRIES
    [empty] = breach.judge_timeline(breach.timeline_frame([]), breach.condense(breach.timeline_frame([])), {}, (T0, T0))
    assert empty.severity is INFO and "no events" in empty.title


def test_entries_from_each_source():
    trail = cloudtrail.frame_of([raw_event("e1", "AuthorizeSecurityGroupIngress", "ec2.amazonaws.com",
                                           request={"groupId": "sg-1", "cidrIp": "0.0.0.0/0"},
                                           resources=[("AWS::EC2::SecurityGroup", "sg-1")])])
    [ct] = breach.cloudtrail_entries(trail)
    assert ct["source"] == "cloudtrail" and ct["actor"] == "alice (203.0.113.7)"
    assert ct["event"] == "AuthorizeSecurityGroupIngress (ec2)" and "open to 0.0.0.0/0" in ct["detail"]
    now = pd.Timestamp(T0)
    waf = pd.DataFrame({"@timestamp": [now, now], "@message": [waf_line("1.1.1.1"), "not json"]})
    [block] = breach.waf_entries(waf)  # the Insights column names work too
    assert block["actor"] == "1.1.1.1" and block["event"] == "BLOCK /api/login"
    app = pd.DataFrame({"timestamp": [now, now], "message": [
        "ERROR [rms.db] too many clients", "WARNING [rms.auth] login failed for x from 9.9.9.9"]})
    assert [(e["event"], e["actor"]) for e in breach.app_entries(app)] == [("ERROR", "app"),
                                                                          ("auth failure", "9.9.9.9")]


@pytest.fixture(scope="module")
def moto_world():
    with mock_aws():
        yield


@pytest.fixture
def clean(moto_world):
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.iam.models import iam_backends
    from moto.logs.models import logs_backends
    from moto.secretsmanager.models import secretsmanager_backends

    logs_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].reset()
    secretsmanager_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].reset()
    iam_backends[DEFAULT_ACCOUNT_ID]["global"].reset()


def stub_lookups(ctx, answers: dict[str, list]) -> Stubber:
    stub = Stubber(ctx.client("cloudtrail"))
    for key, value in cloudtrail.SECURITY_LOOKUPS:
        stub.add_response("lookup_events", {"Events": answers.get(key, [])},
                          {"StartTime": ctx.window.start, "EndTime": ctx.window.end,
                           "LookupAttributes": [{"AttributeKey": key, "AttributeValue": value}]})
    return stub


def test_timeline_merges_cloudtrail_waf_and_app_logs(clean, make_context):
    put_lines(WAF_GROUP, [(5, waf_line("203.0.113.50")), (4, waf_line("203.0.113.50")),
                          (3, waf_line("198.51.100.1", action="ALLOW"))])
    put_lines("/ecs/rms-backend", [(6, "ERROR [rms.db] OperationalError: too many clients"),
                                   (2, "WARNING [rms.auth] POST /api/login 401 authentication failed "
                                       "from 203.0.113.50"),
                                   (1, "INFO [rms.api] GET /api/tables 200")])
    ctx = make_context(logs={"waf": WAF_GROUP, "backend": "/ecs/rms-backend"}, logs_query="filter")
    root = {"type": "Root", "arn": "arn:aws:iam::123456789012:root"}
    login = raw_event("r1", "ConsoleLogin", "signin.amazonaws.com", identity=root, username="root",
                      response={"ConsoleLogin": "Success"})
    login["EventTime"] = datetime.now(UTC) - timedelta(minutes=7)
    with stub_lookups(ctx, {"Username": [login], "EventName": [login]}) as stub:
        result = ctx.run("breach.timeline")
    stub.assert_no_pending_responses()
    [finding] = result.findings
    assert finding.severity is INFO and finding.runbook == RUNBOOK
    assert finding.evidence["events_by_source"] == {"cloudtrail": 1, "waf": 2, "app": 2}
    assert list(result.data["source"]) == ["cloudtrail", "app", "waf", "waf", "app"]  # time order
    assert "timeline_condensed" in result.frames
    assert result.frames["timeline_condensed"]["count"].tolist() == [1, 1, 2, 1]


def test_timeline_with_missing_log_groups_says_so(clean, make_context):
    ctx = make_context(logs={"waf": WAF_GROUP, "backend": "/ecs/none"}, logs_query="filter")
    with stub_lookups(ctx, {}):
        [finding] = ctx.run("breach.timeline").findings
    assert finding.severity is INFO
    assert finding.evidence["sources"]["waf (ALB)"] == f"{WAF_GROUP} (log group not found in us-east-1)"
    assert "not found" in finding.evidence["sources"]["app"]


def test_timeline_with_no_log_groups_is_cloudtrail_only(clean, make_context):
    ctx = make_context(logs=None)
    with stub_lookups(ctx, {}):
        [finding] = ctx.run("breach.timeline").findings
    assert finding.severity is INFO and finding.evidence["sources"] == {
        "cloudtrail": "lookup_events: write events, root activity, console sign-ins"}


# =============================================================================================
# breach.credentials
# =============================================================================================

KEY = ["user", "access_key", "status", "created", "age_days", "last_used", "last_service", "last_region"]


def keys(*rows) -> pd.DataFrame:
    frame = pd.DataFrame(list(rows), columns=KEY)
    for column in ("created", "last_used"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


def key(user="ci", age=10, status="Active", service="ecs", region="us-east-1", last="2026-11-28T18:00:00Z"):
    return (user, "****************AB12", status, T0 - timedelta(days=age), age, last, service, region)


NO_SECRETS = pd.DataFrame(columns=breach.SECRET_COLUMNS)


def test_judge_credentials_fresh_keys_used_at_home_are_ok():
    findings = breach.judge_credentials(keys(key(), key("web", service="N/A", region="N/A", last=None)), NO_SECRETS,
                                        thresholds(), "eu-west-1")
    assert [f.severity for f in findings] == [OK, INFO]
    assert findings[0].evidence["keys"][0]["access_key"] == "****************AB12"


@pytest.mark.parametrize(("row", "problem"), [
    (key(age=91), "91 days old"),
    (key(region="ap-southeast-1"), "region ap-southeast-1"),
    (key(service="iam"), "on iam"),
])
def test_judge_credentials_old_or_oddly_used_keys_are_warnings(row, problem):
    [finding, secrets] = breach.judge_credentials(keys(row), NO_SECRETS, thresholds(), "eu-west-1")
    assert finding.severity is WARNING and problem in finding.title + finding.detail
    assert finding.resource == "iam:user/ci/access-key/****************AB12"
    assert "Change all credentials" in finding.resolution
    assert secrets.severity is INFO


def test_judge_credentials_edges():
    # exactly the limit is not older than it; an inactive old key is no longer a risk; us-east-1 is IAM's home
    findings = breach.judge_credentials(keys(key(age=90), key("old", age=400, status="Inactive"),
                                             key("glob", region="us-east-1", service="sts")),
                                        NO_SECRETS, thresholds(), "eu-west-1")
    assert findings[0].severity is OK
    strict = breach.judge_credentials(keys(key(age=90)), NO_SECRETS, thresholds(access_key_max_age_days=30), "x")
    assert strict[0].severity is WARNING
    empty = breach.judge_credentials(keys(), NO_SECRETS, thresholds(), "eu-west-1")
    assert [f.severity for f in empty] == [OK, INFO] and "0 access key" in empty[0].title


def test_judge_secrets_lists_metadata():
    secrets = pd.DataFrame([("rms/db", T0, T0 - timedelta(days=200), None, None, False, 200),
                            ("rms/api", T0, T0, T0, None, True, 0)], columns=breach.SECRET_COLUMNS)
    finding = breach.judge_secrets(secrets)
    assert finding.severity is INFO and "1 rotated automatically" in finding.title
    assert "rms/db, 200 days" in finding.detail


def age_key(user: str, days: int, used: tuple[int, str, str] | None = None) -> tuple[str, str]:
    """A user with one key, made ``days`` old (and last used) on moto's backend. Returns (id, secret)."""
    import boto3
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.iam.models import AccessKeyLastUsed, iam_backends

    iam = boto3.client("iam", region_name="us-east-1")
    iam.create_user(UserName=user)
    created = iam.create_access_key(UserName=user)["AccessKey"]
    backend_key = iam_backends[DEFAULT_ACCOUNT_ID]["global"].users[user].access_keys[0]
    moment = backend_key.create_date
    backend_key.create_date = moment - timedelta(days=days)
    if used:
        backend_key.last_used = AccessKeyLastUsed(moment - timedelta(minutes=used[0]), used[1], used[2])
    return created["AccessKeyId"], created["SecretAccessKey"]


def test_credentials_against_moto_never_show_a_secret(clean, make_context):
    import boto3

    old_id, old_secret = age_key("rms-legacy-ci", 400, (30, "iam", "ap-southeast-1"))
    new_id, new_secret = age_key("rms-ci", 5, (10, "ecs", "us-east-1"))
    secret_value = "pg-pass-VALUE-123"
    boto3.client("secretsmanager", region_name="us-east-1").create_secret(Name="rms/db", SecretString=secret_value)
    result = make_context().run("breach.credentials")
    findings = {f.resource: f for f in result.findings}
    warned = findings[f"iam:user/rms-legacy-ci/access-key/{cloudtrail.mask_key(old_id)}"]
    assert warned.severity is WARNING and warned.runbook == RUNBOOK
    assert set(warned.evidence["problems"]) == {"400 days old (limit 90)", "last used from region ap-southeast-1",
                                                "last used on iam, a service RMS does not use"}
    assert findings["secretsmanager"].severity is INFO
    assert findings["secretsmanager"].evidence["secrets"][0]["secret"] == "rms/db"
    assert len(result.findings) == 2  # the fresh key raises nothing
    shown = json.dumps([f.to_dict() for f in result.findings]) + result.data.to_csv() + \
        result.frames["secrets"].to_csv()
    for secret in (old_id, new_id, old_secret, new_secret, secret_value):
        assert secret not in shown
    assert set(result.data["access_key"]) == {cloudtrail.mask_key(old_id), cloudtrail.mask_key(new_id)}
    assert dict(zip(result.data["user"], result.data["age_days"], strict=True))["rms-ci"] in (4, 5)


def test_credentials_with_no_users_and_no_secrets(clean, make_context):
    findings = make_context().run("breach.credentials").findings
    assert [f.severity for f in findings] == [OK, INFO]
