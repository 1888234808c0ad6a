"""Checks, one module per guide area. Importing this package registers every check."""

from rmsops.checks import (  # noqa: F401
    alb,
    backup,
    breach,
    cdn,
    database,
    dbperf,
    deploy,
    drift,
    ecs,
    escalation,
    external,
    health,
    latency,
    logs,
    memory,
    overview,
    recovery,
    security,
    tls,
)
