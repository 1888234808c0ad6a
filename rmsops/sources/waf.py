"""The configured web ACLs' logs (the ALB's in its region, CloudFront's in us-east-1) and their lines."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rmsops.sources import regions

if TYPE_CHECKING:
    from rmsops.core.context import Context


def parse_waf(message: str) -> dict[str, Any] | None:
    """One WAF log record (JSON) -> action, client, rule, uri; None when it is not one."""
    try:
        record = json.loads(message)
    except (TypeError, ValueError):
        return None
    if not isinstance(record, dict):
        return None
    request = record.get("httpRequest") if isinstance(record.get("httpRequest"), dict) else {}
    return {"action": str(record.get("action", "")), "client": str(request.get("clientIp", "") or "unknown"),
            "rule": str(record.get("terminatingRuleId", "") or "unknown"),
            "uri": str(request.get("uri", "") or ""), "country": str(request.get("country", "") or "")}


@dataclass(frozen=True)
class Waf:
    """One web ACL whose logs are read: its log group, the region that group lives in, what it guards."""

    group: str
    region: str
    guards: str  # "ALB" or "CloudFront"


# (environment file key under logs:, where that WAF's logs live, what it guards)
WAF_LOG_KEYS = (("waf", "alb.waf.logs", "ALB"), ("waf_cloudfront", "cloudfront.waf.logs", "CloudFront"))


def configured_wafs(ctx: Context) -> list[Waf]:
    """The WAFs named in the environment file: the ALB's (its region) and CloudFront's (us-east-1)."""
    return [Waf(group, regions.region_for(ctx, kind), guards) for key, kind, guards in WAF_LOG_KEYS
            if (group := ctx.settings.log_groups.get(key))]
