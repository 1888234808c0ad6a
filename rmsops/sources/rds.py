"""The RDS instance, its automated-backup window and snapshots: read by the backup checks and the restore action."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd
from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from rmsops.core.context import Context


SNAPSHOT_COLUMNS = ["snapshot", "type", "status", "created", "instance", "engine_version",
                    "allocated_gb", "encrypted"]


@dataclass(frozen=True)
class RestoreWindow:
    earliest: datetime | None
    latest: datetime | None
    earliest_source: str  # "RestoreWindow", "oldest automated snapshot" or ""

    def contains(self, moment: datetime) -> bool:
        return ((self.earliest is None or moment >= self.earliest)
                and (self.latest is None or moment <= self.latest))


def utc(moment: Any) -> datetime | None:
    if moment is None or (not isinstance(moment, datetime) and pd.isna(moment)):
        return None
    if isinstance(moment, pd.Timestamp):
        moment = moment.to_pydatetime()
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def db_instance(ctx: Context, name: str | None = None) -> dict[str, Any] | None:
    """describe_db_instances of one instance (default: the environment's), None when not found."""
    name = name or ctx.settings.database.instance

    def fetch() -> dict[str, Any] | None:
        rds = ctx.client("rds")
        try:
            return rds.describe_db_instances(DBInstanceIdentifier=name)["DBInstances"][0]
        except rds.exceptions.DBInstanceNotFoundFault:
            return None

    return ctx.memo(f"rds.describe_db_instances:{name}", fetch)


def snapshots_frame(ctx: Context, name: str | None = None) -> pd.DataFrame:
    """Automated and manual snapshots of the instance, newest first."""
    name = name or ctx.settings.database.instance

    def fetch() -> pd.DataFrame:
        rds = ctx.client("rds")
        rows = []
        for kind in ("automated", "manual"):
            for page in rds.get_paginator("describe_db_snapshots").paginate(
                    DBInstanceIdentifier=name, SnapshotType=kind):
                for snap in page.get("DBSnapshots", []):
                    rows.append({
                        "snapshot": snap.get("DBSnapshotIdentifier", ""), "type": snap.get("SnapshotType", kind),
                        "status": snap.get("Status", ""), "created": utc(snap.get("SnapshotCreateTime")),
                        "instance": snap.get("DBInstanceIdentifier", name),
                        "engine_version": snap.get("EngineVersion", ""),
                        "allocated_gb": snap.get("AllocatedStorage"), "encrypted": snap.get("Encrypted"),
                    })
        df = pd.DataFrame(rows, columns=SNAPSHOT_COLUMNS)
        if not df.empty:
            df["created"] = pd.to_datetime(df["created"], utc=True)
            df = df.sort_values("created", ascending=False, na_position="last").reset_index(drop=True)
        return df

    return ctx.memo(f"rds.describe_db_snapshots:{name}", fetch)


def automated_backup_window(ctx: Context, name: str | None = None) -> dict[str, Any]:
    """RestoreWindow of the instance's automated backups ({} when absent or not permitted)."""
    name = name or ctx.settings.database.instance

    def fetch() -> dict[str, Any]:
        try:
            pages = ctx.client("rds").get_paginator("describe_db_instance_automated_backups").paginate(
                DBInstanceIdentifier=name)
            backups = [backup for page in pages for backup in page.get("DBInstanceAutomatedBackups", [])]
        except (ClientError, BotoCoreError):
            return {}
        for backup in backups:
            if backup.get("RestoreWindow"):
                return dict(backup["RestoreWindow"])
        return {}

    return ctx.memo(f"rds.describe_db_instance_automated_backups:{name}", fetch)


def restore_window(ctx: Context, name: str | None = None) -> RestoreWindow:
    """[earliest, latest] restorable time of the instance, as far as it is known."""
    instance = db_instance(ctx, name)
    if instance is None:
        return RestoreWindow(None, None, "")
    latest = utc(instance.get("LatestRestorableTime"))
    window = automated_backup_window(ctx, name)
    if window.get("EarliestTime"):
        return RestoreWindow(utc(window["EarliestTime"]), utc(window.get("LatestTime")) or latest,
                             "RestoreWindow")
    snaps = snapshots_frame(ctx, name)
    automated = snaps[(snaps["type"] == "automated") & snaps["created"].notna()] if not snaps.empty else snaps
    if latest is not None and not automated.empty:
        return RestoreWindow(utc(automated["created"].min()), latest, "oldest automated snapshot")
    return RestoreWindow(None, latest, "")
