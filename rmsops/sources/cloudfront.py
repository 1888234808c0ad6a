"""The CloudFront distribution of an environment, found by its comment (the guide's ``--query``).

Shared by the CDN checks, the certificate check (a distribution's ACM certificate lives in
us-east-1) and the invalidation action. CloudFront is global: its client is made in us-east-1.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rmsops.sources import regions

if TYPE_CHECKING:
    from rmsops.core.context import Context


def matching_distributions(ctx: Context) -> list[dict[str, Any]]:
    """Distribution summaries whose Comment is the configured one, listed once per run."""
    def fetch() -> list[dict[str, Any]]:
        cloudfront = regions.client_for(ctx, "cloudfront")
        found = []
        for page in cloudfront.get_paginator("list_distributions").paginate():
            for item in page.get("DistributionList", {}).get("Items", []):
                if item.get("Comment") == ctx.settings.cloudfront_comment:
                    found.append(item)
        return found
    return ctx.memo("cloudfront.distributions", fetch)


def primary_distribution(ctx: Context) -> dict[str, Any] | None:
    """The one the other checks look at: the first enabled match, else the first match."""
    found = matching_distributions(ctx)
    return next((d for d in found if d.get("Enabled")), found[0] if found else None)


def acm_certificates(distributions: list[dict[str, Any]]) -> dict[str, list[str]]:
    """ACM certificate ARN -> the ids of the distributions that serve it (ViewerCertificate)."""
    served: dict[str, list[str]] = {}
    for dist in distributions:
        arn = (dist.get("ViewerCertificate") or {}).get("ACMCertificateArn") or ""
        if arn:
            served.setdefault(arn, []).append(dist["Id"])
    return served
