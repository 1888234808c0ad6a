"""The demo's environment file: what ``rmsops -e demo`` reads while the demo runs."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from rmsops.demo import layout

HEADER = """\
# Written by `rmsops demo --serve` (scenario: {scenario}).
# Valid only while that command runs: the AWS endpoint (moto), PostgreSQL and the
# health URLs below are local and disappear when it stops. Do not edit.
"""


def render(scenario: str, endpoint_url: str, db_port: int, health_urls: Mapping[str, str],
           extra: Mapping[str, Any] | None = None) -> str:
    settings = {
        "name": "demo",
        "protected": False,
        "aws": {"region": layout.REGION, "endpoint_url": endpoint_url, "local_test_credentials": True},
        "ecs": {"cluster": layout.CLUSTER, "services": [s.name for s in layout.all_services()]},
        "alb": {"name": layout.ALB, "target_groups": [s.name for s in layout.alb_services()]},
        "database": {
            "instance": layout.DB_INSTANCE, "host": "127.0.0.1", "port": int(db_port), "dbname": "rms",
            "user": layout.MONITOR_USER, "password_secret": layout.SECRET_NAME, "sslmode": "disable",
            "statement_timeout_ms": 15000,
        },
        "logs": {**layout.LOG_GROUPS, "waf_cloudfront": layout.CLOUDFRONT_WAF_LOG_GROUP},
        "cloudfront": {"comment": layout.CLOUDFRONT_COMMENT},
        "health_urls": dict(health_urls),
        # moto's Logs Insights ignores filter and stats: aggregate filter_log_events here instead
        "logs_query": "filter",
    }
    for key, value in (extra or {}).items():  # the area seeders' keys (tls endpoints, ...)
        if isinstance(value, dict) and isinstance(settings.get(key), dict):
            settings[key] = {**settings[key], **value}
        else:
            settings[key] = value
    body = yaml.safe_dump(settings, sort_keys=False, default_flow_style=False)
    return HEADER.format(scenario=scenario) + "\n" + body


def write(path: Path, text: str) -> Path:
    """Write atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path
