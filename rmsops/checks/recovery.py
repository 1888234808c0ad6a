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
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure

from rmsops import plots, secrets
from rmsops.checks.deploy import (
    ROLLOUT_COLOURS,
    current_task_definition,
    deployment_end,
    deployments_frame,
    describe_task_definition,
    previous_task_definition,
    service_answer,
    short_name,
    split_revision,
)
from rmsops.checks.ecs import describe_services
from rmsops.findings import Finding, Severity
from rmsops.registry import CheckResult, check

if TYPE_CHECKING:
    from rmsops.context import Context

RUNBOOK = "15-application-recovery"
MAX_REVISIONS = 10  # the newest revisions of a family described for the history

# --- recovery.ecs.last_good_taskdef ---------------------------------------------------------------

REVISION_COLUMNS = ["service", "task_definition", "revision", "status", "registered_at", "images",
                    "deployment_status", "rollout_state", "deployed_at"]


@dataclass(frozen=True)
class RollbackChoice:
    target: str | None  # family:revision to roll back to
    why: str  # the evidence, in one sentence
    evidence: str  # "completed deployment" | "revision before the current" | "none"


def choose_last_good(svc: dict[str, Any], previous: str | None, previous_how: str,
                     active: set[str] | None = None) -> RollbackChoice:
    """The revision to roll back to, from the deployments ECS lists and the revision numbers.

    1. A deployment the current one replaces whose rollout COMPLETED ran that revision
       successfully: the strongest evidence ECS keeps.
    2. Otherwise the revision before the current one (``previous``): ECS keeps no older
       deployment history, so that it ran well is an assumption, said so in ``why``. When
       ``active`` (the ACTIVE revisions) is given and ``previous`` was deregistered, the highest
       ACTIVE revision below the current one instead: a deregistered revision cannot be deployed.
    """
    current = current_task_definition(svc)
    primary = next((d for d in svc.get("deployments", []) if d.get("status") == "PRIMARY"), {})
    for d in svc.get("deployments", []):
        name = short_name(d.get("taskDefinition"))
        if d.get("status") != "PRIMARY" and name != current and d.get("rolloutState") == "COMPLETED":
            since = d.get("createdAt")
            when = f" since {since:%Y-%m-%d %H:%M} UTC" if isinstance(since, datetime) else ""
            return RollbackChoice(name, f"{name} ran the COMPLETED deployment {d.get('id', '')}{when}, which "
                                        f"{current} is replacing", "completed deployment")
    if previous is None:
        return RollbackChoice(None, f"no revision before {current} to roll back to ({previous_how})", "none")
    family, number = split_revision(current)
    if active is not None and previous not in active and number is not None:
        below = sorted((r for r in (split_revision(a)[1] for a in active if split_revision(a)[0] == family)
                        if r is not None and r < number), reverse=True)
        if below:
            previous, previous_how = (f"{family}:{below[0]}", f"{previous} is deregistered; the highest ACTIVE "
                                                                f"revision below {current}")
    state = primary.get("rolloutState", "")
    if state == "COMPLETED":
        why = (f"{current} completed its rollout, so it may itself be good; if it is the cause, {previous} is "
               f"the revision before it ({previous_how}). ECS keeps no older deployment history.")
    else:
        why = (f"{current}'s rollout is {state or 'in an unknown state'} and ECS lists no completed "
               f"deployment of another revision; {previous} is the revision before it ({previous_how}).")
    return RollbackChoice(previous, why, "revision before the current")


def revisions_frame(ctx: Context, service: str, svc: dict[str, Any]) -> pd.DataFrame:
    """The newest revisions of the service's family with their status, images and deployments."""
    ecs = ctx.client("ecs")
    family, _ = split_revision(current_task_definition(svc))
    numbers: set[int] = set()
    for status in ("ACTIVE", "INACTIVE"):
        # newest first; familyPrefix also matches longer families (rms-backend-worker): skip those, and
        # stop once this family's newest revisions are in (AWS lists a family's revisions together)
        found = 0
        for page in ecs.get_paginator("list_task_definitions").paginate(familyPrefix=family, status=status,
                                                                         sort="DESC"):
            for arn in page.get("taskDefinitionArns", []):
                name_family, revision = split_revision(arn)
                if name_family == family and revision is not None:
                    numbers.add(revision)
                    found += 1
            if found >= MAX_REVISIONS:
                break
    deployments = {short_name(d.get("taskDefinition")): d for d in reversed(svc.get("deployments", []))}
    rows = []
    for revision in sorted(numbers, reverse=True)[:MAX_REVISIONS]:
        name = f"{family}:{revision}"
        definition = describe_task_definition(ctx, name) or {}
        deployment = deployments.get(name, {})
        rows.append({
            "service": service, "task_definition": name, "revision": revision,
            "status": definition.get("status", ""), "registered_at": definition.get("registeredAt"),
            "images": ", ".join(c.get("image", "") for c in definition.get("containerDefinitions", [])),
            "deployment_status": deployment.get("status", ""), "rollout_state": deployment.get("rolloutState", ""),
            "deployed_at": deployment.get("createdAt"),
        })
    return pd.DataFrame(rows, columns=REVISION_COLUMNS)


def rollback_choice(ctx: Context, svc: dict[str, Any], revisions: pd.DataFrame | None = None) -> RollbackChoice:
    """``choose_last_good`` with what it needs fetched: the previous revision and the ACTIVE ones."""
    if revisions is None:
        revisions = revisions_frame(ctx, svc.get("serviceName", ""), svc)
    previous, how = previous_task_definition(ctx, svc)
    active = set(revisions.loc[revisions["status"] == "ACTIVE", "task_definition"])
    return choose_last_good(svc, previous, how, active)


def judge_last_good(service: str, cluster: str, current: str, choice: RollbackChoice,
                    revisions: pd.DataFrame) -> Finding:
    cid = "recovery.ecs.last_good_taskdef"
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


def _history_plot(result: CheckResult, ctx: Context):
    revisions = result.data
    deployments = result.frames.get("deployments", pd.DataFrame())
    services = list(dict.fromkeys(revisions["service"])) if len(revisions) else []
    fig = Figure(figsize=(9.0, max(2.6, 2.3 * max(1, len(services)))))
    plots.fixed_margins(fig, 3, ylabel=True, hspace=0.55)
    if not services:
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "no task definition revision", ha="center", va="center", transform=ax.transAxes)
        return fig
    axes = fig.subplots(len(services), 1, squeeze=False)[:, 0]
    now = ctx.window.end
    for ax, service in zip(axes, services, strict=True):
        ax.set_title(f"{service}: task definition revisions (dots: registered) and deployments (bars)",
                     loc="left", fontsize=10)
        ax.grid(True, alpha=0.3)
        revs = revisions[revisions["service"] == service]
        dated = revs[revs["registered_at"].map(lambda v: isinstance(v, datetime))]
        ax.scatter(list(dated["registered_at"]), list(dated["revision"]), color="#1565c0", zorder=3,
                   label="registered")
        rows = deployments[deployments["service"] == service] if len(deployments) else deployments
        seen = set()
        for row in rows.itertuples():
            revision = split_revision(row.task_definition)[1]
            if revision is None or not isinstance(row.created_at, datetime):
                continue
            end = deployment_end(row.status, row.rollout_state, row.created_at, row.updated_at, now)
            state = row.rollout_state or "unknown"
            ax.barh(revision, end - row.created_at, left=row.created_at, height=0.4,
                    color=ROLLOUT_COLOURS.get(state, "#90a4ae"), label=None if state in seen else f"deploy {state}")
            seen.add(state)
        for row in dated.itertuples():
            tag = row.images.rsplit(":", 1)[-1] if row.images else ""
            ax.annotate(f"{row.task_definition} {tag}", (row.registered_at, row.revision), fontsize=7,
                        xytext=(4, 7), textcoords="offset points", color="#1565c0")
        if len(revs):
            ax.set_ylim(revs["revision"].min() - 0.6, revs["revision"].max() + 0.8)
            ax.set_yticks(sorted(set(revs["revision"])))
        ax.set_ylabel("revision")
        locator = AutoDateLocator()
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
        ax.legend(fontsize=8, loc="upper left")
    return fig


@check("recovery.ecs.last_good_taskdef", runbook=RUNBOOK, plot=_history_plot)
def last_good_taskdef(ctx: Context) -> CheckResult:
    """The task definition revision to roll back to, and why (revisions against deployments)."""
    answer = describe_services(ctx)
    findings, frames = [], []
    for service in ctx.settings.services:
        svc = service_answer(answer, service)
        if svc is None:
            findings.append(Finding("recovery.ecs.last_good_taskdef", Severity.INFO,
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


def judge_drift(directory: str | None, run: PlanRun | None, problem: str = "") -> Finding:
    """``run`` is None when nothing ran: not configured, or ``problem`` says why it could not."""
    cid = "recovery.config.drift"
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


@check("recovery.config.drift", runbook=RUNBOOK, quick=False)
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
