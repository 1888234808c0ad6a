"""The demo's edge: TLS certificates (runbook 04), CloudFront (05) and external dependencies (16).

What it builds, per scenario (``EdgeState``):

* A private CA issues the API and frontend certificates. Both are imported into ACM and served by
  an HTTPS listener on the ALB (default: the API certificate; the frontend one by SNI), and two local
  TLS servers serve the same certificates as the live endpoints (``tls.endpoints``). The CA goes into a
  CA bundle file (``tls.ca_bundle``) so that the handshake check verifies them as it would verify a
  public CA's. The distribution serves the frontend certificate from ACM in us-east-1, where CloudFront
  requires it (imported a second time there when the environment lives in another region).
  ``expiring-cert``: the API certificate expires in 5 days, and a legacy certificate, still
  on the listener for SNI, has already expired. ``incident``: the frontend certificate expires in 20 days.
* moto cannot import an expired certificate ("The certificate has expired"): the legacy one is imported
  while ``moto.acm.models.utcnow`` reads 200 days ago, so ACM marks it EXPIRED when next described.
* A local HTTP server stands in for the distribution's domain (``cloudfront.base_url``) and serves the
  assets (``cloudfront.asset_paths``). moto publishes no CloudFront metrics: 4xxErrorRate,
  5xxErrorRate, CacheHitRate and Requests are put into CloudWatch in us-east-1 (where AWS publishes
  them, whatever the environment's region) for the last hour, and a ticker keeps them
  coming while the demo runs. ``incident``: the 5xx rate climbs after the bad backend deployment.
* Third-party health URLs on a local HTTP server (``incident``: the payment gateway answers slowly), a
  UDP DNS server with the SPF, DKIM and DMARC records of rms.company.com (``external.dns_server``),
  and a day of SES reputation metrics (moto publishes none).
"""

from __future__ import annotations

import base64
import random
import shutil
import tempfile
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from unittest import mock

from rmsops.demo import layout
from rmsops.demo.areas.edge_servers import CertificateAuthority, DnsServer, Issued, Route, RouteServer, TlsServer
from rmsops.demo.scenarios import MINUTES
from rmsops.demo.ticker import MinuteTicker

if TYPE_CHECKING:
    from rmsops.demo.areas.seeding import AwsSeed

DOMAIN = "rms.company.com"
API_HOST = f"api.{DOMAIN}"
LEGACY_HOST = f"legacy-api.{DOMAIN}"
ASSET_PATHS = ("/assets/logo.png", "/assets/app.js", "/assets/app.css")
DKIM_SELECTORS = ("rms1", "rms2")
PAYMENT_PATH, EMAIL_PATH = "/payments/v1/health", "/email/status"
CDN_REQUESTS_PER_MINUTE = 4200


@dataclass(frozen=True)
class EdgeState:
    api_cert_days: float = 200.0
    frontend_cert_days: float = 240.0
    expired_legacy_cert: bool = False
    cdn_5xx_pct: tuple[float, ...] = ()  # per minute, oldest first
    cdn_4xx_pct: tuple[float, ...] = ()
    cache_hit_pct: tuple[float, ...] = ()
    payment_delay_seconds: float = 0.0
    ses_bounce: float = 0.008  # ratios, as SES publishes them
    ses_complaint: float = 0.0002


def state_for(name: str) -> EdgeState:
    rng = random.Random(f"edge-{name}")

    def series(low: float, high: float) -> tuple[float, ...]:
        return tuple(round(rng.uniform(low, high), 2) for _ in range(MINUTES))

    healthy = EdgeState(cdn_5xx_pct=series(0.05, 0.6), cdn_4xx_pct=series(0.4, 1.8),
                        cache_hit_pct=series(86, 95))
    if name == "expiring-cert":
        return replace(healthy, api_cert_days=5.0, expired_legacy_cert=True)
    if name == "incident":
        deploy = 15  # the scenario's bad rms-backend deployment, minutes ago
        failing_from = MINUTES - deploy + 2  # CloudFront forwards /api/* to the ALB: 502/503 from there
        five = [v if i < failing_from else round(rng.uniform(30, 45), 2)
                for i, v in enumerate(healthy.cdn_5xx_pct)]
        return replace(healthy, frontend_cert_days=20.0, cdn_5xx_pct=tuple(five), payment_delay_seconds=2.4)
    return healthy


def seed_aws(env: AwsSeed) -> None:
    state = state_for(env.scenario.name)
    folder = tempfile.mkdtemp(prefix="rmsops-demo-edge-")
    env.cleanup("edge temp dir", lambda: shutil.rmtree(folder, ignore_errors=True))
    _tls(env, state, folder)
    _cdn(env, state)
    _external(env, state)
    cloudwatch = env.client("cloudwatch", layout.GLOBAL_REGION)  # CloudFront's metrics live there
    ticker = MinuteTicker("rms-demo-edge-metrics", env.now, lambda minute, index: _put(
        cloudwatch, "AWS/CloudFront", _cdn_datums(env, state, [(minute, index)]))).start()
    env.cleanup("edge metrics ticker", ticker.stop)


def _merge(env: AwsSeed, section: str, values: dict[str, Any]) -> None:
    env.settings[section] = {**env.settings.get(section, {}), **values}


def _start(env: AwsSeed, name: str, server: Any) -> Any:
    server.start()
    env.cleanup(name, server.stop)
    return server


# --- 04 TLS ----------------------------------------------------------------------------------------

def _tls(env: AwsSeed, state: EdgeState, folder: str) -> None:
    ca = CertificateAuthority()
    api = ca.issue([API_HOST, "127.0.0.1"], state.api_cert_days, lifetime_days=395)
    frontend = ca.issue([DOMAIN, f"www.{DOMAIN}", "127.0.0.1"], state.frontend_cert_days, lifetime_days=395)
    acm, elb = env.client("acm"), env.client("elbv2")
    tags = [{"Key": "Environment", "Value": "production"}]

    api_arn, frontend_arn = imported_in(acm, api, tags), imported_in(acm, frontend, tags)
    listener = elb.create_listener(
        LoadBalancerArn=env.aws.load_balancer_arn, Protocol="HTTPS", Port=443,
        SslPolicy="ELBSecurityPolicy-TLS13-1-2-2021-06", Certificates=[{"CertificateArn": api_arn}],
        DefaultActions=[{"Type": "forward", "TargetGroupArn": env.aws.target_groups["rms-frontend"]}],
    )["Listeners"][0]["ListenerArn"]
    sni = [frontend_arn]
    if state.expired_legacy_cert:  # the old API name, still on the listener for SNI clients
        sni.append(_import_expired(acm, ca.issue([LEGACY_HOST], days_left=-3, lifetime_days=395), tags))
    elb.add_listener_certificates(ListenerArn=listener, Certificates=[{"CertificateArn": a} for a in sni])

    _serve_on_cloudfront(env, frontend_arn if env.client("acm").meta.region_name == layout.GLOBAL_REGION
                         else imported_in(env.client("acm", layout.GLOBAL_REGION), frontend, tags))
    endpoints = [_start(env, f"TLS endpoint {name}", TlsServer(issued)).url
                 for name, issued in (("api", api), ("frontend", frontend))]
    _merge(env, "tls", {"endpoints": endpoints, "ca_bundle": ca.write_bundle(folder)})


def imported_in(acm: Any, issued: Issued, tags: list[dict[str, str]]) -> str:
    return acm.import_certificate(Certificate=issued.cert_pem, PrivateKey=issued.key_pem,
                                  CertificateChain=issued.chain_pem, Tags=tags)["CertificateArn"]


def _serve_on_cloudfront(env: AwsSeed, certificate_arn: str) -> None:
    """The distribution serves the frontend certificate: an ACM certificate in us-east-1, as CloudFront
    requires (the ALB's copy of it lives in the environment's region)."""
    cloudfront = env.client("cloudfront", layout.GLOBAL_REGION)
    current = cloudfront.get_distribution_config(Id=env.aws.distribution_id)
    config = {**current["DistributionConfig"], "ViewerCertificate": {
        "ACMCertificateArn": certificate_arn, "SSLSupportMethod": "sni-only",
        "MinimumProtocolVersion": "TLSv1.2_2021", "CloudFrontDefaultCertificate": False}}
    cloudfront.update_distribution(Id=env.aws.distribution_id, IfMatch=current["ETag"], DistributionConfig=config)


def _import_expired(acm: Any, issued: Issued, tags: list[dict[str, str]]) -> str:
    """Import a certificate that expired days ago: moto checks validity against its clock at import."""
    import moto.acm.models as acm_models

    real = acm_models.utcnow
    with mock.patch.object(acm_models, "utcnow", lambda: real() - timedelta(days=200)):
        arn = acm.import_certificate(Certificate=issued.cert_pem, PrivateKey=issued.key_pem,
                                     CertificateChain=issued.chain_pem, Tags=tags)["CertificateArn"]
    return arn


# --- 05 CloudFront ----------------------------------------------------------------------------------

_ASSET_TYPES = {".png": "image/png", ".js": "application/javascript", ".css": "text/css"}


def _cdn(env: AwsSeed, state: EdgeState) -> None:
    routes = {path: Route(200, content_type=_ASSET_TYPES[path[path.rfind("."):]], body=b"x" * 2048,
                          headers=(("X-Cache", "Hit from cloudfront"), ("Age", "1312"),
                                   ("Cache-Control", "public, max-age=31536000, immutable")))
              for path in ASSET_PATHS}
    server = _start(env, "CDN asset server", RouteServer(routes, name="rms-demo-cdn"))
    _merge(env, "cloudfront", {"asset_paths": list(ASSET_PATHS), "base_url": server.base_url})
    minute0 = env.now.replace(second=0, microsecond=0) - timedelta(minutes=MINUTES - 1)
    _put(env.client("cloudwatch", layout.GLOBAL_REGION), "AWS/CloudFront",
         _cdn_datums(env, state, [(minute0 + timedelta(minutes=i), i) for i in range(MINUTES)]))


def _cdn_datums(env: AwsSeed, state: EdgeState, minutes: list[tuple[datetime, int]]) -> list[dict[str, Any]]:
    dims = [{"Name": "DistributionId", "Value": env.aws.distribution_id}, {"Name": "Region", "Value": "Global"}]
    rates = [{"MetricName": metric, "Dimensions": dims, "Timestamp": at, "Value": float(values[i]), "Unit": "Percent"}
             for metric, values in (("4xxErrorRate", state.cdn_4xx_pct), ("5xxErrorRate", state.cdn_5xx_pct),
                                    ("CacheHitRate", state.cache_hit_pct))
             for at, i in minutes]
    requests = [{"MetricName": "Requests", "Dimensions": dims, "Timestamp": at, "Value": float(CDN_REQUESTS_PER_MINUTE),
                 "Unit": "None"} for at, _ in minutes]
    return rates + requests


def _put(cloudwatch: Any, namespace: str, datums: list[dict[str, Any]]) -> None:
    for offset in range(0, len(datums), 500):
        cloudwatch.put_metric_data(Namespace=namespace, MetricData=datums[offset:offset + 500])


# --- 16 external dependencies -----------------------------------------------------------------------

def _external(env: AwsSeed, state: EdgeState) -> None:
    routes = {PAYMENT_PATH: Route(200, delay=state.payment_delay_seconds, content_type="application/json",
                                  body=b'{"status":"ok","provider":"demo-payments"}\n'),
              EMAIL_PATH: Route(200, content_type="application/json", body=b'{"status":"operational"}\n')}
    http = _start(env, "third-party health server", RouteServer(routes, name="rms-demo-external"))
    dns = _start(env, "DNS server", DnsServer(_dns_records()))
    _merge(env, "external", {
        "health_urls": {"payment-gateway": http.url(PAYMENT_PATH), "email-provider": http.url(EMAIL_PATH)},
        "email_domain": DOMAIN, "dkim_selectors": list(DKIM_SELECTORS), "dns_server": dns.address})
    hours = [env.now - timedelta(hours=h, minutes=7) for h in range(24, 0, -1)]
    rng = random.Random(f"ses-{env.scenario.name}")
    _put(env.client("cloudwatch"), "AWS/SES", [
        {"MetricName": metric, "Timestamp": at, "Value": round(base * rng.uniform(0.8, 1.2), 6)}
        for metric, base in (("Reputation.BounceRate", state.ses_bounce),
                             ("Reputation.ComplaintRate", state.ses_complaint)) for at in hours])


def _dns_records() -> dict[str, list[str]]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    def spki(key: Any) -> str:
        return base64.b64encode(key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()

    ed = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {
        DOMAIN: ["v=spf1 include:amazonses.com -all", "google-site-verification=rms-demo"],
        f"rms1._domainkey.{DOMAIN}": [f"v=DKIM1; k=rsa; p={spki(rsa.generate_private_key(65537, 2048))}"],
        f"rms2._domainkey.{DOMAIN}": [f"v=DKIM1; k=ed25519; p={base64.b64encode(ed).decode()}"],
        f"_dmarc.{DOMAIN}": [f"v=DMARC1; p=quarantine; pct=100; rua=mailto:dmarc-reports@{DOMAIN}"],
    }


# --- keep the metrics coming ------------------------------------------------------------------------
