"""Where each kind of AWS data lives: the environment's region, or us-east-1 for what AWS keeps there.

ECS, the ALB, RDS, their metrics and logs live in the environment's region. CloudFront does not:
it is a global service whose CloudWatch metrics (``AWS/CloudFront``, dimension ``Region=Global``),
whose ACM certificates and whose ``CLOUDFRONT``-scope WAF (with that WAF's log group) all live
in us-east-1. So do IAM, Route 53 health checks and their metrics, and CloudTrail's record of the
global services' events (IAM, STS, console sign-in). Checks ask this table (through
``client_for``) instead of deciding ad hoc, so no check reads an empty region and calls
it healthy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rmsops.core.context import Context

GLOBAL_REGION = "us-east-1"


@dataclass(frozen=True)
class Home:
    """The service that serves a kind of data and the region it lives in (None: the environment's)."""

    service: str
    region: str | None
    why: str


HOMES: dict[str, Home] = {
    "cloudfront": Home("cloudfront", GLOBAL_REGION, "CloudFront is a global service signed in us-east-1"),
    "cloudfront.metrics": Home("cloudwatch", GLOBAL_REGION,
                               "CloudFront publishes its metrics (Region=Global) to CloudWatch in us-east-1"),
    "cloudfront.certificates": Home("acm", GLOBAL_REGION,
                                    "CloudFront serves only ACM certificates issued in us-east-1"),
    "cloudfront.waf.logs": Home("logs", GLOBAL_REGION,
                                "a CLOUDFRONT-scope web ACL and its log group live in us-east-1"),
    "iam": Home("iam", GLOBAL_REGION, "IAM is a global service signed in us-east-1"),
    "route53.health": Home("route53", GLOBAL_REGION, "Route 53 is a global service"),
    "route53.metrics": Home("cloudwatch", GLOBAL_REGION, "Route 53 health-check metrics are in us-east-1"),
    "alb.waf.logs": Home("logs", None, "a REGIONAL web ACL on the ALB logs in the ALB's region"),
    "alb.certificates": Home("acm", None, "an ALB serves ACM certificates of its own region"),
}


def home(kind: str) -> Home:
    try:
        return HOMES[kind]
    except KeyError:
        raise KeyError(f"no home region known for {kind!r}; known: {', '.join(HOMES)}") from None


def region_of(kind: str, environment_region: str) -> str:
    """The region that holds ``kind`` for an environment in ``environment_region``."""
    return home(kind).region or environment_region


def cloudtrail_regions(environment_region: str) -> tuple[str, ...]:
    """Where CloudTrail's event history must be read: the environment's region (its resources'
    events), then us-east-1 (the global services' events: IAM, STS, console sign-in); once when
    they are the same."""
    return tuple(dict.fromkeys((environment_region, GLOBAL_REGION)))


def region_for(ctx: Context, kind: str) -> str:
    """Where ``kind`` of data lives for this run's environment."""
    return region_of(kind, ctx.settings.aws.region)


def client_for(ctx: Context, kind: str) -> Any:
    """The client that reads ``kind`` of data where AWS keeps it: ``client_for(ctx, "cloudfront.metrics")``
    is CloudWatch in us-east-1 whatever the environment's region."""
    return ctx.client(home(kind).service, region_for(ctx, kind))
