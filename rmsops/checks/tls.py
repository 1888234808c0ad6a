"""SSL/TLS certificates: ACM expiry, the ALB's HTTPS listeners, live handshakes (guide §4)."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import pandas as pd
from cryptography import x509
from cryptography.x509.oid import NameOID

from rmsops.core import fanout
from rmsops.core.findings import Finding, Severity
from rmsops.core.registry import CheckResult, check
from rmsops.render.figures import expiry_figure  # noqa: F401 - re-exported for callers of this module
from rmsops.sources import regions
from rmsops.sources.alb import load_balancer
from rmsops.sources.cloudfront import acm_certificates, matching_distributions

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from rmsops.core.context import Context

RUNBOOK = "04-tls-certificates"
# Check ids, declared in the catalogue (rmsops/core/runbooks.py); the judges take theirs as `cid`.
ACM_EXPIRY = "tls.acm.expiry"
ALB_LISTENER_CERTIFICATE = "tls.alb.listener_certificate"
ENDPOINT_HANDSHAKE = "tls.endpoint.handshake"
# list_certificates returns only RSA_1024/RSA_2048 certificates unless asked for the other key types.
KEY_TYPES = ["RSA_1024", "RSA_2048", "RSA_3072", "RSA_4096", "EC_prime256v1", "EC_secp384r1",
             "EC_secp521r1"]
ACM_COLUMNS = ["domain", "arn", "type", "status", "not_after", "days_left", "in_use_by", "renewal",
               "sans", "region", "cloudfront"]  # cloudfront: the distributions that serve it
LISTENER_COLUMNS = ["listener", "port", "protocol", "ssl_policy", "certificate", "is_default", "domain",
                    "status", "not_after", "days_left"]
HANDSHAKE_COLUMNS = ["url", "host", "port", "error", "verification", "verify_message", "hostname_ok",
                     "subject", "issuer", "sans", "not_after", "days_left", "protocol", "seconds"]

RENEW = ("Expired certificates: request a new certificate through ACM (aws acm request-certificate, "
         "validated by DNS), or import the renewed one over the old ARN (aws acm import-certificate "
         "--certificate-arn ...) so that listeners keep using it.")
UPDATE_LISTENER = ("Configuration issues: update the ALB listener to use the correct certificate "
                   "(aws elbv2 modify-listener --certificates CertificateArn=...).")


# --- shared --------------------------------------------------------------------------------------

def days_until(moment: Any, now: datetime) -> float | None:
    """Days from *now* to *moment* (negative when past); None when there is no date."""
    if moment is None or pd.isna(moment):
        return None
    stamp = pd.Timestamp(moment)
    stamp = stamp.tz_localize(UTC) if stamp.tzinfo is None else stamp.tz_convert(UTC)
    return round((stamp - pd.Timestamp(now)).total_seconds() / 86400, 2)


def severity_of(thresholds: dict[str, float]) -> Callable[[float], Severity]:
    """The expiry rule as a colour key for the figure."""
    return lambda days: _expiry(days, thresholds)[0]


def _expiry(days: float | None, thresholds: dict[str, float]) -> tuple[Severity, str]:
    """The catalogue's rule: expired or < critical days: critical; < warning days: warning."""
    if days is None:
        return Severity.OK, ""
    if days < 0:
        return Severity.CRITICAL, f"expired {_days_text(-days)} ago"
    if days < thresholds["cert_critical_days"]:
        return Severity.CRITICAL, f"expires in {_days_text(days)}"
    if days < thresholds["cert_warning_days"]:
        return Severity.WARNING, f"expires in {_days_text(days)}"
    return Severity.OK, f"expires in {_days_text(days)}"


def _days_text(days: float) -> str:
    if days < 1:
        return f"{days * 24:.0f} hours"
    return f"{days:.0f} day{'s' if round(days) != 1 else ''}"


def _none(value: Any) -> Any:
    """A JSON-able value: NaN/NaT become None, timestamps stay datetimes (serialised as ISO)."""
    if isinstance(value, list | tuple):
        return list(value)
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return value


# --- tls.acm.expiry ------------------------------------------------------------------------------

def acm_frame(ctx: Context) -> pd.DataFrame:
    """Every ACM certificate of the environment's region, and those its CloudFront distributions
    serve (from us-east-1, where CloudFront's certificates live), described; fetched once per run."""
    def fetch() -> pd.DataFrame:
        region = regions.region_for(ctx, "alb.certificates")
        acm = regions.client_for(ctx, "alb.certificates")
        rows = []
        for page in acm.get_paginator("list_certificates").paginate(Includes={"keyTypes": KEY_TYPES}):
            for summary in page["CertificateSummaryList"]:
                cert = acm.describe_certificate(CertificateArn=summary["CertificateArn"])["Certificate"]
                rows.append(_acm_row(cert, region))
        rows = with_cloudfront_certificates(ctx, rows)
        frame = pd.DataFrame(rows, columns=[c for c in ACM_COLUMNS if c != "days_left"])
        frame["not_after"] = pd.to_datetime(frame["not_after"], utc=True)
        return frame
    return ctx.memo("acm.certificates", fetch)


def with_cloudfront_certificates(ctx: Context, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` plus the certificates the distributions serve, each marked with its distributions.

    Read in us-east-1 (``cloudfront.certificates``); one already listed (an environment in
    us-east-1) is marked, not repeated.
    """
    served = acm_certificates(matching_distributions(ctx))
    if not served:
        return rows
    listed = {row["arn"]: row for row in rows}
    acm = regions.client_for(ctx, "cloudfront.certificates")
    region = regions.region_for(ctx, "cloudfront.certificates")
    for arn, distributions in served.items():
        if arn not in listed:
            try:
                listed[arn] = _acm_row(acm.describe_certificate(CertificateArn=arn)["Certificate"], region)
            except acm.exceptions.ResourceNotFoundException:
                listed[arn] = {"domain": "", "arn": arn, "type": "", "status": "NOT_FOUND", "not_after": None,
                               "in_use_by": [], "renewal": "", "sans": [], "region": region}
            rows.append(listed[arn])
        listed[arn]["cloudfront"] = list(distributions)
    return rows


def _acm_row(cert: dict[str, Any], region: str) -> dict[str, Any]:
    return {"domain": cert.get("DomainName", ""), "arn": cert["CertificateArn"],
            "type": cert.get("Type", ""), "status": cert.get("Status", ""),
            "not_after": cert.get("NotAfter"), "in_use_by": list(cert.get("InUseBy", [])),
            "renewal": cert.get("RenewalEligibility", ""),
            "sans": list(cert.get("SubjectAlternativeNames", [])), "region": region, "cloudfront": []}


def with_days_left(frame: pd.DataFrame, now: datetime) -> pd.DataFrame:
    out = frame.copy()
    out["days_left"] = [days_until(v, now) for v in out["not_after"]] if len(out) else []
    return out


def judge_acm_expiry(df: pd.DataFrame, thresholds: dict[str, float], region: str,
                     cid: str = ACM_EXPIRY) -> list[Finding]:
    if df.empty:
        return [Finding(cid, Severity.INFO, f"acm:{region}", f"No ACM certificates in {region}",
                        "list_certificates returned nothing: the endpoints may use certificates "
                        "from elsewhere (IAM, another region); the handshake check looks at them.",
                        {"region": region})]
    findings = []
    for row in df.itertuples(index=False):
        days = _none(row.days_left)
        in_use = list(row.in_use_by)
        cloudfront = list(getattr(row, "cloudfront", None) or [])
        where = getattr(row, "region", "") or region
        evidence = {"domain": row.domain, "status": row.status, "type": row.type,
                    "not_after": _none(row.not_after), "days_left": days, "in_use_by": in_use,
                    "renewal_eligibility": row.renewal, "sans": list(row.sans), "region": where,
                    "cloudfront_distributions": cloudfront,
                    "warning_days": thresholds["cert_warning_days"],
                    "critical_days": thresholds["cert_critical_days"]}
        use = _use_text(in_use, cloudfront, where)
        name = f"{row.domain or row.arn} (CloudFront)" if cloudfront else row.domain
        severity, when = _expiry(days, thresholds)
        if row.status == "EXPIRED" and severity is not Severity.CRITICAL:
            severity, when = Severity.CRITICAL, "expired"
        if row.status not in ("ISSUED", "EXPIRED"):
            revoked_in_use = row.status == "REVOKED" and in_use
            findings.append(Finding(
                cid, Severity.CRITICAL if revoked_in_use else Severity.INFO, row.arn,
                f"{name}: certificate {row.status}",
                f"Status {row.status}, {use}; no expiry to judge.", evidence,
                RENEW if revoked_in_use else ""))
            continue
        detail = f"Status {row.status}, {row.type}, {when}" + (
            f" ({pd.Timestamp(row.not_after):%Y-%m-%d %H:%M} UTC)" if days is not None else "") + f"; {use}."
        if severity is Severity.OK:
            findings.append(Finding(cid, Severity.OK, row.arn, f"{name}: {when}", detail, evidence))
            continue
        resolution = RENEW
        if row.type == "AMAZON_ISSUED" and row.status == "ISSUED":
            resolution = ("ACM renews Amazon-issued certificates from 60 days before expiry; one this close "
                          "has failed managed renewal: check its DNS validation records in Route 53. " + RENEW)
        findings.append(Finding(cid, severity, row.arn, f"{name}: certificate {when}", detail,
                                evidence, resolution))
    return findings


def _use_text(in_use: list[str], cloudfront: list[str], region: str) -> str:
    """Which is which: a CloudFront certificate (us-east-1) or one of the region's (the ALB's)."""
    if cloudfront:
        return f"served by CloudFront {', '.join(cloudfront)} (an ACM certificate in {region})"
    where = f"in {region}"
    return f"used by {len(in_use)} resource(s) {where}" if in_use else f"not in use ({where})"


def _expiry_plot(result: CheckResult, ctx: Context) -> Figure:
    frame = result.data
    labels = frame["domain" if "domain" in frame.columns else "url"].astype(str)
    if "arn" in frame.columns and labels.duplicated(keep=False).any():  # a renewed certificate beside the old
        labels = labels + " (" + frame["arn"].astype(str).str[-8:] + ")"
    return expiry_figure(labels.tolist(), frame["days_left"].tolist(), "Certificate days to expiry",
                         ctx.thresholds, severity_of(ctx.thresholds))


@check(ACM_EXPIRY, plot=_expiry_plot)
def acm_expiry(ctx: Context) -> CheckResult:
    """ACM certificates: status and days until NotAfter."""
    df = with_days_left(acm_frame(ctx), datetime.now(UTC))
    return CheckResult(findings=judge_acm_expiry(df, ctx.thresholds, ctx.settings.aws.region), data=df)


# --- tls.alb.listener_certificate -----------------------------------------------------------------

def listener_frame(ctx: Context) -> pd.DataFrame:
    """One row per certificate of each HTTPS/TLS listener of the ALB (a listener without one gets a row)."""
    elb = ctx.client("elbv2")
    lb = load_balancer(ctx)
    known = {row.arn: row for row in acm_frame(ctx).itertuples(index=False)}
    rows = []
    for page in elb.get_paginator("describe_listeners").paginate(LoadBalancerArn=lb["LoadBalancerArn"]):
        for listener in page["Listeners"]:
            if listener.get("Protocol") not in ("HTTPS", "TLS"):
                continue
            base = {"listener": listener["ListenerArn"], "port": listener.get("Port"),
                    "protocol": listener["Protocol"], "ssl_policy": listener.get("SslPolicy", "")}
            certs: dict[str, bool] = {}  # ARN -> is the default certificate
            for page2 in elb.get_paginator("describe_listener_certificates").paginate(
                    ListenerArn=listener["ListenerArn"]):
                for cert in page2["Certificates"]:  # AWS lists the default one twice (IsDefault true, false)
                    arn = cert["CertificateArn"]
                    certs[arn] = certs.get(arn, False) or bool(cert.get("IsDefault"))
            for cert in listener.get("Certificates", []):  # describe_listeners names the default one
                certs.setdefault(cert["CertificateArn"], True)
            if not certs:
                rows.append({**base, "certificate": "", "is_default": False, "domain": "", "status": "NONE",
                             "not_after": None})
            for arn, is_default in certs.items():
                rows.append({**base, "certificate": arn, "is_default": is_default,
                             **_certificate_state(ctx, arn, known)})
    frame = pd.DataFrame(rows, columns=[c for c in LISTENER_COLUMNS if c != "days_left"])
    frame["not_after"] = pd.to_datetime(frame["not_after"], utc=True)
    return frame


def _certificate_state(ctx: Context, arn: str, known: dict[str, Any]) -> dict[str, Any]:
    """Domain, status and NotAfter of a listener's certificate, from ACM or IAM."""
    if arn in known:
        row = known[arn]
        return {"domain": row.domain, "status": row.status, "not_after": row.not_after}
    if ":iam::" in arn and ":server-certificate/" in arn:
        iam = regions.client_for(ctx, "iam")
        name = arn.rsplit("/", 1)[1]
        try:
            meta = iam.get_server_certificate(ServerCertificateName=name)["ServerCertificate"][
                "ServerCertificateMetadata"]
        except iam.exceptions.NoSuchEntityException:
            return {"domain": name, "status": "NOT_FOUND", "not_after": None}
        expiration = meta.get("Expiration")
        expired = expiration is not None and pd.Timestamp(expiration) <= pd.Timestamp.now(tz=UTC)
        return {"domain": name, "status": "EXPIRED" if expired else "ISSUED", "not_after": expiration}
    acm = ctx.client("acm")
    try:
        cert = acm.describe_certificate(CertificateArn=arn)["Certificate"]
    except acm.exceptions.ResourceNotFoundException:
        return {"domain": "", "status": "NOT_FOUND", "not_after": None}
    return {"domain": cert.get("DomainName", ""), "status": cert.get("Status", ""),
            "not_after": cert.get("NotAfter")}


def judge_listener_certificates(df: pd.DataFrame, thresholds: dict[str, float], alb: str,
                                cid: str = ALB_LISTENER_CERTIFICATE) -> list[Finding]:
    if df.empty:
        return [Finding(cid, Severity.INFO, f"alb:{alb}", f"{alb} has no HTTPS listener",
                        "describe_listeners found no HTTPS or TLS listener: TLS is terminated elsewhere "
                        "(CloudFront) or clients reach the ALB over plain HTTP.", {"alb": alb},
                        UPDATE_LISTENER)]
    findings = []
    for listener, rows in df.groupby("listener", sort=False):
        first = rows.iloc[0]
        where = f"{first.protocol} :{first.port}"
        certs = [{"certificate": r.certificate, "domain": r.domain, "status": r.status,
                  "is_default": bool(r.is_default), "not_after": _none(r.not_after),
                  "days_left": _none(r.days_left)} for r in rows.itertuples(index=False)]
        evidence = {"port": _none(first.port), "protocol": first.protocol, "ssl_policy": first.ssl_policy,
                    "certificates": certs}
        if (rows["status"] == "NONE").all():
            findings.append(Finding(cid, Severity.CRITICAL, listener, f"{where} has no certificate",
                                    "An HTTPS listener without a certificate cannot complete a handshake.",
                                    evidence, UPDATE_LISTENER))
            continue
        bad = [c for c in certs if c["status"] != "ISSUED" or (c["days_left"] is not None and c["days_left"] < 0)]
        if bad:
            what = "; ".join(f"{c['domain'] or c['certificate']} {c['status']}"
                             + (" (default)" if c["is_default"] else "") for c in bad)
            findings.append(Finding(
                cid, Severity.CRITICAL, listener,
                f"{where} serves a certificate that is {bad[0]['status'].lower().replace('_', ' ')}",
                f"{len(bad)} of {len(certs)} certificate(s) not valid: {what}.", evidence,
                f"{RENEW} {UPDATE_LISTENER}"))
            continue
        soonest = min((c for c in certs if c["days_left"] is not None), key=lambda c: c["days_left"],
                      default=None)
        if soonest is not None and soonest["days_left"] < thresholds["cert_warning_days"]:
            findings.append(Finding(
                cid, Severity.INFO, listener,
                f"{where}: certificate {soonest['domain']} {_expiry(soonest['days_left'], thresholds)[1]}",
                f"All {len(certs)} certificate(s) ISSUED; the soonest to expire is judged by tls.acm.expiry.",
                evidence))
            continue
        findings.append(Finding(cid, Severity.OK, listener, f"{where} serves valid certificates",
                                f"All {len(certs)} certificate(s) ISSUED"
                                + (f"; the soonest expires in {_days_text(soonest['days_left'])}."
                                   if soonest else "."), evidence))
    return findings


@check(ALB_LISTENER_CERTIFICATE)
def listener_certificate(ctx: Context) -> CheckResult:
    """The certificates the ALB's HTTPS listeners serve."""
    df = with_days_left(listener_frame(ctx), datetime.now(UTC))
    return CheckResult(findings=judge_listener_certificates(df, ctx.thresholds, ctx.settings.alb_name),
                       data=df)


# --- tls.endpoint.handshake ----------------------------------------------------------------------

# OpenSSL verification codes (X509_V_ERR_*) and what they mean to a person.
_VERIFY_CODES = {
    9: "not yet valid", 10: "expired", 18: "self-signed", 19: "untrusted",  # self-signed in chain
    20: "untrusted", 21: "untrusted", 23: "revoked", 62: "hostname mismatch", 64: "hostname mismatch",
}


def handshake(url: str, timeout: float, cafile: str | None = None) -> dict[str, Any]:
    """A TLS handshake as a verifying client does it; the served certificate fetched either way.

    Never raises. ``verification`` is ``verified`` or why a verifying client refuses the
    certificate; ``error`` is set when no handshake completed at all.
    """
    parts = urlparse(url)
    host = parts.hostname or ""
    port = parts.port or 443
    row: dict[str, Any] = {"url": url, "host": host, "port": port, "error": "", "verification": "",
                           "verify_message": "", "hostname_ok": None}
    started = time.monotonic()
    verifying = ssl.create_default_context(cafile=cafile)
    der = None
    try:
        der, row["protocol"] = _connect(host, port, verifying, timeout)
        row["verification"] = "verified"
    except ssl.SSLCertVerificationError as exc:
        row["verification"] = _VERIFY_CODES.get(exc.verify_code, "untrusted")
        row["verify_message"] = str(exc.verify_message or exc.reason or exc)
        lenient = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        lenient.check_hostname = False
        lenient.verify_mode = ssl.CERT_NONE
        try:
            der, row["protocol"] = _connect(host, port, lenient, timeout)
        except (OSError, ssl.SSLError) as again:
            row["error"] = _error_text(again)
    except (OSError, ssl.SSLError) as exc:  # refused, timed out, no TLS, handshake alert
        row["error"] = _error_text(exc)
    row["seconds"] = round(time.monotonic() - started, 3)
    if der is not None:
        row.update(describe_certificate(der, host))
    return row


def _connect(host: str, port: int, context: ssl.SSLContext, timeout: float) -> tuple[bytes, str]:
    with socket.create_connection((host, port), timeout=timeout) as raw:
        raw.settimeout(timeout)
        with context.wrap_socket(raw, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True)
            if der is None:
                raise ssl.SSLError("the server sent no certificate")
            return der, tls.version() or ""


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed: {exc.reason or exc}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return f"name not resolved ({exc.strerror})"
    return f"{type(exc).__name__}: {exc}"


def describe_certificate(der: bytes, host: str) -> dict[str, Any]:
    """Subject, issuer, SANs, NotAfter and whether *host* is one of its names, from DER bytes."""
    cert = x509.load_der_x509_certificate(der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns_names = san.get_values_for_type(x509.DNSName)
        ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        dns_names, ips = [], []
    return {"subject": _common_name(cert.subject), "issuer": _common_name(cert.issuer),
            "sans": dns_names + ips, "not_after": cert.not_valid_after_utc,
            "hostname_ok": hostname_matches(host, dns_names, ips)}


def _common_name(name: x509.Name) -> str:
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else name.rfc4514_string()


def hostname_matches(host: str, dns_names: list[str], ips: list[str]) -> bool:
    """RFC 6125 matching on the SANs (the CN is ignored, as browsers do); '*' only as a whole left label."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        return any(ipaddress.ip_address(ip) == address for ip in ips)
    wanted = host.lower().rstrip(".").split(".")
    for name in dns_names:
        labels = name.lower().rstrip(".").split(".")
        if len(labels) != len(wanted):
            continue
        if labels == wanted or (labels[0] == "*" and len(labels) > 2 and labels[1:] == wanted[1:]):
            return True
    return False


def fetch_handshakes(urls: tuple[str, ...], timeout: float, cafile: str | None, now: datetime) -> pd.DataFrame:
    if not urls:
        return pd.DataFrame(columns=HANDSHAKE_COLUMNS)
    rows = fanout.each(lambda url: handshake(url, timeout, cafile), urls, 8, "rmsops-tls")
    frame = pd.DataFrame(rows, columns=[c for c in HANDSHAKE_COLUMNS if c != "days_left"])
    frame["not_after"] = pd.to_datetime(frame["not_after"], utc=True)
    frame = with_days_left(frame, now)
    return frame[HANDSHAKE_COLUMNS]


def judge_handshakes(df: pd.DataFrame, thresholds: dict[str, float], cid: str = ENDPOINT_HANDSHAKE) -> list[Finding]:
    if df.empty:
        return [Finding(cid, Severity.INFO, "tls.endpoints", "No TLS endpoints configured",
                        "Add tls.endpoints (https URLs) to the environment file to check the certificates "
                        "clients are actually served.")]
    findings = []
    for row in df.itertuples(index=False):
        days = _none(row.days_left)
        where = row.host if int(row.port) == 443 else f"{row.host}:{int(row.port)}"
        hostname_ok = None if _none(row.hostname_ok) is None else bool(row.hostname_ok)
        evidence = {"host": row.host, "port": _none(row.port), "error": row.error,
                    "verification": row.verification, "verify_message": row.verify_message,
                    "hostname_ok": hostname_ok, "subject": _none(row.subject),
                    "issuer": _none(row.issuer), "sans": _none(row.sans), "not_after": _none(row.not_after),
                    "days_left": days, "protocol": _none(row.protocol), "seconds": _none(row.seconds),
                    "warning_days": thresholds["cert_warning_days"],
                    "critical_days": thresholds["cert_critical_days"]}
        if row.error and days is None:
            findings.append(Finding(cid, Severity.CRITICAL, row.url, f"TLS handshake with {where} failed",
                                    f"{row.error} (after {row.seconds:.2f} s).", evidence,
                                    "SSL handshake failures: check that the ALB has an HTTPS listener with "
                                    f"a valid certificate on port {row.port}, and its security group. "
                                    + UPDATE_LISTENER))
            continue
        problems: list[tuple[Severity, str]] = []
        if hostname_ok is False:
            problems.append((Severity.CRITICAL, f"certificate does not name {row.host} "
                                                f"(it names {', '.join(row.sans) or row.subject})"))
        severity, when = _expiry(days, thresholds)
        if severity is not Severity.OK:
            problems.append((severity, f"served certificate {when}"))
        explained = {"expired": days is not None and days < 0, "hostname mismatch": hostname_ok is False}
        if row.verification not in ("verified", "") and not explained.get(row.verification, False):
            problems.append((Severity.CRITICAL, f"certificate not trusted ({row.verify_message}): "
                                                "verifying clients and browsers refuse it"))
        served = f"{row.subject}, issued by {row.issuer}, {when or 'no expiry'}, {row.protocol}"
        if not problems:
            findings.append(Finding(cid, Severity.OK, row.url, f"{where}: valid certificate, {when}",
                                    f"Handshake verified ({served}).", evidence))
            continue
        worst = min((s for s, _ in problems), key=lambda s: s.rank)
        resolution = (RENEW if any("expire" in text for _, text in problems) else "") + " " + UPDATE_LISTENER
        if any("not trusted" in text for _, text in problems):
            resolution += (" A certificate must chain to a public CA (ACM-issued ones do); if this endpoint "
                           "uses a private CA on purpose, set tls.ca_bundle in the environment file.")
        findings.append(Finding(cid, worst, row.url, f"{where}: {problems[0][1]}",
                                "; ".join(text for _, text in problems) + f". Served: {served}.", evidence,
                                resolution.strip()))
    return findings


@check(ENDPOINT_HANDSHAKE, plot=_expiry_plot, resource="tls.endpoints")
def endpoint_handshake(ctx: Context) -> CheckResult:
    """A live TLS handshake with each configured HTTPS endpoint."""
    cafile = ctx.settings.tls_ca_bundle  # a private CA, instead of the system store
    df = fetch_handshakes(ctx.settings.tls_endpoints, ctx.thresholds["tls_timeout_seconds"], cafile,
                          datetime.now(UTC))
    return CheckResult(findings=judge_handshakes(df, ctx.thresholds), data=df)
