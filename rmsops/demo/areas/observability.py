"""Demo data for runbooks 06 (slow API), 10 (monitoring overview) and 11 (log analysis).

The base seeding publishes the ALB counts, one TargetResponseTime value per minute, RDS
connections and CPU, and a few log lines per scenario. This area adds, for every scenario:

* **CloudWatch percentiles.** moto's GetMetricData knows Sum/Average/Minimum/Maximum/SampleCount
  only; ``Stat: "p99"`` ends in a TypeError (HTTP 500). ``Statistics.get_statistics_for_type`` in
  ``moto.cloudwatch.models`` is patched to compute ``pNN`` from the raw datapoints moto keeps
  (linear interpolation; a pre-aggregated datum counts as its average). Removed on stop. The
  checks make the plain boto3 call.
* **Response time samples.** 19 more TargetResponseTime samples per minute (one datum with
  ``Values``) spread around the base value (a log-normal shape), so p50 < p90 < p99 as with real
  traffic.
* **The previous window's RequestCount** (the two hours before the base hour), the baseline of
  ``metrics.throughput``; a few target 4xx per minute.
* **AWS/ECS CPUUtilization and MemoryUtilization** per service (Average and Maximum, published as
  statistic sets) and **AWS/RDS FreeStorageSpace**, unless another area published them already.
* **CloudWatch alarms** on 5xx, p99 latency, RDS CPU and ECS memory. moto never evaluates alarms:
  in the incident the 5xx and latency alarms are put into ALARM with ``set_alarm_state``.
* **X-Ray traces** of rms-backend (2 a minute): a ``reservations.list`` subsegment around
  ``redis``, ``postgres`` and ``serialize``. In the incident, ``postgres`` (waiting for a database
  connection) takes most of every request after the deployment.
* **Log lines** on a second task's streams: access lines of the backend and the frontend every
  minute, and in the incident the backend's request timeouts (ERROR).

The per-minute data (metrics and traces) is made by one function; a ticker thread keeps it coming
while the demo runs (``rmsops.demo.ticker.MinuteTicker``).
"""

from __future__ import annotations

import json
import math
import random
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from statistics import NormalDist
from typing import TYPE_CHECKING, Any
from unittest import mock

from rmsops.demo import layout
from rmsops.demo.layout import CLUSTER, DB_INSTANCE, LOG_GROUPS, SERVICES
from rmsops.demo.scenarios import MINUTES, Scenario
from rmsops.demo.ticker import MinuteTicker

if TYPE_CHECKING:
    from rmsops.demo.areas.seeding import AwsSeed

SAMPLES_PER_MINUTE = 19  # extra TargetResponseTime samples around the base value
SPREAD = 0.45  # sigma of the log-normal spread of the samples
MULTIPLIERS = tuple(math.exp(SPREAD * NormalDist().inv_cdf((k + 0.5) / SAMPLES_PER_MINUTE))
                    for k in range(SAMPLES_PER_MINUTE))
TRACES_PER_MINUTE = 2
PREVIOUS_MINUTES = 120  # RequestCount published before the base hour
ALLOCATED_GIB = 100  # the base creates the instance with AllocatedStorage=100
GIB = 1024 ** 3
_PERCENTILE = re.compile(r"^p(\d{1,2}(?:\.\d+)?)$")
API_HOST = "https://api.rms.company.com"


def seed_aws(env: AwsSeed) -> None:
    install_percentiles(env.cleanup)
    scenario, now = env.scenario, env.now
    cloudwatch, logs, xray = env.client("cloudwatch"), env.client("logs"), env.client("xray")
    lb = env.aws.load_balancer_dimension
    published = _already_published(cloudwatch)
    model = Model(scenario, lb, published, random.Random(f"observability-{scenario.name}"))
    minute0 = now.replace(second=0, microsecond=0) - timedelta(minutes=MINUTES - 1)
    batch = Batch()
    for i in range(MINUTES):
        model.minute(batch, i, minute0 + timedelta(minutes=i), until=now)
    model.previous_requests(batch, minute0)
    batch.flush(cloudwatch, xray)
    _alarms(cloudwatch, scenario, lb, now)
    _logs(logs, scenario, env.aws.tasks, model.rng, now)
    ticker = MinuteTicker("rms-demo-observability", now, partial(_publish_minute, cloudwatch, xray, model),
                          after_the_minute=True).start()  # its traces must have ended
    env.cleanup("observability ticker", ticker.stop)


# --- moto: percentiles in GetMetricData -----------------------------------------------------

def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between the closest ranks."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def install_percentiles(cleanup: Callable[[str, Callable[[], None]], None]) -> None:
    """Patch moto's CloudWatch statistics so that ``Stat: "pNN"`` is computed (see the module docstring)."""
    from moto.cloudwatch import models

    original = models.Statistics.get_statistics_for_type

    def get_statistics_for_type(self: Any, stat: str) -> Any:
        match = _PERCENTILE.match(stat or "")
        if not match:
            return original(self, stat)
        values = list(self.metric_single_values_list) + [
            a.sum / a.sample_count for a in self.metric_aggregated_list if a.sample_count]
        return percentile(values, float(match.group(1))) if values else 0.0

    patcher = mock.patch.object(models.Statistics, "get_statistics_for_type", get_statistics_for_type)
    patcher.start()
    cleanup("CloudWatch percentiles (moto patch)", patcher.stop)


# --- the per-minute model -------------------------------------------------------------------

@dataclass
class Batch:
    """Datums by namespace and X-Ray segment documents, sent in as few calls as possible."""

    metrics: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    segments: list[str] = field(default_factory=list)

    def datum(self, namespace: str, name: str, dims: list[dict[str, str]], at: datetime, unit: str,
              value: float | None = None, stats: dict[str, float] | None = None,
              values: list[float] | None = None) -> None:
        """One datum: a value, a statistic set, or a list of samples (``Values``, as agents publish)."""
        item: dict[str, Any] = {"MetricName": name, "Dimensions": dims, "Timestamp": at, "Unit": unit}
        if stats is not None:
            item["StatisticValues"] = stats
        elif values is not None:
            item["Values"] = values
        else:
            item["Value"] = float(value or 0.0)
        self.metrics.setdefault(namespace, []).append(item)

    def flush(self, cloudwatch: Any, xray: Any) -> None:
        for namespace, items in self.metrics.items():
            for offset in range(0, len(items), 500):
                cloudwatch.put_metric_data(Namespace=namespace, MetricData=items[offset:offset + 500])
        for offset in range(0, len(self.segments), 50):
            answer = xray.put_trace_segments(TraceSegmentDocuments=self.segments[offset:offset + 50])
            if answer.get("UnprocessedTraceSegments"):
                raise RuntimeError(f"X-Ray refused demo segments: {answer['UnprocessedTraceSegments'][:1]}")
        self.metrics, self.segments = {}, []


def _already_published(cloudwatch: Any) -> set[tuple[str, str, str]]:
    """(namespace, metric, service or instance) another area already publishes: not seeded twice."""
    found = set()
    for namespace, metric in (("AWS/ECS", "CPUUtilization"), ("AWS/ECS", "MemoryUtilization"),
                              ("AWS/RDS", "FreeStorageSpace")):
        for page in cloudwatch.get_paginator("list_metrics").paginate(Namespace=namespace, MetricName=metric):
            for item in page.get("Metrics", []):
                dims = {d["Name"]: d["Value"] for d in item.get("Dimensions", [])}
                found.add((namespace, metric, dims.get("ServiceName") or dims.get("DBInstanceIdentifier", "")))
    return found


class Model:
    """The scenario's observability story, minute by minute (index 0-59 into the scenario's series)."""

    def __init__(self, scenario: Scenario, lb_dimension: str, skip: set[tuple[str, str, str]],
                 rng: random.Random):
        self.scenario = scenario
        self.alb = [{"Name": "LoadBalancer", "Value": lb_dimension}]
        self.skip = skip
        self.rng = rng
        self.incident = scenario.name == "incident"
        deploy = scenario.deployment_minutes_ago
        self.deploy_index = MINUTES - deploy if self.incident and deploy is not None else None

    def since_deploy(self, i: int) -> int | None:
        """Minutes since the incident's bad deployment at index i (None: before it, or no incident)."""
        if self.deploy_index is None or i < self.deploy_index:
            return None
        return i - self.deploy_index

    def minute(self, batch: Batch, i: int, at: datetime, until: datetime) -> None:
        rng, since = self.rng, self.since_deploy(i)
        base = self.scenario.response_time_ms[i] / 1000
        batch.datum("AWS/ApplicationELB", "TargetResponseTime", self.alb, at + timedelta(seconds=30), "Seconds",
                    values=[round(base * factor * rng.uniform(0.9, 1.1), 4) for factor in MULTIPLIERS])
        batch.datum("AWS/ApplicationELB", "HTTPCode_Target_4XX_Count", self.alb, at, "Count", rng.randint(2, 9))
        for spec in SERVICES:
            backend = spec.name == "rms-backend"
            tasks = max(1, self.scenario.services[spec.name].running)
            dims = [{"Name": "ClusterName", "Value": CLUSTER}, {"Name": "ServiceName", "Value": spec.name}]
            cpu = rng.uniform(18, 30) if backend else rng.uniform(4, 9)
            memory = rng.uniform(48, 55) if backend else rng.uniform(28, 34)
            if backend and since is not None:  # the leaked connections cost CPU and memory, not past 90%
                cpu = min(60.0, 32 + 2 * since + rng.uniform(-3, 3))
                memory = min(74.0, 55 + 1.3 * since + rng.uniform(-1, 1))
            for metric, average, spread in (("CPUUtilization", cpu, 8.0), ("MemoryUtilization", memory, 4.0)):
                if ("AWS/ECS", metric, spec.name) in self.skip:
                    continue
                peak = average + rng.uniform(1, spread)
                batch.datum("AWS/ECS", metric, dims, at, "Percent",
                            stats={"SampleCount": float(tasks), "Sum": round(average * tasks, 2),
                                   "Minimum": round(max(0.0, 2 * average - peak), 2), "Maximum": round(peak, 2)})
        if ("AWS/RDS", "FreeStorageSpace", DB_INSTANCE) not in self.skip:
            free = (61.4 - 0.002 * i) * GIB
            batch.datum("AWS/RDS", "FreeStorageSpace", [{"Name": "DBInstanceIdentifier", "Value": DB_INSTANCE}],
                        at, "Bytes", round(free))
        for n in range(TRACES_PER_MINUTE):
            start = at + timedelta(seconds=rng.uniform(0, 55))
            seconds = base * rng.choice(MULTIPLIERS)
            if start + timedelta(seconds=seconds + 1) < until:
                batch.segments.append(self.trace(start, seconds, since, n))

    def trace(self, start: datetime, seconds: float, since: int | None, n: int) -> str:
        """One rms-backend segment document: a handler around redis, postgres and serialize."""
        rng = self.rng
        t0 = start.timestamp()
        if since is None:  # a healthy request: the database is a third of it
            cache, db, render = 0.05 * seconds, 0.35 * seconds, 0.2 * seconds
        else:  # waiting for a pooled database connection
            cache, render = min(0.004, 0.05 * seconds), min(0.03, 0.1 * seconds)
            db = max(0.0, seconds - 0.06 - cache - render)
        status = 200
        if since is not None and since >= 2 and rng.random() < 0.3:
            status = 502
        handler_start = t0 + 0.01 * seconds
        c0 = handler_start + 0.002
        d0 = c0 + cache + 0.001
        r0 = d0 + db + 0.001
        handler_end = min(t0 + seconds, r0 + render + 0.002)

        def sub(name: str, begin: float, end: float, **extra: Any) -> dict[str, Any]:
            return {"id": secrets.token_hex(8), "name": name, "start_time": round(begin, 6),
                    "end_time": round(end, 6), **extra}

        database = sub("postgres", d0, d0 + db, namespace="remote", sql={
            "database_type": "PostgreSQL", "database_version": "15.7", "user": "rms_app",
            "url": f"{DB_INSTANCE}.aaaaaaaaaa.{layout.REGION}.rds.amazonaws.com:5432/rms",
            "sanitized_query": "SELECT r.* FROM reservations r WHERE r.restaurant_id = $1 AND r.starts_at >= $2"})
        if status >= 500:
            database["fault"] = True
        handler = sub("reservations.list", handler_start, handler_end, subsegments=[
            sub("redis", c0, c0 + cache, namespace="remote"),
            database,
            sub("serialize", r0, r0 + render),
        ])
        document: dict[str, Any] = {
            "name": "rms-backend", "id": secrets.token_hex(8),
            "trace_id": f"1-{int(t0):08x}-{secrets.token_hex(12)}",
            "start_time": round(t0, 6), "end_time": round(t0 + seconds, 6), "origin": "AWS::ECS::Container",
            "http": {"request": {"method": "GET", "url": f"{API_HOST}/api/reservations"},
                     "response": {"status": status}},
            "subsegments": [handler],
        }
        if status >= 500:
            document["fault"] = True  # only when true: moto flags any trace that has the key
        return json.dumps(document)

    def previous_requests(self, batch: Batch, minute0: datetime) -> None:
        """RequestCount for the two hours before the base hour, in the scenario's usual range."""
        low, high = min(self.scenario.request_count), max(self.scenario.request_count)
        for m in range(1, PREVIOUS_MINUTES + 1):
            batch.datum("AWS/ApplicationELB", "RequestCount", self.alb, minute0 - timedelta(minutes=m), "Count",
                        self.rng.randint(low, high))



def _publish_minute(cloudwatch: Any, xray: Any, model: Model, minute: datetime, index: int) -> None:
    batch = Batch()
    model.minute(batch, index, minute, until=datetime.now(UTC))
    batch.flush(cloudwatch, xray)


# --- alarms ---------------------------------------------------------------------------------

def _alarms(cloudwatch: Any, scenario: Scenario, lb_dimension: str, now: datetime) -> None:
    alb = [{"Name": "LoadBalancer", "Value": lb_dimension}]
    common = {"ActionsEnabled": True, "AlarmActions": [f"arn:aws:sns:{layout.REGION}:123456789012:rms-oncall"],
              "TreatMissingData": "notBreaching"}
    cloudwatch.put_metric_alarm(
        AlarmName="rms-production-alb-5xx", AlarmDescription="ALB 5xx responses (runbook 01)",
        Namespace="AWS/ApplicationELB", MetricName="HTTPCode_ELB_5XX_Count", Dimensions=alb, Statistic="Sum",
        Period=60, EvaluationPeriods=3, DatapointsToAlarm=3, Threshold=20.0,
        ComparisonOperator="GreaterThanThreshold", **common)
    cloudwatch.put_metric_alarm(
        AlarmName="rms-production-api-latency-p99", AlarmDescription="API p99 latency (runbook 06)",
        Namespace="AWS/ApplicationELB", MetricName="TargetResponseTime", Dimensions=alb, ExtendedStatistic="p99",
        Period=60, EvaluationPeriods=3, DatapointsToAlarm=3, Threshold=1.0,
        ComparisonOperator="GreaterThanThreshold", **common)
    cloudwatch.put_metric_alarm(
        AlarmName="rms-production-db-cpu", AlarmDescription="RDS CPU (runbook 07)", Namespace="AWS/RDS",
        MetricName="CPUUtilization", Dimensions=[{"Name": "DBInstanceIdentifier", "Value": DB_INSTANCE}],
        Statistic="Average", Period=300, EvaluationPeriods=3, Threshold=90.0,
        ComparisonOperator="GreaterThanThreshold", **common)
    cloudwatch.put_metric_alarm(
        AlarmName="rms-production-backend-memory", AlarmDescription="rms-backend memory (runbook 03)",
        Namespace="AWS/ECS", MetricName="MemoryUtilization", Statistic="Maximum", Period=300,
        Dimensions=[{"Name": "ClusterName", "Value": CLUSTER}, {"Name": "ServiceName", "Value": "rms-backend"}],
        EvaluationPeriods=2, Threshold=90.0, ComparisonOperator="GreaterThanOrEqualToThreshold", **common)
    if scenario.name != "incident":
        return
    stamp = [(now.replace(second=0) - timedelta(minutes=m)).strftime("%d/%m/%y %H:%M:%S") for m in (3, 2, 1)]
    elb_5xx = [a + b for a, b in zip(scenario.elb_502[-4:-1], scenario.elb_503[-4:-1], strict=True)]
    latency = [ms / 1000 * MULTIPLIERS[-1] for ms in scenario.response_time_ms[-4:-1]]
    for name, values, threshold in (("rms-production-alb-5xx", elb_5xx, 20.0),
                                    ("rms-production-api-latency-p99", latency, 1.0)):
        points = ", ".join(f"{v:.2f} ({at})" for v, at in zip(values, stamp, strict=True))
        cloudwatch.set_alarm_state(
            AlarmName=name, StateValue="ALARM",
            StateReason=(f"Threshold Crossed: 3 out of the last 3 datapoints [{points}] were greater than the "
                         f"threshold ({threshold}) (minimum 3 datapoints for OK -> ALARM transition)."),
            StateReasonData=json.dumps({"version": "1.0", "queryDate": now.isoformat(), "threshold": threshold,
                                        "recentDatapoints": [round(v, 2) for v in values]}))


# --- log lines ------------------------------------------------------------------------------

def _logs(logs: Any, scenario: Scenario, tasks: dict[str, list[str]], rng: random.Random, now: datetime) -> None:
    """Access lines every minute on a second task's streams; the incident's request timeouts."""
    deploy = scenario.deployment_minutes_ago if scenario.name == "incident" else None

    def stream(service: str) -> str:  # the base writes the first task's stream; this is the second's
        ids = [arn.rsplit("/", 1)[-1] for arn in tasks.get(service) or []]
        return f"ecs/{service}/{ids[1] if len(ids) > 1 else secrets.token_hex(16)}"

    backend: list[tuple[datetime, str]] = []
    frontend: list[tuple[datetime, str]] = []
    for minutes_ago in range(MINUTES - 1, 0, -1):
        i = MINUTES - 1 - minutes_ago
        at = now - timedelta(minutes=minutes_ago)
        base_ms = scenario.response_time_ms[i]
        since = None if deploy is None or minutes_ago > deploy else deploy - minutes_ago
        for k in range(3):
            moment = at + timedelta(seconds=5 + 17 * k + rng.uniform(0, 5))
            ms = round(base_ms * rng.choice(MULTIPLIERS))
            if since is not None and since >= 2 and k == 0:
                backend.append((moment, f"ERROR [rms.api] GET /api/reservations 502 upstream database unavailable "
                                        f"(pool exhausted) after {ms} ms"))
            elif k == 2 and rng.random() < 0.15:
                backend.append((moment, f"INFO [rms.api] GET /api/restaurants/{rng.randint(1, 400)} 404 in "
                                        f"{rng.randint(5, 20)} ms"))
            else:
                method, path, code = rng.choice((("GET", "/api/reservations", 200), ("GET", "/api/reservations", 200),
                                                 ("POST", "/api/reservations", 201), ("GET", "/api/tables", 200)))
                backend.append((moment, f"INFO [rms.api] {method} {path} {code} in {ms} ms"))
        if since is not None and since >= 3:
            for _ in range(2):
                moment = at + timedelta(seconds=rng.uniform(0, 59))
                backend.append((moment, f"ERROR [rms.api] GET /api/reservations/{rng.randint(10000, 99999)} timeout "
                                        f"after {rng.uniform(29.5, 30.4):.1f} s waiting for a database connection"))
        for k in range(2):
            moment = at + timedelta(seconds=11 + 25 * k + rng.uniform(0, 5))
            ip = f"10.0.{rng.choice((0, 1))}.{rng.randint(5, 60)}"
            path, code, size = rng.choice((("/", 200, 1532), ("/static/js/app.4f2c9a.js", 200, 48213),
                                           ("/static/css/app.91be3c.css", 304, 0)))
            frontend.append((moment, f'{ip} - - "GET {path} HTTP/1.1" {code} {size} "-" "Mozilla/5.0"'))
    for key, service, lines in (("backend", "rms-backend", backend), ("frontend", "rms-frontend", frontend)):
        name = stream(service)
        logs.create_log_stream(logGroupName=LOG_GROUPS[key], logStreamName=name)
        events = []
        for moment, message in sorted(lines):
            if key == "backend":  # the base's backend format: an ISO timestamp first
                message = f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z {message}"
            events.append({"timestamp": int(moment.timestamp() * 1000), "message": message})
        logs.put_log_events(logGroupName=LOG_GROUPS[key], logStreamName=name, logEvents=events)
