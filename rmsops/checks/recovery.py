"""Application recovery: which task definition to roll back to, and whether the infrastructure
code matches what runs (guide "Application Recovery": service rollback, configuration recovery).

``recovery.config.drift`` runs ``terraform plan`` (never ``apply``) in the configured workspace:
read-only for the infrastructure; terraform may refresh its own state lock-free (``-lock=false``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from rmsops.core import secrets
from rmsops.core.findings import Finding, Severity
from rmsops.core.registry import CheckResult, check
from rmsops.render.figures import _history_plot  # noqa: F401 - re-exported for callers of this module
from rmsops.sources.ecs import (
    current_task_definition,
    deployments_frame,
    describe_services,
    service_answer,
    split_revision,
)
from rmsops.sources.rollback import (  # noqa: F401 - re-exported for callers of this module
    MAX_REVISIONS,
    REVISION_COLUMNS,
    RollbackChoice,
    choose_last_good,
    revisions_frame,
    rollback_choice,
)

if TYPE_CHECKING:
    from rmsops.core.context import Context

RUNBOOK = "15-application-recovery"
# Check ids, declared in the catalogue (rmsops/core/runbooks.py); the judges take theirs as `cid`.
CONFIG_DRIFT = "recovery.config.drift"
ECS_LAST_GOOD_TASKDEF = "recovery.ecs.last_good_taskdef"

# --- recovery.ecs.last_good_taskdef ---------------------------------------------------------------


def judge_last_good(service: str, cluster: str, current: str, choice: RollbackChoice,
                    revisions: pd.DataFrame, cid: str = ECS_LAST_GOOD_TASKDEF) -> Finding:
    resource = f"ecs:{cluster}/{service}"
    target_row = revisions[revisions["task_definition"] == choice.target] if choice.target else revisions.iloc[0:0]
    evidence = {"current": current, "rollback_to": choice.target, "evidence": choice.evidence, "why": choice.why,
                "rollback_images": target_row.iloc[0]["images"] if len(target_row) else None,
                "revisions": revisions[["task_definition", "status", "images", "deployment_status",
                                        "rollout_state"]].to_dict("records")}
    if choice.target is None:
        return Finding(cid, Severity.INFO, resource, f"{service}: no earlier revision to roll back to",
                       choice.why + ".", evidence)
    if len(target_row) and target_row.iloc[0]["status"] == "INACTIVE":
        return Finding(cid, Severity.INFO, resource,
                       f"{service}: last good revision {choice.target} is deregistered (INACTIVE)",
                       f"{choice.why}. An INACTIVE revision cannot be deployed again; register it anew.",
                       evidence, "Register the old definition again, then roll back to the new revision.")
    revision = split_revision(choice.target)[1]
    return Finding(cid, Severity.INFO, resource, f"{service}: roll back to {choice.target} if needed",
                   f"Running {current}. {choice.why}.", evidence,
                   f"Service rollback: rmsops action rollback-service --service {service} --revision {revision} "
                   f"(aws ecs update-service --cluster {cluster} --service {service} "
                   f"--task-definition {choice.target}).")


@check(ECS_LAST_GOOD_TASKDEF, plot=_history_plot)
def last_good_taskdef(ctx: Context) -> CheckResult:
    """The task definition revision to roll back to, and why (revisions against deployments)."""
    answer = describe_services(ctx)
    findings, frames = [], []
    for service in ctx.settings.services:
        svc = service_answer(answer, service)
        if svc is None:
            findings.append(Finding(ECS_LAST_GOOD_TASKDEF, Severity.INFO,
                                    f"ecs:{ctx.settings.cluster}/{service}", f"{service}: service not found",
                                    "Nothing to roll back.", {}))
            continue
        revisions = revisions_frame(ctx, service, svc)
        frames.append(revisions)
        findings.append(judge_last_good(service, ctx.settings.cluster, current_task_definition(svc),
                                        rollback_choice(ctx, svc, revisions), revisions))
    data = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=REVISION_COLUMNS)
    return CheckResult(findings=findings, data=data,
                       frames={"deployments": deployments_frame(answer, ctx.settings.services)})


# --- recovery.config.drift ------------------------------------------------------------------------

PLAN_COMMAND = ("terraform", "plan", "-input=false", "-lock=false", "-detailed-exitcode", "-no-color")
PLAN_TIMEOUT_SECONDS = 300.0
GUIDE_COMMANDS = ("git checkout HEAD~1 -- apps/infrastructure/", "terraform plan", "terraform apply")
_RESOURCE_LINE = re.compile(r"^\s*# (\S+) (will be created|will be destroyed|will be updated in-place|"
                            r"must be replaced|is tainted, so must be replaced|will be read during apply|"
                            r"has moved to \S+)")
# Change markers are right-aligned: a resource's "  ~", "-/+" end in column 3, its attributes' in 7.
_BLOCK_LINE = re.compile(r"^(\s*(?:[~+-]|-/\+|\+/-|<=)) (?:resource|data) \"")
_ATTRIBUTE_LINE = re.compile(r"^(\s*(?:[~+-]|-/\+|\+/-))\s+\"?([\w.-]+)\"?\s+=")
_SUMMARY_LINE = re.compile(r"^Plan: (\d+) to add, (\d+) to change, (\d+) to destroy")


@dataclass(frozen=True)
class PlanRun:
    exit_code: int | None  # None: timed out
    stdout: str
    stderr: str
    seconds: float


def run_plan(directory: Path, timeout: float = PLAN_TIMEOUT_SECONDS, binary: str = "terraform") -> PlanRun:
    """``terraform plan`` in *directory* (never apply); FileNotFoundError when terraform is missing."""
    executable = shutil.which(binary)
    if executable is None:
        raise FileNotFoundError(binary)
    env = {**os.environ, "TF_IN_AUTOMATION": "1", "TF_INPUT": "0", "CHECKPOINT_DISABLE": "1"}
    began = time.monotonic()
    try:
        done = subprocess.run([executable, *PLAN_COMMAND[1:]], cwd=directory, capture_output=True, text=True,
                              timeout=timeout, env=env, stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired as exc:
        return PlanRun(None, _text(exc.stdout), _text(exc.stderr), time.monotonic() - began)
    return PlanRun(done.returncode, done.stdout, done.stderr, time.monotonic() - began)


def _text(value: str | bytes | None) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else (value or "")


def parse_plan(stdout: str) -> dict[str, Any]:
    """Resource addresses with their action and changed top-level attribute NAMES (values are left
    out: a plan shows attribute values, which may include configuration that should not be copied)."""
    resources: list[dict[str, Any]] = []
    summary = None
    outputs = False
    block_indent = None  # the column where the change marker of the current resource's header ends
    for line in stdout.splitlines():
        if match := _RESOURCE_LINE.match(line):
            resources.append({"address": match.group(1), "action": match.group(2), "attributes": []})
            block_indent = None
        elif resources and (header := _BLOCK_LINE.match(line)):
            block_indent = len(header.group(1))
        elif resources and block_indent is not None and (match := _ATTRIBUTE_LINE.match(line)):
            top_level = len(match.group(1)) == block_indent + 4
            if top_level and match.group(2) not in resources[-1]["attributes"]:
                resources[-1]["attributes"].append(match.group(2))
        elif match := _SUMMARY_LINE.match(line.strip()):
            summary = {"add": int(match.group(1)), "change": int(match.group(2)), "destroy": int(match.group(3))}
        elif line.startswith("Changes to Outputs"):
            outputs = True
            block_indent = None
    return {"resources": resources, "summary": summary, "outputs_change": outputs}


def _first_error(stderr: str, stdout: str) -> str:
    lines = [line.strip(" │╷╵") for line in (stderr or stdout).splitlines()]
    lines = [line for line in lines if line.strip()]
    start = next((i for i, line in enumerate(lines) if line.startswith("Error:")), 0)
    return secrets.redact(" ".join(lines[start:start + 3])[:400] or "no message")


def judge_drift(directory: str | None, run: PlanRun | None, problem: str = "", cid: str = CONFIG_DRIFT) -> Finding:
    """``run`` is None when nothing ran: not configured, or ``problem`` says why it could not."""
    commands = " && ".join(f"`{c}`" for c in GUIDE_COMMANDS[:2])
    if not directory:
        return Finding(
            cid, Severity.INFO, "terraform:not-configured", "No infrastructure workspace configured",
            "Set recovery.terraform_dir in the environment file to a checkout of apps/infrastructure/ "
            "(initialised with `terraform init`) and this check runs `terraform plan` there (never apply). "
            f"The guide's configuration recovery: {commands}, review the plan, then `terraform apply`.",
            {"configured": False, "guide_commands": list(GUIDE_COMMANDS)},
            "Configuration recovery (guide): restore from Git with `git checkout HEAD~1 -- apps/infrastructure/`, "
            "run `terraform plan`, and `terraform apply` once the plan is what you expect.")
    resource = f"terraform:{directory}"
    if run is None:
        return Finding(cid, Severity.ERROR, resource, "terraform plan could not run", problem,
                       {"configured": True, "reason": problem},
                       "Install terraform, or fix recovery.terraform_dir in the environment file.")
    base = {"configured": True, "exit_code": run.exit_code, "seconds": round(run.seconds, 1)}
    if run.exit_code is None:
        return Finding(cid, Severity.ERROR, resource, "terraform plan timed out",
                       f"No answer in {run.seconds:.0f} s.", base, "Run `terraform plan` by hand in the workspace.")
    if run.exit_code == 0:
        return Finding(cid, Severity.OK, resource, "Infrastructure matches the code (no changes)",
                       "terraform plan: no changes.", base)
    if run.exit_code == 2:
        plan = parse_plan(run.stdout)
        summary = plan["summary"]
        counts = (f"{summary['add']} to add, {summary['change']} to change, {summary['destroy']} to destroy"
                  if summary else "only outputs change" if plan["outputs_change"] else "changes pending")
        names = ", ".join(f"{r['address']} ({r['action']})" for r in plan["resources"][:8])
        return Finding(
            cid, Severity.WARNING, resource, f"Infrastructure differs from the code: {counts}",
            f"terraform plan: {counts}." + (f" {names}." if names else ""), {**base, **plan},
            "Configuration recovery (guide): review the plan; if the running configuration is wrong, restore the "
            "code (`git checkout HEAD~1 -- apps/infrastructure/` for the previous version), run `terraform plan` "
            "and `terraform apply` once the plan is what you expect. If the code is wrong, fix the code.")
    return Finding(cid, Severity.ERROR, resource, "terraform plan failed",
                   _first_error(run.stderr, run.stdout), {**base, "error": _first_error(run.stderr, run.stdout)},
                   "Run `terraform init` in the workspace if it was never initialised; otherwise fix the error shown.")


@check(CONFIG_DRIFT)
def config_drift(ctx: Context) -> CheckResult:
    """Infrastructure code vs what runs: `terraform plan` in the configured workspace (never apply)."""
    directory = ctx.settings.terraform_dir
    if not directory:
        return CheckResult(findings=[judge_drift(None, None)])
    path = Path(directory).expanduser()
    if not path.is_dir():
        return CheckResult(findings=[judge_drift(directory, None, f"{directory} is not a directory")])
    try:
        run = run_plan(path)
    except FileNotFoundError:
        return CheckResult(findings=[judge_drift(directory, None, "terraform is not installed (not on PATH)")])
    finding = judge_drift(directory, run)
    plan = parse_plan(run.stdout) if run.exit_code == 2 else {"resources": []}
    data = pd.DataFrame([{"address": r["address"], "action": r["action"], "attributes": ", ".join(r["attributes"])}
                         for r in plan["resources"]], columns=["address", "action", "attributes"])
    return CheckResult(findings=[finding], data=data)
