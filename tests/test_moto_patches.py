"""The demo's speed patches to moto answer exactly as moto does (rmsops.demo.moto_patches).

In-process moto (mock_aws): the same backends the demo's server serves. Each test asks the same
question with and without the patches installed and compares the answers.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import boto3
from moto import backends as moto_backends
from moto import mock_aws
from moto.moto_server.werkzeug_app import DomainDispatcherApplication

from rmsops.demo.moto_patches import MotoPatches

NOW = datetime.now(UTC).replace(second=0, microsecond=0)


def _seed_metrics(cloudwatch: Any) -> None:
    """Two names in two namespaces, two services, two units, one datum per minute for an hour."""
    data: dict[str, list[dict[str, Any]]] = {"AWS/ECS": [], "Custom/App": []}
    for minute in range(60):
        at = NOW - timedelta(minutes=60 - minute)
        for service, base in (("api", 10.0), ("web", 50.0)):
            dims = [{"Name": "ClusterName", "Value": "c"}, {"Name": "ServiceName", "Value": service}]
            data["AWS/ECS"].append({"MetricName": "CPUUtilization", "Dimensions": dims, "Timestamp": at,
                                    "Value": base + minute % 7, "Unit": "Percent"})
            data["AWS/ECS"].append({"MetricName": "MemoryUtilization", "Dimensions": dims, "Timestamp": at,
                                    "Value": base * 2 - minute % 5, "Unit": "Percent"})
        # Same name, other namespace and unit, no dimensions: moto's filters must tell them apart.
        data["Custom/App"].append({"MetricName": "CPUUtilization", "Timestamp": at, "Value": float(minute),
                                   "Unit": "Count"})
    for namespace, items in data.items():
        for offset in range(0, len(items), 500):
            cloudwatch.put_metric_data(Namespace=namespace, MetricData=items[offset:offset + 500])


def _query(qid: str, namespace: str, name: str, stat: str, period: int = 60, service: str = "",
           unit: str = "", returned: bool = True) -> dict[str, Any]:
    metric: dict[str, Any] = {"Namespace": namespace, "MetricName": name}
    if service:
        metric["Dimensions"] = [{"Name": "ClusterName", "Value": "c"}, {"Name": "ServiceName", "Value": service}]
    stat_query: dict[str, Any] = {"Metric": metric, "Period": period, "Stat": stat}
    if unit:
        stat_query["Unit"] = unit
    return {"Id": qid, "MetricStat": stat_query, "ReturnData": returned}


QUERIES = [
    _query("cpu_api", "AWS/ECS", "CPUUtilization", "Average", service="api"),
    _query("cpu_web_max", "AWS/ECS", "CPUUtilization", "Maximum", period=300, service="web"),
    _query("mem_web", "AWS/ECS", "MemoryUtilization", "Sum", service="web"),
    _query("cpu_custom", "Custom/App", "CPUUtilization", "Sum"),
    _query("cpu_ecs_all", "AWS/ECS", "CPUUtilization", "SampleCount", period=600),
    _query("cpu_counted", "Custom/App", "CPUUtilization", "Maximum", unit="Count"),
    _query("cpu_wrong_unit", "AWS/ECS", "CPUUtilization", "Average", service="api", unit="Count"),
    _query("hidden", "AWS/ECS", "MemoryUtilization", "Minimum", service="api", returned=False),
    _query("nothing", "AWS/ECS", "NoSuchMetric", "Average"),
]


def _answers(patched: bool, queries: list[dict[str, Any]], scan_by: str) -> list[dict[str, Any]]:
    with mock_aws():
        patches = MotoPatches()
        if patched:
            patches.install()
        try:
            cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
            _seed_metrics(cloudwatch)
            answer = cloudwatch.get_metric_data(MetricDataQueries=queries, StartTime=NOW - timedelta(hours=1),
                                                EndTime=NOW, ScanBy=scan_by)
            return [{k: r[k] for k in ("Id", "Label", "Timestamps", "Values")} for r in answer["MetricDataResults"]]
        finally:
            patches.remove()


def test_metric_data_per_metric_answers_as_moto_does() -> None:
    for scan_by in ("TimestampAscending", "TimestampDescending"):
        expected = _answers(False, QUERIES, scan_by)
        assert [r["Id"] for r in expected] == [q["Id"] for q in QUERIES if q["ReturnData"]]
        assert expected[0]["Values"] and not expected[-1]["Values"]  # the comparison has data and a miss in it
        assert _answers(True, QUERIES, scan_by) == expected


def test_metric_math_is_left_to_moto() -> None:
    queries = [_query("a", "AWS/ECS", "CPUUtilization", "Sum", service="api", returned=False),
               {"Id": "same", "Expression": "a"}]  # moto's math: an id alone
    expected = _answers(False, queries, "TimestampAscending")
    assert expected and expected[0]["Values"]
    assert _answers(True, queries, "TimestampAscending") == expected


def test_host_lookup_is_remembered_and_the_same() -> None:
    hosts = ["ecs.us-east-1.amazonaws.com", "monitoring.eu-west-1.amazonaws.com", "s3", "moto_api", None,
             "nothing.example"]
    original = DomainDispatcherApplication.get_backend_for_host
    app = DomainDispatcherApplication(create_app=mock.Mock())
    expected = [original(app, host) for host in hosts]
    assert expected[:2] == ["ecs", "cloudwatch"] and expected[-2:] == [None, None]
    patches = MotoPatches()
    patches.install()
    try:
        with mock.patch.object(moto_backends, "list_of_moto_modules", wraps=moto_backends.list_of_moto_modules
                               ) as listed:
            assert [app.get_backend_for_host(h) for h in hosts] == expected
            first = listed.call_count
            assert [app.get_backend_for_host(h) for h in hosts] == expected
            assert listed.call_count - first == 1  # only the host moto cannot place is looked up again
    finally:
        patches.remove()
