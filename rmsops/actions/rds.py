"""RDS restores from the guide's "Point-in-Time Recovery".

Both actions create a NEW instance: the target identifier must not name any existing
instance (a restore never overwrites anything), and defaults to ``rms-recovery-YYYYMMDD``
(UTC), as in the guide. The restored instance is placed in the source instance's DB subnet
group and security groups when they are known, so it lands beside the original instead of in
the default VPC.
"""

from __future__ import annotations

import re
import shlex
from datetime import UTC, datetime
from types import ModuleType
from typing import TYPE_CHECKING, Any

from rmsops.actions.base import ActionPlan, action
from rmsops.core.errors import UserError
from rmsops.core.findings import iso

if TYPE_CHECKING:

    from rmsops.core.context import Context

_IDENTIFIER = re.compile(r"[A-Za-z](?:[A-Za-z0-9]|-(?!-)){0,62}")


def _rds() -> ModuleType:
    # The fetches (and their ctx.memo keys) are shared with the 14-backup-recovery checks; imported
    # late so that importing the actions stays light (pandas, botocore).
    from rmsops.sources import rds

    return rds


def default_target(now: datetime | None = None) -> str:
    return f"rms-recovery-{(now or datetime.now(UTC)):%Y%m%d}"


def existing_instances(ctx: Context) -> set[str]:
    """Every DB instance identifier in the account and region (lower case, as RDS stores them)."""
    def fetch() -> set[str]:
        names: set[str] = set()
        for page in ctx.client("rds").get_paginator("describe_db_instances").paginate():
            names.update(i["DBInstanceIdentifier"].lower() for i in page.get("DBInstances", []))
        return names

    return ctx.memo("rds.instance_identifiers", fetch)  # both restore actions ask, once a run


def checked_target(ctx: Context, target: str) -> str:
    target = (target or default_target()).strip()
    if not _IDENTIFIER.fullmatch(target) or target.endswith("-"):
        raise UserError(f"target {target!r} is not a valid DB instance identifier (1-63 letters, digits "
                        "and single hyphens, starting with a letter, not ending with a hyphen)")
    if target.lower() in existing_instances(ctx):
        raise UserError(f"target {target!r} is an existing DB instance: a restore always creates a new "
                        f"instance; choose another target (e.g. target={default_target()}-2)")
    return target


def _network(ctx: Context, source: str) -> tuple[dict[str, Any], str]:
    """Subnet group and security groups of the source instance, as boto3 params and CLI flags."""
    instance = _rds().db_instance(ctx, source)
    if instance is None:
        return {}, ""
    params: dict[str, Any] = {}
    cli = ""
    group = (instance.get("DBSubnetGroup") or {}).get("DBSubnetGroupName")
    if group:
        params["DBSubnetGroupName"] = group
        cli += f" --db-subnet-group-name {shlex.quote(group)}"
    sgs = [g["VpcSecurityGroupId"] for g in instance.get("VpcSecurityGroups", [])
           if g.get("VpcSecurityGroupId") and g.get("Status", "active") == "active"]
    if sgs:
        params["VpcSecurityGroupIds"] = sgs
        cli += " --vpc-security-group-ids " + " ".join(shlex.quote(s) for s in sgs)
    return params, cli


def _snapshot(ctx: Context, snapshot: str) -> dict[str, Any]:
    """The snapshot named (any instance), or with 'latest' the instance's newest available one."""
    if snapshot == "latest":
        snaps = _rds().snapshots_frame(ctx)
        available = snaps[snaps["status"] == "available"] if not snaps.empty else snaps
        if available.empty:
            raise UserError(f"no available snapshot of {ctx.settings.database.instance} to restore")
        newest = available.sort_values("created", ascending=False).iloc[0]
        return {"DBSnapshotIdentifier": newest["snapshot"], "SnapshotType": newest["type"],
                "DBInstanceIdentifier": newest["instance"], "SnapshotCreateTime": newest["created"]}
    rds = ctx.client("rds")
    try:
        found = rds.describe_db_snapshots(DBSnapshotIdentifier=snapshot)["DBSnapshots"]
    except rds.exceptions.DBSnapshotNotFoundFault:
        found = []
    if not found:
        raise UserError(f"snapshot {snapshot!r} not found (snapshot=latest takes the newest of "
                        f"{ctx.settings.database.instance})")
    return found[0]


@action("restore-rds-snapshot")
def restore_snapshot(ctx: Context, snapshot: str = "latest", target: str = "") -> ActionPlan:
    """Guide "Point-in-Time Recovery": restore a snapshot into a new instance."""
    snap = _snapshot(ctx, str(snapshot).strip())
    snapshot_id = snap["DBSnapshotIdentifier"]
    target = checked_target(ctx, target)
    source = snap.get("DBInstanceIdentifier") or ctx.settings.database.instance
    network, network_cli = _network(ctx, source)
    created = _rds().utc(snap.get("SnapshotCreateTime"))
    taken = f" taken {iso(created)}" if created else ""
    return ActionPlan(
        action="restore-rds-snapshot", environment=ctx.settings.name, target=target,
        summary=f"create a NEW RDS instance {target} from the {snap.get('SnapshotType', '')} snapshot "
                f"{snapshot_id}{taken} (nothing existing is changed; point the application at it only "
                "after checking the data)",
        service="rds", operation="restore_db_instance_from_db_snapshot",
        params={"DBInstanceIdentifier": target, "DBSnapshotIdentifier": snapshot_id, **network},
        cli=f"aws rds restore-db-instance-from-db-snapshot --db-instance-identifier {shlex.quote(target)} "
            f"--db-snapshot-identifier {shlex.quote(snapshot_id)}{network_cli}",
    )


def parse_time(text: str) -> datetime:
    """ISO 8601 (``2024-01-01T12:00:00Z``, with an offset, or naive = UTC) as an aware UTC datetime."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise UserError(f"time {text!r} is not ISO 8601 (e.g. 2024-01-01T12:00:00Z), nor 'latest'") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@action("restore-rds-point-in-time")
def restore_point_in_time(ctx: Context, time: str = "latest", target: str = "") -> ActionPlan:
    """Guide "Point-in-Time Recovery": restore the instance as of a moment into a new instance."""
    source = ctx.settings.database.instance
    if _rds().db_instance(ctx, source) is None:
        raise UserError(f"source instance {source} not found")
    window = _rds().restore_window(ctx, source)
    latest = str(time).strip().lower() in ("", "latest")
    target = checked_target(ctx, target)
    network, network_cli = _network(ctx, source)
    params: dict[str, Any] = {"SourceDBInstanceIdentifier": source, "TargetDBInstanceIdentifier": target}
    if latest:
        if window.latest is None:
            raise UserError(f"{source} has no LatestRestorableTime: automated backups are off, so there is "
                            "no point-in-time recovery (restore a snapshot instead)")
        params["UseLatestRestorableTime"] = True
        when, when_cli = f"its latest restorable time ({iso(window.latest)})", "--use-latest-restorable-time"
    else:
        moment = parse_time(str(time))
        if not window.contains(moment):
            earliest = iso(window.earliest) if window.earliest else "unknown"
            latest_text = iso(window.latest) if window.latest else "unknown"
            raise UserError(f"time {iso(moment)} is outside the restorable window of {source} "
                            f"[{earliest}, {latest_text}]")
        params["RestoreTime"] = moment
        stamp = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
        when, when_cli = iso(moment), f"--restore-time {stamp}"
    return ActionPlan(
        action="restore-rds-point-in-time", environment=ctx.settings.name, target=target,
        summary=f"create a NEW RDS instance {target} from {source} as of {when} (nothing existing is "
                "changed; point the application at it only after checking the data)",
        service="rds", operation="restore_db_instance_to_point_in_time",
        params={**params, **network},
        cli=f"aws rds restore-db-instance-to-point-in-time --source-db-instance-identifier "
            f"{shlex.quote(source)} --target-db-instance-identifier {shlex.quote(target)} "
            f"{when_cli}{network_cli}",
    )
