"""How the database-performance judges (``rmsops.checks.dbperf``) word and shape their findings:
resource names, sizes, table names, JSON-able evidence, and the cap on findings per check.

Kept out of dbperf so that it holds only fetch → judge → check. The texts the figures share
(durations, one-line SQL) are in ``rmsops.render.db_figures``.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from rmsops.core.findings import Finding
from rmsops.sources.pg_queries import quote_ident

MAX_FINDINGS = 10  # per check; the rest are summarised in one more finding


def instance_resource(instance: str) -> str:
    """The finding resource of the database instance itself."""
    return f"db:{instance}"


def size_text(n: float) -> str:
    """Bytes for people, in powers of 1024 (as pg_size_pretty)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def qualified(schema: str, table: str) -> str:
    """schema.table as it can be pasted into the ANALYZE or CREATE INDEX a resolution suggests."""
    return f"{quote_ident(str(schema))}.{quote_ident(str(table))}"


def clean(value: Any) -> Any:
    """A JSON-able scalar: NaN/NaT become None, numpy and pandas values plain Python."""
    if value is None:
        return None
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if hasattr(value, "item"):
        return value.item()
    return value


def record(row: Any, columns: list[str] | None = None) -> dict[str, Any]:
    """A row (Series, namedtuple dict or mapping) as evidence: only ``columns``, every value ``clean``."""
    data = row.to_dict() if hasattr(row, "to_dict") else dict(row)
    return {k: clean(v) for k, v in data.items() if columns is None or k in columns}


def capped(findings: list[Finding], check_id: str, resource_name: str, what: str) -> list[Finding]:
    """At most MAX_FINDINGS; the rest become one finding with their worst severity, so a bad day
    with hundreds of sessions still reads as a list a person can take in."""
    if len(findings) <= MAX_FINDINGS:
        return findings
    rest = findings[MAX_FINDINGS:]
    worst = min((f.severity for f in rest), key=lambda s: s.rank)
    return findings[:MAX_FINDINGS] + [Finding(
        check_id, worst, resource_name, f"{len(rest)} more {what}",
        f"Only the first {MAX_FINDINGS} are listed one by one; see the table for all of them.",
        {"more": len(rest), "resources": [f.resource for f in rest][:50]}, rest[0].resolution)]
