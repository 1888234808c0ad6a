"""Shared fixtures: environment files written per test, fake AWS credentials for moto."""

from __future__ import annotations

import copy
import os
import tempfile
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.pop("AWS_PROFILE", None)
os.environ.pop("AWS_ENDPOINT_URL", None)
# check times (rmsops.execution.durations) go to a folder of this run, not the user's cache
os.environ.setdefault("RMSOPS_CACHE_DIR", tempfile.mkdtemp(prefix="rmsops-test-cache-"))

BASE_ENV = {
    "name": "test",
    "protected": False,
    "aws": {"region": "us-east-1"},
    "ecs": {"cluster": "rms-production", "services": ["rms-backend", "rms-frontend"]},
    "alb": {"name": "rms-alb", "target_groups": ["rms-backend", "rms-frontend"]},
    "database": {"instance": "rms-production-db", "host": "127.0.0.1", "port": 5432, "dbname": "rms",
                 "user": "rmsops_monitor", "sslmode": "disable"},
    "logs": {"backend": "/ecs/rms-backend"},
    "health_urls": {},
}


def merge(base: dict, changes: dict) -> dict:
    """A deep copy of base with changes applied (nested mappings merged)."""
    out = copy.deepcopy(base)
    for key, value in changes.items():
        out[key] = merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return out


@pytest.fixture
def env_file(tmp_path: Path):
    """Write an environment file: ``env_file(database={"port": 5433})`` returns its path."""

    def write(**changes) -> Path:
        path = tmp_path / f"env-{len(list(tmp_path.glob('env-*.yaml')))}.yaml"
        path.write_text(yaml.safe_dump(merge(BASE_ENV, changes)), encoding="utf-8")
        return path

    return write


@pytest.fixture
def make_context(env_file):
    """A Context over an environment file, with the window ending now."""
    from rmsops.core.context import Context

    contexts = []

    def build(window: str = "1h", thresholds: dict | None = None, **changes):
        ctx = Context.open(env_file(**changes), window=window, threshold_overrides=thresholds)
        contexts.append(ctx)
        return ctx

    yield build
    for ctx in contexts:
        ctx.close()
from tests.pg import hold_connections, monitor_env, pg_admin, pg_server  # noqa: E402, F401
from tests.webhook import receiver  # noqa: E402, F401 - a webhook on 127.0.0.1 (notify, watch)
