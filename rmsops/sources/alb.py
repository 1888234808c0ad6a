"""The configured ALB, described once per run (its ARN and dimensions feed several checks), and its target
groups described by name."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rmsops.sources import limits

# The ALB's 5xx counts that no other one includes: its own (which holds its 502s and 503s, also
# published on their own) and the targets'. Their sum is every 5xx response, each counted once.
DISTINCT_5XX = ("HTTPCode_ELB_5XX_Count", "HTTPCode_Target_5XX_Count")

if TYPE_CHECKING:
    from rmsops.core.context import Context


def load_balancer(ctx: Context) -> dict:
    """The configured ALB, described once per run."""
    def fetch() -> dict:
        elb = ctx.client("elbv2")
        return elb.describe_load_balancers(Names=[ctx.settings.alb_name])["LoadBalancers"][0]
    return ctx.memo("elbv2.load_balancer", fetch)


def target_groups(elb: Any, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The target groups of these names that exist, by name: 20 names a call (the API's maximum).

    One unknown name fails the whole call (TargetGroupNotFoundException), so such a batch is asked
    again one name at a time, to tell the missing groups from the others.
    """
    found: dict[str, dict[str, Any]] = {}
    for batch in limits.chunks(list(dict.fromkeys(names)), limits.ELBV2_DESCRIBE_TARGET_GROUPS):
        try:
            pages = elb.get_paginator("describe_target_groups").paginate(Names=batch)
            groups = [group for page in pages for group in page.get("TargetGroups", [])]
        except elb.exceptions.TargetGroupNotFoundException:
            groups = []
            for name in batch:
                try:
                    groups += elb.describe_target_groups(Names=[name])["TargetGroups"]
                except elb.exceptions.TargetGroupNotFoundException:
                    continue
        found.update((group["TargetGroupName"], group) for group in groups)
    return found
