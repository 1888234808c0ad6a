"""Runbook 12 (security-suspicious-activity): judges with small frames, fetches against moto and stubs.

Layer 1 feeds the pure judge and parse functions. Layer 2 goes through ``ctx.run(check_id)``:
WAF and application logs in moto's CloudWatch Logs (the ``logs_query: filter`` path moto supports),
ALB access logs as gzipped objects in moto's S3. What moto lacks is stubbed with botocore's
``Stubber``, which validates every request against the real API model: Logs Insights ``stats``
(moto ignores it) and CloudTrail ``lookup_events`` (moto does not implement it).
"""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws

from rmsops.checks import security
from rmsops.core.window import Window
from tests import aws_seed as seed
from tests.judging import CRITICAL, ERROR, INFO, OK, WARNING, thresholds
from tests.test_cloudtrail import raw_event

RUNBOOK = "12-security-suspicious-activity"
WAF_GROUP = "aws-waf-logs-rms-production"


def waf_line(ip: str, action: str = "BLOCK", uri: str = "/api/login", rule: str = "rate-limit") -> str:
    return json.dumps({"timestamp": 1, "action": action, "terminatingRuleId": rule,
                       "httpRequest": {"clientIp": ip, "uri": uri, "httpMethod": "POST", "country": "NL"}})


def events(*messages: str) -> pd.DataFrame:
    now = pd.Timestamp.now(tz="UTC")
    return pd.DataFrame({"timestamp": [now] * len(messages), "log_group": "g", "stream": "s",
                         "message": list(messages)})


# =============================================================================================
# Layer 1: pure functions
# =============================================================================================

# --- security.waf.blocks ---------------------------------------------------------------------

def test_parse_waf_reads_the_fields_and_refuses_garbage():
    record = security.parse_waf(waf_line("203.0.113.5"))
    assert record == {"action": "BLOCK", "client": "203.0.113.5", "rule": "rate-limit", "uri": "/api/login",
                      "country": "NL"}
    assert security.parse_waf("not json") is None
    assert security.parse_waf("[1, 2]") is None


def test_waf_aggregate_counts_blocks_only_per_client_rule_uri():
    frame = security.waf_aggregate(events(waf_line("1.1.1.1"), waf_line("1.1.1.1"), waf_line("2.2.2.2"),
                                          waf_line("1.1.1.1", action="ALLOW"), "BLOCK but not json",
                                          waf_line("3.3.3.3", uri="/wp-login.php", rule="common")))
    assert list(frame.columns) == security.WAF_COLUMNS
    counts = {(r.client, r.uri): r.blocks for r in frame.itertuples()}
    assert counts == {("1.1.1.1", "/api/login"): 2, ("2.2.2.2", "/api/login"): 1, ("3.3.3.3", "/wp-login.php"): 1}
    assert security.waf_aggregate(events()).empty


def blocks(*rows) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=security.WAF_COLUMNS)


def test_judge_waf_spike_is_warning_with_top_clients_and_rules():
    current = blocks(("1.1.1.1", "rate", "/api/login", 30), ("2.2.2.2", "rate", "/api/login", 10),
                     ("2.2.2.2", "common", "/.env", 5))
    [finding] = security.judge_waf_blocks(current, 4, thresholds(), WAF_GROUP)
    assert finding.severity is WARNING and finding.resource == f"waf:{WAF_GROUP}"
    assert finding.evidence["blocks"] == 45 and finding.evidence["previous_window_blocks"] == 4
    assert finding.evidence["top_clients"][0] == {"client": "1.1.1.1", "blocks": 30}
    assert finding.evidence["top_rules"] == [{"rule": "rate", "blocks": 40}, {"rule": "common", "blocks": 5}]
    assert "1.1.1.1 (30)" in finding.detail


@pytest.mark.parametrize(("count", "baseline", "expected"), [
    (19, 0, OK),        # below waf_block_min: never a spike
    (20, 0, WARNING),   # at the minimum with no baseline
    (29, 10, OK),       # under 3x the previous window
    (30, 10, WARNING),  # exactly 3x
    (0, 50, OK),        # quieter than before
])
def test_judge_waf_minimum_and_factor(count, baseline, expected):
    current = blocks(("1.1.1.1", "r", "/", count)) if count else blocks()
    [finding] = security.judge_waf_blocks(current, baseline, thresholds(), WAF_GROUP)
    assert finding.severity is expected


def test_judge_waf_thresholds_are_parameters():
    current = blocks(("1.1.1.1", "r", "/", 12))
    assert security.judge_waf_blocks(current, 0, thresholds(), WAF_GROUP)[0].severity is OK
    assert security.judge_waf_blocks(current, 0, thresholds(waf_block_min=10), WAF_GROUP)[0].severity is WARNING
    assert security.judge_waf_blocks(current, 5, thresholds(waf_block_min=10, waf_block_spike_factor=2),
                                     WAF_GROUP)[0].severity is WARNING


# --- security.auth.failures ------------------------------------------------------------------

@pytest.mark.parametrize("line", [
    '2026-11-28T19:00:00.000Z WARNING [rms.auth] POST /api/login 401 authentication failed for user "a" from 1.2.3.4',
    '1.2.3.4 - - "POST /api/login HTTP/1.1" 401 166 "-" "curl/8"',
    "ERROR [rms.auth] login failed: invalid password client_ip=1.2.3.4",
    "WARN Unauthorized request from 1.2.3.4",
])
def test_auth_failure_lines_are_recognised(line):
    frame = security.auth_aggregate(events(line))
    assert frame.to_dict("records") == [{"client": "1.2.3.4", "failures": 1}]


@pytest.mark.parametrize("line", [
    "INFO [rms.api] GET /api/reservations 200 in 40 ms from 1.2.3.4",
    '1.2.3.4 - - "GET / HTTP/1.1" 200 401 "-" "Mozilla/5.0"',  # 401 bytes, not status 401
    "INFO [rms.auth] login ok for alice from 1.2.3.4",
])
def test_other_lines_are_not_auth_failures(line):
    assert security.auth_aggregate(events(line)).empty


def test_client_of_takes_the_first_ipv4_or_unknown():
    assert security.client_of("failed from 10.0.0.1 via 10.0.0.2") == "10.0.0.1"
    assert security.client_of("version 1.2.3.4.5 only") == "unknown"
    assert security.client_of("") == "unknown"


def test_judge_auth_failures_one_source_above_the_limit_is_warning():
    df = pd.DataFrame([("203.0.113.50", 58), ("198.51.100.1", 20), ("unknown", 500)], columns=security.AUTH_COLUMNS)
    findings = security.judge_auth_failures(df, thresholds(), ["/ecs/rms-backend"])
    assert [(f.severity, f.resource) for f in findings] == [(WARNING, "ip:203.0.113.50")]  # 20 is not above 20
    assert findings[0].evidence["failures"] == 58 and findings[0].evidence["total"] == 578


def test_judge_auth_failures_below_the_limit_and_empty_are_ok():
    df = pd.DataFrame([("1.1.1.1", 3)], columns=security.AUTH_COLUMNS)
    [finding] = security.judge_auth_failures(df, thresholds(), ["g"])
    assert finding.severity is OK and "1.1.1.1 (3)" in finding.detail
    [empty] = security.judge_auth_failures(pd.DataFrame(columns=security.AUTH_COLUMNS), thresholds(), ["g"])
    assert empty.severity is OK and empty.evidence["total"] == 0
    strict = security.judge_auth_failures(df, thresholds(auth_failures_per_source=2), ["g"])
    assert strict[0].severity is WARNING


# --- security.cloudtrail.sensitive -----------------------------------------------------------

ROOT = {"type": "Root", "arn": "arn:aws:iam::123456789012:root"}


def trail(*raw) -> pd.DataFrame:
    from rmsops.sources import cloudtrail

    return cloudtrail.frame_of(raw)


def by_category(findings) -> dict:
    return {f.evidence.get("category", "none"): f for f in findings}


def test_judge_cloudtrail_quiet_account_is_ok():
    df = trail(raw_event("e1", "ConsoleLogin", "signin.amazonaws.com", response={"ConsoleLogin": "Success"}),
               raw_event("e2", "RunInstances", "ec2.amazonaws.com"))
    [finding] = security.judge_cloudtrail(df)
    assert finding.severity is OK and finding.evidence["events"] == 2


def test_judge_cloudtrail_root_use_is_critical_and_what_root_did_is_reported_too():
    df = trail(raw_event("e1", "ConsoleLogin", "signin.amazonaws.com", identity=ROOT, username="root",
                         response={"ConsoleLogin": "Success"}, extra={"MFAUsed": "No"}),
               raw_event("e2", "AuthorizeSecurityGroupIngress", "ec2.amazonaws.com", identity=ROOT, username="root",
                         request={"groupId": "sg-9", "ipPermissions": {"items": [{"ipRanges": {"items": [
                             {"cidrIp": "0.0.0.0/0"}]}}]}}, resources=[("AWS::EC2::SecurityGroup", "sg-9")]))
    found = by_category(security.judge_cloudtrail(df))
    assert found["root"].severity is CRITICAL and found["root"].resource == "aws:root"
    assert "without MFA" in found["root"].title and found["root"].evidence["count"] == 2
    assert found["security_group"].severity is WARNING
    assert found["security_group"].resource == "securitygroup:sg-9" and "0.0.0.0/0" in found["security_group"].title


@pytest.mark.parametrize(("name", "request_", "expected"), [
    ("StopLogging", {"name": "rms-trail"}, CRITICAL),
    ("DeleteTrail", {"name": "rms-trail"}, CRITICAL),
    ("UpdateTrail", {"name": "rms-trail", "isMultiRegionTrail": False}, CRITICAL),
    ("PutEventSelectors", {"trailName": "rms-trail", "eventSelectors": [{"readWriteType": "ReadOnly"}]}, CRITICAL),
    ("UpdateTrail", {"name": "rms-trail", "snsTopicName": "alerts"}, WARNING),
])
def test_judge_cloudtrail_disabling_logging_is_critical(name, request_, expected):
    df = trail(raw_event("e1", name, "cloudtrail.amazonaws.com", request=request_))
    [finding] = security.judge_cloudtrail(df)
    assert finding.severity is expected


def test_judge_cloudtrail_console_failures_iam_and_sg_changes_are_warnings():
    df = trail(*[raw_event(f"f{i}", "ConsoleLogin", "signin.amazonaws.com", username="alice",
                           response={"ConsoleLogin": "Failure"}, error=("", "Failed authentication"))
                 for i in range(3)],
               raw_event("i1", "AttachUserPolicy", "iam.amazonaws.com",
                         request={"userName": "bob", "policyArn": "arn:aws:iam::aws:policy/AdministratorAccess"},
                         resources=[("AWS::IAM::User", "bob")]),
               raw_event("i2", "CreateAccessKey", "iam.amazonaws.com", resources=[("AWS::IAM::User", "bob")]),
               raw_event("s1", "RevokeSecurityGroupIngress", "ec2.amazonaws.com", request={"groupId": "sg-1"}))
    found = {f.resource: f for f in security.judge_cloudtrail(df)}
    assert {r: f.severity for r, f in found.items()} == {"signin:alice": WARNING, "user:bob": WARNING,
                                                         "ec2:sg-1": WARNING}
    assert found["signin:alice"].evidence["count"] == 3 and "ConsoleLogin x3" in found["signin:alice"].title
    assert found["user:bob"].evidence["category"] == "iam" and found["user:bob"].evidence["count"] == 2


def test_judge_cloudtrail_denied_calls_and_reads_change_nothing():
    df = trail(raw_event("d1", "DeleteTrail", "cloudtrail.amazonaws.com", error=("AccessDenied", "no")),
               raw_event("r1", "GetUser", "iam.amazonaws.com", read_only=True))
    [finding] = security.judge_cloudtrail(df)
    assert finding.severity is OK


def test_judge_cloudtrail_failed_root_login_is_a_failed_sign_in_not_root_use():
    df = trail(raw_event("f1", "ConsoleLogin", "signin.amazonaws.com", identity=ROOT, username="root",
                         response={"ConsoleLogin": "Failure"}))
    [finding] = security.judge_cloudtrail(df)
    assert finding.severity is WARNING and finding.resource == "signin:root"


# --- security.alb.access_logs ----------------------------------------------------------------

LB = "app/rms-alb/50dc6c495c0c9188"


def alb_line(at: datetime, client: str = "203.0.113.5", status: int = 200, path: str = "/api/login",
             agent: str = "Mozilla/5.0 (X11; Linux x86_64)") -> str:
    when = at.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"
    return (f'https {when} {LB} {client}:51234 10.0.10.11:8000 0.001 0.045 0.000 {status} {status} 512 1532 '
            f'"POST https://rms.example.com:443{path}?x=1 HTTP/2.0" "{agent}" ECDHE-RSA-AES128-GCM-SHA256 '
            f'TLSv1.2 arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/rms-backend/abc '
            f'"Root=1-58337262-36d228ad5d99923122bbe354" "rms.example.com" "arn:aws:acm:us-east-1:1:certificate/x" '
            f'10 {when} "forward" "-" "-" "10.0.10.11:8000" "{status}" "-" "-"')


def test_log_prefixes_cover_each_day_of_the_window():
    window = Window(datetime(2026, 11, 28, 23, 30, tzinfo=UTC), datetime(2026, 11, 28, 23, 58, tzinfo=UTC))
    assert security.log_prefixes("rms-alb/", "123", "us-east-1", window) == [
        "rms-alb/AWSLogs/123/elasticloadbalancing/us-east-1/2026/11/28/",
        "rms-alb/AWSLogs/123/elasticloadbalancing/us-east-1/2026/11/29/"]  # a file closing after midnight
    assert security.log_prefixes("", "123", "eu-west-1", window)[0].startswith("AWSLogs/123/")


def test_in_window_uses_the_file_close_time_and_the_load_balancer():
    window = Window(datetime(2026, 11, 28, 19, tzinfo=UTC), datetime(2026, 11, 28, 20, tzinfo=UTC))
    name = "p/123_elasticloadbalancing_us-east-1_app.rms-alb.50dc_{}_10.0.0.1_abc.log.gz"
    assert security.in_window(name.format("20261128T1905Z"), "app.rms-alb.50dc", window)
    assert security.in_window(name.format("20261128T2005Z"), "app.rms-alb.50dc", window)  # holds 20:00-20:05
    assert not security.in_window(name.format("20261128T2010Z"), "app.rms-alb.50dc", window)
    assert not security.in_window(name.format("20261128T1855Z"), "app.rms-alb.50dc", window)
    assert not security.in_window(name.format("20261128T1905Z"), "app.other.1234", window)


def test_judge_alb_clients_over_the_limit_is_warning():
    df = pd.DataFrame([("1.1.1.1", 6000, 5900, 0, "/api/login", 6000), ("2.2.2.2", 40, 0, 0, "/", 40)],
                      columns=security.CLIENT_COLUMNS)
    read = {"bucket": "b", "prefix": "", "files": 3, "files_found": 3, "truncated": False, "entries": 6040}
    [finding] = security.judge_alb_clients(df, thresholds(), "rms-alb", read)
    assert finding.severity is WARNING and finding.resource == "ip:1.1.1.1"
    assert finding.evidence["status_4xx"] == 5900 and finding.evidence["top_path"] == "/api/login"
    [ok] = security.judge_alb_clients(df, thresholds(alb_client_requests_max=10_000), "rms-alb", read)
    assert ok.severity is OK and ok.evidence["top_clients"][0]["client"] == "1.1.1.1"


def test_judge_alb_clients_no_files_is_info():
    read = {"bucket": "b", "prefix": "p", "files": 0, "files_found": 0, "truncated": False, "entries": 0}
    [finding] = security.judge_alb_clients(pd.DataFrame(columns=security.CLIENT_COLUMNS), thresholds(), "a", read)
    assert finding.severity is INFO


def test_access_log_location():
    attrs = [{"Key": "access_logs.s3.enabled", "Value": "true"}, {"Key": "access_logs.s3.bucket", "Value": "b"},
             {"Key": "access_logs.s3.prefix", "Value": "p"}, {"Key": "idle_timeout.timeout_seconds", "Value": "60"}]
    assert security.access_log_location(attrs) == (True, "b", "p")
    assert security.access_log_location([]) == (False, "", "")


# =============================================================================================
# Layer 2: through ctx.run against moto (and stubs where moto has no such API)
# =============================================================================================

@pytest.fixture(scope="module")
def moto_world():
    with mock_aws():
        seed.network()
        yield


@pytest.fixture
def aws(moto_world):
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.logs.models import logs_backends
    from moto.s3.models import s3_backends

    logs_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].reset()
    s3_backends[DEFAULT_ACCOUNT_ID]["aws"].reset()
    seed.reset("elbv2")


def put_lines(group: str, lines: list[tuple[float, str]]) -> None:
    """Log events ``(minutes ago, message)`` into a new group."""
    logs = seed.client("logs")
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="s")
    now = datetime.now(UTC)
    batch = sorted(({"timestamp": int((now - timedelta(minutes=m)).timestamp() * 1000), "message": text}
                    for m, text in lines), key=lambda e: e["timestamp"])
    logs.put_log_events(logGroupName=group, logStreamName="s", logEvents=batch)


def filter_context(make_context, **changes):
    return make_context(logs={"waf": WAF_GROUP, "backend": "/ecs/rms-backend", "frontend": "/ecs/rms-frontend"},
                        logs_query="filter", **changes)


def test_waf_blocks_spike_against_moto(aws, make_context):
    put_lines(WAF_GROUP, [(m / 10, waf_line("203.0.113.50")) for m in range(1, 31)]
              + [(70 + m, waf_line("192.0.2.1", uri="/.env", rule="common")) for m in range(5)]
              + [(3, waf_line("198.51.100.2", action="ALLOW"))])
    result = filter_context(make_context).run("security.waf.blocks")
    [finding] = result.findings
    assert finding.severity is WARNING and finding.runbook == RUNBOOK
    assert finding.evidence["blocks"] == 30 and finding.evidence["previous_window_blocks"] == 5
    assert list(result.data.columns) == security.WAF_COLUMNS


def test_waf_blocks_quiet_against_moto(aws, make_context):
    put_lines(WAF_GROUP, [(5, waf_line("192.0.2.1")), (80, waf_line("192.0.2.1"))])
    [finding] = filter_context(make_context).run("security.waf.blocks").findings
    assert finding.severity is OK and finding.evidence["blocks"] == 1


def test_waf_not_configured_is_info_and_missing_group_is_warning(aws, make_context):
    [info] = make_context().run("security.waf.blocks").findings  # BASE_ENV has no logs.waf
    assert info.severity is INFO
    [missing] = filter_context(make_context).run("security.waf.blocks").findings
    assert missing.severity is WARNING and "not found" in missing.title


def test_waf_blocks_through_logs_insights_stats(make_context):
    """Logs Insights (production's path) via Stubber: moto ignores `stats`, the real API model validates."""
    ctx = make_context(logs={"waf": WAF_GROUP})
    stub = Stubber(ctx.client("logs"))

    def row(ip, rule, uri, n):
        return [{"field": "httpRequest.clientIp", "value": ip}, {"field": "terminatingRuleId", "value": rule},
                {"field": "httpRequest.uri", "value": uri}, {"field": "blocks", "value": str(n)}]

    for query_id, rows in (("now", [row("1.1.1.1", "rate", "/api/login", 25), row("2.2.2.2", "rate", "/x", 5)]),
                           ("before", [row("1.1.1.1", "rate", "/api/login", 2)])):
        stub.add_response("start_query", {"queryId": query_id},
                          {"logGroupNames": [WAF_GROUP], "startTime": ANY, "endTime": ANY,
                           "queryString": security.WAF_QUERY.insights, "limit": 10000})
        stub.add_response("get_query_results", {"status": "Complete", "results": rows}, {"queryId": query_id})
    with stub:
        result = ctx.run("security.waf.blocks")
    stub.assert_no_pending_responses()
    [finding] = result.findings
    assert finding.severity is WARNING and finding.evidence["blocks"] == 30
    assert finding.evidence["previous_window_blocks"] == 2
    assert result.data.iloc[0].to_dict() == {"client": "1.1.1.1", "rule": "rate", "uri": "/api/login", "blocks": 25}


def test_auth_failures_against_moto(aws, make_context):
    lines = [(1 + i / 10, f"WARNING [rms.auth] POST /api/login 401 authentication failed for user \"u{i}\" "
                          f"from 203.0.113.50") for i in range(25)]
    lines += [(2, "INFO [rms.api] GET /api/reservations 200 from 203.0.113.50"),
              (3, "WARNING [rms.auth] login failed for bob from 198.51.100.9")]
    put_lines("/ecs/rms-backend", lines)
    put_lines("/ecs/rms-frontend", [(4, '203.0.113.50 - - "POST /api/login HTTP/1.1" 401 20 "-" "x"')])
    result = filter_context(make_context).run("security.auth.failures")
    [finding] = result.findings
    assert finding.severity is WARNING and finding.resource == "ip:203.0.113.50"
    assert finding.evidence["failures"] == 26 and finding.evidence["total"] == 27
    assert dict(zip(result.data["client"], result.data["failures"], strict=True)) == {"203.0.113.50": 26,
                                                                                     "198.51.100.9": 1}


def test_auth_failures_through_logs_insights_stats(make_context):
    """Logs Insights via Stubber (moto ignores parse/stats); rows without a parsed client become 'unknown'."""
    ctx = make_context(logs={"backend": "/ecs/rms-backend", "frontend": "/ecs/rms-frontend"})
    stub = Stubber(ctx.client("logs"))
    stub.add_response("start_query", {"queryId": "q"},
                      {"logGroupNames": ["/ecs/rms-backend", "/ecs/rms-frontend"], "startTime": ANY, "endTime": ANY,
                       "queryString": security.AUTH_QUERY.insights, "limit": 10000})
    stub.add_response("get_query_results", {"status": "Complete", "results": [
        [{"field": "client", "value": "203.0.113.50"}, {"field": "failures", "value": "41"}],
        [{"field": "failures", "value": "7"}]]}, {"queryId": "q"})
    with stub:
        result = ctx.run("security.auth.failures")
    [finding] = result.findings
    assert finding.severity is WARNING and finding.resource == "ip:203.0.113.50"
    assert finding.evidence["total"] == 48
    assert result.data.to_dict("records") == [{"client": "203.0.113.50", "failures": 41},
                                              {"client": "unknown", "failures": 7}]


def test_auth_failures_not_configured_is_info(aws, make_context):
    [finding] = make_context(logs=None).run("security.auth.failures").findings
    assert finding.severity is INFO


def alb_with_logs(enabled: bool = True) -> str:
    lb, _ = seed.create_alb({})
    if enabled:
        seed.client("s3").create_bucket(Bucket="rms-alb-logs")
        seed.client("elbv2").modify_load_balancer_attributes(LoadBalancerArn=lb, Attributes=[
            {"Key": "access_logs.s3.enabled", "Value": "true"},
            {"Key": "access_logs.s3.bucket", "Value": "rms-alb-logs"},
            {"Key": "access_logs.s3.prefix", "Value": "rms"}])
    return lb


def put_alb_file(lb_arn: str, closes: datetime, lines: list[str], prefix: str = "rms") -> None:
    """A log file of the load balancer, its lines naming it as the ALB does (``app/<name>/<id>``)."""
    elb = lb_arn.split(":loadbalancer/", 1)[1]
    lines = [line.replace(f" {LB} ", f" {elb} ", 1) for line in lines]
    token = elb.replace("/", ".")
    key = (f"{prefix}/AWSLogs/123456789012/elasticloadbalancing/us-east-1/{closes:%Y/%m/%d}/"
           f"123456789012_elasticloadbalancing_us-east-1_{token}_{closes:%Y%m%dT%H%MZ}_10.0.0.1_x1.log.gz")
    seed.client("s3").put_object(Bucket="rms-alb-logs", Key=key, Body=gzip.compress(("\n".join(lines) + "\n").encode()))


def test_alb_access_logs_hammering_client_against_moto(aws, make_context):
    lb = alb_with_logs()
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    closes = now - timedelta(minutes=now.minute % 5)
    put_alb_file(lb, closes, [alb_line(closes - timedelta(seconds=1 + i % 200), "198.51.100.77", 401)
                              for i in range(60)] + [alb_line(closes - timedelta(seconds=3), "10.1.1.1")])
    put_alb_file(lb, closes - timedelta(hours=3), [alb_line(closes - timedelta(hours=3, seconds=5), "9.9.9.9")] * 80)
    ctx = make_context(thresholds={"alb_client_requests_max": 50})
    result = ctx.run("security.alb.access_logs")
    [finding] = result.findings
    assert finding.severity is WARNING and finding.resource == "ip:198.51.100.77"
    assert finding.evidence["requests"] == 60 and finding.evidence["status_4xx"] == 60
    assert finding.evidence["files"] == 1  # the 3-hour-old file is outside the window
    assert set(result.data["client"]) == {"198.51.100.77", "10.1.1.1"}


def test_alb_access_logs_normal_traffic_is_ok(aws, make_context):
    lb = alb_with_logs()
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    closes = now - timedelta(minutes=now.minute % 5)
    put_alb_file(lb, closes, [alb_line(closes - timedelta(seconds=i), f"10.0.0.{i % 7}") for i in range(30)])
    [finding] = make_context().run("security.alb.access_logs").findings
    assert finding.severity is OK and finding.evidence["entries"] == 30


def test_alb_access_logs_read_at_most_the_object_cap_and_say_so(aws, make_context, monkeypatch):
    """Past MAX_LOG_OBJECTS files the oldest are read (keys sort by time) and the evidence says what was left."""
    lb = alb_with_logs()
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    closes = now - timedelta(minutes=now.minute % 5)
    for k, client in enumerate(("10.0.0.1", "10.0.0.2", "10.0.0.3")):
        put_alb_file(lb, closes - timedelta(minutes=5 * (2 - k)), [alb_line(closes - timedelta(minutes=5 * (2 - k),
                                                                                           seconds=9), client)])
    monkeypatch.setattr(security, "MAX_LOG_OBJECTS", 2)
    result = make_context().run("security.alb.access_logs")
    [finding] = result.findings
    assert finding.severity is OK
    assert {k: finding.evidence[k] for k in ("files", "files_found", "truncated", "max_objects", "engine")} == {
        "files": 2, "files_found": 3, "truncated": True, "max_objects": 2, "engine": "duckdb"}
    assert set(result.data["client"]) == {"10.0.0.1", "10.0.0.2"}


def test_alb_access_logs_not_enabled_is_info(aws, make_context):
    alb_with_logs(enabled=False)
    [finding] = make_context().run("security.alb.access_logs").findings
    assert finding.severity is INFO and "not enabled" in finding.title


def test_alb_access_logs_enabled_without_files_is_info(aws, make_context):
    alb_with_logs()
    [finding] = make_context().run("security.alb.access_logs").findings
    assert finding.severity is INFO and finding.evidence["files"] == 0


def test_cloudtrail_check_through_the_stubbed_api(make_context):
    """lookup_events via Stubber (moto: NotImplemented); the three lookups, validated against the model."""
    from rmsops.sources import cloudtrail

    ctx = make_context()
    stub = Stubber(ctx.client("cloudtrail"))
    answers = {"ReadOnly": [raw_event("e1", "StopLogging", "cloudtrail.amazonaws.com", request={"name": "t"})],
               "Username": [], "EventName": []}
    for key, value in cloudtrail.SECURITY_LOOKUPS:
        stub.add_response("lookup_events", {"Events": answers[key]},
                          {"StartTime": ctx.window.start, "EndTime": ctx.window.end,
                           "LookupAttributes": [{"AttributeKey": key, "AttributeValue": value}]})
    with stub:
        result = ctx.run("security.cloudtrail.sensitive")
    [finding] = result.findings
    assert finding.severity is CRITICAL and finding.evidence["category"] == "logging"
    assert "AKIAIOSFODNN7EXAMPLE" not in json.dumps(finding.to_dict()) + result.data.to_csv()


def test_cloudtrail_access_denied_is_an_error_finding(make_context):
    ctx = make_context()
    stub = Stubber(ctx.client("cloudtrail"))
    stub.add_client_error("lookup_events", "AccessDeniedException", "not authorized")
    with stub:
        [finding] = ctx.run("security.cloudtrail.sensitive").findings
    assert finding.severity is ERROR and "LookupEvents" in finding.detail
