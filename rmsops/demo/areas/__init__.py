"""Per-area demo seeding: each guide area adds what its runbooks look for, per scenario.

An area module defines ``seed_aws(env: AwsSeed)`` and/or ``seed_db(env: DbSeed)``. Both run
after the base seeding (ECS, ALB, RDS, metrics, logs in ``seed_aws``; roles, schema and held
connections in ``seed_db``). An area reads ``env.scenario.name`` to decide what to seed, may add
keys to the environment file through ``env.settings``, and registers anything it starts
(servers, patches, connections) with ``env.cleanup`` so that the demo stops it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

    from rmsops.demo.localpg import LocalPostgres
    from rmsops.demo.moto_patches import MotoPatches
    from rmsops.demo.scenarios import Scenario
    from rmsops.demo.seed_aws import SeededAws

Cleanup = Callable[[str, Callable[[], None]], None]


@dataclass
class AwsSeed:
    scenario: Scenario
    client: Callable[..., Any]  # client(service, region=None): boto3 clients bound to the moto server
    endpoint_url: str
    aws: SeededAws  # what the base seeding created (ARNs, ids)
    patches: MotoPatches  # install extra moto patches through it; removed on stop
    now: datetime
    settings: dict[str, Any] = field(default_factory=dict)  # merged into the environment file
    cleanup: Cleanup = lambda name, fn: None


@dataclass
class DbSeed:
    scenario: Scenario
    conn: psycopg.Connection  # superuser, autocommit, database rms
    postgres: LocalPostgres
    app_conninfo: str  # the application role (rms_app), for load that must look like the app's
    cleanup: Cleanup = lambda name, fn: None


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
