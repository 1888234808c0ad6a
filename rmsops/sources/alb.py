"""The configured ALB, described once per run (its ARN and dimensions feed several checks)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rmsops.core.context import Context


def load_balancer(ctx: Context) -> dict:
    """The configured ALB, described once per run."""
    def fetch() -> dict:
        elb = ctx.client("elbv2")
        return elb.describe_load_balancers(Names=[ctx.settings.alb_name])["LoadBalancers"][0]
    return ctx.memo("elbv2.load_balancer", fetch)
