"""Suspicious activity (guide "Suspicious Activity Detection"): WAF blocks, failed logins, CloudTrail, ALB logs.

The guide's investigation steps, in order: 1. the WAF logs (``BLOCK`` actions), 2. the ALB
access logs in S3, 3. CloudTrail for API activity; and its signs of trouble: unusual traffic,
failed authentication attempts, unauthorized access, WAF rule violations. Log text is
untrusted: it is kept as data, never turned into markup here.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import TYPE_CHECKING, Any

import pandas as pd

from rmsops.core import failure
from rmsops.core.findings import Finding, Severity, iso
from rmsops.core.registry import CheckResult, check
from rmsops.render import plots
from rmsops.render.figures import two_bars  # noqa: F401 - re-exported for callers of this module
from rmsops.render.text import TOP, top  # noqa: F401 - re-exported for callers of this module
from rmsops.sources import alblogs, cloudtrail, logquery
from rmsops.sources.alblogs import (  # noqa: F401 - re-exported for callers of this module
    CLIENT_COLUMNS,
    access_log_location,
    in_window,
    log_prefixes,
)
from rmsops.sources.applogs import (  # noqa: F401 - re-exported for callers of this module
    AUTH_FAILURE,
    IPV4,  # noqa: F401 - re-exported for callers of this module
    client_of,
)
from rmsops.sources.waf import (  # noqa: F401 - re-exported for callers of this module
    WAF_LOG_KEYS,
    Waf,
    blocking_wafs,
    blocks_from_athena,
    configured_wafs,
    parse_waf,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from rmsops.core.context import Context
    from rmsops.core.window import Window

RUNBOOK = "12-security-suspicious-activity"
# Check ids, declared in the catalogue (rmsops/core/runbooks.py); the judges take theirs as `cid`.
ALB_ACCESS_LOGS = "security.alb.access_logs"
AUTH_FAILURES = "security.auth.failures"
CLOUDTRAIL_SENSITIVE = "security.cloudtrail.sensitive"
WAF_BLOCKS = "security.waf.blocks"
ATTACK_RESOLUTION = ("If the traffic is an attack, implement additional security controls: block the "
                     "client IPs in a WAF IP set or add a rate-based rule; if real users are blocked, "
                     "review the terminating rule. Then review the ALB access logs in S3 and CloudTrail "
                     "(investigation steps 2 and 3); suspected compromise: runbook 13-data-breach-response, "
                     "security@company.com.")

# --- security.waf.blocks ------------------------------------------------------------------------

WAF_COLUMNS = ["client", "rule", "uri", "blocks"]
WAF_QUERY = logquery.LogQuery(
    insights=('filter action = "BLOCK"\n'
              "| stats count(*) as blocks by httpRequest.clientIp, terminatingRuleId, httpRequest.uri\n"
              "| sort blocks desc\n| limit 10000"),
    filter_pattern="BLOCK",  # the guide's filter-log-events pattern
    aggregate=lambda events: waf_aggregate(events),
)
_WAF_INSIGHTS_NAMES = {"httpRequest.clientIp": "client", "terminatingRuleId": "rule",
                       "httpRequest.uri": "uri", "blocks": "blocks"}


def waf_aggregate(events: pd.DataFrame) -> pd.DataFrame:
    """filter_log_events fallback: raw WAF events -> blocks per (client, rule, uri), like the Insights stats."""
    parsed = [parse_waf(m) for m in events["message"]] if len(events) else []
    rows = [p for p in parsed if p and p["action"] == "BLOCK"]
    if not rows:
        return pd.DataFrame(columns=WAF_COLUMNS)
    frame = pd.DataFrame(rows)
    return (frame.groupby(["client", "rule", "uri"], as_index=False).size()
            .rename(columns={"size": "blocks"})[WAF_COLUMNS]
            .sort_values("blocks", ascending=False, kind="stable").reset_index(drop=True))


def waf_blocks_frame(ctx: Context, group: str, window: Window, region: str | None = None) -> pd.DataFrame:
    """Blocks per (client, rule, uri) in the window, from Logs Insights or the fallback."""
    frame = logquery.run(ctx, [group], WAF_QUERY, window=window, region=region)
    capped = logquery.truncated(frame)
    frame = frame.rename(columns=_WAF_INSIGHTS_NAMES)
    for column in WAF_COLUMNS:
        if column not in frame.columns:
            frame[column] = 0 if column == "blocks" else ""
    frame["blocks"] = pd.to_numeric(frame["blocks"], errors="coerce").fillna(0).astype(int)
    for column in ("client", "rule", "uri"):
        frame[column] = frame[column].fillna("").astype(str)
    blocks = frame[WAF_COLUMNS].reset_index(drop=True)
    blocks.attrs["truncated"] = capped
    return blocks


def judge_waf_blocks(current: pd.DataFrame, baseline: int, thresholds: dict[str, float],
                     group: str, guards: str = "", region: str = "", cid: str = WAF_BLOCKS,
                     source: dict[str, Any] | None = None) -> list[Finding]:
    """``source``: what the logs were read with (the engine; for Athena, what it scanned), for the evidence."""
    resource = f"waf:{group}"
    waf = f"{guards} WAF" if guards else "WAF"
    blocks = int(current["blocks"].sum()) if len(current) else 0
    minimum, factor = thresholds["waf_block_min"], thresholds["waf_block_spike_factor"]
    evidence = {"blocks": blocks, "previous_window_blocks": int(baseline), "waf_block_min": minimum,
                "waf_block_spike_factor": factor, "top_clients": top(current, "client", "blocks"),
                "top_rules": top(current, "rule", "blocks"), "top_uris": top(current, "uri", "blocks", 5),
                "guards": guards, "region": region, **(source or {})}
    numbers = (f"{blocks} blocked requests in the window against {baseline} in the window before "
               f"(spike: at least {minimum:g} and {factor:g}x the previous window).")
    if blocks >= minimum and blocks >= factor * baseline:
        leaders = ", ".join(f"{c['client']} ({c['blocks']})" for c in evidence["top_clients"][:3])
        rules = ", ".join(f"{r['rule']} ({r['blocks']})" for r in evidence["top_rules"][:3])
        return [Finding(cid, Severity.WARNING, resource,
                        f"{waf} blocks spiking: {blocks} against {baseline} before",
                        f"{numbers} Top clients: {leaders}. Rules: {rules}.", evidence, ATTACK_RESOLUTION)]
    title = f"{blocks} {waf} blocks in the window (no spike)" if blocks else f"No {waf} blocks in the window"
    return [Finding(cid, Severity.OK, resource, title, numbers, evidence)]


def _waf_plot(result: CheckResult, ctx: Context) -> Figure:
    frame = result.data if result.data is not None else pd.DataFrame(columns=WAF_COLUMNS)
    return two_bars(frame, "blocks", ("client", "WAF blocks by client IP"), ("rule", "WAF blocks by rule"))


@check(WAF_BLOCKS, plot=_waf_plot)
def waf_blocks(ctx: Context) -> CheckResult:
    """WAF BLOCK actions in the window against the window before: top client IPs and rules."""
    wafs = blocking_wafs(ctx)
    if not wafs:
        return CheckResult(findings=[Finding(
            WAF_BLOCKS, Severity.INFO, "waf", "No WAF log group configured",
            "Set logs.waf (the ALB's web ACL, logging in the environment's region) and/or "
            "logs.waf_cloudfront (CloudFront's, logging in us-east-1) in the environment file: the WAF "
            "logging destinations, aws-waf-logs-...; or athena.waf_table for the ALB's WAF logging to S3.")])
    findings, frames = [], []
    for waf in wafs:
        if waf.athena:  # the ALB's web ACL logging to S3, queried in Athena's table
            try:
                current, baseline, source = blocks_from_athena(ctx, waf)
            except Exception as exc:  # noqa: BLE001 - the other WAF's finding stands; this one says why
                reason = failure.describe(exc)
                findings.append(Finding(
                    WAF_BLOCKS, Severity.ERROR, f"waf:{waf.group}",
                    f"Could not count the {waf.guards} WAF's blocks in Athena", reason,
                    {"reason": reason, "table": waf.group, "engine": "athena"},
                    "Fix the cause named in the detail and run the runbook again."))
                continue
            findings += judge_waf_blocks(current, baseline, ctx.thresholds, waf.group, waf.guards, waf.region,
                                         source=source)
            frames.append(current)
            continue
        logs = ctx.client("logs", waf.region)
        try:
            current = waf_blocks_frame(ctx, waf.group, ctx.window, waf.region)
            previous = waf_blocks_frame(ctx, waf.group, ctx.window.previous(), waf.region)
        except logs.exceptions.ResourceNotFoundException:
            findings.append(Finding(
                WAF_BLOCKS, Severity.WARNING, f"waf:{waf.group}",
                f"{waf.guards} WAF log group {waf.group} not found in {waf.region}",
                f"Without WAF logs blocked attacks cannot be seen. The {waf.guards} web ACL logs in "
                f"{waf.region}.", {"log_group": waf.group, "region": waf.region, "guards": waf.guards},
                "Enable WAF logging to this log group (wafv2 put-logging-configuration) or fix "
                f"logs.{'waf' if waf.guards == 'ALB' else 'waf_cloudfront'}."))
            continue
        findings += logquery.mark_truncated(
            judge_waf_blocks(current, int(previous["blocks"].sum()), ctx.thresholds, waf.group, waf.guards,
                             waf.region, source={"engine": f"logs-{ctx.settings.logs_query}"}),
            logquery.truncated(current, previous))
        frames.append(current)
    data = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=WAF_COLUMNS)
    return CheckResult(findings=findings, data=data)


# --- security.auth.failures ---------------------------------------------------------------------

AUTH_COLUMNS = ["client", "failures"]
AUTH_QUERY = logquery.LogQuery(
    insights=(r"filter @message like /(?i)(auth\w*\s+fail|login\s+fail|fail\w*\s+(login|sign-?in|authentication)"
              r'|invalid\s+(password|credentials)|unauthori[sz]ed|HTTP\/[0-9.]+"\s+401\s)/' "\n"
              r"| parse @message /(?<client>\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})/" "\n"
              "| stats count(*) as failures by client\n| sort failures desc\n| limit 1000"),
    filter_pattern="",  # alternatives (?a ?b) are beyond plain terms: filter the lines here
    aggregate=lambda events: auth_aggregate(events),
)


def auth_aggregate(events: pd.DataFrame) -> pd.DataFrame:
    """filter_log_events fallback: failed-authentication lines -> failures per source IP."""
    if events.empty:
        return pd.DataFrame(columns=AUTH_COLUMNS)
    lines = events[events["message"].str.contains(AUTH_FAILURE, na=False)]
    if lines.empty:
        return pd.DataFrame(columns=AUTH_COLUMNS)
    counts = Counter(client_of(m) for m in lines["message"])
    frame = pd.DataFrame(counts.most_common(), columns=AUTH_COLUMNS)
    return frame


def auth_failures_frame(ctx: Context, groups: list[str]) -> pd.DataFrame:
    frame = logquery.run(ctx, groups, AUTH_QUERY)
    capped = logquery.truncated(frame)
    if "client" not in frame.columns:
        frame["client"] = "unknown"
    if "failures" not in frame.columns:
        frame["failures"] = 0
    frame["client"] = frame["client"].fillna("unknown").replace("", "unknown").astype(str)
    frame["failures"] = pd.to_numeric(frame["failures"], errors="coerce").fillna(0).astype(int)
    frame = frame.groupby("client", as_index=False)["failures"].sum()
    failures = frame.sort_values("failures", ascending=False, kind="stable").reset_index(drop=True)[AUTH_COLUMNS]
    failures.attrs["truncated"] = capped
    return failures


def judge_auth_failures(df: pd.DataFrame, thresholds: dict[str, float], groups: list[str],
                        cid: str = AUTH_FAILURES) -> list[Finding]:
    limit = thresholds["auth_failures_per_source"]
    total = int(df["failures"].sum()) if len(df) else 0
    findings = []
    for row in df.itertuples(index=False):
        if row.client == "unknown" or row.failures <= limit:
            continue
        findings.append(Finding(
            cid, Severity.WARNING, f"ip:{row.client}",
            f"{row.failures} failed authentications from {row.client}",
            f"{row.failures} failed-authentication lines from one source in the window, above "
            f"{limit:g} ({total} from all sources).",
            {"client": row.client, "failures": int(row.failures), "limit": limit, "total": total,
             "log_groups": groups},
            "Credential stuffing or a brute-force attempt: " + ATTACK_RESOLUTION))
    if not findings:
        top_source = df.iloc[0] if len(df) else None
        detail = (f"{total} failed-authentication lines; the most from one source: {top_source['client']} "
                  f"({int(top_source['failures'])}), limit {limit:g}." if top_source is not None
                  else "No failed-authentication lines in the application logs.")
        findings.append(Finding(cid, Severity.OK, "app-logs", "No source above the failed-login limit",
                                detail, {"total": total, "limit": limit, "log_groups": groups,
                                         "top_sources": df.head(TOP).to_dict("records")}))
    return findings


def _auth_plot(result: CheckResult, ctx: Context) -> Figure:
    frame = result.data.head(TOP) if result.data is not None else pd.DataFrame(columns=AUTH_COLUMNS)
    return plots.bars(frame, "client", "failures", "Failed authentications by source IP", xlabel="failures")


@check(AUTH_FAILURES, plot=_auth_plot)
def auth_failures(ctx: Context) -> CheckResult:
    """Failed authentication lines in the application logs, by source IP."""
    groups = [g for k in ("backend", "frontend") if (g := ctx.settings.log_groups.get(k))]
    if not groups:
        return CheckResult(findings=[Finding(
            AUTH_FAILURES, Severity.INFO, "app-logs", "No application log groups configured",
            "Set logs.backend (and logs.frontend) in the environment file.")])
    df = auth_failures_frame(ctx, groups)
    findings = logquery.mark_truncated(judge_auth_failures(df, ctx.thresholds, groups), logquery.truncated(df))
    return CheckResult(findings=findings, data=df)


# --- security.cloudtrail.sensitive --------------------------------------------------------------

LOGGING_OFF = {"StopLogging", "DeleteTrail", "DeleteFlowLogs", "StopConfigurationRecorder",
               "DeleteConfigurationRecorder", "DeleteDetector"}
TRAIL_CHANGES = {"UpdateTrail", "PutEventSelectors", "PutInsightSelectors"}
# UpdateTrail / PutEventSelectors parameters that switch logging (partly) off.
_REDUCES_LOGGING = re.compile(
    r'"(?:isMultiRegionTrail|includeGlobalServiceEvents|enableLogFileValidation|includeManagementEvents)":false'
    r'|"cloudWatchLogsLogGroupArn":""|"readWriteType":"(?:ReadOnly|WriteOnly)"')
SG_EVENTS = {"AuthorizeSecurityGroupIngress", "AuthorizeSecurityGroupEgress", "RevokeSecurityGroupIngress",
             "RevokeSecurityGroupEgress", "CreateSecurityGroup", "DeleteSecurityGroup",
             "ModifySecurityGroupRules"}
IAM_CHANGE = re.compile(r"^(Create|Delete|Attach|Detach|Put|Update|Add|Remove|Set|Deactivate|Upload|Change|"
                        r"Enable|Reset)")
RESOLUTIONS = {
    "root": ("Root credentials are for a handful of account tasks only: confirm with the account owner who "
             "used them and why. Unexplained: treat it as a data breach (runbook 13-data-breach-response): "
             "change all credentials (root password and MFA), review and update IAM policies, "
             "security@company.com."),
    "logging": ("Logging was switched off or reduced: turn it back on (aws cloudtrail start-logging / restore "
                "the trail's settings), find who did it, and treat it as a data breach until explained "
                "(runbook 13-data-breach-response, security@company.com)."),
    "trail": "A trail's configuration changed: confirm the change was planned and logging still covers all regions.",
    "console_failure": ("Failed console sign-ins: confirm with the user; enforce MFA; repeated failures from "
                        "unknown IPs are an attack: implement additional security controls."),
    "iam": ("IAM changed: confirm each change was planned (a change ticket); review and update IAM policies and "
            "revert what nobody can explain."),
    "security_group": ("A security group changed: ensure security groups allow only the necessary traffic; "
                       "revert rules open to 0.0.0.0/0 that nobody planned."),
}
TITLES = {"root": "Root account used", "logging": "Logging disabled", "trail": "Trail configuration changed",
          "console_failure": "Failed console sign-ins", "iam": "IAM changes",
          "security_group": "Security group changes"}


def classify(event: Any) -> list[tuple[str, Severity, str]]:
    """(category, severity, resource) for each way one CloudTrail row is sensitive (root use and what root did
    are both reported); empty when it is not."""
    name, source = str(event.event_name), str(event.event_source)
    login_failed = name == "ConsoleLogin" and (
        event.login_result == "Failure" or "Failed authentication" in str(event.error_message))
    if login_failed:
        return [("console_failure", Severity.WARNING, f"signin:{event.username or 'unknown'}")]
    found = []
    if event.identity_type == "Root":
        found.append(("root", Severity.CRITICAL, "aws:root"))
    if event.error_code:  # a denied or failed call changed nothing
        return found
    if name in LOGGING_OFF:
        found.append(("logging", Severity.CRITICAL, _resource(event, f"{source.split('.')[0]}:{name}")))
    elif name in TRAIL_CHANGES and source == "cloudtrail.amazonaws.com":
        reduces = bool(_REDUCES_LOGGING.search(str(event.request)))
        found.append(("logging" if reduces else "trail", Severity.CRITICAL if reduces else Severity.WARNING,
                      _resource(event, "cloudtrail:trail")))
    elif source == "iam.amazonaws.com" and not event.read_only and IAM_CHANGE.match(name):
        found.append(("iam", Severity.WARNING, _resource(event, f"iam:{event.username}")))
    elif source == "ec2.amazonaws.com" and name in SG_EVENTS:
        found.append(("security_group", Severity.WARNING, _resource(event, "ec2:security-group")))
    return found


def _resource(event: Any, default: str) -> str:
    """The first resource CloudTrail names for the event (``type:name``), else ``default``."""
    first = str(event.resources or "").split(", ")[0]
    if not first:
        group = re.search(r'"groupId":"([^"]+)"', str(event.request))
        return f"ec2:{group.group(1)}" if group else default
    kind, _, name = first.rpartition(":")
    short = kind.split("::")[-1].lower() if kind else "resource"
    return f"{short}:{name}"


def judge_cloudtrail(df: pd.DataFrame, truncated: bool = False,
                     regions_read: tuple[str, ...] = (), cid: str = CLOUDTRAIL_SENSITIVE) -> list[Finding]:
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for event in df.itertuples(index=False):
        for category, severity, resource in classify(event):
            group = groups.setdefault((category, resource), {"severity": severity, "events": []})
            if severity.rank < group["severity"].rank:
                group["severity"] = severity
            group["events"].append({
                "time": iso(event.time) if pd.notna(event.time) else None, "event": event.event_name,
                "user": event.username, "identity_type": event.identity_type, "source_ip": event.source_ip,
                "region": event.aws_region, "login_result": event.login_result, "mfa_used": event.mfa_used,
                "open_cidrs": event.open_cidrs, "request": event.request, "event_id": event.event_id})
    findings = []
    for (category, resource), group in sorted(groups.items(), key=lambda kv: (kv[1]["severity"].rank, kv[0])):
        seen = group["events"]
        names = Counter(e["event"] for e in seen)
        users = sorted({e["user"] for e in seen if e["user"]})
        ips = sorted({e["source_ip"] for e in seen if e["source_ip"]})
        opened = sorted({c for e in seen for c in (e["open_cidrs"] or "").split(", ") if c})
        what = ", ".join(f"{n} x{c}" if c > 1 else n for n, c in names.most_common())
        title = f"{TITLES[category]}: {what}"
        if category == "security_group" and opened:
            title += f" (open to {', '.join(opened)})"
        if category == "root":
            no_mfa = [e for e in seen if e["event"] == "ConsoleLogin" and e["mfa_used"] == "No"]
            title += " (console sign-in without MFA)" if no_mfa else ""
        detail = (f"{len(seen)} event(s) on {resource} between {seen[-1]['time']} and {seen[0]['time']} by "
                  f"{', '.join(users) or 'unknown'} from {', '.join(ips) or 'unknown addresses'}.")
        findings.append(Finding(cid, group["severity"], resource, title, detail,
                                {"category": category, "count": len(seen), "users": users,
                                 "source_ips": ips, "events": seen[:50]},
                                RESOLUTIONS[category]))
    if not findings:
        where = f" in {' and '.join(regions_read)}" if regions_read else ""
        detail = (f"{len(df)} management events looked at{where} (write events, root activity, console "
                  "sign-ins); none is root use, disabled logging, a failed sign-in, an IAM or a security "
                  "group change. CloudTrail delivers events 5-15 minutes after the call.")
        findings.append(Finding(cid, Severity.OK, "cloudtrail", "No sensitive CloudTrail activity in the window",
                                detail, {"events": len(df), "truncated": truncated,
                                         "regions": list(regions_read)}))
    return findings


def _cloudtrail_plot(result: CheckResult, ctx: Context) -> Figure:
    frame = result.data if result.data is not None else pd.DataFrame(columns=["event_name"])
    counts = (frame.groupby("event_name").size().reset_index(name="events")
              .sort_values("events", ascending=False).head(15) if len(frame) else
              pd.DataFrame(columns=["event_name", "events"]))
    return plots.bars(counts, "event_name", "events", "CloudTrail events in the window (write, root, sign-in)")


@check(CLOUDTRAIL_SENSITIVE, plot=_cloudtrail_plot)
def cloudtrail_sensitive(ctx: Context) -> CheckResult:
    """CloudTrail: root use, disabled logging, failed console sign-ins, IAM and security group changes."""
    df = cloudtrail.events(ctx)
    return CheckResult(findings=judge_cloudtrail(df, bool(df.attrs.get("truncated")),
                                                 tuple(df.attrs.get("regions", ()))), data=df)


# --- security.alb.access_logs -------------------------------------------------------------------

MAX_LOG_OBJECTS = alblogs.MAX_LOG_OBJECTS


def alb_log_frame(ctx: Context, lb: dict[str, Any], bucket: str, prefix: str) -> tuple[pd.DataFrame, dict]:
    """Per-client totals of the window and what was read: Athena's table when the environment names
    one (``athena.alb_table``), else the window's log objects, downloaded and read by DuckDB."""
    settings = ctx.settings.athena
    if settings and settings.alb_table:
        return alblogs.clients_from_athena(ctx, lb["LoadBalancerArn"], settings, bucket, prefix)
    return alblogs.clients_from_objects(ctx, lb["LoadBalancerArn"], bucket, prefix, MAX_LOG_OBJECTS)


def judge_alb_clients(df: pd.DataFrame, thresholds: dict[str, float], alb: str, read: dict,
                      cid: str = ALB_ACCESS_LOGS) -> list[Finding]:
    limit = thresholds["alb_client_requests_max"]
    findings = []
    for row in df.itertuples(index=False):
        if row.requests <= limit:
            continue
        findings.append(Finding(
            cid, Severity.WARNING, f"ip:{row.client}", f"{row.client} sent {row.requests} requests",
            f"{row.requests} requests from one client in the window, above {limit:g}; {row.status_4xx} got 4xx, "
            f"{row.status_5xx} 5xx; most requested: {row.top_path} ({row.top_path_requests}).",
            {"client": row.client, "requests": int(row.requests), "status_4xx": int(row.status_4xx),
             "status_5xx": int(row.status_5xx), "top_path": row.top_path, "limit": limit, **read},
            "Unusual traffic from one client: " + ATTACK_RESOLUTION))
    if findings:
        return findings
    athena = read.get("engine") == "athena"
    if athena and not read["entries"]:
        return [Finding(cid, Severity.INFO, f"alb:{alb}", "No ALB access log entries for the window",
                        f"Athena's table {read['table']} holds no entry of this load balancer for the window "
                        f"({read['data_scanned_mb']:g} MB scanned; the ALB writes a file every 5 minutes).", read)]
    if not athena and not read["files"]:
        return [Finding(cid, Severity.INFO, f"alb:{alb}", "No ALB access log files for the window",
                        f"Nothing under s3://{read['bucket']}/{read['prefix']} for the window yet (the ALB "
                        "writes a file every 5 minutes).", read)]
    busiest = df.iloc[0] if len(df) else None
    where = (f"Athena's table {read['table']} ({read['data_scanned_mb']:g} MB scanned)" if athena
             else f"{read['files']} log files")
    detail = (f"{read.get('entries', int(df['requests'].sum()))} requests from {read.get('clients', len(df))} "
              f"clients in {where}; "
              + (f"the busiest, {busiest['client']}, sent {int(busiest['requests'])} (limit {limit:g})."
                 if busiest is not None else "no entries in the window."))
    return [Finding(cid, Severity.OK, f"alb:{alb}", "No client above the request limit", detail,
                    {**read, "limit": limit, "top_clients": df.head(TOP).to_dict("records")})]


def _alb_plot(result: CheckResult, ctx: Context) -> Figure:
    frame = result.data.head(TOP) if result.data is not None else pd.DataFrame(columns=CLIENT_COLUMNS)
    return plots.bars(frame, "client", "requests", "ALB requests by client (access logs)", xlabel="requests")


@check(ALB_ACCESS_LOGS, plot=_alb_plot)
def alb_access_logs(ctx: Context) -> CheckResult:
    """ALB access logs in S3: requests per client in the window, top clients."""
    from rmsops.sources.alb import load_balancer

    lb = load_balancer(ctx)
    attributes = ctx.client("elbv2").describe_load_balancer_attributes(
        LoadBalancerArn=lb["LoadBalancerArn"])["Attributes"]
    enabled, bucket, prefix = access_log_location(attributes)
    alb = ctx.settings.alb_name
    if not enabled or not bucket:
        return CheckResult(findings=[Finding(
            ALB_ACCESS_LOGS, Severity.INFO, f"alb:{alb}", "ALB access logs are not enabled",
            "access_logs.s3.enabled is false: there are no per-request logs to review.",
            {"enabled": enabled, "bucket": bucket},
            "Enable access logs on the ALB (access_logs.s3.enabled, .bucket, .prefix) so the next "
            "investigation can see every client.")])
    df, read = alb_log_frame(ctx, lb, bucket, prefix)
    return CheckResult(findings=judge_alb_clients(df, ctx.thresholds, alb, read), data=df)
