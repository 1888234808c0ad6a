"""Every judgement's default threshold, in one place.

An environment file may override any of them under ``thresholds:``, and a
notebook or ``rmsops run -p`` may override them again for one run.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

DEFAULTS: Mapping[str, float] = MappingProxyType(
    {
        # 01 application-not-responding
        "health_timeout_seconds": 5.0,
        "health_slow_seconds": 2.0,
        "alb_5xx_per_minute": 10.0,  # 5xx responses in one minute that count as a spike
        "alb_5xx_sustained_minutes": 5.0,  # consecutive spiking minutes that make it critical
        # 02 database-connections (check_postgres uses 90/95; the catalogue 80/95)
        "db_connect_timeout_seconds": 5.0,
        "db_saturation_warning_pct": 80.0,
        "db_saturation_critical_pct": 95.0,
        "db_idle_in_transaction_max": 5.0,
        "db_idle_in_transaction_age_seconds": 300.0,
        "db_connections_trend_pct": 80.0,
    }
)


def merge(*overrides: Mapping[str, object] | None, source: str = "thresholds") -> dict[str, float]:
    """Defaults with each mapping of overrides applied in turn; unknown names are refused."""
    from rmsops.errors import UserError

    merged = dict(DEFAULTS)
    for override in overrides:
        for name, value in (override or {}).items():
            if name not in DEFAULTS:
                raise UserError(f"{source}: unknown threshold {name!r}; known: {', '.join(DEFAULTS)}")
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise UserError(f"{source}: threshold {name!r} must be a number, got {value!r}")
            merged[name] = float(value)
    return merged
