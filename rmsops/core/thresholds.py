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
        # 03 high-memory
        "memory_warning_pct": 90.0,
        "memory_critical_pct": 100.0,
        "task_churn_max": 5.0,  # stopped tasks per service in the window
        # 04 tls-certificates
        "cert_warning_days": 30.0,
        "cert_critical_days": 7.0,
        "tls_timeout_seconds": 5.0,
        # 05 cdn-static-assets
        "cdn_error_rate_pct": 5.0,  # 4xxErrorRate / 5xxErrorRate average
        "cdn_cache_hit_info_pct": 80.0,
        "cdn_cache_hit_warning_pct": 50.0,
        # 06 slow-api-responses and 10 monitoring-overview
        "latency_p99_warning_seconds": 1.0,
        "latency_p99_critical_seconds": 5.0,
        "log_errors_max": 50.0,  # ERROR lines in the window
        # 07 database-performance (PgHero / check_postgres defaults)
        "long_query_warning_seconds": 300.0,
        "long_query_critical_seconds": 1800.0,
        "slow_query_mean_ms": 20.0,
        "slow_query_min_calls": 100.0,
        "blocked_warning_seconds": 60.0,
        "stale_stats_modified_pct": 10.0,  # rows modified since ANALYZE, % of live rows
        "stale_stats_min_rows": 1000.0,
        "missing_index_min_rows": 10000.0,
        "missing_index_use_pct": 95.0,
        "cache_hit_rate_pct": 99.0,
        "explain_timeout_ms": 10000.0,
        # 08 failed-deployments
        "rollout_in_progress_minutes": 30.0,
        # 10 monitoring-overview
        "error_rate_warning_pct": 1.0,
        "error_rate_critical_pct": 5.0,
        "throughput_drop_pct": 50.0,
        "cpu_warning_pct": 90.0,
        "rds_cpu_warning_pct": 90.0,
        "rds_free_storage_pct": 10.0,
        # 11 log-analysis
        "status_5xx_share_pct": 1.0,
        # 12 security-suspicious-activity
        "waf_block_spike_factor": 3.0,  # blocks in the window against the window before
        "waf_block_min": 20.0,  # fewer blocks than this is never a spike
        "auth_failures_per_source": 20.0,
        "alb_client_requests_max": 5000.0,  # requests from one client in the window
        # 13 data-breach-response
        "access_key_max_age_days": 90.0,
        # 14 backup-recovery
        "pitr_lag_minutes": 15.0,
        "snapshot_max_age_hours": 26.0,
        # 16 external-dependencies
        "external_slow_seconds": 2.0,
        "ses_bounce_pct": 5.0,
        "ses_complaint_pct": 0.1,
    }
)


def merge(*overrides: Mapping[str, object] | None, source: str = "thresholds") -> dict[str, float]:
    """Defaults with each mapping of overrides applied in turn; unknown names are refused."""
    from rmsops.core.errors import UserError

    merged = dict(DEFAULTS)
    for override in overrides:
        for name, value in (override or {}).items():
            if name not in DEFAULTS:
                raise UserError(f"{source}: unknown threshold {name!r}; known: {', '.join(DEFAULTS)}")
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise UserError(f"{source}: threshold {name!r} must be a number, got {value!r}")
            merged[name] = float(value)
    return merged


def parse_pairs(pairs: list[str] | None, source: str = "-p") -> dict[str, float]:
    """``NAME=VALUE`` items naming thresholds (``rmsops list -p``); unknown names and non-numbers are refused."""
    from rmsops.core.errors import UserError

    values: dict[str, float] = {}
    for pair in pairs or []:
        name, sep, text = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UserError(f"{source} {pair!r}: expected NAME=VALUE")
        try:
            values[name] = float(text)
        except ValueError:
            raise UserError(f"{source} {name}: expected a number, got {text!r}") from None
    merge(values, source=source)  # unknown names: refused here, with the known ones
    return values


def in_force(env_file: Mapping[str, object] | None = None,
             overrides: Mapping[str, object] | None = None) -> list[tuple[str, float, float, str]]:
    """Each threshold as (name, default, value in force, where that value comes from: ``default``,
    ``environment file`` or ``-p``), in the order of DEFAULTS."""
    values = merge(env_file, overrides)
    rows = []
    for name, default in DEFAULTS.items():
        source = "-p" if name in (overrides or {}) else "environment file" if name in (env_file or {}) else "default"
        rows.append((name, default, values[name], source))
    return rows
