"""Runbook 04 (tls-certificates): judges, then ACM/ELBv2 against moto, then live handshakes.

Layer 1 feeds small DataFrames to the pure judge functions. Layer 2 seeds moto (one mock for the
module, ACM and ELBv2 reset per test) and goes through ``ctx.run``. Layer 3 serves certificates made
in the test with ``cryptography`` from local TLS servers (127.0.0.1, free ports): valid, expiring in 5
days, expired, for another host, self-signed, and things that are not TLS at all. Layer 4 runs the
checks and the notebook against the served demo.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from unittest import mock

import nbformat
import pandas as pd
import pytest
from matplotlib.figure import Figure
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID

from rmsops.checks.tls import (
    HANDSHAKE_COLUMNS,
    days_until,
    expiry_figure,
    hostname_matches,
    judge_acm_expiry,
    judge_handshakes,
    judge_listener_certificates,
    severity_of,
)
from rmsops.core import config, registry
from rmsops.core.findings import Severity
from rmsops.demo.areas.edge_servers import CertificateAuthority, Route, RouteServer, TlsServer, self_signed
from rmsops.render import plots
from tests import aws_seed as seed
from tests.judging import CRITICAL, ERROR, INFO, OK, WARNING, by_resource, thresholds

NOW = datetime(2026, 11, 28, 20, 0, tzinfo=UTC)


# =============================================================================================
# Layer 1: judges
# =============================================================================================

def acm_frame(*rows) -> pd.DataFrame:
    """rows: (domain, status, days_left, in_use, type)."""
    return pd.DataFrame([{"domain": d, "arn": f"arn:aws:acm:us-east-1:1:certificate/{d}", "type": t,
                          "status": s, "not_after": None if days is None else NOW + timedelta(days=days),
                          "days_left": days, "in_use_by": ["arn:listener"] if used else [],
                          "renewal": "INELIGIBLE", "sans": [d]} for d, s, days, used, t in rows])


def test_judge_acm_expiry_says_which_certificate_cloudfront_serves():
    df = acm_frame(
        ("rms.example", "ISSUED", 20.0, True, "IMPORTED"), ("rms.example", "ISSUED", 20.0, False, "IMPORTED")
    )
    df["region"] = ["eu-west-1", "us-east-1"]
    df["cloudfront"] = [[], ["E1"]]
    alb, cdn = judge_acm_expiry(df, thresholds(), "eu-west-1")
    assert alb.severity is cdn.severity is WARNING
    assert "(CloudFront)" not in alb.title and "in eu-west-1" in alb.detail
    assert cdn.title.startswith("rms.example (CloudFront)") and "served by CloudFront E1" in cdn.detail
    assert cdn.evidence["region"] == "us-east-1" and cdn.evidence["cloudfront_distributions"] == ["E1"]


def test_days_until_naive_and_aware_and_missing():
    assert days_until(NOW + timedelta(days=3), NOW) == 3.0
    assert days_until(datetime(2026, 11, 26, 20, 0), NOW) == -2.0  # naive = UTC
    assert days_until(None, NOW) is None and days_until(pd.NaT, NOW) is None


def test_judge_acm_expiry_applies_the_catalogue_thresholds():
    df = acm_frame(("far", "ISSUED", 200.0, True, "IMPORTED"), ("month", "ISSUED", 20.0, True, "IMPORTED"),
                   ("week", "ISSUED", 5.0, True, "IMPORTED"), ("gone", "EXPIRED", -3.0, False, "IMPORTED"),
                   ("edge", "ISSUED", 30.0, False, "IMPORTED"))
    found = {f.evidence["domain"]: f for f in judge_acm_expiry(df, thresholds(), "us-east-1")}
    assert {d: f.severity for d, f in found.items()} == {
        "far": OK, "month": WARNING, "week": CRITICAL, "gone": CRITICAL, "edge": OK}
    assert "expired 3 days ago" in found["gone"].title and "not in use" in found["gone"].detail
    assert "expires in 5 days" in found["week"].title
    assert "request a new certificate through ACM" in found["week"].resolution
    assert found["month"].evidence["days_left"] == 20.0 and found["month"].evidence["warning_days"] == 30


def test_judge_acm_expiry_status_expired_wins_over_a_date_in_the_future():
    df = acm_frame(("odd", "EXPIRED", 10.0, False, "IMPORTED"))
    [finding] = judge_acm_expiry(df, thresholds(), "us-east-1")
    assert finding.severity is CRITICAL


def test_judge_acm_expiry_thresholds_move_the_verdict():
    df = acm_frame(("month", "ISSUED", 20.0, True, "IMPORTED"))
    assert judge_acm_expiry(df, thresholds(cert_warning_days=14), "us-east-1")[0].severity is OK
    assert judge_acm_expiry(df, thresholds(cert_critical_days=21), "us-east-1")[0].severity is CRITICAL


def test_judge_acm_expiry_other_statuses_are_info_unless_revoked_and_in_use():
    df = acm_frame(("new", "PENDING_VALIDATION", None, False, "AMAZON_ISSUED"),
                   ("bad", "REVOKED", 100.0, True, "IMPORTED"), ("old", "REVOKED", 100.0, False, "IMPORTED"))
    found = {f.evidence["domain"]: f.severity for f in judge_acm_expiry(df, thresholds(), "us-east-1")}
    assert found == {"new": INFO, "bad": CRITICAL, "old": INFO}


def test_judge_acm_expiry_amazon_issued_close_to_expiry_points_at_managed_renewal():
    df = acm_frame(("auto", "ISSUED", 12.0, True, "AMAZON_ISSUED"))
    [finding] = judge_acm_expiry(df, thresholds(), "us-east-1")
    assert finding.severity is WARNING and "managed renewal" in finding.resolution


def test_judge_acm_expiry_no_certificates_is_info():
    [finding] = judge_acm_expiry(acm_frame(), thresholds(), "eu-west-1")
    assert finding.severity is INFO and "eu-west-1" in finding.title


def listener_frame(*rows) -> pd.DataFrame:
    """rows: (listener, certificate domain, status, days_left, is_default)."""
    return pd.DataFrame([{"listener": lst, "port": 443, "protocol": "HTTPS", "ssl_policy": "p",
                          "certificate": f"arn:cert/{d}" if d else "", "is_default": default, "domain": d,
                          "status": s, "not_after": None, "days_left": days}
                         for lst, d, s, days, default in rows])


def test_judge_listener_certificates():
    df = listener_frame(("L1", "api", "ISSUED", 200.0, True), ("L1", "www", "ISSUED", 100.0, False),
                        ("L2", "api", "ISSUED", 200.0, True), ("L2", "legacy", "EXPIRED", -3.0, False),
                        ("L3", "api", "REVOKED", 200.0, True),
                        ("L4", "api", "ISSUED", 5.0, True),
                        ("L5", "", "NONE", None, False),
                        ("L6", "api", "ISSUED", -0.5, True),  # past NotAfter, ACM not yet updated
                        ("L7", "gone", "NOT_FOUND", None, True))
    found = by_resource(judge_listener_certificates(df, thresholds(), "rms-alb"))
    assert {r: f.severity for r, f in found.items()} == {
        "L1": OK, "L2": CRITICAL, "L3": CRITICAL, "L4": INFO, "L5": CRITICAL, "L6": CRITICAL, "L7": CRITICAL}
    assert "legacy EXPIRED" in found["L2"].detail and "modify-listener" in found["L2"].resolution
    assert "revoked" in found["L3"].title and "no certificate" in found["L5"].title
    assert "expires in 5 days" in found["L4"].title
    assert len(found["L1"].evidence["certificates"]) == 2


def test_judge_listener_certificates_no_https_listener_is_info():
    [finding] = judge_listener_certificates(listener_frame(), thresholds(), "rms-alb")
    assert finding.severity is INFO and finding.resource == "alb:rms-alb"


@pytest.mark.parametrize(("host", "dns", "ips", "expected"), [
    ("api.rms.company.com", ["api.rms.company.com"], [], True),
    ("API.rms.company.com.", ["api.rms.company.com"], [], True),
    ("api.rms.company.com", ["*.rms.company.com"], [], True),
    ("a.b.rms.company.com", ["*.rms.company.com"], [], False),  # a wildcard covers one label only
    ("rms.company.com", ["*.rms.company.com"], [], False),
    ("api.rms.company.com", ["*.com"], [], False),
    ("api.rms.company.com", ["www.rms.company.com"], [], False),
    ("127.0.0.1", ["127.0.0.1"], [], False),  # an IP must be an IP SAN
    ("127.0.0.1", [], ["127.0.0.1"], True),
    ("::1", [], ["0:0:0:0:0:0:0:1"], True),
])
def test_hostname_matches(host, dns, ips, expected):
    assert hostname_matches(host, dns, ips) is expected


def handshake_frame(**rows) -> pd.DataFrame:
    base = {"host": "api.example", "port": 443, "error": "", "verification": "verified", "verify_message": "",
            "hostname_ok": True, "subject": "api.example", "issuer": "CA", "sans": ["api.example"],
            "not_after": NOW + timedelta(days=200), "days_left": 200.0, "protocol": "TLSv1.3", "seconds": 0.01}
    frame = pd.DataFrame([{**base, "url": url, **changes} for url, changes in rows.items()])
    return frame[HANDSHAKE_COLUMNS]


def test_judge_handshakes():
    df = handshake_frame(
        ok={}, soon={"days_left": 5.0}, month={"days_left": 25.0},
        expired={"days_left": -2.0, "verification": "expired", "verify_message": "certificate has expired"},
        other={"hostname_ok": False, "verification": "hostname mismatch", "sans": ["www.example"]},
        untrusted={"verification": "self-signed", "verify_message": "self-signed certificate"},
        refused={"error": "connection refused", "verification": "", "hostname_ok": None, "subject": None,
                 "issuer": None, "sans": None, "not_after": pd.NaT, "days_left": None, "protocol": None})
    found = by_resource(judge_handshakes(df, thresholds()))
    assert {r: f.severity for r, f in found.items()} == {
        "ok": OK, "soon": CRITICAL, "month": WARNING, "expired": CRITICAL, "other": CRITICAL,
        "untrusted": CRITICAL, "refused": CRITICAL}
    assert "does not name api.example (it names www.example)" in found["other"].title
    assert "not trusted" in found["untrusted"].title and "tls.ca_bundle" in found["untrusted"].resolution
    assert "not trusted" not in found["expired"].detail  # explained by the expiry, not repeated
    assert found["refused"].title == "TLS handshake with api.example failed"
    assert found["refused"].evidence["days_left"] is None


def test_judge_handshakes_lists_every_problem_and_the_port_in_the_title():
    df = handshake_frame(both={"port": 8443, "days_left": 3.0, "hostname_ok": False,
                               "verification": "self-signed", "verify_message": "self-signed certificate"})
    [finding] = judge_handshakes(df, thresholds())
    assert finding.title.startswith("api.example:8443: ")
    assert "does not name" in finding.detail and "expires in 3 days" in finding.detail
    assert "not trusted" in finding.detail


def test_judge_handshakes_none_configured_is_info():
    [finding] = judge_handshakes(pd.DataFrame(columns=HANDSHAKE_COLUMNS), thresholds())
    assert finding.severity is INFO and finding.resource == "tls.endpoints"


def test_expiry_figure_draws_bars_and_the_threshold_lines():
    fig = expiry_figure(["a", "b", "c", "none"], [200.0, 12.0, -3.0, None], "t", thresholds(),
                        severity_of(thresholds()))
    ax = fig.axes[0]
    assert isinstance(fig, Figure) and len(ax.patches) == 3  # the certificate without a date is left out
    assert {round(line.get_xdata()[0]) for line in ax.lines} == {7, 30, 0}
    assert plots.svg(fig).startswith(b"<?xml")


# =============================================================================================
# Layer 2: ACM and the ALB's listeners against moto
# =============================================================================================

@pytest.fixture(scope="module")
def ca(tmp_path_factory) -> tuple[CertificateAuthority, str]:
    authority = CertificateAuthority("rmsops test CA")
    return authority, authority.write_bundle(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def moto_world():
    with mock_aws():
        seed.network()
        yield


@pytest.fixture
def aws(moto_world):
    from moto.acm.models import acm_backends

    acm_backends[DEFAULT_ACCOUNT_ID][seed.REGION].reset()
    seed.reset("elbv2")


def import_cert(ca, domain: str, days_left: float, clock_days_ago: float = 0) -> str:
    """Import a CA-issued certificate; with *clock_days_ago*, while moto's clock reads that far back
    (moto refuses to import an expired certificate, as ACM does)."""
    import moto.acm.models as acm_models

    issued = ca.issue([domain], days_left, lifetime_days=395)
    real = acm_models.utcnow
    with mock.patch.object(acm_models, "utcnow", lambda: real() - timedelta(days=clock_days_ago)):
        return seed.client("acm").import_certificate(Certificate=issued.cert_pem, PrivateKey=issued.key_pem,
                                                     CertificateChain=issued.chain_pem)["CertificateArn"]


def test_acm_expiry_against_moto(aws, ca, make_context):
    authority, _ = ca
    import_cert(authority, "far.rms.test", 200)
    import_cert(authority, "month.rms.test", 20)
    import_cert(authority, "week.rms.test", 5)
    import_cert(authority, "gone.rms.test", -3, clock_days_ago=200)
    result = make_context().run("tls.acm.expiry")
    found = {f.evidence["domain"]: f for f in result.findings}
    assert {d: f.severity for d, f in found.items()} == {
        "far.rms.test": OK, "month.rms.test": WARNING, "week.rms.test": CRITICAL, "gone.rms.test": CRITICAL}
    assert found["gone.rms.test"].evidence["status"] == "EXPIRED"
    assert 19 < found["month.rms.test"].evidence["days_left"] < 21
    assert set(result.data["domain"]) == set(found)


def test_acm_expiry_plot_keeps_certificates_of_the_same_name_apart(aws, ca, make_context):
    import_cert(ca[0], "api.rms.test", 3)
    import_cert(ca[0], "api.rms.test", 300)  # the renewed one, imported beside the old
    ctx = make_context()
    result = ctx.run("tls.acm.expiry")
    assert sorted(f.severity.value for f in result.findings) == ["critical", "ok"]
    fig = registry.get("tls.acm.expiry").plot(result, ctx)
    assert len(fig.axes[0].patches) == 2
    assert len({t.get_text() for t in fig.axes[0].get_yticklabels()}) == 2


def test_acm_expiry_lists_every_key_type(aws, make_context):
    """list_certificates returns only RSA_1024/2048 by default; EC and large RSA keys must not be missed."""
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP384R1())
    with mock.patch("rmsops.demo.areas.edge_servers._key", lambda: key):
        issued = self_signed(["p384.rms.test"], 100)
    seed.client("acm").import_certificate(Certificate=issued.cert_pem, PrivateKey=issued.key_pem)
    [finding] = make_context().run("tls.acm.expiry").findings
    assert finding.evidence["domain"] == "p384.rms.test" and finding.severity is OK


def test_acm_expiry_no_certificates_is_info(aws, make_context):
    assert [f.severity for f in make_context().run("tls.acm.expiry").findings] == [INFO]


def https_listener(lb_arn: str, group_arn: str, default: str | None, sni: tuple[str, ...] = (),
                   port: int = 443) -> str:
    elb = seed.client("elbv2")
    listener = elb.create_listener(
        LoadBalancerArn=lb_arn, Protocol="HTTPS", Port=port,
        Certificates=[{"CertificateArn": default}] if default else [],
        DefaultActions=[{"Type": "forward", "TargetGroupArn": group_arn}])["Listeners"][0]["ListenerArn"]
    if sni:
        elb.add_listener_certificates(ListenerArn=listener, Certificates=[{"CertificateArn": a} for a in sni])
    return listener


def test_listener_certificates_against_moto(aws, ca, make_context):
    authority, _ = ca
    lb, groups = seed.create_alb({"rms-frontend": []})
    api, www = import_cert(authority, "api.rms.test", 200), import_cert(authority, "www.rms.test", 5)
    legacy = import_cert(authority, "legacy.rms.test", -3, clock_days_ago=200)
    good = https_listener(lb, groups["rms-frontend"], api, (www,))
    bad = https_listener(lb, groups["rms-frontend"], api, (legacy,), port=8443)
    bare = https_listener(lb, groups["rms-frontend"], None, port=9443)  # moto accepts it; AWS would not
    seed.client("elbv2").create_listener(LoadBalancerArn=lb, Protocol="HTTP", Port=80, DefaultActions=[
        {"Type": "forward", "TargetGroupArn": groups["rms-frontend"]}])
    result = make_context().run("tls.alb.listener_certificate")
    found = by_resource(result.findings)
    assert {r: f.severity for r, f in found.items()} == {good: INFO, bad: CRITICAL, bare: CRITICAL}
    assert "www.rms.test expires in 5 days" in found[good].title
    assert "legacy.rms.test EXPIRED" in found[bad].detail
    defaults = {c["domain"]: c["is_default"] for c in found[bad].evidence["certificates"]}
    assert defaults == {"api.rms.test": True, "legacy.rms.test": False}
    assert set(result.data["port"]) == {443, 8443, 9443}  # the HTTP listener is not looked at


def test_listener_certificate_from_iam(aws, make_context):
    """Older setups serve IAM server certificates; moto gives every one a fixed Expiration in 2012."""
    issued = self_signed(["iam.rms.test"], 100)
    arn = seed.client("iam").upload_server_certificate(
        ServerCertificateName="rms-2012", CertificateBody=issued.cert_pem.decode(),
        PrivateKey=issued.key_pem.decode())["ServerCertificateMetadata"]["Arn"]
    lb, groups = seed.create_alb({"rms-frontend": []})
    https_listener(lb, groups["rms-frontend"], arn)
    [finding] = make_context().run("tls.alb.listener_certificate").findings
    assert finding.severity is CRITICAL
    [cert] = finding.evidence["certificates"]
    assert (cert["domain"], cert["status"], cert["certificate"]) == ("rms-2012", "EXPIRED", arn)


def test_listener_certificates_valid_is_ok(aws, ca, make_context):
    lb, groups = seed.create_alb({"rms-frontend": []})
    listener = https_listener(lb, groups["rms-frontend"], import_cert(ca[0], "api.rms.test", 200))
    [finding] = make_context().run("tls.alb.listener_certificate").findings
    assert (finding.resource, finding.severity) == (listener, OK)


def test_listener_certificates_without_https_listener_is_info(aws, make_context):
    seed.create_alb({"rms-frontend": []})
    [finding] = make_context().run("tls.alb.listener_certificate").findings
    assert finding.severity is INFO and "no HTTPS listener" in finding.title


def test_listener_certificates_missing_alb_is_an_error_finding(aws, make_context):
    [finding] = make_context().run("tls.alb.listener_certificate").findings
    assert finding.severity is ERROR and "DescribeLoadBalancers" in finding.detail


# =============================================================================================
# Layer 3: live handshakes with local TLS servers
# =============================================================================================

@pytest.fixture(scope="module")
def endpoints(ca):
    """One local TLS server per kind of certificate; yields {kind: url}."""
    authority, _ = ca
    here = ["localhost", "127.0.0.1"]
    certs = {"valid": authority.issue(here, 200), "soon": authority.issue(here, 5),
             "month": authority.issue(here, 25), "expired": authority.issue(here, -3),
             "other-host": authority.issue(["api.rms.company.com"], 200),
             "self-signed": self_signed(here, 200)}
    servers = {kind: TlsServer(issued).start() for kind, issued in certs.items()}
    plain = RouteServer({"/": Route()}).start()
    silent = socket.socket()  # accepts connections (the backlog) but never says a word
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    urls = {kind: server.url for kind, server in servers.items()}
    urls["plain-http"] = plain.base_url.replace("http://", "https://") + "/"
    urls["silent"] = f"https://127.0.0.1:{silent.getsockname()[1]}/"
    try:
        yield urls
    finally:
        for server in servers.values():
            server.stop()
        plain.stop()
        silent.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_handshake(make_context, urls: list[str], ca_bundle: str | None, **overrides):
    ctx = make_context(tls={"endpoints": urls}, thresholds=overrides or None)
    object.__setattr__(ctx.settings, "tls_ca_bundle", ca_bundle)  # tls.ca_bundle, requested in config
    return ctx.run("tls.endpoint.handshake")


def test_handshake_verdicts(endpoints, ca, make_context):
    kinds = ["valid", "soon", "month", "expired", "other-host", "self-signed"]
    result = run_handshake(make_context, [endpoints[k] for k in kinds], ca[1])
    found = {k: by_resource(result.findings)[endpoints[k]] for k in kinds}
    assert {k: f.severity for k, f in found.items()} == {
        "valid": OK, "soon": CRITICAL, "month": WARNING, "expired": CRITICAL, "other-host": CRITICAL,
        "self-signed": CRITICAL}
    assert found["valid"].evidence["verification"] == "verified"
    assert found["valid"].evidence["protocol"].startswith("TLS")
    assert found["soon"].evidence["verification"] == "verified" and "expires in 5 days" in found["soon"].title
    assert found["expired"].evidence["verification"] == "expired"
    assert "expired 3 days ago" in found["expired"].title  # the certificate was read despite the failure
    assert found["other-host"].evidence["hostname_ok"] is False
    assert "does not name 127.0.0.1 (it names api.rms.company.com)" in found["other-host"].title
    assert found["self-signed"].evidence["verification"] == "self-signed"
    assert "not trusted" in found["self-signed"].title
    assert list(result.data["url"]) == [endpoints[k] for k in kinds]
    assert plots.svg(expiry_figure(result.data["url"].tolist(), result.data["days_left"].tolist(), "t",
                                   thresholds(), severity_of(thresholds())))


def test_handshake_without_the_ca_bundle_uses_the_system_store(endpoints, make_context):
    url = endpoints["valid"]
    [finding] = run_handshake(make_context, [url], None).findings
    assert finding.severity is CRITICAL and finding.evidence["verification"] == "untrusted"
    assert finding.evidence["days_left"] > 190  # still read and reported


def test_handshake_failures_are_critical_with_the_reason(endpoints, ca, make_context):
    refused = f"https://127.0.0.1:{free_port()}/"
    urls = [endpoints["plain-http"], endpoints["silent"], refused]
    started = time.monotonic()
    found = by_resource(run_handshake(make_context, urls, ca[1], tls_timeout_seconds=0.5).findings)
    assert time.monotonic() - started < 3  # in parallel, each bounded by the timeout
    assert all(f.severity is CRITICAL for f in found.values())
    assert found[refused].evidence["error"] == "connection refused"
    assert found[endpoints["silent"]].evidence["error"] == "timed out"
    assert found[endpoints["plain-http"]].evidence["error"].startswith("TLS handshake failed")


def test_handshake_none_configured_is_info(make_context):
    assert [f.severity for f in make_context().run("tls.endpoint.handshake").findings] == [INFO]


def test_handshake_missing_ca_bundle_file_is_an_error_finding(endpoints, tmp_path, make_context):
    [finding] = run_handshake(make_context, [endpoints["valid"]], str(tmp_path / "nope.pem")).findings
    assert finding.severity is ERROR


def test_ca_bundle_from_the_environment_file(endpoints, ca, make_context):
    ctx = make_context(tls={"endpoints": [endpoints["valid"]], "ca_bundle": ca[1]})
    [finding] = ctx.run("tls.endpoint.handshake").findings
    assert finding.severity is OK


def test_tls_server_survives_clients_that_abort(endpoints, ca):
    """Clients that refuse the certificate close mid-handshake; the server keeps serving others."""
    from rmsops.checks.tls import handshake

    threads = [threading.Thread(target=handshake, args=(endpoints["self-signed"], 2, ca[1])) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert handshake(endpoints["valid"], 2, ca[1])["verification"] == "verified"


# =============================================================================================
# Layer 4: the served demo
# =============================================================================================

def demo_severities(scenario: str) -> dict[str, dict[str, Severity]]:
    from rmsops.core.context import Context
    from tests.demo_server import served

    ctx = Context.open(served(scenario).env_file)
    try:
        results = ctx.run_all("04-tls-certificates")
    finally:
        ctx.close()
    json.dumps([f.to_dict() for r in results for f in r.findings], allow_nan=False)  # strict JSON evidence
    return {r.check: {f.resource: f.severity for f in r.findings} for r in results}


def test_demo_expiring_cert_shows_the_expiring_and_the_expired_certificate():
    found = demo_severities("expiring-cert")
    acm = sorted(found["tls.acm.expiry"].values(), key=lambda s: s.rank)
    assert acm == [CRITICAL, CRITICAL, OK]  # the API certificate (5 days) and the legacy one (expired)
    assert list(found["tls.alb.listener_certificate"].values()) == [CRITICAL]  # serves the expired one
    assert sorted(found["tls.endpoint.handshake"].values(), key=lambda s: s.rank) == [CRITICAL, OK]


def test_demo_incident_has_a_certificate_warning_and_healthy_none():
    incident = demo_severities("incident")
    assert WARNING in incident["tls.acm.expiry"].values()
    healthy = demo_severities("healthy")
    assert {s for check in healthy.values() for s in check.values()} <= {OK, INFO}
    assert set(healthy["tls.acm.expiry"].values()) == {OK}
    assert set(healthy["tls.alb.listener_certificate"].values()) == {OK}
    assert set(healthy["tls.endpoint.handshake"].values()) == {OK}


def test_notebook_runs_against_the_demo(tmp_path):
    from rmsops.core import runbooks
    from rmsops.core.window import resolve
    from rmsops.execution.runner import collect_findings, run_runbook
    from tests.demo_server import served

    outcome = run_runbook(runbooks.find("04"), config.load(served("expiring-cert").env_file), resolve("1h"),
                          tmp_path)
    assert outcome.status == "done", outcome.error
    findings = collect_findings(nbformat.read(outcome.notebook, as_version=4))
    assert {f.check for f in findings} == set(runbooks.find("04").checks)
    assert any(f.severity is CRITICAL for f in findings if f.check == "tls.acm.expiry")
    assert outcome.html is not None and outcome.html.read_text().count("data:image/svg+xml;base64") >= 1


def test_edge_seeding_starts_its_servers_and_cleanup_stops_them(aws, tmp_path, monkeypatch):
    """The demo's edge area against moto in this process: what it starts, cleanup stops."""
    import tempfile
    from urllib.parse import urlparse

    from rmsops.demo import scenarios
    from rmsops.demo.areas import AwsSeed, edge
    from rmsops.demo.seed_aws import SeededAws

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the area's temp folder lands here
    lb, groups = seed.create_alb({"rms-frontend": []})
    cleanups: list = []
    env = AwsSeed(scenarios.get("expiring-cert"), seed.client, "", SeededAws(
        load_balancer_arn=lb, target_groups=groups, distribution_id=seed.create_distribution()["Id"]), patches=None,
        now=datetime.now(UTC), cleanup=lambda name, fn: cleanups.append((name, fn)))
    before = {t.name for t in threading.enumerate()}
    started = time.monotonic()
    edge.seed_aws(env)
    assert time.monotonic() - started < 3  # the demo start stays fast
    tcp = [urlparse(env.settings["cloudfront"]["base_url"]).port]
    tcp += [urlparse(u).port for u in env.settings["external"]["health_urls"].values()]
    tcp += [urlparse(u).port for u in env.settings.get("tls", {}).get("endpoints", [])]
    dns_port = int(env.settings["external"]["dns_server"].rsplit(":", 1)[1])
    assert env.settings["tls"]["ca_bundle"]
    listener = seed.client("elbv2").describe_listeners(LoadBalancerArn=lb)["Listeners"][0]
    assert (listener["Protocol"], listener["Port"]) == ("HTTPS", 443)
    statuses = sorted(c["Status"] for c in seed.client("acm").list_certificates()["CertificateSummaryList"])
    assert statuses == ["EXPIRED", "ISSUED", "ISSUED"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("rmsops-demo-edge-")]
    with pytest.raises(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", dns_port))  # the DNS server holds it
    for _, fn in reversed(cleanups):
        fn()
    assert {t.name for t in threading.enumerate()} <= before
    for port in tcp:
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, port  # nothing listens any more
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", dns_port))  # released
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("rmsops-demo-edge-")]
