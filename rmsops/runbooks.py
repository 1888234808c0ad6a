"""The runbook catalogue: one notebook per section of the troubleshooting guide."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rmsops.config import PACKAGE_DATA, REPO_ROOT
from rmsops.errors import UserError


@dataclass(frozen=True)
class Runbook:
    stem: str
    title: str
    guide_section: str
    checks: tuple[str, ...]  # the catalogue's check ids, in the order the notebook runs them
    diagnostic: bool = True
    # Rough run time in seconds (measured on the demo): a triage starts the slowest runbooks first,
    # so the last ones to finish are short and the cores are not left idle at the end.
    cost: float = 3.0

    @property
    def notebook(self) -> Path:
        return notebooks_dir() / f"{self.stem}.ipynb"

    @property
    def number(self) -> str:
        return self.stem.split("-", 1)[0]


CATALOGUE: tuple[Runbook, ...] = (
    Runbook("01-application-not-responding", "Application not responding",
            "1. Application Not Responding",
            ("app.health.endpoint", "app.ecs.capacity", "app.ecs.unhealthy_tasks",
             "app.alb.target_health", "app.alb.5xx"), cost=4.0),
    Runbook("02-database-connections", "Database connection issues",
            "2. Database Connection Issues",
            ("db.rds.status", "db.connectivity", "db.connections.saturation",
             "db.connections.by_state", "db.connections.trend"), cost=4.0),
    Runbook("03-high-memory", "High memory usage", "3. High Memory Usage",
            ("memory.ecs.utilization", "memory.ecs.oom_kills", "memory.ecs.task_churn",
             "memory.logs.oom_errors"), cost=4.5),
    Runbook("04-tls-certificates", "SSL/TLS certificate issues", "4. SSL/TLS Certificate Issues",
            ("tls.acm.expiry", "tls.alb.listener_certificate", "tls.endpoint.handshake"), cost=3.5),
    Runbook("05-cdn-static-assets", "CDN and static asset issues", "5. CDN/Static Asset Issues",
            ("cdn.cloudfront.distribution", "cdn.assets.reachable", "cdn.cloudfront.error_rate",
             "cdn.cloudfront.cache_hit"), cost=3.3),
    Runbook("06-slow-api-responses", "Slow API responses", "Slow API Responses",
            ("api.latency.percentiles", "api.xray.slow_segments", "api.logs.errors"), cost=4.5),
    Runbook("07-database-performance", "Database performance", "Database Performance",
            ("db.queries.long_running", "db.queries.slow", "db.locks.blocked", "db.tables.size",
             "db.stats.stale", "db.indexes.missing", "db.cache.hit_rate"), cost=5.6),
    Runbook("08-failed-deployments", "Failed deployments", "Failed Deployments",
            ("deploy.ecs.rollout", "deploy.ecs.failed_tasks", "deploy.ecs.events", "deploy.taskdef.diff"),
            cost=3.4),
    Runbook("09-environment-drift", "Staging vs production differences",
            "Staging vs Production Differences",
            ("drift.taskdef.environment", "drift.taskdef.resources", "drift.network.security_groups"),
            cost=3.3),
    Runbook("10-monitoring-overview", "Monitoring overview", "Monitoring and Alerting",
            ("metrics.latency", "metrics.error_rate", "metrics.throughput", "metrics.ecs.utilization",
             "metrics.rds", "metrics.alarms"), cost=7.7),
    Runbook("11-log-analysis", "Log analysis", "Log Analysis",
            ("logs.errors.recent", "logs.status_codes", "logs.rds.connection_errors"), cost=4.4),
    Runbook("12-security-suspicious-activity", "Suspicious activity", "Suspicious Activity Detection",
            ("security.waf.blocks", "security.auth.failures", "security.cloudtrail.sensitive",
             "security.alb.access_logs"), cost=4.7),
    Runbook("13-data-breach-response", "Data breach response", "Data Breach Response",
            ("breach.timeline", "breach.credentials"), cost=3.4),
    Runbook("14-backup-recovery", "Database backup and recovery", "Database Recovery",
            ("backup.rds.retention", "backup.rds.pitr", "backup.rds.snapshots"), cost=2.5),
    Runbook("15-application-recovery", "Application recovery", "Application Recovery",
            ("recovery.ecs.last_good_taskdef", "recovery.config.drift"), cost=2.2),
    Runbook("16-external-dependencies", "External dependencies", "Third-Party Service Issues",
            ("external.http.health", "external.email.dns", "external.email.reputation"), cost=6.0),
    Runbook("17-daily-health-check", "Daily health check", "System Health Check", (),
            ),
    Runbook("18-escalation", "Escalation", "Escalation Procedures",
            ("escalation.level", "escalation.recent_changes"), diagnostic=False, cost=1.7),
)

_BY_STEM = {rb.stem: rb for rb in CATALOGUE}


def notebooks_dir() -> Path:
    """The runbook notebooks: shipped inside the package (a wheel), or the checkout's notebooks/."""
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


def diagnostic() -> list[Runbook]:
    return [rb for rb in CATALOGUE if rb.diagnostic]


DAILY = "17-daily-health-check"
ESCALATION = "18-escalation"


def triage_selection() -> list[Runbook]:
    """What a triage runs: 01–16 (17 is their quick subset), then escalation (18) on their findings."""
    return [*[rb for rb in diagnostic() if rb.stem != DAILY], find(ESCALATION)]
