"""Every region a check needs: an environment in eu-west-1 still reads CloudFront, its certificate
and WAF, and the global services' CloudTrail events where AWS keeps them (us-east-1).

The served demo of ``demo_eu`` seeds each kind of data where AWS keeps it (CloudTrail's
``lookup_events`` is stubbed in the demo's moto process, answering per region as AWS does: see
``rmsops.demo.areas.security``). A botocore ``before-call`` hook on every client records the
region each call went to; the production code paths are the real boto3 calls.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from rmsops.core import failure, registry
from rmsops.core.aws import AwsClients
from rmsops.core.context import Context
from rmsops.core.findings import Severity
from rmsops.demo.areas.security import lookup_answer
from rmsops.sources import regions

ROOT = Path(__file__).resolve().parent.parent
HOME, GLOBAL = "eu-west-1", "us-east-1"

# The checks whose data lives (partly) in us-east-1 for an environment in eu-west-1, and why.
READS_US_EAST_1 = {
    "cdn.cloudfront.distribution": "CloudFront is global",
    "cdn.cloudfront.error_rate": "AWS/CloudFront metrics",
    "cdn.cloudfront.cache_hit": "AWS/CloudFront metrics",
    "tls.acm.expiry": "the distribution's ACM certificate",
    "tls.alb.listener_certificate": "shares the certificate listing of tls.acm.expiry",
    "security.waf.blocks": "CloudFront's web ACL logs",
    "security.cloudtrail.sensitive": "global services' events",
    "breach.timeline": "global services' events and CloudFront's WAF logs",
    "breach.credentials": "IAM is global",
    "escalation.recent_changes": "global services' events",
    "escalation.level": "judges fresh quick checks, the CloudFront ones among them",
}
# Of those, the ones that read nothing in the environment's region.
ONLY_US_EAST_1 = {"cdn.cloudfront.distribution", "cdn.cloudfront.error_rate", "cdn.cloudfront.cache_hit"}


@pytest.fixture(scope="module")
def calls_by_check(demo_eu) -> dict[str, set[tuple[str, str]]]:
    """check id -> {(IAM action, region)} of every AWS call it made, each check on a fresh Context.

    The calls are kept on the Context's AwsClients itself: keyed by ``id()``, a later check's
    clients could take a collected one's id and its calls."""
    original = AwsClients.client

    def recording_client(self, service: str, region: str | None = None):
        client = original(self, service, region)
        calls = vars(self).setdefault("recorded_calls", set())
        client.meta.events.register(
            "before-call", lambda model, **_: calls.add((failure.iam_action_of(model), client.meta.region_name)),
            unique_id=f"rmsops-test-regions-{id(client)}")
        return client

    registry.load_all()

    def run(check_id: str) -> tuple[str, set[tuple[str, str]]]:
        ctx = Context.open(demo_eu.env_file)
        try:
            registry.run(registry.get(check_id), ctx)
            return check_id, vars(ctx.aws).get("recorded_calls", set())
        finally:
            ctx.close()

    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr(AwsClients, "client", recording_client)
    try:
        with ThreadPoolExecutor(4) as pool:  # the demo's monitor role allows a few connections
            return dict(pool.map(run, sorted(registry.REGISTRY)))
    finally:
        monkeypatch.undo()


def test_every_check_calls_aws_where_its_data_lives(calls_by_check):
    assert sum(len(c) for c in calls_by_check.values()) > 40  # the recorder saw the checks' calls
    wrong = {}
    for check_id, calls in calls_by_check.items():
        where = {region for _, region in calls}
        expected_global = check_id in READS_US_EAST_1
        if (GLOBAL in where) != expected_global:
            wrong[check_id] = f"went to {sorted(where)}; us-east-1 expected: {expected_global}"
        elif check_id in ONLY_US_EAST_1 and where != {GLOBAL}:
            wrong[check_id] = f"went to {sorted(where)}; only us-east-1 expected"
        elif not where <= {HOME, GLOBAL}:
            wrong[check_id] = f"went to {sorted(where)}"
    assert not wrong, wrong


def test_each_global_kind_is_read_in_us_east_1_and_the_rest_in_the_environments_region(calls_by_check):
    def regions_of(check_id: str, action: str) -> set[str]:
        return {region for a, region in calls_by_check[check_id] if a == action}

    assert regions_of("cdn.cloudfront.error_rate", "cloudwatch:GetMetricData") == {GLOBAL}
    assert regions_of("cdn.cloudfront.distribution", "cloudfront:ListDistributions") == {GLOBAL}
    assert regions_of("tls.acm.expiry", "acm:ListCertificates") == {HOME}  # the ALB's certificates
    assert regions_of("tls.acm.expiry", "acm:DescribeCertificate") == {HOME, GLOBAL}
    assert regions_of("security.cloudtrail.sensitive", "cloudtrail:LookupEvents") == {HOME, GLOBAL}
    assert regions_of("security.waf.blocks", "logs:FilterLogEvents") == {HOME, GLOBAL}
    assert regions_of("app.alb.5xx", "cloudwatch:GetMetricData") == {HOME}
    assert regions_of("breach.credentials", "iam:ListUsers") == {GLOBAL}


def test_the_iam_policy_works_in_both_regions(calls_by_check):
    """Every action called, in whichever region, is granted by a statement that names no region."""
    policy = json.loads((ROOT / "docs" / "iam-policy.json").read_text())
    grants: dict[str, list[dict]] = {}
    for statement in policy["Statement"]:
        for action in statement["Action"]:
            grants.setdefault(action, []).append(statement)
    called = {call for calls in calls_by_check.values() for call in calls}
    assert {region for _, region in called} == {HOME, GLOBAL}
    for action, region in sorted(called):
        statements = grants.get(action)
        assert statements, f"{action} (called in {region}) is not in docs/iam-policy.json"
        for statement in statements:
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            assert all(r == "*" or r.split(":")[3] in ("*", "") for r in resources), (action, resources)
            assert "aws:RequestedRegion" not in json.dumps(statement.get("Condition", {})), action


# --- what the eu-west-1 incident shows ----------------------------------------------------------

@pytest.fixture(scope="module")
def eu_findings(demo_eu):
    ctx = Context.open(demo_eu.env_file)
    try:
        return {cid: registry.run(registry.get(cid), ctx).findings
                for cid in ("cdn.cloudfront.error_rate", "tls.acm.expiry", "security.waf.blocks",
                            "security.cloudtrail.sensitive")}
    finally:
        ctx.close()


def test_the_cdn_outage_is_seen_from_another_region(eu_findings):
    [finding] = eu_findings["cdn.cloudfront.error_rate"]
    assert finding.severity is Severity.WARNING and "5xx" in finding.title  # the incident's 5xx at the edge
    assert finding.evidence["looked_in"].startswith("AWS/CloudFront in us-east-1")


def test_tls_expiry_says_which_certificate_is_cloudfronts(eu_findings):
    by_region = {}
    for finding in eu_findings["tls.acm.expiry"]:
        by_region.setdefault(finding.evidence["region"], []).append(finding)
    cloudfront = [f for f in by_region.get(GLOBAL, []) if f.evidence["cloudfront_distributions"]]
    assert len(cloudfront) == 1 and "(CloudFront)" in cloudfront[0].title
    assert cloudfront[0].severity is Severity.WARNING  # the frontend certificate, 20 days left
    assert "us-east-1" in cloudfront[0].detail
    assert {f.evidence["domain"] for f in by_region[HOME]} >= {"api.rms.company.com", "rms.company.com"}
    assert not any(f.evidence["cloudfront_distributions"] for f in by_region[HOME])


def test_both_wafs_are_read_each_in_its_region(eu_findings):
    by_guard = {f.evidence["guards"]: f for f in eu_findings["security.waf.blocks"]}
    assert by_guard["ALB"].evidence["region"] == HOME and by_guard["ALB"].severity is Severity.WARNING
    assert by_guard["CloudFront"].evidence["region"] == GLOBAL and by_guard["CloudFront"].severity is Severity.OK
    assert by_guard["CloudFront"].evidence["blocks"] > 0  # its log group, in us-east-1, was read


def test_cloudtrail_reads_both_regions(eu_findings):
    [finding] = eu_findings["security.cloudtrail.sensitive"]
    assert finding.evidence["regions"] == [HOME, GLOBAL]


# --- the table and the demo's per-region event history --------------------------------------------

def test_the_region_table():
    assert regions.region_of("cloudfront.metrics", HOME) == GLOBAL
    assert regions.region_of("alb.waf.logs", HOME) == HOME
    assert regions.cloudtrail_regions(HOME) == (HOME, GLOBAL)
    assert regions.cloudtrail_regions(GLOBAL) == (GLOBAL,)  # once when they are the same
    with pytest.raises(KeyError, match="no home region"):
        regions.region_of("cloudfront.metric", HOME)


def test_the_demos_event_history_answers_per_region_as_aws_does():
    from datetime import UTC, datetime

    def event(event_id: str, region: str) -> dict:
        return {"EventId": event_id, "EventTime": datetime(2026, 12, 1, tzinfo=UTC),
                "CloudTrailEvent": json.dumps({"awsRegion": region})}

    events = [event("sg", HOME), event("iam", GLOBAL)]
    ids = {r: [e["EventId"] for e in lookup_answer(events, {}, r)["Events"]] for r in (HOME, GLOBAL)}
    assert ids == {HOME: ["sg"], GLOBAL: ["iam"]}
