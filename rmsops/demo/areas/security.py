"""Demo seeding for runbooks 09 (drift), 12 (suspicious activity), 13 (breach) and 18 (escalation).

What moto serves as-is and is seeded through boto3: IAM users and access keys, WAF log lines
(``aws-waf-logs-*`` log group), application log lines, the ALB's access-log attributes and gzipped
log objects in S3, and a staging cluster ``rms-staging`` (its own VPC, security groups, task
definitions and services) in the same emulated account.

What moto does not model, seeded or patched explicitly:

* CloudTrail ``lookup_events`` is not implemented (NotImplementedError, a 500 in server mode).
  ``CloudTrailResponse.lookup_events`` is patched in this process, the one serving the moto
  server, to answer from the scenario's events (``CloudTrailEvent`` JSON, ``Username``,
  ``EventName``, ``EventSource``, ``EventTime``, ``Resources``) with the real API's semantics:
  StartTime/EndTime, one LookupAttribute, MaxResults (default 50) and NextToken paging. The
  patch is removed through ``env.cleanup``.
* An access key's ``CreateDate`` and last use (``get_access_key_last_used``) are always "now" and
  "never": they are written on moto's IAM backend objects.

The staging environment file (for ``drift.compare_with``) is written to a temp folder that
``env.cleanup`` removes. Scenarios: ``healthy`` has nothing above info; ``incident`` has a
staging/production difference (staging sets DB_POOL_MAX_OVERFLOW, production does not; memory
differs), a WAF scanner burst, deploy events in CloudTrail and an access key older than 90 days;
``security-event`` has a credential-stuffing burst against /api/login (WAF blocks, failed logins),
root console sign-in without MFA, a security group opened to 0.0.0.0/0, an old access key last
used from an unusual region, and one client hammering the ALB.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import json
import random
import shutil
import tempfile
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest import mock

import yaml

from rmsops.demo import layout
from rmsops.demo.layout import CLUSTER, LOG_GROUPS, SERVICES

if TYPE_CHECKING:
    from rmsops.demo.areas.seeding import AwsSeed

ACCOUNT = "123456789012"
STAGING_CLUSTER = "rms-staging"
ALB_LOG_BUCKET = f"rms-alb-logs-{ACCOUNT}"
ALB_LOG_PREFIX = "rms-alb"
ATTACKERS = ("203.0.113.50", "203.0.113.51", "203.0.113.52")
HAMMER = "198.51.100.77"
ROOT_IP = "203.0.113.77"
SCANNER = "203.0.113.9"  # the incident scenario's scanner (its log lines name it)
OFFICE = "198.51.100.10"
# CloudTrail records these services' events in us-east-1 whatever the caller's region.
GLOBAL_EVENT_SOURCES = frozenset({"iam.amazonaws.com", "signin.amazonaws.com", "sts.amazonaws.com"})
BROWSER = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5"


def seed_aws(env: AwsSeed) -> None:
    # One client per service: each new client loads its API model again (EC2's takes ~0.3 s).
    env = dataclasses.replace(env, client=functools.cache(env.client))
    name = env.scenario.name
    rng = random.Random(f"security-{name}")
    now = env.now
    _staging(env, name)  # before the security group is opened: staging keeps production's old rules
    if name == "security-event":
        env.client("ec2").authorize_security_group_ingress(
            GroupId=_security_group_id(env, "rms-ecs-tasks"), IpPermissions=[
                {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
                 "IpRanges": [{"CidrIp": "0.0.0.0/0", "Description": "temporary debugging"}]}])
    events = _cloudtrail_events(env, name, now)
    _install_lookup_events(env, events)
    _iam(env, name)
    _waf_logs(env, name, now, rng)
    if name == "security-event":
        _auth_failures(env, now, rng)
    _alb_access_logs(env, name, now, rng)


# --- CloudTrail ---------------------------------------------------------------------------------

def _identity(kind: str, name: str = "") -> tuple[dict[str, Any], str]:
    """(userIdentity, Username) for root, an IAM user, the CI deploy role or an AWS service."""
    if kind == "root":
        return ({"type": "Root", "principalId": ACCOUNT, "arn": f"arn:aws:iam::{ACCOUNT}:root",
                 "accountId": ACCOUNT, "accessKeyId": "ASIAQX3EXAMPLEROOT01"}, "root")
    if kind == "user":
        return ({"type": "IAMUser", "principalId": "AIDAQX3EXAMPLE" + name.upper()[:6],
                 "arn": f"arn:aws:iam::{ACCOUNT}:user/{name}", "accountId": ACCOUNT, "userName": name}, name)
    if kind == "deploy":
        session = "github-actions-4711"
        return ({"type": "AssumedRole", "principalId": f"AROAQX3EXAMPLEDEPLOY:{session}",
                 "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/rms-deploy/{session}", "accountId": ACCOUNT,
                 "accessKeyId": "ASIAQX3EXAMPLEDEPL01",
                 "sessionContext": {"sessionIssuer": {"type": "Role", "userName": "rms-deploy",
                                                      "arn": f"arn:aws:iam::{ACCOUNT}:role/rms-deploy"},
                                    "attributes": {"mfaAuthenticated": "false"}}}, session)
    return ({"type": "AssumedRole", "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/AWSServiceRoleForECS/ecs-service",
             "accountId": ACCOUNT, "invokedBy": "ecs.amazonaws.com"}, "ecs-service")


def _event(at: datetime, name: str, source: str, who: tuple[dict[str, Any], str], ip: str, *,
           request: dict[str, Any] | None = None, response: dict[str, Any] | None = None,
           extra: dict[str, Any] | None = None, resources: list[tuple[str, str]] = (), read_only: bool = False,
           error: tuple[str, str] | None = None, agent: str = "aws-cli/2.17.0 Python/3.11.9") -> dict[str, Any]:
    """One lookup_events entry, its CloudTrailEvent built like CloudTrail's record."""
    identity, username = who
    event_id = str(uuid.uuid4())
    record = {
        "eventVersion": "1.09", "userIdentity": identity, "eventTime": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "eventSource": source, "eventName": name,
        "awsRegion": layout.GLOBAL_REGION if source in GLOBAL_EVENT_SOURCES else layout.REGION,
        "sourceIPAddress": ip, "userAgent": agent,
        "requestParameters": request, "responseElements": response, "requestID": str(uuid.uuid4()),
        "eventID": event_id, "readOnly": read_only,
        "eventType": "AwsConsoleSignIn" if name == "ConsoleLogin" else "AwsApiCall",
        "managementEvent": True, "recipientAccountId": ACCOUNT, "eventCategory": "Management",
    }
    if extra:
        record["additionalEventData"] = extra
    if error:
        code, message = error
        if code:
            record["errorCode"] = code
        record["errorMessage"] = message
    entry = {"EventId": event_id, "EventName": name, "ReadOnly": "true" if read_only else "false",
             "EventTime": at, "EventSource": source, "Username": username,
             "Resources": [{"ResourceType": t, "ResourceName": n} for t, n in resources],
             "CloudTrailEvent": json.dumps(record)}
    if identity.get("accessKeyId"):
        entry["AccessKeyId"] = identity["accessKeyId"]
    return entry


def _cloudtrail_events(env: AwsSeed, scenario: str, now: datetime) -> list[dict[str, Any]]:
    def ago(minutes: float) -> datetime:
        return now - timedelta(minutes=minutes)

    def login(minutes: float, who: tuple[dict, str], ip: str, ok: bool, mfa: str = "Yes") -> dict[str, Any]:
        return _event(ago(minutes), "ConsoleLogin", "signin.amazonaws.com", who, ip,
                      response={"ConsoleLogin": "Success" if ok else "Failure"},
                      extra={"LoginTo": "https://console.aws.amazon.com/console/home", "MobileVersion": "No",
                             "MFAUsed": mfa},
                      error=None if ok else ("", "Failed authentication"), agent=BROWSER)

    eni = env.aws.vpc_id
    events = [
        login(41, _identity("user", "alice"), OFFICE, ok=True),
        _event(ago(33), "CreateNetworkInterface", "ec2.amazonaws.com", _identity("service"), "ecs.amazonaws.com",
               request={"subnetId": "subnet-rms-private-a", "description": "ECS task ENI", "vpcId": eni},
               agent="ecs.amazonaws.com"),
        _event(ago(95), "ConsoleLogin", "signin.amazonaws.com", _identity("user", "bob"), OFFICE,
               response={"ConsoleLogin": "Success"}, extra={"MFAUsed": "Yes"}, agent=BROWSER),
    ]
    backend = next(s for s in SERVICES if s.name == "rms-backend")
    if scenario == "incident":
        deploy = _identity("deploy")
        events += [
            _event(ago(16), "RegisterTaskDefinition", "ecs.amazonaws.com", deploy, "140.82.112.4",
                   request={"family": "rms-backend", "cpu": str(backend.cpu), "memory": str(backend.memory),
                            "containerDefinitions": [{"name": "rms-backend", "image": backend.images[-1]}]},
                   resources=[("AWS::ECS::TaskDefinition", "rms-backend:2")], agent="aws-sdk-js/3.600.0"),
            _event(ago(15), "UpdateService", "ecs.amazonaws.com", deploy, "140.82.112.4",
                   request={"cluster": CLUSTER, "service": "rms-backend", "taskDefinition": "rms-backend:2",
                            "forceNewDeployment": False},
                   resources=[("AWS::ECS::Service", "rms-backend")], agent="aws-sdk-js/3.600.0"),
            login(7, _identity("user", "alice"), OFFICE, ok=True),
        ]
    if scenario == "security-event":
        root = _identity("root")
        tasks_sg = _security_group_id(env, "rms-ecs-tasks")
        events += [
            login(27.5, _identity("user", "alice"), ATTACKERS[0], ok=False, mfa="No"),
            login(27.0, _identity("user", "alice"), ATTACKERS[0], ok=False, mfa="No"),
            login(26.5, _identity("user", "alice"), ATTACKERS[1], ok=False, mfa="No"),
            login(25, root, ROOT_IP, ok=True, mfa="No"),
            _event(ago(20), "AuthorizeSecurityGroupIngress", "ec2.amazonaws.com", root, ROOT_IP,
                   request={"groupId": tasks_sg, "ipPermissions": {"items": [
                       {"ipProtocol": "tcp", "fromPort": 22, "toPort": 22,
                        "ipRanges": {"items": [{"cidrIp": "0.0.0.0/0"}]}}]}},
                   response={"_return": True}, resources=[("AWS::EC2::SecurityGroup", tasks_sg)], agent=BROWSER),
            _event(ago(18), "CreateUser", "iam.amazonaws.com", root, ROOT_IP, request={"userName": "rms-backup"},
                   resources=[("AWS::IAM::User", "rms-backup")], agent=BROWSER),
            _event(ago(17.5), "CreateAccessKey", "iam.amazonaws.com", root, ROOT_IP,
                   request={"userName": "rms-backup"},
                   resources=[("AWS::IAM::User", "rms-backup"), ("AWS::IAM::AccessKey", "AKIAIOSFODNN7EXAMPLE")],
                   agent=BROWSER),
            _event(ago(17), "AttachUserPolicy", "iam.amazonaws.com", root, ROOT_IP,
                   request={"userName": "rms-backup", "policyArn": "arn:aws:iam::aws:policy/AdministratorAccess"},
                   resources=[("AWS::IAM::User", "rms-backup")], agent=BROWSER),
        ]
    return sorted(events, key=lambda e: e["EventTime"], reverse=True)


def lookup_answer(events: list[dict[str, Any]], params: dict[str, Any], region: str | None = None) -> dict[str, Any]:
    """lookup_events over seeded events: time range, one attribute, MaxResults and NextToken, newest first.

    As in AWS, a region's event history holds the events recorded there (``awsRegion``): the global
    services' events only in us-east-1. ``region=None`` answers from every region.
    """
    def stamp(value: Any) -> float | None:
        if value in (None, ""):
            return None
        if isinstance(value, int | float):
            return float(value)
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()

    start, end = stamp(params.get("StartTime")), stamp(params.get("EndTime"))
    attributes = params.get("LookupAttributes") or []
    fields = {"EventId": "EventId", "EventName": "EventName", "ReadOnly": "ReadOnly", "Username": "Username",
              "EventSource": "EventSource", "AccessKeyId": "AccessKeyId"}

    def matches(event: dict[str, Any]) -> bool:
        at = event["EventTime"].timestamp()
        if (start is not None and at < start) or (end is not None and at > end):
            return False
        for attribute in attributes:
            key, value = attribute.get("AttributeKey"), str(attribute.get("AttributeValue"))
            if key in fields and str(event.get(fields[key], "")) != value:
                return False
            if key in ("ResourceName", "ResourceType") and value not in [r[key] for r in event.get("Resources", [])]:
                return False
        return True

    found = [e for e in events if matches(e) and (region is None or _recorded_in(e) == region)]
    size = max(1, min(50, int(params.get("MaxResults") or 50)))
    offset = int(params.get("NextToken") or 0)
    page = found[offset:offset + size]
    answer: dict[str, Any] = {"Events": [{**e, "EventTime": e["EventTime"].timestamp()} for e in page]}
    if offset + size < len(found):
        answer["NextToken"] = str(offset + size)
    return answer


def _recorded_in(event: dict[str, Any]) -> str:
    return json.loads(event["CloudTrailEvent"])["awsRegion"]


def _install_lookup_events(env: AwsSeed, events: list[dict[str, Any]]) -> None:
    from moto.cloudtrail.responses import CloudTrailResponse

    def lookup_events(self: CloudTrailResponse) -> str:  # self.region: the request's signing region
        return json.dumps(lookup_answer(events, json.loads(self.body or "{}"), self.region))

    patcher = mock.patch.object(CloudTrailResponse, "lookup_events", lookup_events, create=True)
    patcher.start()
    env.cleanup("cloudtrail lookup_events", patcher.stop)


# --- IAM ----------------------------------------------------------------------------------------

def _iam(env: AwsSeed, scenario: str) -> None:
    """Users and access keys; ages and last use written on moto's backend (the API cannot set them)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.iam.models import AccessKeyLastUsed, iam_backends

    iam = env.client("iam")
    # (user, key age in days, last used minutes ago, service, region)
    keys: list[tuple[str, int, float | None, str, str]] = [("rms-ci-deploy", 34, 12, "ecs", layout.REGION)]
    if scenario == "incident":
        keys.append(("rms-reporting", 212, 60 * 26, "s3", layout.REGION))
    if scenario == "security-event":
        keys += [("rms-legacy-ci", 431, 44, "iam", "ap-southeast-1"), ("rms-backup", 0, None, "", "")]
    backend = iam_backends[DEFAULT_ACCOUNT_ID]["global"]
    for user, age, used, service, region in keys:
        iam.create_user(UserName=user, Tags=[{"Key": "Environment", "Value": "production"}])
        key_id = iam.create_access_key(UserName=user)["AccessKey"]["AccessKeyId"]
        key = next(k for k in backend.users[user].access_keys if k.access_key_id == key_id)
        created = key.create_date  # moto's own clock and datetime kind
        key.create_date = created - timedelta(days=age)
        if used is not None:
            key.last_used = AccessKeyLastUsed(created - timedelta(minutes=used), service, region)


# --- WAF and application logs -------------------------------------------------------------------

def _waf_record(at: datetime, action: str, ip: str, uri: str, rule: str, method: str = "POST",
                country: str = "NL", cloudfront: bool = False) -> str:
    acl = (f"arn:aws:wafv2:{layout.GLOBAL_REGION}:{ACCOUNT}:global/webacl/rms-cdn/3c1d9e07" if cloudfront else
           f"arn:aws:wafv2:{layout.REGION}:{ACCOUNT}:regional/webacl/rms-production/8e6f2f1a")
    source = ("CF", "E2RMSDEMO") if cloudfront else ("ALB", f"{ACCOUNT}-app/rms-alb")
    return json.dumps({
        "timestamp": int(at.timestamp() * 1000), "formatVersion": 1, "webaclId": acl,
        "terminatingRuleId": rule, "terminatingRuleType": "REGULAR" if rule != "Default_Action" else "DEFAULT",
        "action": action, "httpSourceName": source[0], "httpSourceId": source[1],
        "httpRequest": {"clientIp": ip, "country": country, "uri": uri, "args": "", "httpVersion": "HTTP/1.1",
                        "httpMethod": method, "headers": [{"name": "Host", "value": "rms.example.com"}]},
    }, separators=(",", ":"))


def _put_lines(env: AwsSeed, group: str, stream: str, lines: list[tuple[datetime, str]],
               region: str | None = None) -> None:
    logs = env.client("logs", region)
    logs.create_log_stream(logGroupName=group, logStreamName=stream)
    ordered = sorted(lines, key=lambda item: item[0])
    for offset in range(0, len(ordered), 5000):
        logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=[
            {"timestamp": int(at.timestamp() * 1000), "message": message}
            for at, message in ordered[offset:offset + 5000]])


def _waf_logs(env: AwsSeed, scenario: str, now: datetime, rng: random.Random) -> None:
    lines: list[tuple[datetime, str]] = []

    def block(minutes_ago: float, ip: str, uri: str, rule: str, country: str = "NL") -> None:
        at = now - timedelta(minutes=minutes_ago)
        lines.append((at, _waf_record(at, "BLOCK", ip, uri, rule, country=country)))

    # a background of scanners, blocked by the managed rules, in both this hour and the one before
    for minutes in (5, 23, 48, 71, 88, 104, 117):
        block(minutes + rng.random(), f"192.0.2.{rng.randint(10, 250)}", "/.env", "AWS-AWSManagedRulesCommonRuleSet",
              "US")
    if scenario == "incident":
        for _ in range(45):  # the scanner the incident's logs show, probing for a week-old plugin hole
            block(rng.uniform(0.5, 10), SCANNER, rng.choice(("/wp-login.php", "/xmlrpc.php", "/wp-admin/")),
                  "AWS-AWSManagedRulesCommonRuleSet")
    if scenario == "security-event":
        for _ in range(320):  # credential stuffing against the login API, caught by the rate rule
            ip = rng.choices(ATTACKERS, weights=(6, 3, 1))[0]
            block(rng.uniform(0.5, 16), ip, "/api/login", rng.choice(("rms-login-rate-limit",) * 3 + (
                "AWS-AWSManagedRulesATPRuleSet",)))
    _put_lines(env, LOG_GROUPS["waf"], f"{layout.REGION}_rms-production-waf_1", lines)
    _cloudfront_waf_logs(env, now, rng)


def _cloudfront_waf_logs(env: AwsSeed, now: datetime, rng: random.Random) -> None:
    """CloudFront's web ACL logs in us-east-1, as AWS keeps them: a quiet background of scanners."""
    group = layout.CLOUDFRONT_WAF_LOG_GROUP
    env.client("logs", layout.GLOBAL_REGION).create_log_group(logGroupName=group)
    lines = []
    for minutes in (9, 37, 66, 95):
        at = now - timedelta(minutes=minutes + rng.random())
        lines.append((at, _waf_record(at, "BLOCK", f"192.0.2.{rng.randint(10, 250)}", "/.git/config",
                                      "AWS-AWSManagedRulesCommonRuleSet", method="GET", country="US",
                                      cloudfront=True)))
    _put_lines(env, group, "cloudfront_rms-cdn_0", lines, region=layout.GLOBAL_REGION)


def _auth_failures(env: AwsSeed, now: datetime, rng: random.Random) -> None:
    """Failed logins that got past the WAF: mostly one address, a few ordinary typos."""
    users = ("alice@example.com", "bob@example.com", "carol@example.com", "ops@example.com", "admin@example.com")
    lines = []
    for k in range(64):
        at = now - timedelta(minutes=rng.uniform(1, 18))
        ip = ATTACKERS[0] if k < 58 else rng.choice(("198.51.100.23", "198.51.100.41"))
        lines.append((at, f"{at:%Y-%m-%dT%H:%M:%S}.{at.microsecond // 1000:03d}Z WARNING [rms.auth] POST /api/login "
                          f'401 authentication failed for user "{rng.choice(users)}" from {ip}'))
    _put_lines(env, LOG_GROUPS["backend"], f"ecs/rms-backend/{uuid.uuid4().hex}", lines)


# --- ALB access logs in S3 ----------------------------------------------------------------------

def _alb_access_logs(env: AwsSeed, scenario: str, now: datetime, rng: random.Random) -> None:
    """Enable access logs on the ALB and write the last hour's 5-minute files (gzipped, ALB format)."""
    s3, elb = env.client("s3"), env.client("elbv2")
    outside_us_east_1 = {} if layout.REGION == "us-east-1" else {
        "CreateBucketConfiguration": {"LocationConstraint": layout.REGION}}  # S3 wants it named elsewhere
    s3.create_bucket(Bucket=ALB_LOG_BUCKET, **outside_us_east_1)
    arn = env.aws.load_balancer_arn
    elb.modify_load_balancer_attributes(LoadBalancerArn=arn, Attributes=[
        {"Key": "access_logs.s3.enabled", "Value": "true"}, {"Key": "access_logs.s3.bucket", "Value": ALB_LOG_BUCKET},
        {"Key": "access_logs.s3.prefix", "Value": ALB_LOG_PREFIX}])
    lb_path = arn.split(":loadbalancer/", 1)[1]  # app/rms-alb/<id>
    targets = {name: ips or ["10.0.10.10"] for name, ips in env.aws.targets.items()}
    groups = env.aws.target_groups
    regulars = [f"198.51.100.{n}" for n in range(20, 36)]
    last = now.replace(second=0, microsecond=0) - timedelta(minutes=now.minute % 5)
    for k in range(12):
        closes = last - timedelta(minutes=5 * k)
        entries = []
        for _ in range(40):
            backend = rng.random() < 0.6
            path = rng.choice(("/api/reservations", "/api/tables", "/api/health")) if backend else rng.choice(
                ("/", "/static/app.js", "/static/app.css"))
            status = 200
            if scenario == "incident" and backend and k < 3 and rng.random() < 0.5:
                status = 502
            entries.append((closes - timedelta(seconds=rng.uniform(0, 300)), rng.choice(regulars), "GET", path,
                            status, "rms-backend" if backend else "rms-frontend", "Mozilla/5.0"))
        if scenario == "security-event" and k < 3:
            entries += [(closes - timedelta(seconds=rng.uniform(0, 300)), HAMMER, "POST", "/api/login",
                         rng.choice((401, 401, 401, 429)), "rms-backend", "python-requests/2.32.3")
                        for _ in range(1750)]  # 5250 in 15 minutes: above alb_client_requests_max
        entries.sort(key=lambda e: e[0])
        text = "\n".join(_alb_line(e, lb_path, targets, groups, rng) for e in entries) + "\n"
        key = (f"{ALB_LOG_PREFIX}/AWSLogs/{ACCOUNT}/elasticloadbalancing/{layout.REGION}/{closes:%Y/%m/%d}/"
               f"{ACCOUNT}_elasticloadbalancing_{layout.REGION}_{lb_path.replace('/', '.')}_{closes:%Y%m%dT%H%MZ}_"
               f"10.0.0.{17 + k % 2}_{uuid.uuid4().hex[:8]}.log.gz")
        s3.put_object(Bucket=ALB_LOG_BUCKET, Key=key, Body=gzip.compress(text.encode(), compresslevel=1))


def _alb_line(entry: tuple, lb_path: str, targets: dict[str, list[str]], groups: dict[str, str],
              rng: random.Random) -> str:
    """One access log entry in the ALB's format (cheap: a few thousand are written per start)."""
    at, client, method, path, status, service, agent = entry
    bits = rng.getrandbits(64)
    ips = targets.get(service) or ["10.0.10.10"]
    target = f"{ips[bits % len(ips)]}:{8000 if service == 'rms-backend' else 80}"
    when = at.isoformat(timespec="microseconds").replace("+00:00", "Z")
    return (f'http {when} {lb_path} {client}:{20000 + (bits >> 8) % 45000} {target} 0.001 '
            f'{(20 + (bits >> 24) % 130) / 1000:.3f} 0.000 {status} {status} {200 + (bits >> 32) % 700} '
            f'{300 + (bits >> 42) % 3700} "{method} http://rms.example.com:80{path} HTTP/1.1" "{agent}" - - '
            f'{groups.get(service, "-")} "Root=1-{int(at.timestamp()):08x}-{rng.getrandbits(96):024x}" "-" "-" 10 '
            f'{when} "forward" "-" "-" "{target}" "{status}" "-" "-"')


# --- staging, for drift.compare_with ------------------------------------------------------------

def _security_group_id(env: AwsSeed, name: str) -> str:
    ec2 = env.client("ec2")
    found = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [name]},
                                                 {"Name": "vpc-id", "Values": [env.aws.vpc_id]}])
    return found["SecurityGroups"][0]["GroupId"]


def _staging(env: AwsSeed, scenario: str) -> None:
    """rms-staging: production's services, task definitions and security groups, copied; the incident's
    differences applied; then a staging environment file pointing at it."""
    ecs, ec2 = env.client("ecs"), env.client("ec2")
    names = [s.name for s in layout.all_services()]  # the workers (--workers) too
    services = [svc for offset in range(0, len(names), 10)  # the API takes 10 services per call
                for svc in ecs.describe_services(cluster=CLUSTER, services=names[offset:offset + 10])["services"]]
    vpc = ec2.create_vpc(CidrBlock="10.1.0.0/16", TagSpecifications=[{"ResourceType": "vpc", "Tags": [
        {"Key": "Name", "Value": "rms-staging"}, {"Key": "Environment", "Value": "staging"}]}])["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.1.{10 + i}.0/24", AvailabilityZone=f"{layout.REGION}{zone}")
               ["Subnet"]["SubnetId"] for i, zone in enumerate("ab")]
    groups = _copy_security_groups(ec2, services, vpc)
    ecs.create_cluster(clusterName=STAGING_CLUSTER)
    for svc in services:
        td = ecs.describe_task_definition(taskDefinition=svc["taskDefinition"])["taskDefinition"]
        arn = ecs.register_task_definition(**_staging_task_definition(td, svc["serviceName"], scenario))[
            "taskDefinition"]["taskDefinitionArn"]
        network = svc.get("networkConfiguration", {}).get("awsvpcConfiguration", {})
        ecs.create_service(cluster=STAGING_CLUSTER, serviceName=svc["serviceName"], taskDefinition=arn,
                           desiredCount=1, launchType="FARGATE", networkConfiguration={"awsvpcConfiguration": {
                               "subnets": subnets, "assignPublicIp": "DISABLED",
                               "securityGroups": [groups[g] for g in network.get("securityGroups", [])]}})
    folder = Path(tempfile.mkdtemp(prefix="rmsops-demo-staging-"))
    env.cleanup("staging environment file", _remover(folder))
    path = folder / "staging.yaml"
    path.write_text(yaml.safe_dump(_staging_settings(env.endpoint_url), sort_keys=False), encoding="utf-8")
    env.settings["drift"] = {"compare_with": str(path)}


def _remover(folder: Path) -> Callable[[], None]:
    return lambda: shutil.rmtree(folder, ignore_errors=True)


def _copy_security_groups(ec2: Any, services: list[dict[str, Any]], vpc: str) -> dict[str, str]:
    """Same-named groups in the staging VPC with the same ingress rules; production id -> staging id."""
    used = sorted({g for s in services for g in s.get("networkConfiguration", {}).get(
        "awsvpcConfiguration", {}).get("securityGroups", [])})
    production = {g["GroupId"]: g for g in ec2.describe_security_groups(GroupIds=used)["SecurityGroups"]}
    referenced = sorted({p["GroupId"] for g in production.values() for perm in g.get("IpPermissions", [])
                         for p in perm.get("UserIdGroupPairs", []) if p["GroupId"] not in production})
    if referenced:
        production.update({g["GroupId"]: g for g in ec2.describe_security_groups(GroupIds=referenced)[
            "SecurityGroups"]})
    mapping = {gid: ec2.create_security_group(GroupName=g["GroupName"], Description=g.get("Description") or "rms",
                                              VpcId=vpc)["GroupId"] for gid, g in production.items()}
    for gid, group in production.items():
        permissions = []
        for perm in group.get("IpPermissions", []):
            copy = {k: v for k, v in perm.items() if k in ("IpProtocol", "FromPort", "ToPort", "IpRanges",
                                                           "Ipv6Ranges", "PrefixListIds")}
            pairs = [{"GroupId": mapping.get(p["GroupId"], p["GroupId"])} for p in perm.get("UserIdGroupPairs", [])]
            if pairs:
                copy["UserIdGroupPairs"] = pairs
            permissions.append(copy)
        if permissions:
            ec2.authorize_security_group_ingress(GroupId=mapping[gid], IpPermissions=permissions)
    return mapping


def _staging_task_definition(td: dict[str, Any], service: str, scenario: str) -> dict[str, Any]:
    """Production's task definition as staging registers it: same settings, staging values."""
    containers = []
    for c in td["containerDefinitions"]:
        copy = {k: v for k, v in c.items() if k in ("name", "image", "essential", "cpu", "memory", "memoryReservation",
                                                     "portMappings", "healthCheck", "logConfiguration",
                                                     "environment", "secrets")}
        copy["environment"] = [{"name": e["name"], "value": str(e.get("value", "")).replace("production", "staging")}
                               for e in c.get("environment", [])]
        if scenario == "incident" and service == "rms-backend":
            copy["environment"].append({"name": "DB_POOL_MAX_OVERFLOW", "value": "10"})
        containers.append(copy)
    memory = td.get("memory")
    if scenario == "incident" and service == "rms-backend" and memory:
        memory = str(int(memory) * 2)  # staging was sized up while the leak was hunted
    out = {"family": f"staging-{td['family']}", "networkMode": td.get("networkMode", "awsvpc"),
           "requiresCompatibilities": td.get("requiresCompatibilities") or ["FARGATE"],
           "containerDefinitions": containers, "cpu": td.get("cpu"), "memory": memory}
    for role in ("executionRoleArn", "taskRoleArn"):
        if td.get(role):
            out[role] = td[role]
    return {k: v for k, v in out.items() if v is not None}


def _staging_settings(endpoint_url: str) -> dict[str, Any]:
    return {
        "name": "staging",
        "protected": False,
        "aws": {"region": layout.REGION, "endpoint_url": endpoint_url, "local_test_credentials": True},
        "ecs": {"cluster": STAGING_CLUSTER, "services": [s.name for s in layout.all_services()]},
        "alb": {"name": "rms-staging-alb", "target_groups": [s.name for s in SERVICES]},
        # the drift checks never connect to staging's database
        "database": {"instance": "rms-staging-db", "host": "127.0.0.1", "port": 5432, "dbname": "rms",
                     "user": "rmsops_monitor", "sslmode": "disable"},
        "logs_query": "filter",
    }
