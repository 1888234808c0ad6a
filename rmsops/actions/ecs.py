"""ECS actions from the guide's resolutions.

- ``force-new-deployment`` — §1 "If tasks are unhealthy: force new deployment".
- ``scale-service`` — §1 "If persistent: scale up service capacity".
- ``rollback-service`` — "Application Recovery: Service Rollback" (update-service --task-definition).
- ``raise-task-memory`` — §3 "Immediate: increase task memory allocation in task definition".

Planning only reads (describe_services, describe_task_definition) to validate the arguments
and to say exactly what would change; nothing changes before ``actions.base.execute`` is
confirmed.
"""

from __future__ import annotations

import shlex
from types import ModuleType
from typing import TYPE_CHECKING, Any

from rmsops.actions.base import ActionPlan, action
from rmsops.core.errors import UserError

if TYPE_CHECKING:
    from rmsops.core.context import Context

MAX_TASKS_PER_SERVICE = 5000  # the ECS service quota "tasks per service"
# Fargate task sizes: cpu units -> the memory values (MiB) AWS accepts with it.
FARGATE_MEMORY = {
    256: (512, 1024, 2048),
    512: tuple(range(1024, 4097, 1024)),
    1024: tuple(range(2048, 8193, 1024)),
    2048: tuple(range(4096, 16385, 1024)),
    4096: tuple(range(8192, 30721, 1024)),
    8192: tuple(range(16384, 61441, 4096)),
    16384: tuple(range(32768, 122881, 8192)),
}
# describe_task_definition keys that register_task_definition does not take.
READ_ONLY_KEYS = {"taskDefinitionArn", "revision", "status", "requiresAttributes", "compatibilities",
                  "registeredAt", "registeredBy", "deregisteredAt", "deleteRequestedAt"}
REGISTER_AND_DEPLOY = "register_task_definition_and_update_service"


# --- shared validation ----------------------------------------------------------------------------

def _known_service(ctx: Context, service: str) -> str:
    if service not in ctx.settings.services:
        raise UserError(f"unknown service {service!r} for {ctx.settings.name}; "
                        f"known: {', '.join(ctx.settings.services)}")
    return service


def _integer(name: str, value: Any) -> int:
    """An int from the notebook or a string from the CLI (``-a count=6``)."""
    if isinstance(value, bool):
        raise UserError(f"{name} must be a whole number, got {value!r}")
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if not text.lstrip("-").isdigit():
        raise UserError(f"{name} must be a whole number, got {value!r}")
    return int(text)


def _ecs() -> ModuleType:
    # The reads go through the run's fetches (ctx.memo), shared with the checks: a context lives for
    # one run, so `rmsops action` still reads ECS as it is now; a runbook's dry run reads it as its
    # checks saw it, without asking again. Imported late: importing the actions stays light.
    from rmsops.sources import ecs

    return ecs


def _service(ctx: Context, service: str) -> dict[str, Any]:
    """The service as ECS describes it in this run; UserError when it does not exist."""
    found = _ecs().service_answer(_ecs().describe_services(ctx), _known_service(ctx, service))
    if found is None:
        raise UserError(f"service {service} not found in cluster {ctx.settings.cluster}")
    return found


def _current_task_definition(svc: dict[str, Any]) -> str:
    primary = next((d for d in svc.get("deployments", []) if d.get("status") == "PRIMARY"), {})
    return str(svc.get("taskDefinition") or primary.get("taskDefinition") or "").rsplit("/", 1)[-1]


def _describe(ctx: Context, name: str) -> dict[str, Any]:
    definition = _ecs().describe_task_definition(ctx, name)
    if definition is None:
        raise UserError(f"task definition {name} does not exist")
    return definition


# --- force-new-deployment -------------------------------------------------------------------------

@action("force-new-deployment")
def force_new_deployment(ctx: Context, service: str) -> ActionPlan:
    """Guide §1: 'If tasks are unhealthy: force new deployment'."""
    _known_service(ctx, service)
    cluster = ctx.settings.cluster
    return ActionPlan(
        action="force-new-deployment", environment=ctx.settings.name, target=service,
        summary=f"force a new deployment of {service} in cluster {cluster} (tasks are replaced "
                "with fresh ones from the same task definition)",
        service="ecs", operation="update_service",
        params={"cluster": cluster, "service": service, "forceNewDeployment": True},
        cli=f"aws ecs update-service --cluster {shlex.quote(cluster)} "
            f"--service {shlex.quote(service)} --force-new-deployment",
    )


# --- scale-service --------------------------------------------------------------------------------

@action("scale-service")
def scale_service(ctx: Context, service: str, count: int | str) -> ActionPlan:
    """Guide §1: 'If persistent: scale up service capacity' (set the desired task count)."""
    _known_service(ctx, service)
    count = _integer("count", count)
    if not 0 <= count <= MAX_TASKS_PER_SERVICE:
        raise UserError(f"count must be between 0 and {MAX_TASKS_PER_SERVICE} (the ECS tasks-per-service "
                        f"quota), got {count}")
    svc = _service(ctx, service)
    desired, running = int(svc.get("desiredCount", 0)), int(svc.get("runningCount", 0))
    if count == desired:
        raise UserError(f"{service} already has a desired count of {count}; nothing to change")
    cluster = ctx.settings.cluster
    direction = "up" if count > desired else "down"
    warning = "; this stops every task of the service" if count == 0 else ""
    return ActionPlan(
        action="scale-service", environment=ctx.settings.name, target=service,
        summary=f"scale {service} in cluster {cluster} {direction} from {desired} to {count} desired tasks "
                f"({running} running now){warning}",
        service="ecs", operation="update_service",
        params={"cluster": cluster, "service": service, "desiredCount": count},
        cli=f"aws ecs update-service --cluster {shlex.quote(cluster)} --service {shlex.quote(service)} "
            f"--desired-count {count}",
    )


# --- rollback-service -----------------------------------------------------------------------------

@action("rollback-service")
def rollback_service(ctx: Context, service: str, revision: int | str) -> ActionPlan:
    """Application Recovery: 'Rollback to previous task definition' (update-service --task-definition).

    ``revision`` is the revision number of the service's task definition family (``3``), or
    ``family:3``; it must exist, be ACTIVE, and differ from what the service runs now. The word
    ``previous`` takes the revision ``recovery.ecs.last_good_taskdef`` names (the plan shows which).
    """
    _known_service(ctx, service)
    svc = _service(ctx, service)
    current = _current_task_definition(svc)
    family = current.split(":", 1)[0]
    text = str(revision).strip().rsplit("/", 1)[-1]
    why = ""
    if text == "previous":
        from rmsops.sources.rollback import rollback_choice

        choice = rollback_choice(ctx, svc)
        if choice.target is None:
            raise UserError(f"no revision to roll {service} back to: {choice.why}")
        text, why = choice.target, f" — chosen because {choice.why}"
    named_family, sep, number = text.rpartition(":")
    if sep and named_family != family:
        raise UserError(f"{text} is not a revision of {family}, the task definition family of {service}")
    target = f"{family}:{_integer('revision', number if sep else text)}"
    definition = _describe(ctx, target)
    if definition.get("status") != "ACTIVE":
        raise UserError(f"{target} is {definition.get('status', 'not ACTIVE')}: ECS cannot deploy a deregistered "
                        "revision; register it again and roll back to the new revision")
    if target == current:
        raise UserError(f"{service} already runs {target}; nothing to roll back")
    cluster = ctx.settings.cluster
    images = ", ".join(c.get("image", "") for c in definition.get("containerDefinitions", []))
    return ActionPlan(
        action="rollback-service", environment=ctx.settings.name, target=service,
        summary=f"roll {service} in cluster {cluster} back from {current} to {target} (image {images}); "
                f"ECS replaces the tasks with a rolling deployment{why}",
        service="ecs", operation="update_service",
        params={"cluster": cluster, "service": service, "taskDefinition": target},
        cli=f"aws ecs update-service --cluster {shlex.quote(cluster)} --service {shlex.quote(service)} "
            f"--task-definition {shlex.quote(target)}",
    )


# --- raise-task-memory ----------------------------------------------------------------------------

def registration_input(ecs: Any, definition: dict[str, Any], tags: list[dict[str, str]] | None = None
                       ) -> dict[str, Any]:
    """register_task_definition arguments that recreate ``definition`` (as described) exactly."""
    accepted = set(ecs.meta.service_model.operation_model("RegisterTaskDefinition").input_shape.members)
    params = {k: v for k, v in definition.items() if k in accepted and k not in READ_ONLY_KEYS}
    if tags:
        params["tags"] = tags
    return params


def register_and_update_service(ecs: Any, *, cluster: str, service: str, sourceTaskDefinition: str,
                                memory: int, containerMemory: dict[str, int]) -> dict[str, Any]:
    """The two API calls of raise-task-memory, in order: register a copy of the (immutable) source
    revision with the new memory, then point the service at the new revision."""
    source = ecs.describe_task_definition(taskDefinition=sourceTaskDefinition, include=["TAGS"])
    params = registration_input(ecs, source["taskDefinition"], source.get("tags"))
    params["memory"] = str(memory)
    params["containerDefinitions"] = [
        {**c, "memory": containerMemory[c.get("name")]} if c.get("name") in containerMemory else c
        for c in params["containerDefinitions"]]
    registered = ecs.register_task_definition(**params)["taskDefinition"]["taskDefinitionArn"]
    try:
        answer = ecs.update_service(cluster=cluster, service=service, taskDefinition=registered)
    except Exception as exc:
        from rmsops.core import failure

        raise RuntimeError(f"registered {registered.rsplit('/', 1)[-1]}, but pointing {service} at it failed "
                           f"({failure.describe(exc)}); roll forward with rollback-service") from exc
    return {**answer, "registeredTaskDefinition": registered}


def _check_fargate_size(definition: dict[str, Any], memory: int) -> None:
    if "FARGATE" not in (definition.get("requiresCompatibilities") or []) or not definition.get("cpu"):
        return
    cpu = int(str(definition["cpu"]).strip())
    allowed = FARGATE_MEMORY.get(cpu)
    if allowed and memory not in allowed:
        larger = [m for m in allowed if m >= memory]
        hint = f"; the next valid size is {larger[0]}" if larger else f"; at most {allowed[-1]} with this cpu"
        raise UserError(f"Fargate does not accept memory {memory} MiB with cpu {cpu}: valid values are "
                        f"{allowed[0]}-{allowed[-1]} in steps of {allowed[1] - allowed[0] if len(allowed) > 1 else 0}"
                        f"{hint}")


@action("raise-task-memory")
def raise_task_memory(ctx: Context, service: str, memory: int | str) -> ActionPlan:
    """Guide §3 'Immediate: increase task memory allocation in task definition'.

    Registers a new revision copied from the one the service runs, with the task memory (and the
    hard limit of the first essential container that has one, raised by the same amount) set
    higher, then points the service at it: two API calls, register_task_definition and
    update_service.
    """
    _known_service(ctx, service)
    memory = _integer("memory", memory)
    svc = _service(ctx, service)
    current = _current_task_definition(svc)
    definition = _describe(ctx, current)
    containers = definition.get("containerDefinitions", [])
    limited = [c for c in containers if c.get("memory")]
    raised = next((c for c in limited if c.get("essential", True)), limited[0] if limited else None)
    task_memory = int(definition["memory"]) if definition.get("memory") else None
    old = task_memory if task_memory is not None else (raised or {}).get("memory")
    if old is None:
        raise UserError(f"{current} sets no memory (task or container); nothing to raise")
    if memory <= old:
        raise UserError(f"memory must be higher than the current {old} MiB of {current}, got {memory}")
    _check_fargate_size(definition, memory)
    container_memory = {raised["name"]: int(raised["memory"]) + memory - old} if raised else {}
    cluster = ctx.settings.cluster
    family = current.split(":", 1)[0]
    limit_text = (f" (container {raised['name']} hard limit {raised['memory']} → "
                  f"{container_memory[raised['name']]} MiB)" if raised else "")
    index = containers.index(raised) if raised else 0
    edit = f'.memory="{memory}"' + (f" | .containerDefinitions[{index}].memory={container_memory[raised['name']]}"
                                    if raised else "")
    drop = ",".join(f".{k}" for k in sorted(READ_ONLY_KEYS))
    draft = f"{family}-{memory}.json"
    return ActionPlan(
        action="raise-task-memory", environment=ctx.settings.name, target=service,
        summary=f"register a new revision of {family} copied from {current} with task memory {old} → {memory} MiB"
                f"{limit_text}, then point {service} in cluster {cluster} at it — 2 API calls: "
                "ecs.register_task_definition, then ecs.update_service (a rolling deployment)",
        service="ecs", operation=REGISTER_AND_DEPLOY,
        params=(params := {"cluster": cluster, "service": service, "sourceTaskDefinition": current,
                           "memory": memory, "containerMemory": container_memory}),
        perform=lambda ecs: register_and_update_service(ecs, **params),
        cli=(f"aws ecs describe-task-definition --task-definition {shlex.quote(current)} --query taskDefinition "
             f"| jq {shlex.quote(f'{edit} | del({drop})')} > {draft} && "
             f"aws ecs register-task-definition --cli-input-json file://{draft} && "
             f"aws ecs update-service --cluster {shlex.quote(cluster)} --service {shlex.quote(service)} "
             f"--task-definition {shlex.quote(family)}"),
    )

