"""CloudFront actions from the guide's resolutions (§5 CDN/Static Asset Issues)."""

from __future__ import annotations

import re
import shlex
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rmsops.actions.base import ActionPlan, action
from rmsops.core.errors import UserError
from rmsops.sources import regions
from rmsops.sources.cloudfront import matching_distributions

if TYPE_CHECKING:
    from rmsops.core.context import Context

MAX_PATHS = 3000  # CloudFront's limit of paths per invalidation (wildcards count separately)


def parse_paths(paths: str | Sequence[str]) -> list[str]:
    """``"/*"``, ``"/index.html /assets/*"`` or ``"/a,/b"`` (as typed on the CLI), or a list."""
    items = re.split(r"[\s,]+", paths) if isinstance(paths, str) else [str(p) for p in paths]
    items = list(dict.fromkeys(p for p in (item.strip() for item in items) if p))
    if not items:
        raise UserError("invalidate-cloudfront: give at least one path, e.g. paths=/* or paths=/index.html")
    bad = [p for p in items if not p.startswith("/")]
    if bad:
        raise UserError(f"invalidate-cloudfront: paths must start with '/': {', '.join(bad)}")
    misplaced = [p for p in items if "*" in p[:-1]]
    if misplaced:
        raise UserError(f"invalidate-cloudfront: '*' is allowed only at the end of a path: {', '.join(misplaced)}")
    if len(items) > MAX_PATHS:
        raise UserError(f"invalidate-cloudfront: at most {MAX_PATHS} paths per invalidation; use a wildcard")
    return items


@action("invalidate-cloudfront")
def invalidate_cloudfront(ctx: Context, paths: str | Sequence[str] = "/*") -> ActionPlan:
    """Guide §5: 'Cache issues: Create CloudFront invalidation' of the distribution found by its comment."""
    items = parse_paths(paths)
    comment = ctx.settings.cloudfront_comment
    found = matching_distributions(ctx)
    if not found:
        raise UserError(f"no CloudFront distribution with comment {comment!r} in {ctx.settings.name}; "
                        "check cloudfront.comment in the environment file")
    if len(found) > 1:
        ids = ", ".join(d["Id"] for d in found)
        raise UserError(f"{len(found)} CloudFront distributions have the comment {comment!r} ({ids}); "
                        "give each a distinct comment so the target is unambiguous")
    dist = found[0]
    dist_id = dist["Id"]
    quoted = " ".join(shlex.quote(p) for p in items)
    return ActionPlan(
        action="invalidate-cloudfront", environment=ctx.settings.name, target=dist_id,
        summary=f"invalidate {', '.join(items)} in CloudFront distribution {dist_id} "
                f"({dist.get('DomainName', '')}, {comment!r}): the edges fetch those objects from the origin again",
        service="cloudfront", region=regions.region_for(ctx, "cloudfront"), operation="create_invalidation",
        params={"DistributionId": dist_id, "InvalidationBatch": {
            "Paths": {"Quantity": len(items), "Items": items},
            "CallerReference": f"rmsops-{uuid.uuid4()}"}},
        cli=f"aws cloudfront create-invalidation --distribution-id {shlex.quote(dist_id)} --paths {quoted}",
    )
