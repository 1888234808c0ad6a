"""Third-party services: health URLs, the sending domain's DNS, SES reputation (guide 'External Dependencies')."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import dns.exception
import dns.resolver
import pandas as pd

from rmsops.core.findings import Finding, Severity
from rmsops.core.registry import CheckResult, check
from rmsops.render import plots
from rmsops.sources import metrics
from rmsops.sources.http import fetch_health

if TYPE_CHECKING:
    from rmsops.core.context import Context

RUNBOOK = "16-external-dependencies"
# Check ids, declared in the catalogue (rmsops/core/runbooks.py); the judges take theirs as `cid`.
HTTP_HEALTH = "external.http.health"
ID_EMAIL_DNS = "external.email.dns"
ID_EMAIL_REPUTATION = "external.email.reputation"
DNS_COLUMNS = ["kind", "name", "outcome", "records", "error"]
SES_METRICS = {"Reputation.BounceRate": "ses_bounce_pct", "Reputation.ComplaintRate": "ses_complaint_pct"}
SES_LOOKBACK = timedelta(hours=24)  # SES publishes reputation rarely: look back at least a day

PROVIDER = ("Third-party service issues: check the provider's status page, verify the API credentials, "
            "test connectivity with its health check; calls to it should go through a circuit breaker so "
            "RMS degrades instead of hanging.")
EMAIL_DNS = ("Email service: verify the DNS records (SPF, DKIM, DMARC) of the sending domain with the values "
             "the email provider gives (SES: Verified identities → DomainKeys Identified Mail), then test "
             "email deliverability.")
EMAIL_REPUTATION = ("Email service: monitor bounce rates and check sender reputation (SES → Reputation metrics): "
                    "remove bouncing addresses, check the sign-up and list hygiene, and test deliverability. "
                    "SES reviews an account above 5% bounces or 0.1% complaints and may pause sending.")


# --- external.http.health ------------------------------------------------------------------------

def judge_external_health(df: pd.DataFrame, thresholds: dict[str, float], cid: str = HTTP_HEALTH) -> list[Finding]:
    if df.empty:
        return [Finding(cid, Severity.INFO, "external.health_urls", "No third-party health URLs configured",
                        "Add external.health_urls (payment gateway, email provider status) to the environment "
                        "file to probe them.")]
    slow = thresholds["external_slow_seconds"]
    findings = []
    for row in df.itertuples(index=False):
        status = None if pd.isna(row.status) else int(row.status)
        evidence = {"name": row.name, "url": row.url, "status": status, "seconds": row.seconds,
                    "slow_seconds": slow, "error": row.error}
        if status is None:
            findings.append(Finding(cid, Severity.CRITICAL, row.url, f"{row.name} unreachable: {row.error}",
                                    f"No HTTP answer after {row.seconds:.1f} s ({row.error}).", evidence, PROVIDER))
        elif not 200 <= status < 300:
            findings.append(Finding(cid, Severity.CRITICAL, row.url, f"{row.name} health check returned HTTP {status}",
                                    f"HTTP {status} in {row.seconds:.2f} s.", evidence, PROVIDER))
        elif row.seconds > slow:
            findings.append(Finding(cid, Severity.WARNING, row.url, f"{row.name} is slow ({row.seconds:.1f} s)",
                                    f"HTTP {status} in {row.seconds:.2f} s, above {slow:g} s: requests that "
                                    "call it are slow too (see runbook 06).", evidence, PROVIDER))
        else:
            findings.append(Finding(cid, Severity.OK, row.url, f"{row.name} is healthy (HTTP {status})",
                                    f"HTTP {status} in {row.seconds:.2f} s.", evidence))
    return findings


@check(HTTP_HEALTH, resource="external.health_urls")
def http_health(ctx: Context) -> CheckResult:
    """HTTP GET of each configured third-party health or status URL."""
    df = fetch_health(ctx.settings.external_health_urls, ctx.thresholds["health_timeout_seconds"])
    return CheckResult(findings=judge_external_health(df, ctx.thresholds), data=df)


# --- external.email.dns --------------------------------------------------------------------------

def make_resolver(dns_server: str | None, timeout: float) -> dns.resolver.Resolver:
    """The configured server (``ip``, ``ip:port`` or ``[ipv6]:port``), else the system's resolver."""
    if not dns_server:
        resolver = dns.resolver.Resolver()
    else:
        host, port = parse_server(dns_server)
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [host]
        resolver.port = port
    resolver.timeout = timeout
    resolver.lifetime = timeout
    return resolver


def parse_server(text: str) -> tuple[str, int]:
    text = text.strip()
    match = re.fullmatch(r"\[([0-9a-fA-F:.]+)\](?::(\d+))?", text)
    if match:
        host, port = match.group(1), match.group(2)
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, None
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"external.dns_server {text!r}: expected an IP address, 'ip:port' or '[ipv6]:port'") from None
    return host, int(port) if port else 53


def lookup_txt(resolver: dns.resolver.Resolver, name: str) -> dict[str, Any]:
    """TXT strings of *name*; ``outcome`` is found, nxdomain, noanswer or failed (with the error)."""
    try:
        answer = resolver.resolve(name, "TXT", search=False)
    except dns.resolver.NXDOMAIN:
        return {"outcome": "nxdomain", "records": [], "error": ""}
    except dns.resolver.NoAnswer:
        return {"outcome": "noanswer", "records": [], "error": ""}
    except dns.resolver.LifetimeTimeout:
        return {"outcome": "failed", "records": [], "error": "DNS query timed out"}
    except dns.resolver.NoNameservers:
        return {"outcome": "failed", "records": [], "error": "no name server answered (SERVFAIL or refused)"}
    except dns.exception.DNSException as exc:
        return {"outcome": "failed", "records": [], "error": f"{type(exc).__name__}: {exc}"}
    records = [b"".join(rdata.strings).decode("utf-8", "replace") for rdata in answer]
    return {"outcome": "found", "records": records, "error": ""}


def fetch_email_dns(resolver: dns.resolver.Resolver, domain: str, selectors: tuple[str, ...]) -> pd.DataFrame:
    queries = [("SPF", domain)] + [("DKIM", f"{s}._domainkey.{domain}") for s in selectors] + [
        ("DMARC", f"_dmarc.{domain}")]
    rows = [{"kind": kind, "name": name, **lookup_txt(resolver, name)} for kind, name in queries]
    return pd.DataFrame(rows, columns=DNS_COLUMNS)


_SPF_MECHANISM = re.compile(
    r"^[+\-~?]?(all|include:\S+|exists:\S+|ptr(:\S+)?|ip4:\S+|ip6:\S+|a(:[^/\s]+)?(/\d+)?(//\d+)?|"
    r"mx(:[^/\s]+)?(/\d+)?(//\d+)?)$", re.IGNORECASE)
_SPF_MODIFIER = re.compile(r"^[a-z][a-z0-9_.-]*=\S*$", re.IGNORECASE)


def spf_problems(records: list[str]) -> tuple[list[str], str]:
    """(problems, the SPF record) of the TXT strings on the domain; RFC 7208 syntax, not DNS lookups."""
    spf = [r for r in records if re.match(r"^v=spf1(\s|$)", r.strip(), re.IGNORECASE)]
    if not spf:
        return ["no TXT record starting with v=spf1"], ""
    if len(spf) > 1:
        return [f"{len(spf)} SPF records (receivers treat more than one as a permanent error)"], spf[0]
    record = spf[0].strip()
    problems = []
    for term in record.split()[1:]:
        if _SPF_MECHANISM.match(term):
            kind = term.lstrip("+-~?").split(":", 1)[0].lower()
            if kind in ("ip4", "ip6"):
                try:
                    ipaddress.ip_network(term.split(":", 1)[1], strict=False)
                except ValueError:
                    problems.append(f"{term!r} is not a valid address range")
            if kind == "all" and term[0] not in "-~?":
                problems.append(f"{term!r} lets any server send mail as the domain")
        elif not _SPF_MODIFIER.match(term):
            problems.append(f"unknown term {term!r}")
    return problems, record


def _tags(record: str) -> list[tuple[str, str]]:
    return [(k.strip().lower(), v.strip()) for k, _, v in
            (part.partition("=") for part in record.split(";") if part.strip())]


def dkim_problems(records: list[str]) -> tuple[list[str], str]:
    """(problems, the DKIM key record) per RFC 6376 section 3.6.1."""
    if not records:
        return ["no TXT record"], ""
    keys = [r for r in records if "p=" in r.replace(" ", "")]
    if not keys:
        return ["no DKIM key record (no p= tag)"], records[0]
    record = keys[0]
    tags = _tags(record)
    values = dict(tags)
    problems = []
    if "v" in values and (tags[0][0] != "v" or values["v"] != "DKIM1"):
        problems.append("v= must be the first tag and say DKIM1")
    if values.get("k", "rsa").lower() not in ("rsa", "ed25519"):
        problems.append(f"unknown key type k={values['k']}")
    key = re.sub(r"\s+", "", values.get("p", ""))
    if not key:
        problems.append("empty p= (the key is revoked)")
    else:
        try:
            base64.b64decode(key, validate=True)
        except (binascii.Error, ValueError):
            problems.append("p= is not valid base64")
    return problems, record


def dmarc_problems(records: list[str]) -> tuple[list[str], str, str]:
    """(problems, the DMARC record, its policy) per RFC 7489 section 6.3."""
    dmarc = [r for r in records if re.match(r"^v\s*=\s*DMARC1\s*(;|$)", r.strip())]
    if not dmarc:
        return ["no TXT record starting with v=DMARC1"], "", ""
    if len(dmarc) > 1:
        return [f"{len(dmarc)} DMARC records (receivers ignore them all)"], dmarc[0], ""
    record = dmarc[0].strip()
    values = dict(_tags(record))
    policy = values.get("p", "").lower()
    problems = []
    if policy not in ("none", "quarantine", "reject"):
        problems.append("p= must be none, quarantine or reject" if policy else "no p= policy tag")
    if values.get("sp", "none").lower() not in ("none", "quarantine", "reject"):
        problems.append(f"sp={values['sp']} is not none, quarantine or reject")
    pct = values.get("pct")
    if pct is not None and not (pct.isdigit() and 0 <= int(pct) <= 100):
        problems.append(f"pct={pct} is not 0-100")
    return problems, record, policy


def judge_email_dns(df: pd.DataFrame, domain: str | None, selectors: tuple[str, ...],
                    cid: str = ID_EMAIL_DNS) -> list[Finding]:
    if not domain:
        return [Finding(cid, Severity.INFO, "external.email_domain", "No sending domain configured",
                        "Add external.email_domain (and external.dkim_selectors) to the environment file to "
                        "check SPF, DKIM and DMARC.")]
    findings = []
    for row in df.itertuples(index=False):
        records = list(row.records)
        resource = f"dns:{row.name}"
        evidence = {"name": row.name, "type": "TXT", "outcome": row.outcome, "records": records,
                    "error": row.error}
        if row.outcome == "failed":
            findings.append(Finding(cid, Severity.ERROR, resource, f"{row.kind} record of {domain}: lookup failed",
                                    f"TXT {row.name}: {row.error}; the record could not be verified.", evidence,
                                    "Check external.dns_server and that the resolver can reach the domain's "
                                    "name servers, then run again."))
            continue
        policy = ""
        if row.kind == "SPF":
            problems, record = spf_problems(records)
        elif row.kind == "DKIM":
            problems, record = dkim_problems(records)
        else:
            problems, record, policy = dmarc_problems(records)
        evidence["record"] = record
        selector = f" (selector {row.name.split('._domainkey.')[0]})" if row.kind == "DKIM" else ""
        if not record:
            findings.append(Finding(cid, Severity.WARNING, resource, f"{row.kind} record of {domain}{selector} missing",
                                    f"TXT {row.name}: {row.outcome}; {problems[0]}. Receivers are more likely to "
                                    "mark RMS mail as spam or reject it.", evidence, EMAIL_DNS))
        elif problems:
            findings.append(Finding(cid, Severity.WARNING, resource,
                                    f"{row.kind} record of {domain}{selector} malformed",
                                    f"{'; '.join(problems)}. Record: {record}", evidence, EMAIL_DNS))
        elif row.kind == "DMARC" and policy == "none":
            findings.append(Finding(cid, Severity.INFO, resource, f"DMARC of {domain} only monitors (p=none)",
                                    f"Record: {record}. Failing mail is delivered anyway; move to quarantine "
                                    "or reject once reports are clean.", evidence))
        else:
            findings.append(Finding(cid, Severity.OK, resource, f"{row.kind} record of {domain}{selector} present",
                                    f"Record: {record}", evidence))
    if not selectors:
        findings.append(Finding(cid, Severity.INFO, f"dns:_domainkey.{domain}", "DKIM not checked: no selectors",
                                "DKIM keys live under <selector>._domainkey and cannot be listed: add "
                                "external.dkim_selectors to the environment file.", {"domain": domain}))
    return findings


@check(ID_EMAIL_DNS, resource="external.email_domain")
def email_dns(ctx: Context) -> CheckResult:
    """SPF, DKIM and DMARC records of the sending domain."""
    domain, selectors = ctx.settings.email_domain, ctx.settings.dkim_selectors
    if not domain:
        return CheckResult(findings=judge_email_dns(pd.DataFrame(columns=DNS_COLUMNS), None, selectors))
    resolver = make_resolver(ctx.settings.dns_server, ctx.thresholds["health_timeout_seconds"])
    df = fetch_email_dns(resolver, domain, selectors)
    return CheckResult(findings=judge_email_dns(df, domain, selectors), data=df)


# --- external.email.reputation -------------------------------------------------------------------

def fetch_reputation(ctx: Context) -> pd.DataFrame:
    """SES Reputation.BounceRate and Reputation.ComplaintRate (ratios) over the window, at least a day back."""
    end = ctx.window.end
    start = min(ctx.window.start, end - SES_LOOKBACK)
    period = metrics.period_for((end - start).total_seconds())
    queries = [metrics.MetricQuery(f"r{i}", "AWS/SES", name, (), "Average", name)
               for i, name in enumerate(SES_METRICS)]
    labels = {q.id: q.metric for q in queries}
    rows = [(ts, qid, labels[qid], value)
            for qid, ts, value in metrics.datapoints(ctx.client("cloudwatch"), queries, period, start, end)]
    frame = pd.DataFrame(rows, columns=["timestamp", "id", "label", "value"])
    if not frame.empty:
        frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
        frame = frame.sort_values(["label", "timestamp"]).reset_index(drop=True)
    return frame


def judge_reputation(df: pd.DataFrame, thresholds: dict[str, float], cid: str = ID_EMAIL_REPUTATION) -> list[Finding]:
    findings = []
    for metric, threshold_name in SES_METRICS.items():
        limit = thresholds[threshold_name]
        what = "bounce" if "Bounce" in metric else "complaint"
        resource = f"ses:{metric}"
        rows = df[df["label"] == metric] if not df.empty else df
        if rows.empty:
            findings.append(Finding(cid, Severity.INFO, resource, f"No SES {what} rate data",
                                    f"{metric} has no datapoint in the last day: SES is not used from this "
                                    "account and region, or it sent too little mail to rate.",
                                    {"metric": metric, "threshold_pct": limit}))
            continue
        latest = float(rows["value"].iloc[-1]) * 100
        peak = float(rows["value"].max()) * 100
        evidence = {"metric": metric, "latest_pct": round(latest, 4), "peak_pct": round(peak, 4),
                    "latest_at": rows["timestamp"].iloc[-1], "threshold_pct": limit, "datapoints": len(rows)}
        text = f"Latest {latest:.2f}% (peak {peak:.2f}% over {len(rows)} datapoints); threshold {limit:g}%."
        if latest > limit:
            findings.append(Finding(cid, Severity.WARNING, resource,
                                    f"SES {what} rate {latest:.2f}% (above {limit:g}%)", text, evidence,
                                    EMAIL_REPUTATION))
        elif peak > limit:
            findings.append(Finding(cid, Severity.INFO, resource,
                                    f"SES {what} rate back to {latest:.2f}% (peaked at {peak:.2f}%)", text, evidence,
                                    EMAIL_REPUTATION))
        else:
            findings.append(Finding(cid, Severity.OK, resource, f"SES {what} rate {latest:.2f}%", text, evidence))
    return findings


def _reputation_plot(result: CheckResult, ctx: Context):
    frame = result.data.assign(value=result.data["value"] * 100) if not result.data.empty else result.data
    return plots.timeseries(frame, "SES reputation (last day at least)", "% of sent mail",
                            lines={"complaint threshold": ctx.thresholds["ses_complaint_pct"],
                                   "bounce threshold": ctx.thresholds["ses_bounce_pct"]})


@check(ID_EMAIL_REPUTATION, plot=_reputation_plot)
def email_reputation(ctx: Context) -> CheckResult:
    """SES bounce and complaint rates against SES's review thresholds."""
    df = fetch_reputation(ctx)
    return CheckResult(findings=judge_reputation(df, ctx.thresholds), data=df)
