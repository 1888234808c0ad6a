"""The action mechanism of the spec.

An action is planned first (what would change, and the AWS CLI equivalent), then
executed only when confirmed. In a protected environment the confirmation must
name the target. Every call, dry or real, appends one JSON line to the audit log.
"""

from __future__ import annotations

import getpass
import inspect
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rmsops.core import failure, secrets
from rmsops.core.errors import UserError
from rmsops.core.findings import iso

if TYPE_CHECKING:
    from rmsops.core.context import Context


@dataclass(frozen=True)
class ActionPlan:
    action: str
    environment: str
    target: str  # what the confirmation must name in a protected environment
    summary: str
    service: str  # boto3 service
    operation: str  # boto3 method
    params: dict[str, Any]
    cli: str  # the AWS CLI equivalent, for the incident record
    # For an action of several calls: performs them on the service's client (operation then names it).
    perform: Callable[[Any], dict[str, Any]] | None = field(default=None, compare=False, repr=False)
    region: str | None = None  # where the service is called; None: the environment's region


@dataclass(frozen=True)
class ActionRecord:
    at: str
    user: str
    environment: str
    action: str
    target: str
    dry_run: bool
    outcome: str  # planned (dry run), refused (wrong confirmation), done, failed
    detail: str
    params: dict[str, Any] = field(default_factory=dict)


Planner = Callable[..., ActionPlan]
ACTIONS: dict[str, Planner] = {}


def action(name: str) -> Callable[[Planner], Planner]:
    def register(fn: Planner) -> Planner:
        ACTIONS[name] = fn
        return fn
    return register


def plan(ctx: Context, name: str, **arguments: Any) -> ActionPlan:
    """The plan of an action; wrong or missing arguments are a UserError naming the right ones."""
    if name not in ACTIONS:
        raise UserError(f"unknown action {name!r}; known: {', '.join(sorted(ACTIONS))}")
    planner = ACTIONS[name]
    try:
        inspect.signature(planner).bind(ctx, **arguments)
    except TypeError as exc:
        raise UserError(f"{name}: {exc}; arguments: {signature_text(planner)}") from None
    return planner(ctx, **arguments)


def signature_text(planner: Planner) -> str:
    """``service=… count=…`` for help texts, from the planner's own signature (one source of truth)."""
    params = list(inspect.signature(planner).parameters.values())[1:]
    return " ".join(f"{p.name}=…" if p.default is inspect.Parameter.empty else f"[{p.name}=…]"
                    for p in params)


def audit_log_path(ctx: Context) -> Path:
    """The incident's audit log: in the run's output folder, else the user's state folder."""
    if ctx.output_dir:
        return Path(ctx.output_dir) / "audit.jsonl"
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")  # empty = unset
    return state / "rmsops" / "audit.jsonl"


def check_confirmation(ctx: Context, plan_: ActionPlan, confirm: str) -> None:
    """Raise UserError unless the confirmation is acceptable for this environment."""
    # The message never repeats what was typed: people paste the strangest things (even secrets).
    if ctx.settings.protected and confirm != plan_.target:
        raise UserError(f"{ctx.settings.name} is protected: the confirmation must name the target "
                        f"exactly (--confirm {plan_.target}). Nothing was changed.")
    if not ctx.settings.protected and confirm not in (plan_.target, "yes"):
        raise UserError(f"confirm with --confirm {plan_.target} (or 'yes'). Nothing was changed.")


def execute(ctx: Context, plan_: ActionPlan, confirm: str | None = None,
            audit_log: Path | None = None) -> ActionRecord:
    """Dry run unless ``confirm`` is given; a wrong confirmation changes nothing and is audited."""
    path = audit_log or audit_log_path(ctx)
    if not confirm:
        return _audit(path, ctx, plan_, dry_run=True, outcome="planned",
                      detail=f"dry run: {plan_.summary}")
    try:
        check_confirmation(ctx, plan_, confirm)
    except UserError as exc:
        _audit(path, ctx, plan_, dry_run=True, outcome="refused", detail=str(exc))
        raise
    try:
        client = ctx.client(plan_.service, plan_.region)
        response = (plan_.perform(client) if plan_.perform
                    else getattr(client, plan_.operation)(**plan_.params))
    except Exception as exc:  # noqa: BLE001 - the outcome is recorded and reported
        record = _audit(path, ctx, plan_, dry_run=False, outcome="failed", detail=failure.describe(exc))
        raise UserError(f"{plan_.action} failed: {record.detail}") from None
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return _audit(path, ctx, plan_, dry_run=False, outcome="done",
                  detail=f"{plan_.summary} (HTTP {status})")


def _audit(path: Path, ctx: Context, plan_: ActionPlan, dry_run: bool, outcome: str,
           detail: str) -> ActionRecord:
    record = ActionRecord(at=iso(datetime.now(UTC)), user=_user(), environment=ctx.settings.name,
                          action=plan_.action, target=plan_.target, dry_run=dry_run, outcome=outcome,
                          detail=secrets.redact(detail), params=plan_.params)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = secrets.redact(json.dumps(asdict(record), default=str, ensure_ascii=False))
    with path.open("a", encoding="utf-8") as log:
        log.write(line + "\n")
    return record


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
