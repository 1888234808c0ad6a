"""What an area's seeding gets: the scenario, clients or a database connection, and a cleanup hook."""

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
