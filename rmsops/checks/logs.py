"""Log analysis: ERROR lines by pattern, requests by status class, RDS connection errors.

Guide "Slow API Responses" step 2 (the Logs Insights query for ERROR lines) and "Log Analysis"
(errors in the last hour, requests by status code, connection issues in the database log).

Every query has two forms (``rmsops.sources.logquery``): a Logs Insights query that does the filtering and
counting on AWS's side (production), and a ``filter_log_events`` fallback whose pandas ``aggregate``
returns the same rows (``logs_query: filter``, for emulators). Error messages are grouped into
patterns here in both modes: Insights has no regex replace, so the newest 10 000 ERROR lines are
fetched and numbers, ids, addresses and quoted values are masked (``message_pattern``); when more
lines than that match, a ``stats count(*)`` query gives the exact total.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd
from botocore.exceptions import ClientError

from rmsops.core.findings import Finding, Severity
from rmsops.core.registry import CheckResult, check
from rmsops.render import plots
from rmsops.render.figures import stacked_plot  # noqa: F401 - re-exported for callers of this module
from rmsops.render.text import labels_for  # noqa: F401 - re-exported for callers of this module
from rmsops.sources import logquery, metrics
from rmsops.sources.ecs import deployment_markers
from rmsops.sources.logquery import INSIGHTS_ROW_LIMIT, LogQuery

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from rmsops.core.context import Context

RUNBOOK_SLOW_API = "06-slow-api-responses"
RUNBOOK = "11-log-analysis"
# Check ids, declared in the catalogue (rmsops/core/runbooks.py); the judges take theirs as `cid`.
ERRORS_RECENT = "logs.errors.recent"
LOGS_ERRORS = "api.logs.errors"
RDS_CONNECTION_ERRORS = "logs.rds.connection_errors"
STATUS_CODES = "logs.status_codes"
APP_LOGS = ("backend", "frontend")  # the environment file's logs.* keys searched for ERROR lines
TOP_PATTERNS = 5  # patterns named in a finding and drawn in the plot (the rest are "other")
LINE_COLUMNS = ["timestamp", "log_group", "stream", "message", "pattern"]

# --- message patterns -----------------------------------------------------------------------

_MASKS = [
    # a leading timestamp (ISO 8601 or PostgreSQL's "2026-11-28 19:05:00 UTC")
    (re.compile(r"^\s*\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?(?:\s*UTC)?\s*"), ""),
    (re.compile(r'"[^"]*"'), '"<*>"'),
    (re.compile(r"'[^']*'"), "'<*>'"),
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.IGNORECASE), "<id>"),
    (re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"), "<ip>"),
    (re.compile(r"\b0x[0-9a-f]+\b", re.IGNORECASE), "<hex>"),
    (re.compile(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{8,}\b", re.IGNORECASE), "<hex>"),
    (re.compile(r"(?<![A-Za-z_])[-+]?\d+(?:\.\d+)?"), "<n>"),
    (re.compile(r"\s+"), " "),
]
PATTERN_MAX_CHARS = 200


def message_pattern(message: str) -> str:
    """The message with what varies masked, so that lines from one cause count as one pattern.

    "timeout after 30.1 s" and "timeout after 29.8 s" both become "timeout after <n> s"; so do
    timestamps, ids, hex strings, IP addresses and quoted values.
    """
    text = str(message)
    for pattern, replacement in _MASKS:
        text = pattern.sub(replacement, text)
    text = text.strip()
    return text if len(text) <= PATTERN_MAX_CHARS else text[:PATTERN_MAX_CHARS - 1] + "…"


def short(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


# --- log groups -----------------------------------------------------------------------------

def group_exists(ctx: Context, name: str) -> bool:
    """Whether the log group exists (``describe_log_groups`` by prefix), asked once per run."""

    def fetch() -> bool:
        logs = ctx.client("logs")
        for page in logs.get_paginator("describe_log_groups").paginate(logGroupNamePrefix=name):
            if any(g.get("logGroupName") == name for g in page.get("logGroups", [])):
                return True
        return False

    return ctx.memo(f"logs.group_exists:{name}", fetch)


@dataclass
class Groups:
    configured: list[str]
    present: list[str]
    missing: list[str]


def log_groups(ctx: Context, names: list[str]) -> Groups:
    configured = [n for n in dict.fromkeys(names) if n]
    present = [n for n in configured if group_exists(ctx, n)]
    return Groups(configured, present, [n for n in configured if n not in present])


def app_groups(ctx: Context) -> Groups:
    return log_groups(ctx, [ctx.settings.log_groups.get(key, "") for key in APP_LOGS])


def rds_group(ctx: Context) -> str:
    """The RDS PostgreSQL log group: ``logs.rds``, or AWS's name for the instance's export."""
    return (ctx.settings.log_groups.get("rds")
            or f"/aws/rds/instance/{ctx.settings.database.instance}/postgresql")


def missing_group_findings(cid: str, groups: Groups, what: str) -> list[Finding]:
    return [Finding(cid, Severity.INFO, f"logs:{name}", f"Log group {name} not found",
                    f"describe_log_groups found no group of that name; its {what} were not searched.",
                    {"log_group": name},
                    "Check logs.* in the environment file and that the service ships its logs "
                    "(awslogs driver, RDS log exports).")
            for name in groups.missing]


def not_configured(cid: str, keys: str) -> Finding:
    return Finding(cid, Severity.INFO, "logs:not-configured", "No log group configured to search",
                   f"Set {keys} in the environment file.", {"keys": keys},
                   f"Add {keys} to the environment file (e.g. /ecs/rms-backend).")


# --- ERROR lines (06 api.logs.errors, 11 logs.errors.recent) --------------------------------

# The guide's query, with the limit raised to the Insights maximum so that the count is complete
# unless more than 10 000 lines match; @log and @logStream say where each line came from.
ERRORS_INSIGHTS = ("fields @timestamp, @log, @logStream, @message\n| filter @message like /ERROR/\n"
                   f"| sort @timestamp desc\n| limit {INSIGHTS_ROW_LIMIT}")
ERROR_COUNT_INSIGHTS = "filter @message like /ERROR/\n| stats count(*) as errors"


def _error_rows(events: pd.DataFrame) -> pd.DataFrame:
    """Fallback for ERRORS_INSIGHTS: ERROR lines, newest first, in the Insights field names."""
    hits = events[events["message"].str.contains("ERROR", regex=False)]
    hits = hits.sort_values("timestamp", ascending=False, kind="stable")
    return pd.DataFrame({"@timestamp": hits["timestamp"], "@log": hits["log_group"],
                         "@logStream": hits["stream"], "@message": hits["message"]}).reset_index(drop=True)


def _error_count(events: pd.DataFrame) -> pd.DataFrame:
    """Fallback for ERROR_COUNT_INSIGHTS."""
    return pd.DataFrame({"errors": [int(events["message"].str.contains("ERROR", regex=False).sum())]})


ERRORS_QUERY = LogQuery(ERRORS_INSIGHTS, "ERROR", _error_rows)
ERROR_COUNT_QUERY = LogQuery(ERROR_COUNT_INSIGHTS, "ERROR", _error_count)


@dataclass
class ErrorLines:
    groups: Groups
    lines: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=LINE_COLUMNS))
    total: int = 0  # every matching line in the window (can exceed len(lines))
    truncated: bool = False


def lines_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """Insights-shaped rows (@timestamp, @log, @logStream, @message) as LINE_COLUMNS."""
    if rows.empty or "@message" not in rows:
        return pd.DataFrame(columns=LINE_COLUMNS)
    group = rows["@log"] if "@log" in rows else pd.Series("", index=rows.index)
    frame = pd.DataFrame({
        "timestamp": rows.get("@timestamp", pd.NaT),
        # Insights names the group "<account>:<group>"; group names cannot contain ':'
        "log_group": group.fillna("").astype(str).str.rsplit(":", n=1).str[-1],
        "stream": rows["@logStream"].fillna("").astype(str) if "@logStream" in rows else "",
        "message": rows["@message"].fillna("").astype(str),
    })
    frame["pattern"] = frame["message"].map(message_pattern)
    return frame.reset_index(drop=True)


def fetch_errors(ctx: Context) -> ErrorLines:
    """The window's ERROR lines in the application log groups, shared by 06 and 11."""

    def fetch() -> ErrorLines:
        groups = app_groups(ctx)
        if not groups.present:
            return ErrorLines(groups)
        rows = logquery.run(ctx, groups.present, ERRORS_QUERY)
        lines = lines_frame(rows)
        truncated = bool(rows.attrs.get("truncated"))
        total = len(lines)
        if truncated:
            counted = logquery.run(ctx, groups.present, ERROR_COUNT_QUERY)
            if "errors" in counted and len(counted):
                total = max(total, int(counted["errors"].sum()))
        return ErrorLines(groups, lines, total, truncated)

    return ctx.memo("logs.errors", fetch)


def patterns_frame(lines: pd.DataFrame) -> pd.DataFrame:
    """One row per message pattern: count, log groups, first and last seen, the newest example."""
    columns = ["pattern", "count", "log_groups", "first", "last", "example"]
    if lines.empty:
        return pd.DataFrame(columns=columns)
    ordered = lines.sort_values("timestamp", kind="stable")
    grouped = ordered.groupby("pattern", sort=False).agg(
        count=("message", "size"), log_groups=("log_group", lambda g: ", ".join(sorted(set(g)))),
        first=("timestamp", "min"), last=("timestamp", "max"), example=("message", "last")).reset_index()
    return grouped[columns].sort_values(["count", "last"], ascending=[False, False]).reset_index(drop=True)


def judge_errors(cid: str, errors: ErrorLines, patterns: pd.DataFrame, thresholds: dict[str, float],
                 resolution: str) -> list[Finding]:
    groups = errors.groups
    if not groups.configured:
        return [not_configured(cid, "logs.backend / logs.frontend")]
    findings = missing_group_findings(cid, groups, "ERROR lines")
    if not groups.present:
        return findings
    resource = "logs:" + ",".join(groups.present)
    limit = thresholds["log_errors_max"]
    top = patterns.head(TOP_PATTERNS)
    evidence = {"errors": errors.total, "lines_read": len(errors.lines), "truncated": errors.truncated,
                "threshold": limit, "log_groups": groups.present, "patterns": int(len(patterns)),
                "top_patterns": [{"pattern": r.pattern, "count": int(r.count), "example": r.example}
                                 for r in top.itertuples(index=False)]}
    if errors.total == 0:
        return findings + [Finding(cid, Severity.OK, resource, "No ERROR lines in the window",
                                   f"Searched {', '.join(groups.present)}.", evidence)]
    listed = "; ".join(f"{int(r.count)}× {short(r.pattern, 120)}" for r in top.itertuples(index=False))
    partial = (f" Patterns are from the newest {len(errors.lines)} lines." if errors.truncated else "")
    detail = (f"{errors.total} ERROR lines in {', '.join(groups.present)}, {len(patterns)} pattern(s). "
              f"Top: {listed}.{partial}")
    headline = short(str(top.iloc[0]["pattern"]), 80) if len(top) else ""
    if errors.total > limit:
        return findings + [Finding(cid, Severity.WARNING, resource,
                                   f"{errors.total} ERROR lines in the window (threshold {limit:g}): {headline}",
                                   detail, evidence, resolution)]
    return findings + [Finding(cid, Severity.INFO, resource,
                               f"{errors.total} ERROR lines in the window: {headline}", detail, evidence,
                               resolution)]


ERRORS_RESOLUTION = (
    "Start with the top pattern. The guide's common causes of slow and failing requests: database query "
    "performance (runbook 07-database-performance; connection errors: 02-database-connections), external "
    "API timeouts (16-external-dependencies), memory/CPU constraints (03-high-memory, "
    "10-monitoring-overview), network latency.")


def _patterns_plot(result: CheckResult, ctx: Context):
    top = result.data.head(10)
    top = top.assign(label=labels_for([str(p) for p in top["pattern"]], 70))
    return plots.bars(top, "label", "count", "ERROR lines by message pattern", xlabel="lines")


@check(LOGS_ERRORS, plot=_patterns_plot)
def api_errors(ctx: Context) -> CheckResult:
    """ERROR lines in the service logs (the guide's Logs Insights query), top messages."""
    errors = fetch_errors(ctx)
    patterns = patterns_frame(errors.lines)
    return CheckResult(findings=judge_errors(LOGS_ERRORS, errors, patterns, ctx.thresholds,
                                             ERRORS_RESOLUTION), data=patterns)


def errors_over_time(lines: pd.DataFrame, period: int, top: int = TOP_PATTERNS) -> pd.DataFrame:
    """ERROR lines per period and pattern (the *top* patterns; the rest as "other")."""
    if lines.empty:
        return pd.DataFrame(columns=["timestamp", "pattern", "lines"])
    leaders = list(lines["pattern"].value_counts().index[:top])
    binned = lines.assign(timestamp=lines["timestamp"].dt.floor(f"{period}s"),
                          pattern=lines["pattern"].where(lines["pattern"].isin(leaders), "other"))
    return (binned.groupby(["timestamp", "pattern"]).size().reset_index(name="lines")
            .sort_values(["timestamp", "pattern"]).reset_index(drop=True))


def _errors_over_time_plot(result: CheckResult, ctx: Context) -> Figure:
    frame = result.frames.get("errors per period by pattern", pd.DataFrame())
    period = metrics.period_for(ctx.window.seconds)
    return stacked_plot(frame, "pattern", "lines", f"ERROR lines per {period // 60} min by pattern "
                        f"(top {TOP_PATTERNS}, stacked)", "lines", ctx, period // 60,
                        empty="no ERROR lines in the window", markers=result.markers)


@check(ERRORS_RECENT, plot=_errors_over_time_plot, marks=deployment_markers)
def errors_recent(ctx: Context) -> CheckResult:
    """Errors in the window, grouped by message pattern."""
    errors = fetch_errors(ctx)
    patterns = patterns_frame(errors.lines)
    over_time = errors_over_time(errors.lines, metrics.period_for(ctx.window.seconds))
    return CheckResult(findings=judge_errors(ERRORS_RECENT, errors, patterns, ctx.thresholds,
                                             ERRORS_RESOLUTION),
                       data=patterns, frames={"errors per period by pattern": over_time})


# --- status codes (11 logs.status_codes) ----------------------------------------------------

# Access-log-like lines: the frontend's `"GET / HTTP/1.1" 200 1532` and the backend's
# `GET /api/reservations 200 in 80 ms`. One regex for Insights (?<name>) and Python (?P<name>).
STATUS_REGEX = (r'(?:GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS) \S+(?: HTTP\/\d(?:\.\d)?")? '
                r"(?<status>[1-5]\d\d)\b")
STATUS_RE = re.compile(STATUS_REGEX.replace("(?<", "(?P<"))
CLASS_COLOURS = {"1xx": "#90a4ae", "2xx": "#2e7d32", "3xx": "#1565c0", "4xx": "#f9a825", "5xx": "#c62828"}


def status_bin_minutes(window_seconds: float) -> int:
    """Bin size in minutes: at most 720 bins, so bins × status codes stay under the 10 000-row limit."""
    return metrics.period_for(window_seconds, max_points=720) // 60


def status_insights(minutes: int) -> str:
    return (f"fields @timestamp, @message\n| parse @message /{STATUS_REGEX}/\n| filter ispresent(status)\n"
            f"| stats count(*) as requests by bin({minutes}m), status")


def status_rows(events: pd.DataFrame, minutes: int) -> pd.DataFrame:
    """Fallback for ``status_insights``: requests per bin and status code, in the Insights field names."""
    column = f"bin({minutes}m)"
    status = events["message"].str.extract(STATUS_RE, expand=False)
    hits = events.assign(status=status).dropna(subset=["status"])
    if hits.empty:
        return pd.DataFrame(columns=[column, "status", "requests"])
    hits = hits.assign(**{column: hits["timestamp"].dt.floor(f"{minutes}min")})
    return hits.groupby([column, "status"]).size().reset_index(name="requests")


def status_query(window_seconds: float) -> LogQuery:
    minutes = status_bin_minutes(window_seconds)
    return LogQuery(status_insights(minutes), "", lambda events: status_rows(events, minutes))


def status_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows of the status query as timestamp, status (int), class ("5xx"), requests."""
    columns = ["timestamp", "status", "class", "requests"]
    time_column = next((c for c in rows.columns if str(c).startswith("bin(")), None)
    if rows.empty or time_column is None or "status" not in rows:
        return pd.DataFrame(columns=columns)
    status = pd.to_numeric(rows["status"], errors="coerce")
    frame = pd.DataFrame({"timestamp": rows[time_column], "status": status,
                          "requests": pd.to_numeric(rows["requests"], errors="coerce").fillna(0)})
    frame = frame.dropna(subset=["status"]).astype({"status": int, "requests": int})
    frame["class"] = (frame["status"] // 100).astype(str) + "xx"
    return frame[columns].sort_values(["timestamp", "status"]).reset_index(drop=True)


def status_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Requests per status code with its class and share of all logged requests."""
    columns = ["status", "class", "requests", "share_pct"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    summary = frame.groupby(["status", "class"])["requests"].sum().reset_index()
    summary["share_pct"] = (100 * summary["requests"] / summary["requests"].sum()).round(2)
    return summary[columns].sort_values("status").reset_index(drop=True)


def judge_status(summary: pd.DataFrame, groups: Groups, thresholds: dict[str, float],
                 cid: str = STATUS_CODES) -> list[Finding]:
    if not groups.configured:
        return [not_configured(cid, "logs.backend / logs.frontend")]
    findings = missing_group_findings(cid, groups, "request lines")
    if not groups.present:
        return findings
    resource = "logs:" + ",".join(groups.present)
    total = int(summary["requests"].sum()) if len(summary) else 0
    by_class = ({str(k): int(v) for k, v in summary.groupby("class")["requests"].sum().items()}
                if total else {})
    limit = thresholds["status_5xx_share_pct"]
    share = 100 * by_class.get("5xx", 0) / total if total else 0.0
    evidence = {"requests": total, "by_class": by_class, "share_5xx_pct": round(share, 2),
                "threshold_pct": limit, "log_groups": groups.present,
                "by_status": {str(r.status): int(r.requests) for r in summary.itertuples(index=False)}}
    if not total:
        return findings + [Finding(cid, Severity.INFO, resource, "No request lines with a status code in the window",
                                   "No line looked like an access log entry (METHOD path [HTTP/x] status).",
                                   evidence)]
    classes = ", ".join(f"{k} {v}" for k, v in sorted(by_class.items()))
    detail = f"{total} logged requests: {classes}; 5xx share {share:.1f}% (threshold {limit:g}%)."
    if share > limit:
        worst = summary[summary["class"] == "5xx"].sort_values("requests", ascending=False)
        codes = ", ".join(f"{int(r.status)} ×{int(r.requests)}" for r in worst.itertuples(index=False))
        return findings + [Finding(
            cid, Severity.WARNING, resource, f"5xx in {share:.1f}% of logged requests ({codes})", detail,
            evidence,
            "502/503 mean the backend is failing or unreachable: follow runbook 01-application-not-responding "
            "(ECS tasks, target health); the ERROR patterns (logs.errors.recent) say why.")]
    return findings + [Finding(cid, Severity.OK, resource, f"5xx in {share:.1f}% of logged requests",
                               detail, evidence)]


def _status_plot(result: CheckResult, ctx: Context) -> Figure:
    frame = result.frames.get("requests per bin by class", pd.DataFrame())
    return stacked_plot(frame, "class", "requests", "Logged requests by status class (stacked)", "requests",
                        ctx, status_bin_minutes(ctx.window.seconds), colours=CLASS_COLOURS,
                        empty="no request lines in the window", markers=result.markers)


@check(STATUS_CODES, plot=_status_plot, marks=deployment_markers)  # scans every line
def status_codes(ctx: Context) -> CheckResult:
    """Logged requests by status code class (access-log lines of the application logs)."""
    groups = app_groups(ctx)
    rows = logquery.run(ctx, groups.present, status_query(ctx.window.seconds)) if groups.present else pd.DataFrame()
    frame = status_frame(rows)
    summary = status_summary(frame)
    per_bin = (frame.groupby(["timestamp", "class"])["requests"].sum().reset_index()
               if len(frame) else pd.DataFrame(columns=["timestamp", "class", "requests"]))
    findings = logquery.mark_truncated(judge_status(summary, groups, ctx.thresholds), logquery.truncated(rows))
    return CheckResult(findings=findings, data=summary, frames={"requests per bin by class": per_bin})


# --- RDS connection errors (11 logs.rds.connection_errors) ----------------------------------

# The connection failures PostgreSQL logs: the explicit phrases at any level, and any FATAL/ERROR/
# PANIC line about a connection (LOG-level "connection received/authorized" lines are normal).
_PHRASES = "too many clients|remaining connection slots|could not connect|password authentication failed"
RDS_FILTER_REGEX = rf"(?i:{_PHRASES})|(?:FATAL|ERROR|PANIC): .*(?i:connection)"
RDS_KIND_REGEX = rf"(?<kind>(?i:{_PHRASES}|connection))"
RDS_FILTER_RE = re.compile(RDS_FILTER_REGEX)
RDS_KIND_RE = re.compile(RDS_KIND_REGEX.replace("(?<", "(?P<"))
KIND_LABELS = {
    "too many clients": "too many clients (max_connections reached)",
    "remaining connection slots": "remaining connection slots reserved",
    "could not connect": "could not connect",
    "password authentication failed": "password authentication failed",
    "connection": "other connection error",
}
KIND_RESOLUTIONS = {
    "too many clients": "Connection limit reached: scale up the RDS instance or optimize connection pooling "
                        "(guide §2; runbook 02-database-connections shows who holds the connections).",
    "remaining connection slots": "Connection limit reached: scale up the RDS instance or optimize "
                                  "connection pooling (guide §2).",
    "could not connect": "Network issues: verify security group rules and VPC routing (guide §2).",
    "password authentication failed": "Check the database credentials the application uses "
                                      "(its secret, and whether it was rotated).",
    "connection": "Connections dropped: check the application's pool settings and the network path.",
}


def rds_insights(minutes: int) -> str:
    return (f"fields @timestamp, @message\n| filter @message like /{RDS_FILTER_REGEX}/\n"
            f"| parse @message /{RDS_KIND_REGEX}/\n"
            f"| stats count(*) as errors, latest(@message) as sample by bin({minutes}m), kind")


def rds_rows(events: pd.DataFrame, minutes: int) -> pd.DataFrame:
    """Fallback for ``rds_insights``: errors and the newest line per bin and kind."""
    column = f"bin({minutes}m)"
    hits = events[events["message"].map(lambda m: bool(RDS_FILTER_RE.search(m)))]
    if hits.empty:
        return pd.DataFrame(columns=[column, "kind", "errors", "sample"])
    hits = hits.assign(kind=hits["message"].str.extract(RDS_KIND_RE, expand=False),
                       **{column: hits["timestamp"].dt.floor(f"{minutes}min")}).sort_values("timestamp")
    return (hits.groupby([column, "kind"]).agg(errors=("message", "size"), sample=("message", "last"))
            .reset_index())


def rds_query(window_seconds: float) -> LogQuery:
    minutes = metrics.period_for(window_seconds, max_points=720) // 60
    return LogQuery(rds_insights(minutes), "", lambda events: rds_rows(events, minutes))


def rds_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows of the RDS query as timestamp, kind (lower case), errors, sample."""
    columns = ["timestamp", "kind", "errors", "sample"]
    time_column = next((c for c in rows.columns if str(c).startswith("bin(")), None)
    if rows.empty or time_column is None or "errors" not in rows:
        return pd.DataFrame(columns=columns)
    kind = rows["kind"].fillna("connection") if "kind" in rows else pd.Series("connection", index=rows.index)
    frame = pd.DataFrame({
        "timestamp": rows[time_column], "kind": kind.astype(str).str.lower(),
        "errors": pd.to_numeric(rows["errors"], errors="coerce").fillna(0).astype(int),
        "sample": rows["sample"].fillna("").astype(str) if "sample" in rows else ""})
    frame.loc[~frame["kind"].isin(KIND_LABELS), "kind"] = "connection"
    return frame[columns].sort_values(["timestamp", "kind"]).reset_index(drop=True)


def rds_summary(frame: pd.DataFrame) -> pd.DataFrame:
    columns = ["kind", "errors", "first", "last", "example"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    ordered = frame.sort_values("timestamp", kind="stable")
    summary = ordered.groupby("kind").agg(errors=("errors", "sum"), first=("timestamp", "min"),
                                          last=("timestamp", "max"), example=("sample", "last")).reset_index()
    summary["kind"] = summary["kind"].map(KIND_LABELS)
    return summary[columns].sort_values("errors", ascending=False).reset_index(drop=True)


def judge_rds(frame: pd.DataFrame, group: str, present: bool, cid: str = RDS_CONNECTION_ERRORS) -> list[Finding]:
    resource = f"logs:{group}"
    if not present:
        return [Finding(cid, Severity.INFO, resource, f"RDS log group {group} not found",
                        "The PostgreSQL log is not exported to CloudWatch Logs (or logs.rds names another group).",
                        {"log_group": group},
                        "Enable the export: aws rds modify-db-instance --cloudwatch-logs-export-configuration "
                        "EnableLogTypes=postgresql (or set logs.rds in the environment file).")]
    by_kind = frame.groupby("kind")["errors"].sum().sort_values(ascending=False) if len(frame) else pd.Series()
    total = int(by_kind.sum()) if len(by_kind) else 0
    evidence = {"errors": total, "by_kind": {str(k): int(v) for k, v in by_kind.items()}, "log_group": group}
    if not total:
        return [Finding(cid, Severity.OK, resource, "No connection errors in the RDS log", "", evidence)]
    kinds = ", ".join(f"{KIND_LABELS[k]} ×{int(v)}" for k, v in by_kind.items())
    newest = frame.sort_values("timestamp").iloc[-1]
    evidence.update(first=frame["timestamp"].min(), last=frame["timestamp"].max(), example=newest["sample"])
    resolution = " ".join(dict.fromkeys(KIND_RESOLUTIONS[k] for k in by_kind.index))
    return [Finding(cid, Severity.WARNING, resource, f"{total} connection errors in the RDS log ({kinds})",
                    f"Newest: {short(str(newest['sample']), 200)}", evidence, resolution)]


def _rds_plot(result: CheckResult, ctx: Context):
    frame = result.frames.get("connection errors per bin by kind", pd.DataFrame())
    series = (frame.rename(columns={"kind": "label", "errors": "value"}).assign(
        label=lambda d: d["label"].map(KIND_LABELS)) if len(frame)
        else pd.DataFrame(columns=["timestamp", "label", "value"]))
    return plots.timeseries(series, "RDS connection errors by kind", "log lines",
                            markers=result.markers, window=(ctx.window.start, ctx.window.end))


@check(RDS_CONNECTION_ERRORS, plot=_rds_plot, marks=deployment_markers)
def rds_connection_errors(ctx: Context) -> CheckResult:
    """Connection errors in the RDS PostgreSQL log group."""
    group = rds_group(ctx)
    present = group_exists(ctx, group)
    frame = pd.DataFrame(columns=["timestamp", "kind", "errors", "sample"])
    capped = False
    if present:
        try:
            rows = logquery.run(ctx, [group], rds_query(ctx.window.seconds))
            capped, frame = logquery.truncated(rows), rds_frame(rows)
        except ClientError as exc:  # deleted between the two calls
            if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise
            present = False
    return CheckResult(findings=logquery.mark_truncated(judge_rds(frame, group, present), capped),
                       data=rds_summary(frame),
                       frames={"connection errors per bin by kind": frame[["timestamp", "kind", "errors"]]})
