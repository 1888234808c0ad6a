"""What each demo scenario looks like: the desired state the seeders build.

A scenario is plain data. ``seed_aws``, ``moto_patches``, ``seed_db`` and
``health_server`` turn it into an emulated AWS account, a real PostgreSQL
server under load and HTTP health endpoints. Per-minute series are 60 values,
oldest first; the last value is the current minute.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from rmsops.core.errors import UserError

MINUTES = 60  # every per-minute series covers the last hour


@dataclass(frozen=True)
class ServiceState:
    """One ECS service: its counts and how many of its running tasks report UNHEALTHY."""

    desired: int
    running: int
    unhealthy_tasks: int = 0

    @property
    def pending(self) -> int:
        return max(0, self.desired - self.running)


@dataclass(frozen=True)
class TargetFault:
    """ALB health of one registered target, as describe_target_health reports it."""

    state: str  # unhealthy, draining, unused, initial
    reason: str
    description: str


@dataclass(frozen=True)
class LogLine:
    """One log event: which configured log group (backend, frontend, rds, waf), when, what."""

    group: str
    minutes_ago: float
    message: str


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    services: Mapping[str, ServiceState]
    # Per target group: the faults of its first registered targets, in order; the rest are healthy.
    target_faults: Mapping[str, tuple[TargetFault, ...]]
    # HTTP status each health URL (api, frontend) answers with.
    health_status: Mapping[str, int]
    # ALB metrics, per minute (only non-zero minutes are published, like a real ALB).
    elb_502: tuple[int, ...]
    elb_503: tuple[int, ...]
    target_5xx: tuple[int, ...]
    request_count: tuple[int, ...]
    response_time_ms: tuple[float, ...]
    # RDS DatabaseConnections (Maximum) and CPUUtilization per minute.
    db_connections: tuple[int, ...]
    db_cpu: tuple[float, ...]
    # Connections the demo holds open as the application (rms_app), and how many of them
    # are left idle in transaction.
    db_held_connections: int
    db_idle_in_transaction: int
    # A rms-backend deployment that started this many minutes ago (None: only the old one).
    deployment_minutes_ago: int | None
    log_lines: tuple[LogLine, ...] = field(default=())


def _series(rng: random.Random, low: float, high: float, minutes: int = MINUTES) -> list[float]:
    return [rng.uniform(low, high) for _ in range(minutes)]


def _sparse(rng: random.Random, chance: float, low: int, high: int) -> list[int]:
    return [rng.randint(low, high) if rng.random() < chance else 0 for _ in range(MINUTES)]


def _frozen(**items: object) -> Mapping:
    return MappingProxyType(dict(items))


def _incident() -> Scenario:
    """A bad rms-backend deployment 15 minutes ago leaks database connections."""
    rng = random.Random(502)
    deploy = 15  # minutes ago
    start = MINUTES - deploy  # index of the deployment minute
    elb_502 = _sparse(rng, 0.08, 1, 2)
    elb_503 = [0] * MINUTES
    target_5xx = _sparse(rng, 0.1, 1, 3)
    db = [round(v) for v in _series(rng, 6, 9)]
    cpu = _series(rng, 12, 22)
    requests = [round(v) for v in _series(rng, 900, 1200)]
    latency = _series(rng, 80, 140)
    for i in range(start, MINUTES):
        since = i - start
        db[i] = min(29, 9 + 2 * since) if since < 12 else rng.choice((26, 27, 28))
        cpu[i] = min(85.0, 25 + 5 * since + rng.uniform(-3, 3))
        latency[i] = min(5000.0, 150 + 400 * since + rng.uniform(-50, 50))
        if since >= 2:
            elb_502[i] = rng.randint(25, 60) + 6 * since
            target_5xx[i] = rng.randint(8, 25)
        if since >= 7:  # both new tasks failed their health checks: no healthy target left
            elb_503[i] = rng.randint(30, 80)
    logs = [
        LogLine("backend", deploy + 0.5, "INFO [rms.app] starting rms-backend 2.14.0 (task definition rms-backend:2)"),
        LogLine("backend", deploy + 0.4, "INFO [rms.db] connection pool ready (min=5, max=40, overflow unlimited)"),
        LogLine("frontend", 30, '10.0.1.7 - - "GET / HTTP/1.1" 200 1532 "-" "Mozilla/5.0"'),
        LogLine("waf", 40, '{"action":"ALLOW","httpRequest":{"clientIp":"198.51.100.23","uri":"/api/reservations",'
                           '"httpMethod":"GET","country":"US"},"terminatingRuleId":"Default_Action"}'),
        LogLine("waf", 6, '{"action":"BLOCK","httpRequest":{"clientIp":"203.0.113.9","uri":"/wp-login.php",'
                          '"httpMethod":"POST","country":"NL"},"terminatingRuleId":"AWS-AWSManagedRulesCommonRuleSet"}'),
    ]
    for k, minute in enumerate((13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1)):
        logs += [
            LogLine("backend", minute + 0.2,
                    'ERROR [rms.db] OperationalError: connection to server at "rms-production-db" '
                    "(10.0.11.15), port 5432 failed: FATAL:  sorry, too many clients already"),
            LogLine("backend", minute + 0.1,
                    "ERROR [rms.api] GET /api/reservations 502 upstream database unavailable "
                    "(too many connections) after 30.0 s"),
            LogLine("frontend", minute,
                    f'ERROR 10.0.1.{7 + k % 3} - - "GET /api/reservations HTTP/1.1" 502 166 "-" "Mozilla/5.0"'),
            LogLine("rds", minute + 0.15,
                    f"UTC:10.0.10.10(51234):rms_app@rms:[{4120 + k}]:FATAL:  sorry, too many clients already"),
            LogLine("rds", minute + 0.05,
                    f"UTC:10.0.10.11(51298):rms_app@rms:[{4180 + k}]:FATAL:  remaining connection slots are "
                    "reserved for non-replication superuser connections"),
        ]
        if minute <= 8:
            logs.append(LogLine("backend", minute + 0.05,
                                "WARNING [rms.health] /api/health -> 503: database check failed "
                                "(too many connections)"))
    return Scenario(
        name="incident",
        summary=("rms-backend deployment 15 min ago leaks DB connections: API 503, 502s at the ALB, "
                 "unhealthy targets and tasks, connections near max_connections, 8 idle in transaction"),
        services=_frozen(**{"rms-backend": ServiceState(desired=4, running=2, unhealthy_tasks=2),
                            "rms-frontend": ServiceState(desired=2, running=2)}),
        target_faults=_frozen(**{"rms-backend": (
            TargetFault("unhealthy", "Target.ResponseCodeMismatch",
                        "Health checks failed with these codes: [503]"),
            TargetFault("unhealthy", "Target.Timeout", "Request timed out"),
        )}),
        health_status=_frozen(api=503, frontend=200),
        elb_502=tuple(elb_502), elb_503=tuple(elb_503), target_5xx=tuple(target_5xx),
        request_count=tuple(requests), response_time_ms=tuple(round(v, 1) for v in latency),
        db_connections=tuple(db), db_cpu=tuple(round(v, 1) for v in cpu),
        db_held_connections=23, db_idle_in_transaction=8,
        deployment_minutes_ago=deploy,
        log_lines=tuple(logs),
    )


def _healthy() -> Scenario:
    """Everything at desired capacity; a stray 502 now and then, as in real life."""
    rng = random.Random(200)
    logs = [LogLine("backend", m, f"INFO [rms.api] GET /api/reservations 200 in {rng.randint(40, 120)} ms")
            for m in (50, 35, 20, 9, 2)]
    logs += [LogLine("frontend", m, '10.0.1.7 - - "GET / HTTP/1.1" 200 1532 "-" "Mozilla/5.0"')
             for m in (45, 25, 5)]
    logs += [LogLine("rds", 30, "UTC::@:[612]:LOG:  checkpoint complete: wrote 112 buffers (0.7%)"),
             LogLine("waf", 12, '{"action":"ALLOW","httpRequest":{"clientIp":"198.51.100.23",'
                                '"uri":"/api/reservations","httpMethod":"GET","country":"US"},'
                                '"terminatingRuleId":"Default_Action"}')]
    return Scenario(
        name="healthy",
        summary="Everything at desired capacity and healthy; a stray 5xx now and then",
        services=_frozen(**{"rms-backend": ServiceState(desired=2, running=2),
                            "rms-frontend": ServiceState(desired=2, running=2)}),
        target_faults=_frozen(),
        health_status=_frozen(api=200, frontend=200),
        elb_502=tuple(_sparse(rng, 0.05, 1, 2)), elb_503=(0,) * MINUTES,
        target_5xx=tuple(_sparse(rng, 0.05, 1, 2)),
        request_count=tuple(round(v) for v in _series(rng, 900, 1200)),
        response_time_ms=tuple(round(v, 1) for v in _series(rng, 70, 130)),
        db_connections=tuple(round(v) for v in _series(rng, 4, 7)),
        db_cpu=tuple(round(v, 1) for v in _series(rng, 8, 18)),
        db_held_connections=3, db_idle_in_transaction=0,
        deployment_minutes_ago=None,
        log_lines=tuple(logs),
    )


def _variants(healthy: Scenario) -> list[Scenario]:
    """Scenarios that fault one area each; the area seeders (``rmsops.demo.areas``) add the fault.

    Their base (ECS, ALB, database load) is the healthy one unless the fault shows there too.
    """
    return [
        replace(healthy, name="memory-leak",
                summary="rms-backend leaks memory: utilisation climbing past 90%, tasks OOM-killed"),
        replace(healthy, name="expiring-cert",
                summary="the API certificate expires in 5 days; another one has already expired"),
        replace(healthy, name="bad-deploy",
                summary="a new rms-backend revision fails its health checks; the rollout is stuck",
                services=_frozen(**{"rms-backend": ServiceState(desired=2, running=1, unhealthy_tasks=1),
                                    "rms-frontend": ServiceState(desired=2, running=2)}),
                deployment_minutes_ago=40),
        replace(healthy, name="db-slow-queries",
                summary="a slow statement called thousands of times, a blocked session, stale statistics"),
        replace(healthy, name="security-event",
                summary="a credential-stuffing burst blocked by WAF, root account use, a security group opened"),
    ]


_HEALTHY = _healthy()
SCENARIOS: Mapping[str, Scenario] = MappingProxyType(
    {s.name: s for s in (_incident(), _HEALTHY, *_variants(_HEALTHY))})
DEFAULT_SCENARIO = "incident"


def get(name: str) -> Scenario:
    """The scenario called *name*; UserError naming the known ones otherwise."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise UserError(f"unknown demo scenario {name!r}; known: {', '.join(SCENARIOS)}") from None
