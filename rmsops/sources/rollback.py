"""Which task definition a rollback goes to: the service's revisions, and the last one known good.

Shared by recovery.ecs.last_good_taskdef (which reports it) and the rollback-service action (which uses it),
so that the report and the action never disagree."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from rmsops.sources.ecs import (
    current_task_definition,
    describe_task_definition,
    newest_revisions,
    previous_task_definition,
    short_name,
    split_revision,
)

if TYPE_CHECKING:
    from rmsops.core.context import Context


MAX_REVISIONS = 10  # the newest revisions of a family described for the history


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
    """The newest revisions of the service's family with their status, images and deployments.

    Revisions are numbered one by one per family, so the newest ones are the newest ACTIVE or
    deployed revision and the numbers below it: each is described anyway (status, images),
    which tells an INACTIVE one from a deleted one. Listing the INACTIVE revisions as well would
    cost one more call per service.
    """
    family, _ = split_revision(current_task_definition(svc))
    deployments = {short_name(d.get("taskDefinition")): d for d in reversed(svc.get("deployments", []))}
    deployed = [r for f, r in map(split_revision, [current_task_definition(svc), *deployments]) if f == family and r]
    newest = max([*newest_revisions(ctx, family, "ACTIVE", MAX_REVISIONS), *deployed], default=0)
    rows = []
    for revision in range(newest, max(0, newest - MAX_REVISIONS), -1):
        name = f"{family}:{revision}"
        definition = describe_task_definition(ctx, name)
        if definition is None:
            continue  # deleted, or never registered
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
