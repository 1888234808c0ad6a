"""14 backup-recovery: the judges as pure functions, the checks and the restore actions against moto,
then the served demo and the notebook under papermill.

What moto cannot be told through the API is injected into its backend and said so where it happens:
``LatestRestorableTime`` (moto answers "now"; a property patch makes it lag), snapshot creation
times (``created``), automated snapshots (``create_auto_snapshot``), and ``RestoreWindow`` of
``describe_db_instance_automated_backups`` (moto leaves it out: a botocore Stubber gives it).
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import nbformat
import pandas as pd
import pytest
from botocore.stub import Stubber
from matplotlib.figure import Figure
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID

from rmsops import actions
from rmsops.actions.base import execute, plan
from rmsops.actions.rds import default_target, parse_time
from rmsops.checks import backup
from rmsops.checks.backup import RestoreWindow, judge_pitr, judge_retention, judge_snapshots
from rmsops.core import registry, thresholds
from rmsops.core.context import Context
from rmsops.core.errors import UserError
from rmsops.demo.areas.database import lag_restorable_time
from rmsops.execution.runner import collect_findings
from tests.demo_server import served
from tests.judging import CRITICAL, ERROR, INFO, OK, WARNING

RUNBOOK = "14-backup-recovery"
INSTANCE = "rms-production-db"
REGION = "us-east-1"
DEFAULTS = thresholds.merge()
NOW = datetime(2026, 11, 28, 20, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parent.parent


# =============================================================================================
# Layer 1: judges
# =============================================================================================


def instance_row(days: int | None = 7, status: str = "available") -> pd.DataFrame:
    if status == "not found":
        return pd.DataFrame([{"instance": INSTANCE, "status": status}])
    return pd.DataFrame([{"instance": INSTANCE, "status": status, "backup_retention_days": days,
                          "backup_window": "03:00-03:30"}])


@pytest.mark.parametrize(("days", "expected"), [(0, CRITICAL), (1, OK), (35, OK)])
def test_retention_zero_is_critical(days, expected):
    [finding] = judge_retention(instance_row(days))
    assert finding.severity is expected and finding.evidence["backup_retention_days"] == days
    if expected is CRITICAL:
        assert "--backup-retention-period 7" in finding.resolution


def test_retention_of_a_missing_instance_is_critical():
    [finding] = judge_retention(instance_row(status="not found"))
    assert finding.severity is CRITICAL and "not found" in finding.title


@pytest.mark.parametrize(("lag_minutes", "expected"), [(0, OK), (15, OK), (15.5, WARNING), (240, WARNING)])
def test_pitr_lag_over_15_minutes_is_a_warning(lag_minutes, expected):
    window = RestoreWindow(NOW - timedelta(days=7), NOW - timedelta(minutes=lag_minutes), "RestoreWindow")
    [finding] = judge_pitr(INSTANCE, True, window, 7, NOW, DEFAULTS)
    assert finding.severity is expected and finding.evidence["lag_minutes"] == lag_minutes
    assert finding.evidence["earliest_from"] == "RestoreWindow"


def test_pitr_without_a_restorable_time_and_without_the_instance():
    [none] = judge_pitr(INSTANCE, True, RestoreWindow(None, None, ""), 0, NOW, DEFAULTS)
    assert none.severity is WARNING and "automated backups are off" in none.detail
    [missing] = judge_pitr(INSTANCE, False, RestoreWindow(None, None, ""), None, NOW, DEFAULTS)
    assert missing.severity is CRITICAL


def snapshot_rows(*rows: tuple) -> pd.DataFrame:
    data = [{"snapshot": name, "type": kind, "status": status, "created": NOW - timedelta(hours=hours),
             "instance": INSTANCE, "engine_version": "15.7", "allocated_gb": 100, "encrypted": True}
            for name, kind, status, hours in rows]
    return pd.DataFrame(data, columns=backup.SNAPSHOT_COLUMNS)


def test_snapshots_newest_of_each_kind_judged_against_26_hours():
    df = snapshot_rows(("auto-old", "automated", "available", 50), ("auto-new", "automated", "available", 25.9),
                       ("manual-new", "manual", "creating", 1), ("manual-old", "manual", "available", 72))
    automated, manual = judge_snapshots(INSTANCE, True, df, 7, NOW, DEFAULTS)
    assert automated.severity is OK and automated.evidence["newest"] == "auto-new"
    assert manual.severity is WARNING and manual.evidence["newest"] == "manual-old"  # 'creating' is not a backup
    assert manual.title == "Newest manual snapshot is 3.0 days old"
    assert "create-db-snapshot" in manual.resolution


def test_snapshots_none_automated_is_a_warning_none_manual_information():
    old = snapshot_rows(("auto", "automated", "available", 27))
    automated, manual = judge_snapshots(INSTANCE, True, old, 7, NOW, DEFAULTS)
    assert (automated.severity, manual.severity) == (WARNING, INFO)
    assert "Automated backups have stopped" in automated.resolution
    empty = judge_snapshots(INSTANCE, True, snapshot_rows(), 0, NOW, DEFAULTS)
    assert [f.severity for f in empty] == [WARNING, INFO] and "automated backups are off" in empty[0].detail
    [missing] = judge_snapshots(INSTANCE, False, snapshot_rows(), None, NOW, DEFAULTS)
    assert missing.severity is CRITICAL


def test_parse_time_accepts_iso_8601_and_refuses_the_rest():
    assert parse_time("2024-01-01T12:00:00Z") == datetime(2024, 1, 1, 12, tzinfo=UTC)
    assert parse_time("2024-01-01T13:00:00+01:00") == datetime(2024, 1, 1, 12, tzinfo=UTC)
    assert parse_time("2024-01-01T12:00:00.000Z") == datetime(2024, 1, 1, 12, tzinfo=UTC)
    assert parse_time("2024-01-01 12:00") == datetime(2024, 1, 1, 12, tzinfo=UTC)  # naive: UTC
    with pytest.raises(UserError, match="not ISO 8601"):
        parse_time("yesterday noon")


# =============================================================================================
# Layer 2: moto
# =============================================================================================


@pytest.fixture(scope="module")
def moto_world():
    """One mock for the module; EC2's default VPC (slow to build) is looked up once."""
    with mock_aws():
        ec2 = boto3.client("ec2", region_name=REGION)
        subnets = [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]][:2]
        sg = ec2.describe_security_groups(GroupNames=["default"])["SecurityGroups"][0]["GroupId"]
        yield subnets, sg


def rds_backend():
    from moto.rds.models import rds_backends

    return rds_backends[DEFAULT_ACCOUNT_ID][REGION]


@pytest.fixture
def rds(moto_world):
    """A clean RDS with rms-production-db (in a subnet group, with a security group)."""
    rds_backend().reset()
    subnets, sg = moto_world
    client = boto3.client("rds", region_name=REGION)
    client.create_db_subnet_group(DBSubnetGroupName="rms-db", DBSubnetGroupDescription="rms", SubnetIds=subnets)
    client.create_db_instance(DBInstanceIdentifier=INSTANCE, DBInstanceClass="db.t3.medium", Engine="postgres",
                              AllocatedStorage=100, MasterUsername="rms_admin", MasterUserPassword="x" * 12,
                              BackupRetentionPeriod=7, DBSubnetGroupName="rms-db", VpcSecurityGroupIds=[sg])
    client.sg = sg  # for assertions
    return client


@pytest.fixture
def open_ctx(env_file, tmp_path):
    built: list[Context] = []

    def build(**changes) -> Context:
        ctx = Context.open(env_file(**changes), output_dir=tmp_path / "incident")
        built.append(ctx)
        return ctx

    yield build
    for ctx in built:
        ctx.close()


def run(ctx: Context, check_id: str):
    result = ctx.run(check_id)
    assert all(f.severity is not ERROR for f in result.findings), result.findings
    spec = registry.get(check_id)
    if spec.plot is not None:
        assert isinstance(spec.plot(result, ctx), Figure)
    return result


def age_snapshot(snapshot_id: str, age: timedelta) -> None:
    """moto stamps snapshots with the creation moment; set it back (backend attribute ``created``)."""
    rds_backend().database_snapshots[snapshot_id].created = (datetime.now(UTC) - age).replace(tzinfo=None)


def add_automated(days_ago: float) -> str:
    """Automated snapshots cannot be made through the API: moto's backend makes them."""
    moment = (datetime.now(UTC) - timedelta(days=days_ago)).replace(tzinfo=None)
    snapshot_id = f"rds:{INSTANCE}-{moment:%Y-%m-%d-%H-%M-%S}"
    rds_backend().create_auto_snapshot(INSTANCE, snapshot_id)
    rds_backend().database_snapshots[snapshot_id].created = moment
    return snapshot_id


def moto_created_automated() -> str:
    """The automated snapshot moto takes when the instance is created."""
    return next(s for s, snap in rds_backend().database_snapshots.items() if snap.snapshot_type == "automated")


def test_healthy_instance_is_ok_on_every_check(rds, open_ctx):
    rds.create_db_snapshot(DBInstanceIdentifier=INSTANCE, DBSnapshotIdentifier="before-release")
    ctx = open_ctx()
    [retention] = run(ctx, "backup.rds.retention").findings
    assert retention.severity is OK and retention.evidence["backup_retention_days"] == 7
    pitr = run(ctx, "backup.rds.pitr")
    assert [f.severity for f in pitr.findings] == [OK] and pitr.findings[0].evidence["lag_minutes"] < 1
    assert pitr.findings[0].evidence["earliest_from"] == "oldest automated snapshot"
    assert list(pitr.frames["snapshots"]["snapshot"]) == ["before-release", moto_created_automated()] or \
        set(pitr.frames["snapshots"]["snapshot"]) == {"before-release", moto_created_automated()}
    snaps = run(ctx, "backup.rds.snapshots")
    assert [(f.resource, f.severity) for f in snaps.findings] == [
        (f"db:{INSTANCE} automated snapshots", OK), (f"db:{INSTANCE} manual snapshots", OK)]


def test_retention_zero_is_critical_from_describe_db_instances(rds, open_ctx):
    rds.modify_db_instance(DBInstanceIdentifier=INSTANCE, BackupRetentionPeriod=0, ApplyImmediately=True)
    [finding] = run(open_ctx(), "backup.rds.retention").findings
    assert finding.severity is CRITICAL and finding.evidence["backup_retention_days"] == 0


def test_missing_instance_is_critical_for_every_check(rds, open_ctx):
    ctx = open_ctx(database={"instance": "no-such-db"})
    for result in ctx.run_all(RUNBOOK):
        assert [f.severity for f in result.findings] == [CRITICAL], result.check


def test_lagging_restorable_time_is_a_warning(rds, open_ctx):
    undo = []
    lag_restorable_time(INSTANCE, timedelta(minutes=42), lambda name, fn: undo.append(fn))
    try:
        [finding] = run(open_ctx(), "backup.rds.pitr").findings
    finally:
        for fn in undo:
            fn()
    assert finding.severity is WARNING and 41.5 < finding.evidence["lag_minutes"] < 43
    assert finding.title == "Point-in-time recovery is 42 min behind"
    [after] = run(open_ctx(), "backup.rds.pitr").findings  # the patch is gone
    assert after.severity is OK


def test_old_snapshots_are_warnings(rds, open_ctx):
    age_snapshot(moto_created_automated(), timedelta(hours=30))
    rds.create_db_snapshot(DBInstanceIdentifier=INSTANCE, DBSnapshotIdentifier="weekly-manual")
    age_snapshot("weekly-manual", timedelta(days=3))
    automated, manual = run(open_ctx(), "backup.rds.snapshots").findings
    assert automated.severity is WARNING and 29.9 < automated.evidence["age_hours"] < 30.1
    assert manual.severity is WARNING and manual.evidence["newest"] == "weekly-manual"


def test_restore_window_prefers_the_automated_backups_restore_window(rds, open_ctx):
    ctx = open_ctx()
    earliest, latest = NOW - timedelta(days=7), NOW - timedelta(minutes=3)
    client = ctx.client("rds")
    instance = rds.describe_db_instances(DBInstanceIdentifier=INSTANCE)["DBInstances"][0]
    # moto leaves RestoreWindow out of describe_db_instance_automated_backups: stub what AWS returns
    with Stubber(client) as stub:
        stub.add_response("describe_db_instances", {"DBInstances": [{**instance, "LatestRestorableTime": latest}]},
                          {"DBInstanceIdentifier": INSTANCE})
        stub.add_response("describe_db_instance_automated_backups", {"DBInstanceAutomatedBackups": [
            {"DBInstanceIdentifier": INSTANCE, "RestoreWindow": {"EarliestTime": earliest, "LatestTime": latest}}]},
            {"DBInstanceIdentifier": INSTANCE})
        window = backup.restore_window(ctx)
    assert window == RestoreWindow(earliest, latest, "RestoreWindow")


def test_restore_window_falls_back_to_the_oldest_automated_snapshot(rds, open_ctx):
    add_automated(3)
    oldest = add_automated(5)
    window = backup.restore_window(open_ctx())
    assert window.earliest_source == "oldest automated snapshot"
    assert window.earliest == backup.utc(rds_backend().database_snapshots[oldest].created)
    assert abs((datetime.now(UTC) - window.latest).total_seconds()) < 60


# --- the restore actions -----------------------------------------------------------------------


def instance_ids(rds) -> set[str]:
    return {i["DBInstanceIdentifier"] for i in rds.describe_db_instances()["DBInstances"]}


def test_restore_snapshot_plans_the_guides_command_into_a_new_instance(rds, open_ctx):
    rds.create_db_snapshot(DBInstanceIdentifier=INSTANCE, DBSnapshotIdentifier="before-release")
    ctx = open_ctx()
    planned = plan(ctx, "restore-rds-snapshot", snapshot="before-release")
    target = default_target()
    assert planned.target == target and target.startswith("rms-recovery-")
    assert planned.params == {"DBInstanceIdentifier": target, "DBSnapshotIdentifier": "before-release",
                              "DBSubnetGroupName": "rms-db", "VpcSecurityGroupIds": [rds.sg]}
    assert planned.cli == (f"aws rds restore-db-instance-from-db-snapshot --db-instance-identifier {target} "
                           f"--db-snapshot-identifier before-release --db-subnet-group-name rms-db "
                           f"--vpc-security-group-ids {rds.sg}")
    record = execute(ctx, planned)  # a dry run
    assert record.dry_run and record.outcome == "planned" and target not in instance_ids(rds)
    done = execute(ctx, planned, confirm="yes")
    assert done.outcome == "done" and instance_ids(rds) == {INSTANCE, target}
    audit = [json.loads(line) for line in (ctx.output_dir / "audit.jsonl").read_text().splitlines()]
    assert [r["outcome"] for r in audit] == ["planned", "done"]


def test_restore_snapshot_latest_takes_the_newest_available_snapshot(rds, open_ctx):
    rds.create_db_snapshot(DBInstanceIdentifier=INSTANCE, DBSnapshotIdentifier="older-manual")
    age_snapshot("older-manual", timedelta(days=2))
    age_snapshot(moto_created_automated(), timedelta(hours=5))
    planned = plan(open_ctx(), "restore-rds-snapshot")
    assert planned.params["DBSnapshotIdentifier"] == moto_created_automated()
    assert "automated snapshot" in planned.summary


@pytest.mark.parametrize("target", [INSTANCE, INSTANCE.upper()])
def test_a_restore_never_targets_an_existing_instance(rds, open_ctx, target):
    ctx = open_ctx()
    with pytest.raises(UserError, match="existing DB instance"):
        plan(ctx, "restore-rds-snapshot", target=target)
    with pytest.raises(UserError, match="existing DB instance"):
        plan(ctx, "restore-rds-point-in-time", target=target)
    plan(ctx, "restore-rds-snapshot", target="rms-recovery-manual")  # any new name is fine


def test_the_default_target_is_refused_once_it_exists(rds, open_ctx):
    ctx = open_ctx()
    execute(ctx, plan(ctx, "restore-rds-point-in-time"), confirm="yes")
    with pytest.raises(UserError, match=f"choose another target \\(e.g. target={default_target()}-2\\)"):
        plan(open_ctx(), "restore-rds-point-in-time")


@pytest.mark.parametrize("target", ["1starts-with-digit", "double--hyphen", "ends-with-", "under_score", "x" * 64])
def test_invalid_identifiers_are_refused(rds, open_ctx, target):
    with pytest.raises(UserError, match="not a valid DB instance identifier"):
        plan(open_ctx(), "restore-rds-snapshot", target=target)


def test_unknown_snapshot_is_refused(rds, open_ctx):
    with pytest.raises(UserError, match="snapshot 'nope' not found"):
        plan(open_ctx(), "restore-rds-snapshot", snapshot="nope")


def test_point_in_time_latest_and_a_time_inside_the_window(rds, open_ctx):
    oldest = add_automated(2)
    ctx = open_ctx()
    latest = plan(ctx, "restore-rds-point-in-time", target="rms-recovery-latest")
    assert latest.params["UseLatestRestorableTime"] is True and "RestoreTime" not in latest.params
    assert latest.cli == (f"aws rds restore-db-instance-to-point-in-time --source-db-instance-identifier {INSTANCE} "
                          "--target-db-instance-identifier rms-recovery-latest --use-latest-restorable-time "
                          f"--db-subnet-group-name rms-db --vpc-security-group-ids {rds.sg}")
    created = backup.utc(rds_backend().database_snapshots[oldest].created)
    moment = (created + timedelta(hours=1)).replace(microsecond=0)
    text = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    at = plan(ctx, "restore-rds-point-in-time", time=text, target="rms-recovery-at")
    assert at.params["RestoreTime"] == moment
    assert f"--restore-time {moment:%Y-%m-%dT%H:%M:%S}.000Z" in at.cli
    done = execute(ctx, at, confirm="rms-recovery-at")
    assert done.outcome == "done" and "rms-recovery-at" in instance_ids(rds)


@pytest.mark.parametrize("offset", [timedelta(hours=-1), timedelta(days=1)])
def test_point_in_time_outside_the_restorable_window_is_refused(rds, open_ctx, offset):
    oldest = add_automated(2)
    ctx = open_ctx()
    window = backup.restore_window(ctx)
    edge = window.earliest if offset < timedelta(0) else window.latest
    assert edge == (backup.utc(rds_backend().database_snapshots[oldest].created) if offset < timedelta(0)
                    else window.latest)
    with pytest.raises(UserError, match="outside the restorable window"):
        plan(ctx, "restore-rds-point-in-time", time=(edge + offset).isoformat())


def test_protected_environment_needs_the_target_named(rds, open_ctx):
    ctx = open_ctx(protected=True)
    planned = plan(ctx, "restore-rds-point-in-time", target="rms-recovery-prod")
    with pytest.raises(UserError, match="must name the target"):
        execute(ctx, planned, confirm="yes")
    assert "rms-recovery-prod" not in instance_ids(rds)
    assert "restore-rds-point-in-time" in actions.ACTIONS and "restore-rds-snapshot" in actions.ACTIONS


# =============================================================================================
# Layer 3: the served demo and the notebook
# =============================================================================================


def demo_results(scenario: str) -> dict[str, list]:
    ctx = Context.open(served(scenario).env_file)
    try:
        return {r.check: r.findings for r in ctx.run_all(RUNBOOK)}
    finally:
        ctx.close()


def test_demo_incident_shows_pitr_lag_and_an_old_manual_snapshot():
    results = demo_results("incident")
    [pitr] = results["backup.rds.pitr"]
    assert pitr.severity is WARNING and 39 < pitr.evidence["lag_minutes"] < 60
    assert pitr.evidence["earliest_from"] == "oldest automated snapshot"
    by_resource = {f.resource: f for f in results["backup.rds.snapshots"]}
    assert by_resource[f"db:{INSTANCE} manual snapshots"].severity is WARNING
    assert by_resource[f"db:{INSTANCE} automated snapshots"].severity is OK
    assert by_resource[f"db:{INSTANCE} automated snapshots"].evidence["count"] == 7  # 6 days + today's
    assert [f.severity for f in results["backup.rds.retention"]] == [OK]


def test_demo_healthy_has_nothing_above_info():
    results = demo_results("healthy")
    loud = [f for fs in results.values() for f in fs if f.severity in (WARNING, CRITICAL, ERROR)]
    assert not loud, loud


def test_notebook_runs_under_papermill_against_the_demo(tmp_path):
    demo = served("incident")
    out = tmp_path / "14.ipynb"
    done = subprocess.run([str(Path(sys.executable).parent / "papermill"), "--no-progress-bar",
                           str(ROOT / "notebooks" / f"{RUNBOOK}.ipynb"), str(out), "-p", "env", str(demo.env_file),
                           "-p", "output_dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    notebook = nbformat.read(out, as_version=4)
    found = {(f.check, f.severity) for f in collect_findings(notebook)}
    assert ("backup.rds.pitr", WARNING) in found and ("backup.rds.snapshots", WARNING) in found
    audit = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [(r["action"], r["outcome"]) for r in audit] == [("restore-rds-snapshot", "planned"),
                                                          ("restore-rds-point-in-time", "planned")]
    assert all(r["target"].startswith("rms-recovery-") for r in audit)
