"""Runbook 15 (application-recovery): the rollback choice and the terraform drift check.

Layer 1: the choice of revision and the judges as pure functions, the plan parser on terraform's
real output format. Layer 2: against moto (task definition revisions, deployments set on moto's
backend since it creates only one) and against the real terraform binary on workspaces that need
no provider (``terraform_data`` and ``output`` are built in, so nothing is downloaded: this
machine has no network). Those tests are skipped when terraform is not installed. Layer 3: the
served demo and papermill.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from moto import mock_aws

from rmsops.actions.base import plan
from rmsops.checks.recovery import (
    REVISION_COLUMNS,
    PlanRun,
    choose_last_good,
    judge_drift,
    judge_last_good,
    parse_plan,
    run_plan,
)
from rmsops.core import config, runbooks
from rmsops.core.errors import UserError
from tests import aws_seed as seed
from tests.judging import ERROR, INFO, OK, WARNING

CLUSTER = "rms-production"
ARN = "arn:aws:ecs:us-east-1:123456789012:task-definition/"
NOW = datetime(2026, 11, 28, 20, 0, tzinfo=UTC)
TERRAFORM = shutil.which("terraform")
needs_terraform = pytest.mark.skipif(TERRAFORM is None, reason="terraform is not installed")


def deployment(revision: int, status: str, state: str, days_ago: float = 0.01) -> dict:
    return {"id": f"ecs-svc/{revision}", "status": status, "taskDefinition": f"{ARN}rms-backend:{revision}",
            "rolloutState": state, "createdAt": NOW - timedelta(days=days_ago)}


def service(*deployments: dict) -> dict:
    return {"serviceName": "rms-backend", "taskDefinition": deployments[0]["taskDefinition"],
            "deployments": list(deployments)}


# =============================================================================================
# Layer 1
# =============================================================================================

def test_choice_prefers_the_completed_deployment_being_replaced():
    svc = service(deployment(5, "PRIMARY", "IN_PROGRESS"), deployment(3, "ACTIVE", "COMPLETED", days_ago=4))
    choice = choose_last_good(svc, "rms-backend:4", "the highest existing revision below the current one")
    assert choice.target == "rms-backend:3"  # not 4: revision 4 never ran a completed deployment we can see
    assert choice.evidence == "completed deployment"
    assert "ran the COMPLETED deployment ecs-svc/3" in choice.why and "rms-backend:5 is replacing" in choice.why


def test_choice_falls_back_to_the_revision_before_and_says_it_is_an_assumption():
    completed = choose_last_good(service(deployment(5, "PRIMARY", "COMPLETED")), "rms-backend:4", "below")
    assert (completed.target, completed.evidence) == ("rms-backend:4", "revision before the current")
    assert "may itself be good" in completed.why and "no older deployment history" in completed.why
    failed = choose_last_good(service(deployment(5, "PRIMARY", "FAILED")), "rms-backend:4", "below")
    assert failed.target == "rms-backend:4" and "FAILED" in failed.why


def test_choice_ignores_a_failed_older_deployment():
    svc = service(deployment(5, "PRIMARY", "IN_PROGRESS"), deployment(4, "ACTIVE", "FAILED"))
    choice = choose_last_good(svc, "rms-backend:4", "the ACTIVE deployment runs it")
    assert choice.evidence == "revision before the current"


def test_choice_with_no_earlier_revision():
    choice = choose_last_good(service(deployment(1, "PRIMARY", "COMPLETED")), None, "no revision below 1")
    assert choice.target is None and choice.evidence == "none"


def revisions(*rows: tuple[int, str]) -> pd.DataFrame:
    return pd.DataFrame([{"service": "rms-backend", "task_definition": f"rms-backend:{r}", "revision": r,
                          "status": status, "registered_at": NOW, "images": f"ecr/rms-backend:1.{r}",
                          "deployment_status": "", "rollout_state": "", "deployed_at": None}
                         for r, status in rows], columns=REVISION_COLUMNS)


def test_judge_last_good_is_info_naming_the_action():
    choice = choose_last_good(service(deployment(5, "PRIMARY", "IN_PROGRESS"), deployment(3, "ACTIVE", "COMPLETED")),
                              "rms-backend:4", "below")
    finding = judge_last_good("rms-backend", CLUSTER, "rms-backend:5", choice, revisions((5, "ACTIVE"), (3, "ACTIVE")))
    assert finding.severity is INFO and finding.title == "rms-backend: roll back to rms-backend:3 if needed"
    assert "rollback-service --service rms-backend --revision 3" in finding.resolution
    assert "--task-definition rms-backend:3" in finding.resolution
    assert finding.evidence["rollback_images"] == "ecr/rms-backend:1.3"
    json.dumps(finding.to_dict())


def test_judge_last_good_inactive_or_missing_target():
    choice = choose_last_good(service(deployment(5, "PRIMARY", "COMPLETED")), "rms-backend:4", "below")
    inactive = judge_last_good("rms-backend", CLUSTER, "rms-backend:5", choice,
                               revisions((5, "ACTIVE"), (4, "INACTIVE")))
    assert inactive.severity is INFO and "deregistered" in inactive.title
    none = judge_last_good("rms-backend", CLUSTER, "rms-backend:1", choose_last_good(
        service(deployment(1, "PRIMARY", "COMPLETED")), None, "nothing below 1"), revisions((1, "ACTIVE")))
    assert none.severity is INFO and "no earlier revision" in none.title


# --- terraform plan: parsing and judging -----------------------------------------------------------

PLAN_TEXT = """\
terraform_data.rms_backend_service: Refreshing state... [id=ed99]

Terraform will perform the following actions:

  # aws_ecs_service.rms_backend will be updated in-place
  ~ resource "aws_ecs_service" "rms_backend" {
      ~ desired_count = 4 -> 2
        id            = "arn:aws:ecs:us-east-1:123456789012:service/rms-production/rms-backend"
      ~ tags          = {
          ~ "Owner" = "ana" -> "devops"
        }
        # (14 unchanged attributes hidden)
    }

  # aws_security_group_rule.debug will be destroyed
  - resource "aws_security_group_rule" "debug" {
      - cidr_blocks = ["0.0.0.0/0"] -> null
    }

  # aws_ecs_task_definition.rms_backend must be replaced
-/+ resource "aws_ecs_task_definition" "rms_backend" {
      ~ container_definitions = jsonencode( # forces replacement
        )
    }

Plan: 1 to add, 1 to change, 1 to destroy.
"""


def test_parse_plan_addresses_actions_and_top_level_attribute_names_only():
    parsed = parse_plan(PLAN_TEXT)
    assert parsed["summary"] == {"add": 1, "change": 1, "destroy": 1}
    assert parsed["resources"] == [
        {"address": "aws_ecs_service.rms_backend", "action": "will be updated in-place",
         "attributes": ["desired_count", "tags"]},
        {"address": "aws_security_group_rule.debug", "action": "will be destroyed", "attributes": ["cidr_blocks"]},
        {"address": "aws_ecs_task_definition.rms_backend", "action": "must be replaced",
         "attributes": ["container_definitions"]},
    ]
    assert "devops" not in json.dumps(parsed) and "0.0.0.0" not in json.dumps(parsed)  # names, never values


def test_parse_plan_outputs_only():
    parsed = parse_plan("Changes to Outputs:\n  + image = \"rms-backend:2.14.0\"\n")
    assert parsed == {"resources": [], "summary": None, "outputs_change": True}


def test_judge_drift_not_configured_is_info_with_the_guide_commands():
    finding = judge_drift(None, None)
    assert finding.severity is INFO and finding.evidence["configured"] is False
    assert "git checkout HEAD~1 -- apps/infrastructure/" in finding.detail and "terraform plan" in finding.detail
    assert "recovery.terraform_dir" in finding.detail


@pytest.mark.parametrize(("code", "severity", "title"), [
    (0, OK, "Infrastructure matches the code (no changes)"),
    (2, WARNING, "Infrastructure differs from the code: 1 to add, 1 to change, 1 to destroy"),
    (1, ERROR, "terraform plan failed"),
    (None, ERROR, "terraform plan timed out"),
])
def test_judge_drift_by_exit_code(code, severity, title):
    run = PlanRun(code, PLAN_TEXT if code == 2 else "", "Error: Unsupported block type\n  on main.tf" if code == 1
                  else "", 0.4)
    finding = judge_drift("/srv/infra", run)
    assert (finding.severity, finding.title, finding.resource) == (severity, title, "terraform:/srv/infra")
    if code == 2:
        assert "aws_ecs_service.rms_backend (will be updated in-place)" in finding.detail
        assert "git checkout HEAD~1 -- apps/infrastructure/" in finding.resolution
    if code == 1:
        assert finding.detail.startswith("Error: Unsupported block type") and "terraform init" in finding.resolution


def test_judge_drift_could_not_run():
    finding = judge_drift("/srv/infra", None, "terraform is not installed (not on PATH)")
    assert finding.severity is ERROR and finding.detail == "terraform is not installed (not on PATH)"


# =============================================================================================
# Layer 2: the real terraform, offline
# =============================================================================================

def workspace(folder: Path, desired: int, applied: int | None = None) -> Path:
    """A workspace of terraform_data (built in: no provider); ``applied`` is what the state holds."""
    def code(n: int) -> str:
        return (f'resource "terraform_data" "rms_backend_service" {{\n  input = {{ desired_count = {n} }}\n}}\n'
                'output "desired" {\n  value = terraform_data.rms_backend_service.input.desired_count\n}\n')

    folder.mkdir(parents=True, exist_ok=True)
    if applied is not None:
        (folder / "main.tf").write_text(code(applied))
        subprocess.run([TERRAFORM, "apply", "-auto-approve", "-input=false", "-no-color"], cwd=folder, check=True,
                       capture_output=True, timeout=60, env={"CHECKPOINT_DISABLE": "1", "PATH": "/usr/bin:/bin",
                                                             "HOME": str(folder)})
    (folder / "main.tf").write_text(code(desired))
    return folder


@needs_terraform
def test_run_plan_offline_no_changes_changes_and_error_and_never_applies(tmp_path):
    same = workspace(tmp_path / "same", 2, applied=2)
    assert run_plan(same).exit_code == 0
    drift = workspace(tmp_path / "drift", 2, applied=4)
    state = (drift / "terraform.tfstate").read_bytes()
    run = run_plan(drift)
    assert run.exit_code == 2, run.stderr
    parsed = parse_plan(run.stdout)
    assert parsed["summary"] == {"add": 0, "change": 1, "destroy": 0}
    assert parsed["resources"][0]["address"] == "terraform_data.rms_backend_service"
    assert (drift / "terraform.tfstate").read_bytes() == state  # plan only: the state is untouched
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "main.tf").write_text("resource {")
    failed = run_plan(broken)
    assert failed.exit_code == 1 and "Error" in failed.stderr


@needs_terraform
def test_run_plan_timeout(tmp_path):
    run = run_plan(workspace(tmp_path / "ws", 2), timeout=0.001)
    assert run.exit_code is None


@needs_terraform
def test_config_drift_check_against_a_workspace(tmp_path, make_context):
    new = workspace(tmp_path / "new", 2)  # never applied: everything is to be created
    finding, = make_context(recovery={"terraform_dir": str(new)}).run("recovery.config.drift").findings
    assert finding.severity is WARNING and finding.title.endswith("1 to add, 0 to change, 0 to destroy")
    assert finding.evidence["exit_code"] == 2
    result = make_context(recovery={"terraform_dir": str(workspace(tmp_path / "ok", 3, applied=3))}).run(
        "recovery.config.drift")
    assert [f.severity for f in result.findings] == [OK] and result.data.empty


def test_config_drift_not_configured_missing_dir_and_no_terraform(tmp_path, make_context, monkeypatch):
    [info] = make_context().run("recovery.config.drift").findings
    assert info.severity is INFO and info.resource == "terraform:not-configured"
    [missing] = make_context(recovery={"terraform_dir": str(tmp_path / "nope")}).run("recovery.config.drift").findings
    assert missing.severity is ERROR and "is not a directory" in missing.detail
    monkeypatch.setenv("PATH", str(tmp_path))  # no terraform on PATH
    [absent] = make_context(recovery={"terraform_dir": str(tmp_path)}).run("recovery.config.drift").findings
    assert absent.severity is ERROR and "terraform is not installed" in absent.detail


# =============================================================================================
# Layer 2: revisions and deployments against moto
# =============================================================================================

@pytest.fixture(scope="module")
def moto_world():
    with mock_aws():
        seed.network()
        yield


@pytest.fixture
def aws(moto_world, monkeypatch):
    """rms-backend revisions 1-4 (3 deregistered); the service runs 4, replacing a completed 2."""
    seed.reset("ecs")
    for name in ("rms-backend", "rms-frontend"):
        seed.create_service(name, 2, 2, setenv=monkeypatch.setenv)
    ecs = seed.client("ecs")
    for version in ("2.12", "2.13", "2.14"):
        arn = ecs.register_task_definition(
            family="rms-backend", containerDefinitions=[{"name": "rms-backend", "image": f"ecr/rms-backend:{version}",
                                                         "memory": 512}])["taskDefinition"]["taskDefinitionArn"]
    ecs.deregister_task_definition(taskDefinition="rms-backend:3")
    ecs.update_service(cluster=CLUSTER, service="rms-backend", taskDefinition=arn)
    svc = seed.backend("ecs").services[f"{CLUSTER}:rms-backend"]
    now = datetime.now(UTC)
    svc.deployments[0].update({"taskDefinition": arn, "rolloutState": "IN_PROGRESS", "createdAt": now})
    svc.deployments.append({**svc.deployments[0], "id": "ecs-svc/old", "status": "ACTIVE", "rolloutState": "COMPLETED",
                            "taskDefinition": arn.replace(":4", ":2"), "createdAt": now - timedelta(days=3)})


def test_last_good_against_moto(aws, make_context):
    result = make_context().run("recovery.ecs.last_good_taskdef")
    found = {f.resource: f for f in result.findings}
    backend = found[f"ecs:{CLUSTER}/rms-backend"]
    assert backend.severity is INFO and backend.evidence["rollback_to"] == "rms-backend:2"
    assert backend.evidence["evidence"] == "completed deployment"
    rows = result.data[result.data["service"] == "rms-backend"].set_index("revision")
    assert list(rows.index) == [4, 3, 2, 1]
    assert rows.loc[3, "status"] == "INACTIVE" and rows.loc[2, "rollout_state"] == "COMPLETED"
    assert rows.loc[4, "deployment_status"] == "PRIMARY" and rows.loc[4, "images"] == "ecr/rms-backend:2.14"
    assert set(result.frames["deployments"]["task_definition"]) == {"rms-backend:4", "rms-backend:2", "rms-frontend:1"}
    assert found[f"ecs:{CLUSTER}/rms-frontend"].evidence["rollback_to"] is None


def test_history_lists_a_deregistered_current_revision_and_skips_a_deleted_one(aws, make_context):
    """The revisions are the newest ACTIVE or deployed one and the numbers below it, each described:
    no INACTIVE listing. The running revision 4 deregistered still heads the list; a deleted one is gone."""
    ecs = seed.client("ecs")
    ecs.deregister_task_definition(taskDefinition="rms-backend:4")
    ecs.delete_task_definitions(taskDefinitions=["rms-backend:3"])
    result = make_context().run("recovery.ecs.last_good_taskdef")
    rows = result.data[result.data["service"] == "rms-backend"].set_index("revision")
    assert list(rows.index) == [4, 2, 1]
    assert list(rows["status"]) == ["INACTIVE", "ACTIVE", "ACTIVE"]


def test_rollback_previous_takes_the_checks_choice(aws, make_context):
    p = plan(make_context(), "rollback-service", service="rms-backend", revision="previous")
    assert p.params["taskDefinition"] == "rms-backend:2"
    assert "chosen because rms-backend:2 ran the COMPLETED deployment ecs-svc/old" in p.summary
    with pytest.raises(UserError, match="no revision to roll rms-frontend back to"):
        plan(make_context(), "rollback-service", service="rms-frontend", revision="previous")


def test_without_a_second_deployment_a_deregistered_revision_is_skipped(aws, make_context):
    """The revision before the current (3) is INACTIVE: the highest ACTIVE one below (2) is named."""
    svc = seed.backend("ecs").services[f"{CLUSTER}:rms-backend"]
    svc.deployments = svc.deployments[:1]
    ctx = make_context()
    backend = next(f for f in ctx.run("recovery.ecs.last_good_taskdef").findings if f.resource.endswith("rms-backend"))
    assert backend.evidence["rollback_to"] == "rms-backend:2"
    assert backend.evidence["evidence"] == "revision before the current"
    assert "rms-backend:3 is deregistered" in backend.evidence["why"]
    diff = next(f for f in ctx.run("deploy.taskdef.diff").findings if f.resource.endswith("rms-backend"))
    assert diff.evidence["previous"] == "rms-backend:3"  # the diff compares with the revision before, as it is


def test_choice_skips_deregistered_revisions_when_told_which_are_active():
    svc = service(deployment(5, "PRIMARY", "COMPLETED"))
    choice = choose_last_good(svc, "rms-backend:4", "below", active={"rms-backend:5", "rms-backend:2"})
    assert choice.target == "rms-backend:2" and "rms-backend:4 is deregistered" in choice.why
    alone = choose_last_good(svc, "rms-backend:4", "below", active={"rms-backend:5"})
    assert alone.target == "rms-backend:4"  # nothing ACTIVE below: the judge reports it deregistered


# =============================================================================================
# Layer 3: the served demo
# =============================================================================================

def demo_findings(scenario: str) -> dict[str, dict[str, object]]:
    from rmsops.core.context import Context
    from tests.demo_server import served

    ctx = Context.open(served(scenario).env_file)
    try:
        return {r.check: {f.resource: f for f in r.findings} for r in ctx.run_all("15-application-recovery")}
    finally:
        ctx.close()


def test_demo_incident_names_the_revision_before_the_bad_deployment_and_the_drift():
    found = demo_findings("incident")
    backend = found["recovery.ecs.last_good_taskdef"][f"ecs:{CLUSTER}/rms-backend"]
    assert backend.severity is INFO and backend.evidence["rollback_to"] == "rms-backend:1"
    assert backend.evidence["evidence"] == "completed deployment"
    [drift] = found["recovery.config.drift"].values()
    if TERRAFORM:
        assert drift.severity is WARNING and drift.evidence["summary"] == {"add": 0, "change": 1, "destroy": 0}
    else:
        assert drift.severity is INFO


def test_demo_bad_deploy_and_healthy():
    bad = demo_findings("bad-deploy")["recovery.ecs.last_good_taskdef"][f"ecs:{CLUSTER}/rms-backend"]
    assert bad.evidence["rollback_to"] == "rms-backend:2" and bad.evidence["current"] == "rms-backend:3"
    healthy = demo_findings("healthy")
    assert {f.severity for check in healthy.values() for f in check.values()} <= {OK, INFO}


def test_notebook_runs_against_the_demo(tmp_path):
    from rmsops.core.window import resolve
    from rmsops.execution.runner import collect_findings, run_runbook
    from tests.demo_server import served

    outcome = run_runbook(runbooks.find("15"), config.load(served("incident").env_file), resolve("1h"), tmp_path)
    assert outcome.status == "done", outcome.error
    findings = collect_findings(nbformat.read(outcome.notebook, as_version=4))
    assert {f.check for f in findings} == set(runbooks.find("15").checks)
    assert outcome.html is not None and outcome.html.read_text().count("data:image/svg+xml;base64") >= 1
    audit = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [(a["action"], a["dry_run"], a["params"]["taskDefinition"]) for a in audit] == [
        ("rollback-service", True, "rms-backend:1")]


def test_history_plot_renders_with_and_without_revisions(aws, make_context):
    from matplotlib.figure import Figure

    from rmsops.core.registry import get
    from rmsops.render import plots

    ctx = make_context()
    result = ctx.run("recovery.ecs.last_good_taskdef")
    plot = get("recovery.ecs.last_good_taskdef").plot
    figure = plot(result, ctx)
    # rms-backend has four revisions: a panel; rms-frontend has one revision and one deployment:
    # named under the chart, not drawn (with a dozen services, such panels bury the one that changed)
    assert [ax.get_title(loc="left").split(":")[0] for ax in figure.axes] == ["rms-backend"]
    assert [t.get_text() for t in figure.axes[0].get_yticklabels()] == ["1", "2", "3", "4"]
    assert [t.get_text() for t in figure.texts] == [
        "One revision and one deployment, nothing to roll back to (not drawn): rms-frontend"]
    assert plots.empty_notice(figure) == ""
    result.data = result.data[result.data["service"] == "rms-frontend"]
    assert plots.empty_notice(plot(result, ctx)) == (
        "one revision and one deployment each, nothing to roll back to: rms-frontend")
    result.data = result.data.iloc[0:0]
    assert plots.empty_notice(plot(result, ctx)) == "no task definition revision"
    assert isinstance(plot(result, ctx), Figure)
