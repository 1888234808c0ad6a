"""The environment's CloudWatch alarms that are firing: what `rmsops watch` reacts to.

Which alarms belong to an environment: those named under ``alarms:`` in its file (explicit names
and/or a name prefix); without that section, every alarm whose dimensions name the environment's
ALB, a target group, an ECS service or cluster, or the DB instance. Composite alarms have no
dimensions of their own, so only names and prefixes select them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rmsops.core.config import Settings
from rmsops.sources import limits

MAX_NAMES_PER_CALL = limits.CLOUDWATCH_ALARM_NAMES  # DescribeAlarms' AlarmNames maximum


@dataclass(frozen=True)
class Alarm:
    name: str
    kind: str  # metric | composite
    since: datetime  # when it last changed state (entered ALARM)
    reason: str = ""
    description: str = ""
    metric: str = ""
    # AWS's StateTransitionedTimestamp was there: ``since`` moves only when the state changes.
    # Without it (older APIs, emulators) ``since`` also moves when the reason is updated.
    transitioned: bool = False

    @property
    def key(self) -> str:
        """One firing of one alarm: the same alarm firing again later is another key."""
        return f"{self.name}@{self.since.astimezone(UTC).isoformat()}"


def firing(cloudwatch: Any, settings: Settings) -> list[Alarm]:
    """The environment's alarms in state ALARM, oldest first (``describe_alarms``, paginated)."""
    found: dict[str, Alarm] = {}
    for raw in _alarms_in_alarm(cloudwatch, settings):
        # Filtered here too: some emulators ignore StateValue when AlarmNames or a prefix is given.
        if raw[1].get("StateValue") == "ALARM" and _selected(raw, settings):
            alarm = _alarm(raw)
            found[alarm.name] = alarm
    return sorted(found.values(), key=lambda a: (a.since, a.name))


def _alarms_in_alarm(cloudwatch: Any, settings: Settings) -> Iterator[tuple[str, dict[str, Any]]]:
    """(kind, alarm) pairs: by explicit names, by prefix, or every alarm when neither is set."""
    queries: list[dict[str, Any]] = []
    for names in limits.chunks(settings.alarm_names, MAX_NAMES_PER_CALL):
        queries.append({"AlarmNames": names})
    if settings.alarm_prefix:
        queries.append({"AlarmNamePrefix": settings.alarm_prefix})
    if not queries:
        queries.append({})
    paginator = cloudwatch.get_paginator("describe_alarms")
    for query in queries:
        pages = paginator.paginate(StateValue="ALARM", AlarmTypes=["MetricAlarm", "CompositeAlarm"], **query)
        for page in pages:
            for kind, key in (("metric", "MetricAlarms"), ("composite", "CompositeAlarms")):
                for alarm in page.get(key, []):
                    yield kind, alarm


def _selected(raw: tuple[str, dict[str, Any]], settings: Settings) -> bool:
    kind, alarm = raw
    if settings.alarm_names or settings.alarm_prefix:
        return True  # the query itself selected it
    return kind == "metric" and names_the_environment(dimensions_of(alarm), settings)


def dimensions_of(alarm: dict[str, Any]) -> list[tuple[str, str]]:
    """Every (name, value) dimension of a metric alarm, metric-math alarms' metrics included."""
    found = [(d["Name"], d["Value"]) for d in alarm.get("Dimensions") or []]
    for query in alarm.get("Metrics") or []:
        metric = (query.get("MetricStat") or {}).get("Metric") or {}
        found += [(d["Name"], d["Value"]) for d in metric.get("Dimensions") or []]
    return found


def names_the_environment(dimensions: Iterable[tuple[str, str]], settings: Settings) -> bool:
    """Does one of these dimensions name a resource of the environment?"""
    for name, value in dimensions:
        if name == "LoadBalancer" and value.startswith(f"app/{settings.alb_name}/"):
            return True
        if name == "TargetGroup" and any(value.startswith(f"targetgroup/{tg}/") for tg in settings.target_groups):
            return True
        if name == "ServiceName" and value in settings.services:
            return True
        if name == "ClusterName" and value == settings.cluster:
            return True
        if name == "DBInstanceIdentifier" and value == settings.database.instance:
            return True
    return False


def _alarm(raw: tuple[str, dict[str, Any]]) -> Alarm:
    kind, alarm = raw
    transitioned = alarm.get("StateTransitionedTimestamp") is not None
    since = alarm.get("StateTransitionedTimestamp") or alarm.get("StateUpdatedTimestamp") or datetime.now(UTC)
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    metric = alarm.get("MetricName", "") or ("(metric math)" if alarm.get("Metrics") else "")
    return Alarm(name=alarm["AlarmName"], kind=kind, since=since.astimezone(UTC),
                 reason=alarm.get("StateReason", ""), description=alarm.get("AlarmDescription", ""),
                 metric=metric, transitioned=transitioned)
