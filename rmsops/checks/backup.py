"""RDS backups and the point-in-time recovery window (guide "Database Recovery").

Three reads, shared through ``ctx.memo`` by the checks and by the restore actions:

* ``describe_db_instances``: ``BackupRetentionPeriod`` and ``LatestRestorableTime``;
* ``describe_db_snapshots`` (automated and manual) for the instance;
* ``describe_db_instance_automated_backups``: its ``RestoreWindow`` gives the
  ``EarliestTime``; when the API leaves it out (moto does), the oldest automated snapshot
  stands in for it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from rmsops.core.findings import Finding, Severity, iso
from rmsops.core.registry import CheckResult, check
from rmsops.render.figures import plot_timeline  # noqa: F401 - re-exported for callers of this module
from rmsops.sources.rds import (  # noqa: F401 - re-exported for callers of this module
    SNAPSHOT_COLUMNS,
    RestoreWindow,
    automated_backup_window,
    db_instance,
    restore_window,
    snapshots_frame,
    utc,
)

if TYPE_CHECKING:
    from rmsops.core.context import Context

RUNBOOK = "14-backup-recovery"
# Check ids, declared in the catalogue (rmsops/core/runbooks.py); the judges take theirs as `cid`.
RDS_PITR = "backup.rds.pitr"
RDS_RETENTION = "backup.rds.retention"
RDS_SNAPSHOTS = "backup.rds.snapshots"


# --- fetch -------------------------------------------------------------------------------------


def instance_frame(ctx: Context) -> pd.DataFrame:
    name = ctx.settings.database.instance
    instance = db_instance(ctx)
    if instance is None:
        return pd.DataFrame([{"instance": name, "status": "not found"}])
    return pd.DataFrame([{
        "instance": name, "status": instance.get("DBInstanceStatus", ""),
        "backup_retention_days": instance.get("BackupRetentionPeriod"),
        "backup_window": instance.get("PreferredBackupWindow", ""),
        "latest_restorable_time": utc(instance.get("LatestRestorableTime")),
        "multi_az": instance.get("MultiAZ"), "deletion_protection": instance.get("DeletionProtection"),
        "copy_tags_to_snapshot": instance.get("CopyTagsToSnapshot"),
    }])


def _not_found(cid: str, name: str) -> Finding:
    return Finding(cid, Severity.CRITICAL, f"db:{name}", f"RDS instance {name} not found",
                   "describe_db_instances: DBInstanceNotFound; its backups cannot be checked.",
                   {"instance": name}, "Check database.instance in the environment file and the region.")


# --- backup.rds.retention ----------------------------------------------------------------------


def judge_retention(df: pd.DataFrame, cid: str = RDS_RETENTION) -> list[Finding]:
    row = df.iloc[0]
    name = str(row["instance"])
    if row["status"] == "not found":
        return [_not_found(cid, name)]
    days = int(row["backup_retention_days"] or 0)
    evidence = {"backup_retention_days": days, "backup_window": row.get("backup_window") or None,
                "deletion_protection": row.get("deletion_protection")}
    if days == 0:
        return [Finding(cid, Severity.CRITICAL, f"db:{name}", "Automated backups are disabled (retention 0 days)",
                        "BackupRetentionPeriod is 0: no automated snapshots and no point-in-time recovery.",
                        evidence,
                        f"Turn automated backups on: aws rds modify-db-instance --db-instance-identifier {name} "
                        "--backup-retention-period 7 --apply-immediately (changing it from 0 restarts the "
                        "instance briefly: pick a quiet moment). Take a manual snapshot now.")]
    window = f" in the window {row['backup_window']} UTC" if row.get("backup_window") else ""
    return [Finding(cid, Severity.OK, f"db:{name}", f"Automated backups kept for {days} days",
                    f"BackupRetentionPeriod {days} days; daily backups{window}.", evidence)]


@check(RDS_RETENTION)
def retention(ctx: Context) -> CheckResult:
    """Automated backup retention (BackupRetentionPeriod; 0 means no backups)."""
    df = instance_frame(ctx)
    return CheckResult(findings=judge_retention(df), data=df)


# --- backup.rds.pitr ---------------------------------------------------------------------------


def judge_pitr(name: str, found: bool, window: RestoreWindow, retention_days: int | None, now: datetime,
               thresholds: dict[str, float], cid: str = RDS_PITR) -> list[Finding]:
    if not found:
        return [_not_found(cid, name)]
    limit = thresholds["pitr_lag_minutes"]
    evidence = {"latest_restorable_time": window.latest, "earliest_restorable_time": window.earliest,
                "earliest_from": window.earliest_source or None, "retention_days": retention_days,
                "lag_minutes_threshold": limit, "checked_at": now}
    if window.latest is None:
        return [Finding(cid, Severity.WARNING, f"db:{name}", "No point-in-time recovery: no LatestRestorableTime",
                        "describe_db_instances has no LatestRestorableTime"
                        f"{' (automated backups are off)' if not retention_days else ''}.", evidence,
                        "Turn automated backups on (see backup.rds.retention); until then only manual "
                        "snapshots can be restored (restore-rds-snapshot).")]
    lag = (now - window.latest).total_seconds() / 60
    evidence["lag_minutes"] = round(lag, 1)
    span = (f" back to {iso(window.earliest)}" if window.earliest is not None else "")
    detail = f"LatestRestorableTime {iso(window.latest)}, {lag:.1f} min ago; restorable{span}."
    if lag > limit:
        return [Finding(cid, Severity.WARNING, f"db:{name}",
                        f"Point-in-time recovery is {lag:.0f} min behind", detail + f" Threshold {limit:g} min.",
                        evidence,
                        "Transaction logs are not reaching backup storage: check the instance's status and "
                        f"events (aws rds describe-events --source-identifier {name} --source-type db-instance) "
                        f"and storage. A restore now (restore-rds-point-in-time) would lose up to {lag:.0f} min.")]
    return [Finding(cid, Severity.OK, f"db:{name}", f"Point-in-time recovery is current ({lag:.1f} min behind)",
                    detail, evidence)]


@check(RDS_PITR, plot=lambda result, ctx: plot_timeline(result, ctx))
def pitr(ctx: Context) -> CheckResult:
    """Point-in-time recovery lag (LatestRestorableTime) and the restorable window."""
    name = ctx.settings.database.instance
    instance = db_instance(ctx)
    window = restore_window(ctx)
    snaps = snapshots_frame(ctx) if instance is not None else pd.DataFrame(columns=SNAPSHOT_COLUMNS)
    retention_days = int(instance.get("BackupRetentionPeriod") or 0) if instance is not None else None
    now = datetime.now(UTC)
    findings = judge_pitr(name, instance is not None, window, retention_days, now, ctx.thresholds)
    data = pd.DataFrame([{"instance": name, "earliest_restorable_time": window.earliest,
                          "latest_restorable_time": window.latest, "earliest_from": window.earliest_source,
                          "checked_at": now}])
    return CheckResult(findings=findings, data=data, frames={"snapshots": snaps})


# --- backup.rds.snapshots ----------------------------------------------------------------------


def judge_snapshots(name: str, found: bool, df: pd.DataFrame, retention_days: int | None, now: datetime,
                    thresholds: dict[str, float], cid: str = RDS_SNAPSHOTS) -> list[Finding]:
    if not found:
        return [_not_found(cid, name)]
    limit = thresholds["snapshot_max_age_hours"]
    findings = []
    for kind in ("automated", "manual"):
        part = df[(df["type"] == kind) & (df["status"] == "available")] if not df.empty else df
        resource = f"db:{name} {kind} snapshots"
        evidence: dict[str, Any] = {"type": kind, "count": len(part), "max_age_hours": limit,
                                    "retention_days": retention_days}
        if part.empty:
            if kind == "automated":
                findings.append(Finding(
                    cid, Severity.WARNING, resource, "No automated snapshot available",
                    f"describe_db_snapshots lists no available automated snapshot of {name}"
                    f"{' (automated backups are off)' if not retention_days else ''}.", evidence,
                    "Turn automated backups on (see backup.rds.retention) and take a manual snapshot now: "
                    f"aws rds create-db-snapshot --db-instance-identifier {name} --db-snapshot-identifier "
                    f"{name}-manual-$(date +%Y%m%d)."))
            else:
                findings.append(Finding(
                    cid, Severity.INFO, resource, "No manual snapshot",
                    "Manual snapshots are kept until deleted; take one before risky changes.", evidence))
            continue
        newest = part.sort_values("created", ascending=False).iloc[0]
        created = utc(newest["created"])
        age = (now - created).total_seconds() / 3600 if created is not None else float("inf")
        evidence.update({"newest": str(newest["snapshot"]), "newest_created": created,
                         "age_hours": round(age, 1) if created is not None else None,
                         "oldest_created": utc(part["created"].min())})
        detail = f"{len(part)} available; newest {newest['snapshot']} taken {iso(created) if created else '?'}"
        age_text = f"{age:.0f} h" if age < 72 else f"{age / 24:.1f} days"
        if age > limit:
            resolution = (f"Automated backups have stopped: check the backup window and the instance's events "
                          f"(aws rds describe-events --source-identifier {name} --source-type db-instance)."
                          if kind == "automated" else
                          f"Take a fresh manual snapshot before risky changes: aws rds create-db-snapshot "
                          f"--db-instance-identifier {name} --db-snapshot-identifier {name}-manual-$(date +%Y%m%d).")
            findings.append(Finding(cid, Severity.WARNING, resource,
                                    f"Newest {kind} snapshot is {age_text} old", f"{detail} (threshold {limit:g} h).",
                                    evidence, resolution))
        else:
            findings.append(Finding(cid, Severity.OK, resource, f"Newest {kind} snapshot is {age_text} old",
                                    detail + ".", evidence))
    return findings


@check(RDS_SNAPSHOTS)
def snapshots(ctx: Context) -> CheckResult:
    """Newest automated and manual snapshots of the instance, and their age."""
    name = ctx.settings.database.instance
    instance = db_instance(ctx)
    df = snapshots_frame(ctx) if instance is not None else pd.DataFrame(columns=SNAPSHOT_COLUMNS)
    retention_days = int(instance.get("BackupRetentionPeriod") or 0) if instance is not None else None
    findings = judge_snapshots(name, instance is not None, df, retention_days, datetime.now(UTC), ctx.thresholds)
    return CheckResult(findings=findings, data=df)
