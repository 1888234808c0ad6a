"""Data breach response (guide "Data Breach Response"): the incident timeline, credentials in scope.

The guide's immediate actions are 1. isolate affected systems, 2. change all credentials,
3. enable additional monitoring, 4. document the incident timeline. ``breach.timeline``
writes the first draft of 4 from what the account recorded; ``breach.credentials`` lists
what 2 has to cover. Neither changes anything. Access key ids are shown masked to their last
four characters; secret values are never read (``list_secrets`` returns metadata only).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from rmsops.core.findings import Finding, Severity, iso
from rmsops.core.registry import CheckResult, check
from rmsops.render import plots
from rmsops.sources import cloudtrail, logquery, metrics, regions
from rmsops.sources.applogs import AUTH_FAILURE, client_of
from rmsops.sources.regions import cloudtrail_regions
from rmsops.sources.waf import configured_wafs, parse_waf

if TYPE_CHECKING:
    from rmsops.core.context import Context

RUNBOOK = "13-data-breach-response"
# Check ids, declared in the catalogue (rmsops/core/runbooks.py); the judges take theirs as `cid`.
TIMELINE = "breach.timeline"
CREDENTIALS = "breach.credentials"
IMMEDIATE_ACTIONS = ("Immediate actions (guide): 1. isolate affected systems; 2. change all credentials; "
                     "3. enable additional monitoring; 4. document the incident timeline. "
                     "Contact security@company.com.")

# --- breach.timeline ----------------------------------------------------------------------------

TIMELINE_COLUMNS = ["time", "source", "actor", "event", "detail"]
EVIDENCE_ENTRIES = 200
RUN_GAP_SECONDS = 300  # repeats of one (source, actor, event) closer than this are one timeline entry
_ERROR = re.compile(r"\b(ERROR|FATAL|CRITICAL)\b")
WAF_LINES = logquery.LogQuery(
    insights='fields @timestamp, @message\n| filter action = "BLOCK"\n| sort @timestamp desc\n| limit 5000',
    filter_pattern="BLOCK",
    aggregate=lambda events: _blocks_only(events),
)
APP_LINES = logquery.LogQuery(
    insights=("fields @timestamp, @message, @log\n"
              r"| filter @message like /ERROR|FATAL|(?i)(auth\w*\s+fail|login\s+fail|invalid\s+(password|credentials)"
              r'|unauthori[sz]ed|HTTP\/[0-9.]+"\s+401\s)/' "\n| sort @timestamp desc\n| limit 5000"),
    filter_pattern="",  # ERROR or an auth failure: alternatives beyond plain terms, filtered here
    aggregate=lambda events: _errors_and_auth_only(events),
)


def _blocks_only(events: pd.DataFrame) -> pd.DataFrame:
    if events.empty:
        return events
    keep = [(parse_waf(m) or {}).get("action") == "BLOCK" for m in events["message"]]
    return events[keep]


def _errors_and_auth_only(events: pd.DataFrame) -> pd.DataFrame:
    if events.empty:
        return events
    keep = [bool(_ERROR.search(str(m)) or AUTH_FAILURE.search(str(m))) for m in events["message"]]
    return events[keep]


def lines(frame: pd.DataFrame) -> pd.DataFrame:
    """Log rows from Insights (@timestamp, @message) or filter_log_events (timestamp, message)."""
    frame = frame.rename(columns={"@timestamp": "timestamp", "@message": "message", "@log": "log_group"})
    if "timestamp" not in frame.columns or "message" not in frame.columns:
        return pd.DataFrame(columns=["timestamp", "message"])
    out = frame[["timestamp", "message"]].copy()
    out["timestamp"] = pd.to_datetime(out["timestamp"], utc=True, errors="coerce")
    return out.dropna(subset=["timestamp"])


def cloudtrail_entries(events: pd.DataFrame) -> list[dict[str, Any]]:
    entries = []
    for e in events.itertuples(index=False):
        actor = e.username or e.principal or "unknown"
        if e.source_ip:
            actor = f"{actor} ({e.source_ip})"
        bits = [e.resources, e.login_result and f"sign-in {e.login_result}",
                e.error_code and f"error {e.error_code}", e.open_cidrs and f"open to {e.open_cidrs}"]
        entries.append({"time": e.time, "source": "cloudtrail", "actor": actor,
                        "event": f"{e.event_name} ({e.event_source.split('.')[0]})",
                        "detail": "; ".join(b for b in bits if b)})
    return entries


def waf_entries(frame: pd.DataFrame, guards: str = "") -> list[dict[str, Any]]:
    rule = f"{guards} WAF rule" if guards else "rule"
    entries = []
    for row in lines(frame).itertuples(index=False):
        record = parse_waf(row.message)
        if not record:
            continue
        entries.append({"time": row.timestamp, "source": "waf", "actor": record["client"],
                        "event": f"BLOCK {record['uri'] or '/'}",
                        "detail": f"{rule} {record['rule']}" + (f", {record['country']}" if record["country"] else "")})
    return entries


def app_entries(frame: pd.DataFrame) -> list[dict[str, Any]]:
    entries = []
    for row in lines(frame).itertuples(index=False):
        message = str(row.message)
        auth = bool(AUTH_FAILURE.search(message))
        entries.append({"time": row.timestamp, "source": "app", "actor": client_of(message) if auth else "app",
                        "event": "auth failure" if auth else "ERROR", "detail": message[:200]})
    return entries


def timeline_frame(entries: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(entries, columns=TIMELINE_COLUMNS)
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    return frame.sort_values("time", kind="stable").reset_index(drop=True)


def condense(timeline: pd.DataFrame, gap_seconds: float = RUN_GAP_SECONDS) -> pd.DataFrame:
    """Repeats of the same (source, actor, event) within ``gap_seconds`` folded into one entry with a count."""
    runs: list[dict[str, Any]] = []
    open_runs: dict[tuple[str, str, str], dict[str, Any]] = {}
    for row in timeline.itertuples(index=False):
        key = (row.source, row.actor, row.event)
        run = open_runs.get(key)
        if run is not None and (row.time - run["last"]).total_seconds() <= gap_seconds:
            run["last"], run["count"] = row.time, run["count"] + 1
            continue
        run = {"first": row.time, "last": row.time, "source": row.source, "actor": row.actor,
               "event": row.event, "count": 1, "detail": row.detail}
        open_runs[key] = run
        runs.append(run)
    return pd.DataFrame(runs, columns=["first", "last", "source", "actor", "event", "count", "detail"])


def judge_timeline(timeline: pd.DataFrame, condensed: pd.DataFrame, sources: dict[str, str],
                   window: tuple[datetime, datetime]) -> list[Finding]:
    counts = {s: int((timeline["source"] == s).sum()) for s in ("cloudtrail", "waf", "app")}
    entries = [{"first": iso(r.first), "last": iso(r.last), "source": r.source, "actor": r.actor,
                "event": r.event, "count": int(r.count), "detail": r.detail}
               for r in condensed.head(EVIDENCE_ENTRIES).itertuples(index=False)]
    evidence = {"window": {"start": iso(window[0]), "end": iso(window[1])}, "events_by_source": counts,
                "sources": sources, "entries": len(condensed), "shown": len(entries), "timeline": entries}
    if timeline.empty:
        title, detail = "Incident timeline: no events in the window", (
            "No CloudTrail write/root/sign-in events, WAF blocks or application error/auth lines in the window.")
    else:
        title = (f"Incident timeline: {len(timeline)} events ({counts['cloudtrail']} CloudTrail, "
                 f"{counts['waf']} WAF blocks, {counts['app']} application lines)")
        detail = (f"From {iso(timeline['time'].iloc[0])} to {iso(timeline['time'].iloc[-1])}; "
                  f"{len(condensed)} entries after folding repeats within {RUN_GAP_SECONDS // 60} minutes.")
    return [Finding(TIMELINE, Severity.INFO, "timeline", title, detail, evidence,
                    IMMEDIATE_ACTIONS + " Attach this timeline to the incident ticket and extend it by hand.")]


def _timeline_plot(result: CheckResult, ctx: Context):
    frame = result.data if result.data is not None else pd.DataFrame(columns=TIMELINE_COLUMNS)
    period = metrics.period_for(ctx.window.seconds, max_points=90)
    if frame.empty:
        series = pd.DataFrame(columns=["timestamp", "label", "value"])
    else:
        binned = frame.assign(timestamp=frame["time"].dt.floor(f"{period}s"))
        series = binned.groupby(["timestamp", "source"]).size().reset_index(name="value")
        series = series.rename(columns={"source": "label"}).assign(id=lambda f: f["label"])
        start = pd.Timestamp(ctx.window.start).floor(f"{period}s")
        series = metrics.fill_missing(series, start, ctx.window.end, period)  # quiet minutes are zeros
    return plots.timeseries(series, f"Events per {period // 60} min by source", "events",
                            window=(ctx.window.start, ctx.window.end))


@check(TIMELINE, plot=_timeline_plot)
def timeline(ctx: Context) -> CheckResult:
    """One merged timeline of CloudTrail, WAF blocks and application error/auth lines in the window."""
    events = cloudtrail.events(ctx)
    entries = cloudtrail_entries(events)
    capped = logquery.truncated(events)  # lookup_events stopped at its event cap
    sources = {"cloudtrail": "lookup_events: write events, root activity, console sign-ins"}
    missing = ctx.client("logs").exceptions.ResourceNotFoundException
    for waf in configured_wafs(ctx):
        key = f"waf ({waf.guards})"
        try:
            lines = logquery.run(ctx, [waf.group], WAF_LINES, region=waf.region)
            capped |= logquery.truncated(lines)
            entries += waf_entries(lines, waf.guards)
            sources[key] = f"{waf.group} in {waf.region}"
        except missing:
            sources[key] = f"{waf.group} (log group not found in {waf.region})"
    app = [g for k in ("backend", "frontend") if (g := ctx.settings.log_groups.get(k))]
    if app:
        try:
            lines = logquery.run(ctx, app, APP_LINES)
            capped |= logquery.truncated(lines)
            entries += app_entries(lines)
            sources["app"] = ", ".join(app)
        except missing:
            sources["app"] = f"{', '.join(app)} (a log group not found)"
    frame = timeline_frame(entries)
    condensed = condense(frame)
    findings = logquery.mark_truncated(judge_timeline(frame, condensed, sources, (ctx.window.start, ctx.window.end)),
                                       capped)
    return CheckResult(findings=findings, data=frame, frames={"timeline_condensed": condensed})


# --- breach.credentials -------------------------------------------------------------------------

KEY_COLUMNS = ["user", "access_key", "status", "created", "age_days", "last_used", "last_service",
               "last_region"]
SECRET_COLUMNS = ["secret", "created", "last_changed", "last_rotated", "last_accessed", "rotation_enabled",
                  "days_since_change"]
# Services the RMS system itself calls. A key last used on anything else (iam, organizations, ...) is odd.
RMS_SERVICES = frozenset({"ecs", "ecr", "logs", "s3", "cloudwatch", "monitoring", "secretsmanager", "rds", "sts",
                          "elasticloadbalancing", "cloudfront", "ssm", "kms", "xray", "wafv2", "acm", "ses",
                          "athena", "ec2", "cloudtrail"})
ROTATE = ("Change all credentials (guide): create a new access key, move its consumer to it, deactivate and "
          "then delete the old key; review and update IAM policies. Suspected misuse: "
          "security@company.com.")


def access_keys_frame(ctx: Context, now: datetime) -> pd.DataFrame:
    """Every IAM user's access keys with age and last use; key ids masked, never a secret."""
    iam = regions.client_for(ctx, "iam")
    rows = []
    for page in iam.get_paginator("list_users").paginate():
        for user in page.get("Users", []):
            name = user["UserName"]
            for keys in iam.get_paginator("list_access_keys").paginate(UserName=name):
                for key in keys.get("AccessKeyMetadata", []):
                    used = iam.get_access_key_last_used(AccessKeyId=key["AccessKeyId"]).get("AccessKeyLastUsed", {})
                    created = key.get("CreateDate")
                    rows.append({
                        "user": name, "access_key": cloudtrail.mask_key(key["AccessKeyId"]),
                        "status": key.get("Status", ""), "created": created,
                        "age_days": int((now - created).total_seconds() // 86400) if created else None,
                        "last_used": used.get("LastUsedDate"), "last_service": used.get("ServiceName", "N/A"),
                        "last_region": used.get("Region", "N/A")})
    frame = pd.DataFrame(rows, columns=KEY_COLUMNS)
    for column in ("created", "last_used"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


def secrets_frame(ctx: Context, now: datetime) -> pd.DataFrame:
    """Secrets Manager secrets' metadata (list_secrets never returns values)."""
    sm = ctx.client("secretsmanager")
    rows = []
    for page in sm.get_paginator("list_secrets").paginate():
        for s in page.get("SecretList", []):
            changed = s.get("LastChangedDate") or s.get("CreatedDate")
            rows.append({"secret": s.get("Name", ""), "created": s.get("CreatedDate"), "last_changed": changed,
                         "last_rotated": s.get("LastRotatedDate"), "last_accessed": s.get("LastAccessedDate"),
                         "rotation_enabled": bool(s.get("RotationEnabled", False)),
                         "days_since_change": int((now - changed).total_seconds() // 86400) if changed else None})
    frame = pd.DataFrame(rows, columns=SECRET_COLUMNS)
    for column in ("created", "last_changed", "last_rotated", "last_accessed"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


def key_problems(row: Any, max_age: float, regions: set[str]) -> list[str]:
    problems = []
    if row.status == "Active" and pd.notna(row.age_days) and row.age_days > max_age:
        problems.append(f"{int(row.age_days)} days old (limit {max_age:g})")
    region, service = str(row.last_region or "N/A"), str(row.last_service or "N/A")
    if region not in ("N/A", "") and region not in regions:
        problems.append(f"last used from region {region}")
    if service not in ("N/A", "") and service not in RMS_SERVICES:
        problems.append(f"last used on {service}, a service RMS does not use")
    return problems


def judge_credentials(keys: pd.DataFrame, secrets: pd.DataFrame, thresholds: dict[str, float],
                      home_region: str, cid: str = CREDENTIALS) -> list[Finding]:
    max_age = thresholds["access_key_max_age_days"]
    regions = set(cloudtrail_regions(home_region))  # IAM, STS and CloudFront record their use in us-east-1
    findings = []
    for row in keys.itertuples(index=False):
        problems = key_problems(row, max_age, regions)
        if not problems:
            continue
        evidence = {"user": row.user, "access_key": row.access_key, "status": row.status,
                    "created": iso(row.created) if pd.notna(row.created) else None, "age_days": row.age_days,
                    "last_used": iso(row.last_used) if pd.notna(row.last_used) else None,
                    "last_service": row.last_service, "last_region": row.last_region,
                    "expected_regions": sorted(regions), "problems": problems}
        findings.append(Finding(cid, Severity.WARNING, f"iam:user/{row.user}/access-key/{row.access_key}",
                                f"{row.user}: access key {row.access_key} {problems[0]}",
                                "; ".join(problems).capitalize() + ".", evidence, ROTATE))
    active = int((keys["status"] == "Active").sum()) if len(keys) else 0
    if not findings:
        findings.append(Finding(
            cid, Severity.OK, "iam:access-keys",
            f"{len(keys)} access key(s) of {keys['user'].nunique() if len(keys) else 0} user(s): none stale or odd",
            f"{active} active; none older than {max_age:g} days or last used outside "
            f"{', '.join(sorted(regions))} or on a service RMS does not use.",
            {"keys": keys.assign(created=keys["created"].map(_iso), last_used=keys["last_used"].map(_iso))
             .to_dict("records"), "max_age_days": max_age}))
    findings.append(judge_secrets(secrets))
    return findings


def judge_secrets(secrets: pd.DataFrame) -> Finding:
    records = [{"secret": r.secret, "last_changed": _iso(r.last_changed), "last_rotated": _iso(r.last_rotated),
                "rotation_enabled": bool(r.rotation_enabled), "days_since_change": r.days_since_change}
               for r in secrets.itertuples(index=False)]
    if not records:
        return Finding(CREDENTIALS, Severity.INFO, "secretsmanager", "No Secrets Manager secrets",
                       "list_secrets returned none.", {"secrets": []})
    rotating = sum(r["rotation_enabled"] for r in records)
    oldest = max(records, key=lambda r: r["days_since_change"] or 0)
    return Finding(CREDENTIALS, Severity.INFO, "secretsmanager",
                   f"{len(records)} secret(s) in scope, {rotating} rotated automatically",
                   f"Oldest change: {oldest['secret']}, {oldest['days_since_change']} days ago. After a breach, "
                   "change every secret the compromised systems could read.", {"secrets": records},
                   "Change all credentials: rotate each secret (secretsmanager rotate-secret) and restart "
                   "the services that read it.")


def _iso(value: Any) -> str | None:
    return iso(value) if value is not None and pd.notna(value) else None


def _credentials_plot(result: CheckResult, ctx: Context):
    frame = result.data if result.data is not None else pd.DataFrame(columns=KEY_COLUMNS)
    shown = frame.assign(key=frame["user"] + " " + frame["access_key"].str[-4:]).dropna(subset=["age_days"])
    return plots.bars(shown, "key", "age_days", "Access key age (days)", xlabel="days")


@check(CREDENTIALS, plot=_credentials_plot)
def credentials(ctx: Context) -> CheckResult:
    """IAM users' access keys (age, last use) and Secrets Manager secrets in scope."""
    now = ctx.window.end
    keys = access_keys_frame(ctx, now)
    secrets = secrets_frame(ctx, now)
    findings = judge_credentials(keys, secrets, ctx.thresholds, ctx.settings.aws.region)
    return CheckResult(findings=findings, data=keys, frames={"secrets": secrets})
