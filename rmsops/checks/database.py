"""RDS status and PostgreSQL connections (guide §2)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from rmsops.core.db import ACCESS_KINDS, ConnectAttempt
from rmsops.core.findings import Finding, Severity
from rmsops.core.registry import CheckResult, check
from rmsops.render import plots
from rmsops.sources import metrics
from rmsops.sources.ecs import deployment_markers
from rmsops.sources.rds import db_instance

if TYPE_CHECKING:
    from rmsops.core.context import Context

RUNBOOK = "02-database-connections"
# Check ids, declared in the catalogue (rmsops/core/runbooks.py); the judges take theirs as `cid`.
CONNECTIONS_BY_STATE = "db.connections.by_state"
CONNECTIONS_SATURATION = "db.connections.saturation"
CONNECTIONS_TREND = "db.connections.trend"
CONNECTIVITY = "db.connectivity"
RDS_STATUS = "db.rds.status"
LIMIT_REACHED = ("Connection limit reached: scale up the RDS instance or optimize connection "
                 "pooling (guide §2).")
NETWORK = "Network issues: verify security group rules and VPC routing (guide §2)."
RESOLUTION_BY_KIND = {
    "refused": NETWORK,
    "timeout": NETWORK,
    "dns": "Check database.host in the environment file and the VPC DNS settings.",
    "unavailable": ("The server is starting up, shutting down or recovering: check db.rds.status and the "
                    "RDS events (reboot, failover, maintenance); wait for it to finish or open a case."),
    "too_many_connections": LIMIT_REACHED,
    "auth": ("Authentication failed: check database.user and the password source "
             "(PGPASSWORD, ~/.pgpass or database.password_secret)."),
    "credentials": "The password could not be fetched: check database.password_secret and the "
                   "secretsmanager:GetSecretValue permission.",
    "role_limit": ("rmsops' own role has used up its CONNECTION LIMIT (docs/postgres-monitoring-role.sql "
                   "sets 3): other rmsops runs (a triage's runbooks, cron checks) hold its connections. "
                   "Wait for them to finish and run again, run fewer at once (--jobs), or raise it: "
                   "ALTER ROLE <database.user> CONNECTION LIMIT <n>."),
    "permission": ("The server refused rmsops' role: GRANT CONNECT ON DATABASE <dbname> TO <database.user>, "
                   "allow its address in pg_hba.conf (RDS: the parameter group), and check database.user "
                   "and database.dbname (docs/postgres-monitoring-role.sql)."),
}
# What each kind means, for the connectivity finding's title.
DOWN_TITLES = {
    "refused": "PostgreSQL refuses connections (nothing listens, or the network blocks it)",
    "timeout": "PostgreSQL does not answer (connection timed out)",
    "dns": "PostgreSQL's host name does not resolve",
    "unavailable": "PostgreSQL is not accepting connections (starting up, shutting down or recovering)",
    "too_many_connections": "PostgreSQL is saturated: no connection slot left (max_connections reached)",
}
ACCESS_TITLES = {
    "role_limit": "its own role's connection limit is reached",
    "auth": "authentication failed",
    "credentials": "the password could not be fetched",
    "permission": "the server does not let its role in",
}

# Other rmsops sessions (a triage's concurrent runbooks, each with its own) are left out of the
# counts and shown apart: otherwise a triage would see one more connection than `rmsops check` and
# judge the database by its own load. This session stays in: it is one the database really serves.
SATURATION_SQL = """
SELECT (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'
          AND (application_name IS DISTINCT FROM 'rmsops' OR pid = pg_backend_pid())) AS used,
       (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'
          AND application_name = 'rmsops' AND pid <> pg_backend_pid()) AS other_rmsops_sessions,
       current_setting('max_connections')::int AS max_connections,
       current_setting('superuser_reserved_connections')::int
         + coalesce(current_setting('reserved_connections', true), '0')::int  -- PostgreSQL 16+
         + coalesce(current_setting('rds.rds_superuser_reserved_connections', true), '0')::int
         AS reserved
"""

BY_STATE_SQL = """
SELECT coalesce(state, 'unknown') AS state, count(*) AS connections,
       greatest(coalesce(max(extract(epoch FROM clock_timestamp() - state_change)), 0), 0)::float AS oldest_seconds
FROM pg_stat_activity
WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
  AND application_name IS DISTINCT FROM 'rmsops'  -- other rmsops sessions: see SATURATION_SQL
GROUP BY 1 ORDER BY 2 DESC
"""

IDLE_IN_TRANSACTION_SQL = """
SELECT pid, usename AS user, application_name, client_addr::text AS client,
       greatest(extract(epoch FROM clock_timestamp() - state_change), 0)::float AS idle_seconds,
       greatest(extract(epoch FROM clock_timestamp() - xact_start), 0)::float AS transaction_seconds,
       left(query, 300) AS last_query
FROM pg_stat_activity
WHERE state LIKE 'idle in transaction%%' AND pid <> pg_backend_pid()
ORDER BY state_change
"""


def rds_instance_frame(ctx: Context) -> pd.DataFrame:
    name = ctx.settings.database.instance
    instance = db_instance(ctx)  # shared with the other runbooks that describe it
    if instance is None:
        return pd.DataFrame([{"instance": name, "status": "not found"}])
    return pd.DataFrame([{
        "instance": name, "status": instance.get("DBInstanceStatus", ""),
        "class": instance.get("DBInstanceClass", ""), "engine": instance.get("Engine", ""),
        "version": instance.get("EngineVersion", ""), "multi_az": instance.get("MultiAZ"),
        "storage_gb": instance.get("AllocatedStorage"),
        "endpoint": instance.get("Endpoint", {}).get("Address", ""),
    }])


def judge_rds_status(df: pd.DataFrame, cid: str = RDS_STATUS) -> list[Finding]:
    row = df.iloc[0]
    resource = f"db:{row['instance']}"
    status = str(row["status"])
    evidence = {k: (None if pd.isna(v) else v) for k, v in row.to_dict().items()}
    if status == "not found":
        return [Finding(cid, Severity.CRITICAL, resource, f"RDS instance {row['instance']} not found",
                        "describe_db_instances: DBInstanceNotFound.", evidence,
                        "Check database.instance in the environment file and the region.")]
    if status != "available":
        return [Finding(cid, Severity.CRITICAL, resource, f"RDS instance is {status}",
                        f"Status {status!r}, expected 'available'.", evidence,
                        "Check RDS events in the console; storage-full needs more storage, "
                        "rebooting/modifying needs to finish.")]
    return [Finding(cid, Severity.OK, resource, "RDS instance is available",
                    f"{row.get('engine', '')} {row.get('version', '')} on {row.get('class', '')}.",
                    evidence)]


@check(RDS_STATUS)
def rds_status(ctx: Context) -> CheckResult:
    """RDS instance status (describe_db_instances)."""
    df = rds_instance_frame(ctx)
    return CheckResult(findings=judge_rds_status(df), data=df)


@check(CONNECTIVITY)
def connectivity(ctx: Context) -> CheckResult:
    """Connect to PostgreSQL with a short timeout."""
    attempt = ctx.db.probe()
    db = ctx.settings.database
    resource = f"db:{db.instance}"
    evidence = {"host": db.host, "port": db.port, "seconds": round(attempt.seconds, 3),
                "error_class": attempt.kind}
    df = pd.DataFrame([{"host": db.host, "port": db.port, "ok": attempt.ok,
                        "seconds": round(attempt.seconds, 3), "error_class": attempt.kind,
                        "error": attempt.message}])
    return CheckResult(findings=[judge_connectivity(attempt, resource, evidence)], data=df)


def judge_connectivity(attempt: ConnectAttempt, resource: str, evidence: dict, cid: str = CONNECTIVITY) -> Finding:
    """The database is down (critical) or rmsops could not get in (error: the check could not run)."""
    kind = attempt.kind
    if attempt.ok:
        return Finding(cid, Severity.OK, resource, "PostgreSQL accepts connections",
                       f"Connected in {attempt.seconds:.2f} s.", evidence)
    if kind in ACCESS_KINDS:
        # Not the database's fault: it may be fine. Saying "cannot connect" (critical) here
        # would send people after a healthy database.
        return Finding(cid, Severity.ERROR, resource,
                       f"rmsops could not get into PostgreSQL ({kind}): {ACCESS_TITLES.get(kind, kind)}",
                       f"{attempt.message.rstrip('.')}. This says nothing about the database's health: the server "
                       "answered, rmsops' own access failed (db.rds.status and the application checks "
                       "show whether the database serves).", {**evidence, "database_down": False},
                       RESOLUTION_BY_KIND[kind])
    return Finding(cid, Severity.CRITICAL, resource,
                   f"{DOWN_TITLES.get(kind, 'Cannot connect to PostgreSQL')} ({kind})", attempt.message,
                   {**evidence, "database_down": True}, RESOLUTION_BY_KIND.get(kind, NETWORK))


def judge_saturation(used: int, max_connections: int, reserved: int, thresholds: dict[str, float],
                     instance: str, cid: str = CONNECTIONS_SATURATION) -> list[Finding]:
    available = max(1, max_connections - reserved)
    pct = 100.0 * used / available
    evidence = {"used": used, "max_connections": max_connections, "reserved": reserved,
                "available": available, "percent": round(pct, 1),
                "warning_pct": thresholds["db_saturation_warning_pct"],
                "critical_pct": thresholds["db_saturation_critical_pct"]}
    detail = (f"{used} client connections of {available} available "
              f"({max_connections} max, {reserved} reserved): {pct:.0f}%.")
    if pct >= thresholds["db_saturation_critical_pct"]:
        severity, title = Severity.CRITICAL, f"Connections at {pct:.0f}% of the limit"
    elif pct >= thresholds["db_saturation_warning_pct"]:
        severity, title = Severity.WARNING, f"Connections at {pct:.0f}% of the limit"
    else:
        severity, title = Severity.OK, f"Connections at {pct:.0f}% of the limit"
    resolution = LIMIT_REACHED if severity != Severity.OK else ""
    return [Finding(cid, severity, f"db:{instance}", title, detail, evidence, resolution)]


@check(CONNECTIONS_SATURATION)
def saturation(ctx: Context) -> CheckResult:
    """Client connections against max_connections minus reserved slots."""
    df = ctx.db.frame(SATURATION_SQL)
    row = df.iloc[0]
    findings = judge_saturation(int(row["used"]), int(row["max_connections"]), int(row["reserved"]),
                                ctx.thresholds, ctx.settings.database.instance)
    return CheckResult(findings=findings, data=df)


def judge_by_state(states: pd.DataFrame, idle_tx: pd.DataFrame, thresholds: dict[str, float],
                   instance: str, cid: str = CONNECTIONS_BY_STATE) -> list[Finding]:
    resource = f"db:{instance}"
    limit = int(thresholds["db_idle_in_transaction_max"])
    max_age = thresholds["db_idle_in_transaction_age_seconds"]
    count = len(idle_tx)
    oldest = float(idle_tx["idle_seconds"].max()) if count else 0.0
    by_state = {str(r.state): int(r.connections) for r in states.itertuples(index=False)}
    evidence = {"by_state": by_state, "idle_in_transaction": count,
                "oldest_idle_in_transaction_seconds": round(oldest, 1), "max_count": limit,
                "max_age_seconds": max_age,
                "sessions": idle_tx[["pid", "user", "application_name", "idle_seconds"]]
                .round(1).head(20).to_dict("records") if count else []}
    detail = ", ".join(f"{k} {v}" for k, v in by_state.items()) or "no client connections"
    if count > limit or oldest > max_age:
        apps = sorted({str(a) for a in idle_tx["application_name"] if a}) or ["(unnamed)"]
        return [Finding(cid, Severity.WARNING, resource,
                        f"{count} sessions idle in transaction (oldest {oldest / 60:.1f} min)",
                        f"{detail}. Idle-in-transaction sessions hold connections and locks; "
                        f"applications: {', '.join(apps)}.", evidence,
                        "Find the application that leaves transactions open (see the sessions "
                        "table) and fix its connection pooling; set "
                        "idle_in_transaction_session_timeout. Terminating sessions is a DBA decision.")]
    return [Finding(cid, Severity.OK, resource, "No connections stuck idle in transaction",
                    detail + ".", evidence)]


def _by_state_plot(result: CheckResult, ctx: Context):
    return plots.bars(result.data, "state", "connections", "Client connections by state")


@check(CONNECTIONS_BY_STATE, plot=_by_state_plot)
def by_state(ctx: Context) -> CheckResult:
    """Client backends grouped by state; sessions idle in transaction."""
    states = ctx.db.frame(BY_STATE_SQL)
    idle_tx = ctx.db.frame(IDLE_IN_TRANSACTION_SQL)
    findings = judge_by_state(states, idle_tx, ctx.thresholds, ctx.settings.database.instance)
    return CheckResult(findings=findings, data=states, frames={"idle_in_transaction": idle_tx})


def max_connections(ctx: Context) -> int | None:
    """max_connections from the database itself, or None when it cannot be reached."""
    try:
        return int(ctx.db.scalar("SELECT current_setting('max_connections')::int"))
    except Exception:  # noqa: BLE001 - the connectivity check reports why
        return None


def judge_trend(df: pd.DataFrame, limit: int | None, thresholds: dict[str, float],
                instance: str, cid: str = CONNECTIONS_TREND) -> list[Finding]:
    resource = f"db:{instance}"
    pct = thresholds["db_connections_trend_pct"]
    if df.empty:
        return [Finding(cid, Severity.INFO, resource, "No DatabaseConnections datapoints in the window",
                        "CloudWatch returned nothing: check database.instance and "
                        "cloudwatch:GetMetricData permission.", {"limit": limit})]
    peak = float(df["value"].max())
    evidence = {"peak": peak, "limit": limit, "threshold_pct": pct,
                "peak_at": df.loc[df["value"].idxmax(), "timestamp"]}
    if limit is None:
        return [Finding(cid, Severity.INFO, resource, f"Peak {peak:g} connections (limit unknown)",
                        "max_connections could not be read from the database.", evidence)]
    share = 100.0 * peak / limit
    evidence["peak_pct"] = round(share, 1)
    detail = f"Peak {peak:g} of {limit} max_connections ({share:.0f}%) in the window."
    if share > pct:
        return [Finding(cid, Severity.WARNING, resource, f"DatabaseConnections peaked at {share:.0f}% of the limit",
                        detail, evidence, LIMIT_REACHED)]
    return [Finding(cid, Severity.OK, resource, f"DatabaseConnections peaked at {share:.0f}% of the limit",
                    detail, evidence)]


def _trend_plot(result: CheckResult, ctx: Context):
    limit = result.findings[0].evidence.get("limit")
    lines = {}
    if limit:
        lines = {"max_connections": limit,
                 f"{ctx.thresholds['db_connections_trend_pct']:g}%":
                     limit * ctx.thresholds["db_connections_trend_pct"] / 100}
    return plots.timeseries(result.data, "RDS DatabaseConnections (maximum)", "connections",
                            lines=lines, markers=result.markers,
                            window=(ctx.window.start, ctx.window.end))


@check(CONNECTIONS_TREND, plot=_trend_plot, marks=deployment_markers)
def trend(ctx: Context) -> CheckResult:
    """CloudWatch DatabaseConnections over the window against the limit."""
    instance = ctx.settings.database.instance
    query = metrics.MetricQuery("conn", "AWS/RDS", "DatabaseConnections",
                                (("DBInstanceIdentifier", instance),), "Maximum", "DatabaseConnections")
    df = metrics.fetch(ctx, [query])
    return CheckResult(findings=judge_trend(df, max_connections(ctx), ctx.thresholds, instance), data=df)
