"""The configured web ACLs' logs (the ALB's in its region, CloudFront's in us-east-1) and their lines.

WAF logs are read from their CloudWatch Logs groups (``logs.waf``, ``logs.waf_cloudfront``), or,
for the ALB's web ACL logging to S3, from the Athena table of ``docs/athena/waf_logs.sql``
(``athena.waf_table``: AWS's documented DDL, partition projection on the ``yyyy/MM/dd/HH/mm``
folders).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pandas as pd

from rmsops.sources import regions

if TYPE_CHECKING:
    from rmsops.core.config import AthenaSettings
    from rmsops.core.context import Context
    from rmsops.core.window import Window


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

    group: str  # the log group, or for Athena ``database.table``
    region: str
    guards: str  # "ALB" or "CloudFront"
    athena: AthenaSettings | None = None  # read from Athena's table (athena.waf_table), not Logs


# (environment file key under logs:, where that WAF's logs live, what it guards)
WAF_LOG_KEYS = (("waf", "alb.waf.logs", "ALB"), ("waf_cloudfront", "cloudfront.waf.logs", "CloudFront"))


def configured_wafs(ctx: Context) -> list[Waf]:
    """The WAFs named in the environment file: the ALB's (its region) and CloudFront's (us-east-1)."""
    return [Waf(group, regions.region_for(ctx, kind), guards) for key, kind, guards in WAF_LOG_KEYS
            if (group := ctx.settings.log_groups.get(key))]


def blocking_wafs(ctx: Context) -> list[Waf]:
    """The WAFs whose blocks are counted: as ``configured_wafs``, but the ALB's from Athena's table
    when the environment names one (``athena.waf_table``), with or without ``logs.waf``."""
    athena = ctx.settings.athena
    if not (athena and athena.waf_table):
        return configured_wafs(ctx)
    table = Waf(f"{athena.database}.{athena.waf_table}", regions.region_for(ctx, "alb.waf.logs"), "ALB", athena)
    return [table] + [waf for waf in configured_wafs(ctx) if waf.guards != "ALB"]


# --- Athena: blocks per (client, rule, uri) in the window, and the window before --------------------

BLOCK_ROWS = 10_000


def log_time(moment: Any) -> str:
    """A WAF log folder's time (the ``log_time`` partition, ``yyyy/MM/dd/HH/mm``)."""
    return f"{moment:%Y/%m/%d/%H/%M}"


def blocks_sql(table: str, window: Window, limit: int = BLOCK_ROWS) -> str:
    """Blocks per (client, rule, uri) in the window, and on every row the blocks of the window
    before (totals before the row limit). One scan for both windows; the ``log_time`` predicate keeps
    Athena to their folders (5 minutes either side: a file is delivered after its records)."""
    previous = window.previous()
    start, first, end = (int(t.timestamp() * 1000) for t in (window.start, previous.start, window.end))
    folders = (log_time(previous.start - timedelta(minutes=5)), log_time(window.end + timedelta(minutes=5)))
    return f"""SELECT COALESCE(NULLIF(httprequest.clientip, ''), 'unknown') AS client,
       COALESCE(NULLIF(terminatingruleid, ''), 'unknown') AS "rule",
       COALESCE(httprequest.uri, '') AS uri,
       count_if("timestamp" >= {start}) AS blocks,
       sum(count_if("timestamp" < {start})) OVER () AS previous_blocks
FROM {table}
WHERE log_time BETWEEN '{folders[0]}' AND '{folders[1]}'
  AND "action" = 'BLOCK'
  AND "timestamp" >= {first} AND "timestamp" <= {end}
GROUP BY 1, 2, 3
ORDER BY blocks DESC, client, "rule", uri
LIMIT {int(limit)}"""


def blocks_from_athena(ctx: Context, waf: Waf) -> tuple[pd.DataFrame, int, dict[str, Any]]:
    """(blocks per client, rule and uri in the window; blocks in the window before; what Athena
    scanned) from the WAF table."""
    from rmsops.sources import athena

    settings = waf.athena
    if settings is None or not settings.waf_table:
        raise ValueError(f"{waf.group}: not a WAF table in Athena (athena.waf_table)")
    rows = athena.run(ctx, blocks_sql(f'"{settings.database}"."{settings.waf_table}"', ctx.window),
                      athena.Query.of(settings))
    baseline = int(pd.to_numeric(rows["previous_blocks"], errors="coerce").fillna(0).iloc[0]) if len(rows) else 0
    frame = rows.reindex(columns=["client", "rule", "uri", "blocks"]).copy()
    frame["blocks"] = pd.to_numeric(frame["blocks"], errors="coerce").fillna(0).astype(int)
    for column in ("client", "rule", "uri"):
        frame[column] = frame[column].fillna("").astype(str)
    frame = frame[frame["blocks"] > 0].reset_index(drop=True)
    source = {**rows.attrs["athena"], "table": waf.group, "rows_truncated": len(rows) >= BLOCK_ROWS}
    return frame, baseline, source
