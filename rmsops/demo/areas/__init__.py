"""Per-area demo seeding: each guide area adds what its runbooks look for, per scenario.

An area module defines ``seed_aws(env: AwsSeed)`` and/or ``seed_db(env: DbSeed)``. Both run
after the base seeding (ECS, ALB, RDS, metrics, logs in ``seed_aws``; roles, schema and held
connections in ``seed_db``). An area reads ``env.scenario.name`` to decide what to seed, may add
keys to the environment file through ``env.settings``, and registers anything it starts
(servers, patches, connections) with ``env.cleanup`` so that the demo stops it.
"""

from __future__ import annotations

from typing import Any

from rmsops.demo.areas.seeding import AwsSeed, Cleanup, DbSeed

__all__ = ["AwsSeed", "Cleanup", "DbSeed", "modules", "seed_aws", "seed_db"]


def modules() -> list[Any]:
    from rmsops.demo.areas import database, edge, observability, platform, security

    return [platform, edge, database, observability, security]


def seed_aws(env: AwsSeed) -> None:
    for module in modules():
        if hasattr(module, "seed_aws"):
            module.seed_aws(env)


def seed_db(env: DbSeed) -> None:
    for module in modules():
        if hasattr(module, "seed_db"):
            module.seed_db(env)
