"""The runbook catalogue: one notebook per section of the troubleshooting guide, and its checks.

This is the one list of checks: a check's id, runbook (and so guide section), summary, whether the
daily health check runs it (``quick``) and whether the first look runs it are written here once.
``rmsops.core.registry`` attaches each check's function to its entry; ``rmsops list`` reads this module
alone, so it stays light to import (no pandas, boto3, matplotlib, nor the check modules).
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from rmsops.core import thresholds
from rmsops.core.errors import UserError


@dataclass(frozen=True)
class Check:
    """One check of a runbook, as the catalogue declares it."""

    id: str
    # A template: ``{name}`` or ``{name:g}`` is a threshold of rmsops.core.thresholds, filled in with the
    # thresholds in force (see format_summary), so an override shows where the check is described.
    summary: str
    quick: bool = True  # the daily health check (17) runs it; heavy or slow checks are False
    # Its place in the first look (1 first), 0 when the first look does not run it (rmsops.execution.firstlook).
    first_look: int = 0
    # The check whose signal this one reads again (the monitoring overview repeats runbook 06's
    # latency, 11 repeats 06's log errors): in one triage its finding echoes that one's, and a tally
    # of problems counts it once (rmsops.core.problems).
    echo_of: str = ""
    # It judges its runbook's input, the other runbooks' findings (escalation.level): its result is
    # this process's alone, never shared with a triage's other processes nor run ahead by the first look.
    reads_findings: bool = False

    def summary_with(self, values: Mapping[str, float] | None = None) -> str:
        return format_summary(self.summary, values)


def format_summary(template: str, values: Mapping[str, float] | None = None) -> str:
    """A summary with the thresholds it names filled in: ``values`` (the thresholds in force) over
    the defaults, so a partial mapping is fine."""
    return template.format_map({**thresholds.DEFAULTS, **(values or {})})


def summary_thresholds(template: str) -> list[str]:
    """The threshold names a summary template refers to, in order."""
    return [field for _, field, _, _ in string.Formatter().parse(template) if field]


@dataclass(frozen=True)
class Runbook:
    stem: str
    title: str
    guide_section: str
    entries: tuple[Check, ...]  # the catalogue's checks, in the order the notebook runs them
    diagnostic: bool = True
    # Rough run time in seconds (measured on the demo): a triage starts the slowest runbooks first,
    # so the last ones to finish are short and the cores are not left idle at the end.
    cost: float = 3.0

    @property
    def checks(self) -> tuple[str, ...]:
        """The check ids, in the order the notebook runs them."""
        return tuple(c.id for c in self.entries)

    @property
    def notebook(self) -> Path:
        return notebooks_dir() / f"{self.stem}.ipynb"

    @property
    def number(self) -> str:
        return self.stem.split("-", 1)[0]


C = Check

CATALOGUE: tuple[Runbook, ...] = (
    Runbook("01-application-not-responding", "Application not responding",
            "1. Application Not Responding", (
                C("app.health.endpoint", "HTTP GET of each configured health URL.", first_look=1),
                C("app.ecs.capacity", "ECS running vs desired vs pending tasks per service.", first_look=3),
                C("app.ecs.unhealthy_tasks", "Running ECS tasks whose container health status is UNHEALTHY."),
                C("app.alb.target_health", "ALB target health per target group.", first_look=2),
                C("app.alb.5xx", "ALB and target 5xx counts over the window (CloudWatch)."),
            ), cost=4.0),
    Runbook("02-database-connections", "Database connection issues",
            "2. Database Connection Issues", (
                C("db.rds.status", "RDS instance status (describe_db_instances)."),
                C("db.connectivity", "Connect to PostgreSQL with a short timeout.", first_look=4),
                C("db.connections.saturation", "Client connections against max_connections minus reserved slots."),
                C("db.connections.by_state", "Client backends grouped by state; sessions idle in transaction."),
                C("db.connections.trend", "CloudWatch DatabaseConnections over the window against the limit."),
            ), cost=4.0),
    Runbook("03-high-memory", "High memory usage", "3. High Memory Usage", (
                C("memory.ecs.utilization", "ECS MemoryUtilization (Average and Maximum) per service (CloudWatch)."),
                C("memory.ecs.oom_kills",
                  "Stopped ECS tasks killed for memory (exit code 137, OutOfMemoryError) in the window."),
                C("memory.ecs.task_churn", "Number of ECS tasks per service that stopped in the window."),
                C("memory.logs.oom_errors",
                  "OutOfMemory lines in the services' log groups (Logs Insights, or filter_log_events)."),
            ), cost=4.5),
    Runbook("04-tls-certificates", "SSL/TLS certificate issues", "4. SSL/TLS Certificate Issues", (
                C("tls.acm.expiry", "ACM certificates: status and days until NotAfter."),
                C("tls.alb.listener_certificate", "The certificates the ALB's HTTPS listeners serve."),
                C("tls.endpoint.handshake", "A live TLS handshake with each configured HTTPS endpoint."),
            ), cost=3.5),
    Runbook("05-cdn-static-assets", "CDN and static asset issues", "5. CDN/Static Asset Issues", (
                C("cdn.cloudfront.distribution",
                  "The CloudFront distribution found by its comment: enabled and Deployed."),
                C("cdn.assets.reachable", "HEAD of each configured asset path through the distribution."),
                C("cdn.cloudfront.error_rate", "CloudFront 4xx and 5xx error rates over the window (CloudWatch)."),
                C("cdn.cloudfront.cache_hit", "CloudFront cache hit rate over the window (CloudWatch)."),
            ), cost=3.3),
    Runbook("06-slow-api-responses", "Slow API responses", "Slow API Responses", (
                C("api.latency.percentiles",
                  "ALB TargetResponseTime p50 / p90 / p99 over the window (CloudWatch percentiles)."),
                C("api.xray.slow_segments",  # up to 20+ calls
                  "X-Ray traces: the slowest subsegments by total time, with their share of the time.",
                  quick=False),
                C("api.logs.errors",
                  "ERROR lines in the service logs (the guide's Logs Insights query), top messages."),
            ), cost=4.5),
    Runbook("07-database-performance", "Database performance", "Database Performance", (
                C("db.queries.long_running",
                  "Queries and transactions running longer than {long_query_warning_seconds:g} s "
                  "(pg_stat_activity)."),
                C("db.queries.slow",  # EXPLAIN ANALYZE: not for the daily check
                  "Slow statements from pg_stat_statements (mean ≥ {slow_query_mean_ms:g} ms, "
                  "≥ {slow_query_min_calls:g} calls), the slowest explained.", quick=False),
                C("db.locks.blocked",
                  "Sessions blocked by another session's lock (pg_blocking_pids), with their blockers."),
                C("db.tables.size",
                  "Table sizes with indexes and TOAST (the guide's table-size query, PgHero's shape)."),
                C("db.stats.stale",
                  "Tables modified a lot since their last ANALYZE (n_mod_since_analyze against live rows)."),
                C("db.indexes.missing",
                  "Large tables mostly read by sequential scans (≥ {missing_index_min_rows:g} rows, "
                  "< {missing_index_use_pct:g}% index use)."),
                C("db.cache.hit_rate", "Table and index cache hit rate (≥ {cache_hit_rate_pct:g}%)."),
            ), cost=5.6),
    Runbook("08-failed-deployments", "Failed deployments", "Failed Deployments", (
                C("deploy.ecs.rollout",
                  "ECS deployments' rollout state, and how long an IN_PROGRESS rollout has been running."),
                C("deploy.ecs.failed_tasks", "Failed tasks of the deployments and stopped tasks' reasons "
                                             "(health checks, image pull, resources)."),
                C("deploy.ecs.events",
                  "The ECS service events in the window that mean trouble (placement, health checks)."),
                C("deploy.taskdef.diff", "Current vs previous task definition revision: image, environment "
                                         "names, memory, health check."),
            ), cost=3.4),
    Runbook("09-environment-drift", "Staging vs production differences",
            "Staging vs Production Differences", (
                C("drift.taskdef.environment",
                  "Environment variable and secret names of each service against the other environment."),
                C("drift.taskdef.resources",
                  "CPU, memory, images, health checks and roles of each service against the other environment."),
                C("drift.network.security_groups",
                  "Ingress rules of the services' security groups against the other environment."),
            ), cost=3.3),
    Runbook("10-monitoring-overview", "Monitoring overview", "Monitoring and Alerting", (
                C("metrics.latency", "Request latency p50 / p90 / p99 (ALB TargetResponseTime).",
                  echo_of="api.latency.percentiles"),
                C("metrics.error_rate", "4xx and 5xx responses per request (ALB counts)."),
                C("metrics.throughput", "Requests per minute against the previous window (ALB RequestCount)."),
                C("metrics.ecs.utilization", "ECS CPU and memory utilization per service (AWS/ECS)."),
                C("metrics.rds", "RDS CPU, connections and free storage (AWS/RDS)."),
                C("metrics.alarms", "CloudWatch alarms in state ALARM."),
            ), cost=7.7),
    Runbook("11-log-analysis", "Log analysis", "Log Analysis", (
                C("logs.errors.recent", "Errors in the window, grouped by message pattern.", echo_of="api.logs.errors"),
                C("logs.status_codes",  # scans every line
                  "Logged requests by status code class (access-log lines of the application logs).",
                  quick=False),
                C("logs.rds.connection_errors", "Connection errors in the RDS PostgreSQL log group."),
            ), cost=4.4),
    Runbook("12-security-suspicious-activity", "Suspicious activity", "Suspicious Activity Detection", (
                C("security.waf.blocks",
                  "WAF BLOCK actions in the window against the window before: top client IPs and rules."),
                C("security.auth.failures", "Failed authentication lines in the application logs, by source IP."),
                C("security.alb.access_logs",
                  "ALB access logs in S3: requests per client in the window, top clients.", quick=False),
                C("security.cloudtrail.sensitive", "CloudTrail: root use, disabled logging, failed console "
                                                   "sign-ins, IAM and security group changes."),
            ), cost=4.7),
    Runbook("13-data-breach-response", "Data breach response", "Data Breach Response", (
                C("breach.timeline", "One merged timeline of CloudTrail, WAF blocks and application error/auth "
                                     "lines in the window.", quick=False),
                C("breach.credentials",
                  "IAM users' access keys (age, last use) and Secrets Manager secrets in scope."),
            ), cost=3.4),
    Runbook("14-backup-recovery", "Database backup and recovery", "Database Recovery", (
                C("backup.rds.retention", "Automated backup retention (BackupRetentionPeriod; 0 means no backups)."),
                C("backup.rds.pitr",
                  "Point-in-time recovery lag (LatestRestorableTime) and the restorable window."),
                C("backup.rds.snapshots",
                  "Newest automated and manual snapshots of the instance, and their age."),
            ), cost=2.5),
    Runbook("15-application-recovery", "Application recovery", "Application Recovery", (
                C("recovery.ecs.last_good_taskdef",
                  "The task definition revision to roll back to, and why (revisions against deployments)."),
                C("recovery.config.drift", "Infrastructure code vs what runs: `terraform plan` in the configured "
                                           "workspace (never apply).", quick=False),
            ), cost=2.2),
    Runbook("16-external-dependencies", "External dependencies", "Third-Party Service Issues", (
                C("external.http.health", "HTTP GET of each configured third-party health or status URL."),
                C("external.email.dns", "SPF, DKIM and DMARC records of the sending domain."),
                C("external.email.reputation", "SES bounce and complaint rates against SES's review thresholds."),
            ), cost=6.0),
    # Runs the quick checks of 01–16 (rmsops.core.registry.daily_checks): no checks of its own.
    Runbook("17-daily-health-check", "Daily health check", "System Health Check", ()),
    Runbook("18-escalation", "Escalation", "Escalation Procedures", (
                C("escalation.level", "The guide's escalation level for the findings, the reasons, who to contact.",
                  reads_findings=True),
                C("escalation.recent_changes", "ECS deployments, task definition registrations and "
                                               "infrastructure API changes in the window."),
            ), diagnostic=False, cost=1.7),
)

_BY_STEM = {rb.stem: rb for rb in CATALOGUE}
_BY_CHECK: dict[str, tuple[Runbook, Check]] = {c.id: (rb, c) for rb in CATALOGUE for c in rb.entries}


def notebooks_dir() -> Path:
    """The runbook notebooks: shipped inside the package (a wheel), or the checkout's notebooks/."""
    from rmsops.core.config import PACKAGE_DATA, REPO_ROOT  # here, not at the top: importing this module stays cheap

    packaged = PACKAGE_DATA / "notebooks"
    return packaged if packaged.is_dir() else REPO_ROOT / "notebooks"


def section(stem: str) -> str:
    return _BY_STEM[stem].guide_section


def find(name: str) -> Runbook:
    """By stem (``01-application-not-responding``), number (``01``, ``1``) or name without number."""
    text = name.strip().removesuffix(".ipynb")
    if text in _BY_STEM:
        return _BY_STEM[text]
    for rb in CATALOGUE:
        if text.isdigit() and int(text) == int(rb.number):
            return rb
        if text == rb.stem.split("-", 1)[1]:
            return rb
    known = ", ".join(rb.stem for rb in CATALOGUE)
    raise UserError(f"unknown runbook {name!r}; known: {known} (see `rmsops list`)")


def entry(check_id: str) -> tuple[Runbook, Check]:
    """The runbook a check belongs to and its catalogue entry; KeyError for an id the catalogue lacks."""
    try:
        return _BY_CHECK[check_id]
    except KeyError:
        raise KeyError(f"check {check_id!r} is not in the catalogue (rmsops/core/runbooks.py)") from None


def reads_findings(check_id: str) -> bool:
    """Whether the check judges the other runbooks' findings (``Check.reads_findings``)."""
    return _BY_CHECK[check_id][1].reads_findings if check_id in _BY_CHECK else False


def checks() -> list[Check]:
    """Every check of the catalogue, runbook by runbook, in notebook order."""
    return [c for rb in CATALOGUE for c in rb.entries]


def summary(check_id: str, values: Mapping[str, float] | None = None) -> str:
    """A check's summary with the thresholds in force (the defaults when ``values`` is None)."""
    return entry(check_id)[1].summary_with(values)


def diagnostic() -> list[Runbook]:
    return [rb for rb in CATALOGUE if rb.diagnostic]


DAILY = "17-daily-health-check"
ESCALATION = "18-escalation"


def daily() -> list[Check]:
    """What the daily health check runs: the quick checks of every other diagnostic runbook, in order."""
    return [c for rb in diagnostic() if rb.stem != DAILY for c in rb.entries if c.quick]


def runs(runbook: Runbook) -> list[Check]:
    """The checks a runbook runs: its own entries, or for the daily health check ``daily()``."""
    return daily() if runbook.stem == DAILY else list(runbook.entries)


def first_look() -> tuple[str, ...]:
    """The checks of the first look (rmsops.execution.firstlook), in their first-look order."""
    return tuple(c.id for c in sorted((c for c in checks() if c.first_look), key=lambda c: c.first_look))


def triage_selection() -> list[Runbook]:
    """What a triage runs: 01–16 (17 is their quick subset), then escalation (18) on their findings."""
    return [*[rb for rb in diagnostic() if rb.stem != DAILY], find(ESCALATION)]
