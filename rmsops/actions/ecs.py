"""ECS actions from the guide's resolutions."""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

from rmsops.actions.base import ActionPlan, action
from rmsops.errors import UserError

if TYPE_CHECKING:
    from rmsops.context import Context


@action("force-new-deployment")
def force_new_deployment(ctx: Context, service: str) -> ActionPlan:
    """Guide §1: 'If tasks are unhealthy: force new deployment'."""
    if service not in ctx.settings.services:
        raise UserError(f"unknown service {service!r} for {ctx.settings.name}; "
                        f"known: {', '.join(ctx.settings.services)}")
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
