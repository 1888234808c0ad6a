"""Runbook 16 (external-dependencies): judges and record parsers, then live checks.

Layer 1: the pure judges and the SPF/DKIM/DMARC parsers. Layer 2: health URLs served by a local HTTP
server; the email DNS check against a UDP DNS server the test controls (dnspython's ``dns.message``
on 127.0.0.1, port 0), including SERVFAIL and a server that never answers; SES reputation metrics put
into moto's CloudWatch (moto publishes none). Layer 3: the served demo and the notebook.
"""

from __future__ import annotations

import json
import socket
import time
from datetime import UTC, datetime, timedelta

import nbformat
import pandas as pd
import pytest
from moto import mock_aws

from rmsops.checks.external import (
    DNS_COLUMNS,
    dkim_problems,
    dmarc_problems,
    judge_email_dns,
    judge_external_health,
    judge_reputation,
    parse_server,
    spf_problems,
)
from rmsops.core import config, registry
from rmsops.demo.areas.edge_servers import DnsServer, Route, RouteServer
from rmsops.render import plots
from tests import aws_seed as seed
from tests.judging import CRITICAL, ERROR, INFO, OK, WARNING, by_resource, thresholds

T0 = datetime(2026, 11, 28, 19, 0, tzinfo=UTC)
DOMAIN = "rms.example"
DKIM_KEY = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE" + "A" * 88  # base64


# =============================================================================================
# Layer 1: judges and parsers
# =============================================================================================

def health(*rows) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=["name", "url", "status", "seconds", "error"])


def test_judge_external_health():
    df = health(("pay", "u1", 200, 0.3, ""), ("mail", "u2", 200, 2.5, ""), ("sms", "u3", 503, 0.1, ""),
                ("fax", "u4", None, 5.0, "timed out"), ("slowbad", "u5", 500, 3.0, ""))
    found = by_resource(judge_external_health(df, thresholds()))
    assert {r: f.severity for r, f in found.items()} == {
        "u1": OK, "u2": WARNING, "u3": CRITICAL, "u4": CRITICAL, "u5": CRITICAL}
    assert "circuit breaker" in found["u3"].resolution and "status page" in found["u2"].resolution
    assert found["u4"].title == "fax unreachable: timed out" and found["u4"].evidence["status"] is None
    assert judge_external_health(df, thresholds(external_slow_seconds=3))[1].severity is OK


def test_judge_external_health_none_configured_is_info():
    [finding] = judge_external_health(health(), thresholds())
    assert finding.severity is INFO and finding.resource == "external.health_urls"


@pytest.mark.parametrize(("records", "problems"), [
    (["v=spf1 include:amazonses.com -all"], []),
    (["other=1", "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 a mx a:mail.example/24 ~all"], []),
    (["v=spf1 redirect=_spf.example.com"], []),
    (["V=SPF1 -ALL"], []),
    (["google-site-verification=x"], ["no TXT record starting with v=spf1"]),
    ([], ["no TXT record starting with v=spf1"]),
    (["v=spf1 -all", "v=spf1 include:x -all"], ["2 SPF records"]),
    (["v=spf1 include:amazonses.com +all"], ["lets any server send"]),
    (["v=spf1 include:amazonses.com all"], ["lets any server send"]),
    (["v=spf1 ip4:999.1.1.1 -all"], ["not a valid address range"]),
    (["v=spf1 inclde:amazonses.com -all"], ["unknown term 'inclde:amazonses.com'"]),
    (["v=spf10 -all"], ["no TXT record starting with v=spf1"]),
])
def test_spf_problems(records, problems):
    found, _ = spf_problems(records)
    assert len(found) == len(problems) and all(p in f for p, f in zip(problems, found, strict=True))


@pytest.mark.parametrize(("records", "problems"), [
    ([f"v=DKIM1; k=rsa; p={DKIM_KEY}"], []),
    ([f"k=rsa; p={DKIM_KEY[:40]} {DKIM_KEY[40:]}"], []),  # no v=, whitespace inside the key
    ([f"v=DKIM1; k=ed25519; p={DKIM_KEY}"], []),
    (["v=DKIM1; k=rsa; p="], ["revoked"]),
    (["v=DKIM1; p=not*base64!"], ["not valid base64"]),
    ([f"k=rsa; v=DKIM1; p={DKIM_KEY}"], ["v= must be the first tag"]),
    ([f"v=DKIM2; p={DKIM_KEY}"], ["v= must be the first tag and say DKIM1"]),
    ([f"v=DKIM1; k=dsa; p={DKIM_KEY}"], ["unknown key type"]),
    (["v=DKIM1; k=rsa"], ["no DKIM key record"]),
    ([], ["no TXT record"]),
])
def test_dkim_problems(records, problems):
    found, _ = dkim_problems(records)
    assert len(found) == len(problems) and all(p in f for p, f in zip(problems, found, strict=True))


@pytest.mark.parametrize(("records", "problems", "policy"), [
    ([f"v=DMARC1; p=reject; rua=mailto:d@{DOMAIN}"], [], "reject"),
    (["v=DMARC1;p=quarantine;pct=50;sp=none"], [], "quarantine"),
    (["v=DMARC1; p=none"], [], "none"),
    (["v=DMARC1; rua=mailto:x@y"], ["no p= policy tag"], ""),
    (["v=DMARC1; p=block"], ["p= must be none, quarantine or reject"], "block"),
    (["v=DMARC1; p=reject; pct=150"], ["pct=150"], "reject"),
    (["v=DMARC1; p=reject; sp=maybe"], ["sp=maybe"], "reject"),
    (["p=reject; v=DMARC1"], ["no TXT record starting with v=DMARC1"], ""),
    (["v=DMARC1; p=reject", "v=DMARC1; p=none"], ["2 DMARC records"], ""),
])
def test_dmarc_problems(records, problems, policy):
    found, _, got_policy = dmarc_problems(records)
    assert len(found) == len(problems) and all(p in f for p, f in zip(problems, found, strict=True))
    assert got_policy == policy


def dns_rows(*rows) -> pd.DataFrame:
    """rows: (kind, name, outcome, records, error)."""
    return pd.DataFrame([dict(zip(DNS_COLUMNS, r, strict=True)) for r in rows], columns=DNS_COLUMNS)


def test_judge_email_dns():
    df = dns_rows(("SPF", DOMAIN, "found", ["v=spf1 include:amazonses.com -all"], ""),
                  ("DKIM", f"s1._domainkey.{DOMAIN}", "nxdomain", [], ""),
                  ("DKIM", f"s2._domainkey.{DOMAIN}", "found", ["v=DKIM1; p="], ""),
                  ("DKIM", f"s3._domainkey.{DOMAIN}", "failed", [], "DNS query timed out"),
                  ("DMARC", f"_dmarc.{DOMAIN}", "found", ["v=DMARC1; p=none"], ""))
    found = by_resource(judge_email_dns(df, DOMAIN, ("s1", "s2", "s3")))
    assert {r: f.severity for r, f in found.items()} == {
        f"dns:{DOMAIN}": OK, f"dns:s1._domainkey.{DOMAIN}": WARNING, f"dns:s2._domainkey.{DOMAIN}": WARNING,
        f"dns:s3._domainkey.{DOMAIN}": ERROR, f"dns:_dmarc.{DOMAIN}": INFO}
    missing = found[f"dns:s1._domainkey.{DOMAIN}"]
    assert missing.title == f"DKIM record of {DOMAIN} (selector s1) missing" and "SPF, DKIM" in missing.resolution
    assert "malformed" in found[f"dns:s2._domainkey.{DOMAIN}"].title
    assert "timed out" in found[f"dns:s3._domainkey.{DOMAIN}"].detail
    assert found[f"dns:{DOMAIN}"].evidence["record"] == "v=spf1 include:amazonses.com -all"


def test_judge_email_dns_without_domain_or_selectors_is_info():
    [finding] = judge_email_dns(dns_rows(), None, ())
    assert finding.severity is INFO and finding.resource == "external.email_domain"
    df = dns_rows(("SPF", DOMAIN, "found", ["v=spf1 -all"], ""),
                  ("DMARC", f"_dmarc.{DOMAIN}", "found", ["v=DMARC1; p=reject"], ""))
    severities = [f.severity for f in judge_email_dns(df, DOMAIN, ())]
    assert severities == [OK, OK, INFO]


@pytest.mark.parametrize(("text", "expected"), [
    ("10.0.0.2", ("10.0.0.2", 53)), ("127.0.0.1:5353", ("127.0.0.1", 5353)), ("::1", ("::1", 53)),
    ("[::1]:5353", ("::1", 5353)), ("[2001:db8::1]", ("2001:db8::1", 53))])
def test_parse_server(text, expected):
    assert parse_server(text) == expected


@pytest.mark.parametrize("text", ["dns.example", "dns.example:53", "1.2.3.4:x"])
def test_parse_server_refuses_names(text):
    with pytest.raises(ValueError):
        parse_server(text)


def reputation(**series: list[float]) -> pd.DataFrame:
    rows = [(T0 + timedelta(hours=i), name, name, v) for name, values in series.items() for i, v in enumerate(values)]
    return pd.DataFrame(rows, columns=["timestamp", "id", "label", "value"])


def test_judge_reputation():
    df = reputation(**{"Reputation.BounceRate": [0.02, 0.04, 0.061], "Reputation.ComplaintRate": [0.0015, 0.0002]})
    found = by_resource(judge_reputation(df, thresholds()))
    bounce, complaint = found["ses:Reputation.BounceRate"], found["ses:Reputation.ComplaintRate"]
    assert bounce.severity is WARNING and bounce.evidence["latest_pct"] == pytest.approx(6.1)
    assert "bounce rate 6.10% (above 5%)" in bounce.title and "Reputation" in bounce.resolution
    assert complaint.severity is INFO and complaint.evidence["peak_pct"] == pytest.approx(0.15)  # back below
    ok = judge_reputation(reputation(**{"Reputation.BounceRate": [0.01], "Reputation.ComplaintRate": [0.0001]}),
                          thresholds())
    assert [f.severity for f in ok] == [OK, OK]
    assert judge_reputation(df, thresholds(ses_bounce_pct=7))[0].severity is OK


def test_judge_reputation_no_data_is_info():
    assert [f.severity for f in judge_reputation(reputation(), thresholds())] == [INFO, INFO]


# =============================================================================================
# Layer 2: live checks
# =============================================================================================

@pytest.fixture(scope="module")
def provider():
    server = RouteServer({"/health": Route(200), "/slow": Route(200, delay=0.5), "/down": Route(503),
                          "/hang": Route(200, delay=3.0)}).start()
    try:
        yield server
    finally:
        server.stop()


def run_health(make_context, urls: dict[str, str], **overrides) -> dict:
    ctx = make_context(external={"health_urls": urls}, thresholds=overrides or None)
    return by_resource(ctx.run("external.http.health").findings)


def test_http_health_against_a_local_server(provider, make_context):
    urls = {n: provider.url(p) for n, p in (("payments", "/health"), ("email", "/slow"), ("sms", "/down"))}
    found = run_health(make_context, urls)
    assert [found[u].severity for u in urls.values()] == [OK, OK, CRITICAL]  # 0.5 s is fast at the default 2 s
    found = run_health(make_context, urls, external_slow_seconds=0.2)
    assert found[urls["email"]].severity is WARNING and found[urls["email"]].evidence["seconds"] >= 0.5
    assert found[urls["sms"]].evidence["status"] == 503


def test_http_health_timeout_and_refused(provider, make_context):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        refused = f"http://127.0.0.1:{s.getsockname()[1]}/health"
    hang = provider.url("/hang")
    started = time.monotonic()
    found = run_health(make_context, {"a": hang, "b": refused}, health_timeout_seconds=0.5)
    assert time.monotonic() - started < 2.5
    assert found[hang].severity is CRITICAL and found[hang].evidence["error"] == "timed out"
    assert found[refused].severity is CRITICAL and "refused" in found[refused].evidence["error"].lower()


def test_http_health_none_configured_is_info(make_context):
    assert [f.severity for f in make_context().run("external.http.health").findings] == [INFO]


@pytest.fixture(scope="module")
def dns_server():
    server = DnsServer({
        DOMAIN: ["v=spf1 include:amazonses.com -all", "some-verification=abc"],
        f"s1._domainkey.{DOMAIN}": [f"v=DKIM1; k=rsa; p={DKIM_KEY * 4}"],  # longer than 255: split strings
        f"s2._domainkey.{DOMAIN}": ["v=DKIM1; k=rsa; p="],
        f"_dmarc.{DOMAIN}": [f"v=DMARC1; p=quarantine; rua=mailto:d@{DOMAIN}"],
        "bare.example": ["nothing here"],
        "_dmarc.bare.example": ["v=DMARC1; p=maybe"],
    }, failing=["broken.example"], silent=["_dmarc.slow.example"]).start()
    try:
        yield server
    finally:
        server.stop()


def run_dns(make_context, dns_server, domain: str, selectors: list[str], **overrides):
    external = {"email_domain": domain, "dns_server": dns_server.address}
    if selectors:
        external["dkim_selectors"] = selectors
    return make_context(external=external, thresholds=overrides or None).run("external.email.dns")


def test_email_dns_against_a_local_dns_server(dns_server, make_context):
    result = run_dns(make_context, dns_server, DOMAIN, ["s1", "s2", "s3"])
    found = by_resource(result.findings)
    assert {r: f.severity for r, f in found.items()} == {
        f"dns:{DOMAIN}": OK, f"dns:s1._domainkey.{DOMAIN}": OK, f"dns:s2._domainkey.{DOMAIN}": WARNING,
        f"dns:s3._domainkey.{DOMAIN}": WARNING, f"dns:_dmarc.{DOMAIN}": OK}
    assert found[f"dns:s1._domainkey.{DOMAIN}"].evidence["record"] == f"v=DKIM1; k=rsa; p={DKIM_KEY * 4}"
    assert found[f"dns:s3._domainkey.{DOMAIN}"].evidence["outcome"] == "nxdomain"
    assert list(result.data["kind"]) == ["SPF", "DKIM", "DKIM", "DKIM", "DMARC"]


def test_email_dns_missing_and_malformed(dns_server, make_context):
    found = by_resource(run_dns(make_context, dns_server, "bare.example", []).findings)
    assert found["dns:bare.example"].severity is WARNING and "missing" in found["dns:bare.example"].title
    assert found["dns:_dmarc.bare.example"].severity is WARNING
    assert "malformed" in found["dns:_dmarc.bare.example"].title
    assert found["dns:_domainkey.bare.example"].severity is INFO  # no selectors configured


def test_email_dns_servfail_and_timeout_are_error_findings(dns_server, make_context):
    [spf, dmarc] = run_dns(make_context, dns_server, "broken.example", []).findings[:2]
    assert spf.severity is ERROR and "SERVFAIL" in spf.detail
    assert dmarc.severity is WARNING  # the rest of the domain still answers (NXDOMAIN)
    started = time.monotonic()
    findings = by_resource(run_dns(make_context, dns_server, "slow.example", [], health_timeout_seconds=0.5).findings)
    assert time.monotonic() - started < 3
    assert findings["dns:_dmarc.slow.example"].severity is ERROR
    assert "timed out" in findings["dns:_dmarc.slow.example"].detail


def test_email_dns_without_domain_is_info(make_context):
    assert [f.severity for f in make_context().run("external.email.dns").findings] == [INFO]


def test_email_dns_bad_server_setting_is_an_error_finding(make_context):
    ctx = make_context(external={"email_domain": DOMAIN, "dns_server": "dns.example"})
    [finding] = ctx.run("external.email.dns").findings
    assert finding.severity is ERROR and "external.dns_server" in finding.detail


@pytest.fixture(scope="module")
def moto_world():
    with mock_aws():
        yield


@pytest.fixture
def aws(moto_world):
    seed.reset("cloudwatch")


def put_ses(ctx, metric: str, values: list[float], hours_apart: float = 1.0) -> None:
    """Hourly SES datapoints (ratios), the last one 5 minutes before the window's end."""
    last = ctx.window.end - timedelta(minutes=5)
    data = [{"MetricName": metric, "Timestamp": last - timedelta(hours=hours_apart * (len(values) - 1 - i)),
             "Value": v} for i, v in enumerate(values)]
    seed.client("cloudwatch").put_metric_data(Namespace="AWS/SES", MetricData=data)


def test_reputation_against_moto(aws, make_context):
    ctx = make_context()
    put_ses(ctx, "Reputation.BounceRate", [0.01, 0.03, 0.07])
    put_ses(ctx, "Reputation.ComplaintRate", [0.0002, 0.0003], hours_apart=10)  # outside a 1h window: still read
    result = ctx.run("external.email.reputation")
    found = by_resource(result.findings)
    assert found["ses:Reputation.BounceRate"].severity is WARNING
    assert found["ses:Reputation.BounceRate"].evidence["latest_pct"] == pytest.approx(7.0)
    assert found["ses:Reputation.ComplaintRate"].severity is OK
    assert found["ses:Reputation.ComplaintRate"].evidence["datapoints"] == 2
    assert plots.svg(registry.get("external.email.reputation").plot(result, ctx)).startswith(b"<?xml")


def test_reputation_older_than_a_day_is_not_read(aws, make_context):
    ctx = make_context()
    put_ses(ctx, "Reputation.BounceRate", [0.2, 0.0], hours_apart=30)  # the 20% is 30 hours old
    found = by_resource(ctx.run("external.email.reputation").findings)
    assert found["ses:Reputation.BounceRate"].severity is OK
    assert found["ses:Reputation.ComplaintRate"].severity is INFO


# =============================================================================================
# Layer 3: the served demo
# =============================================================================================

def demo_results(scenario: str) -> dict[str, list]:
    from rmsops.core.context import Context
    from tests.demo_server import served

    ctx = Context.open(served(scenario).env_file)
    try:
        results = ctx.run_all("16-external-dependencies")
    finally:
        ctx.close()
    json.dumps([f.to_dict() for r in results for f in r.findings], allow_nan=False)  # strict JSON evidence
    return {r.check: r.findings for r in results}


def test_demo_incident_has_a_slow_payment_gateway():
    found = demo_results("incident")
    severities = {f.evidence["name"]: f.severity for f in found["external.http.health"]}
    assert severities == {"payment-gateway": WARNING, "email-provider": OK}
    assert {f.severity for f in found["external.email.dns"]} == {OK}


def test_demo_healthy_has_nothing_above_info():
    found = demo_results("healthy")
    assert {f.severity for findings in found.values() for f in findings} <= {OK, INFO}
    assert len(found["external.email.dns"]) == 4  # SPF, two DKIM selectors, DMARC
    assert {f.severity for f in found["external.email.reputation"]} == {OK}


def test_notebook_runs_against_the_demo(tmp_path):
    from rmsops.core import runbooks
    from rmsops.core.window import resolve
    from rmsops.execution.runner import collect_findings, run_runbook
    from tests.demo_server import served

    outcome = run_runbook(runbooks.find("16"), config.load(served("incident").env_file), resolve("1h"), tmp_path)
    assert outcome.status == "done", outcome.error
    findings = collect_findings(nbformat.read(outcome.notebook, as_version=4))
    assert {f.check for f in findings} == set(runbooks.find("16").checks)
    assert any(f.severity is WARNING for f in findings if f.check == "external.http.health")
