"""AWS's per-call maxima, in one place, and the one way rmsops splits a batch to respect them.

AWS rejects a describe call that names more items than its documented maximum (it does not
truncate): ``InvalidParameterException: service names can have at most 10 items`` for the 11th ECS
service. Such an error found only in an account with many services turns a health check into an
``error`` finding, so every batch argument goes through ``chunks`` with the maximum named here.
The numbers come from the API references (and botocore's service models, where they carry them).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")

ECS_DESCRIBE_SERVICES = 10  # DescribeServices: "up to 10 services ... in a single operation"
ECS_DESCRIBE_TASKS = 100  # DescribeTasks: "a list of up to 100 task IDs or full ARN entries"
ECS_LIST_TASKS_PAGE = 100  # ListTasks: maxResults 1-100 (the default page is 100 too)
ELBV2_DESCRIBE_TARGET_GROUPS = 20  # DescribeTargetGroups: "You cannot describe more than '20' target groups"
CLOUDWATCH_METRIC_QUERIES = 500  # GetMetricData: "as many as 500 MetricDataQuery structures"
CLOUDWATCH_ALARM_NAMES = 100  # DescribeAlarms: AlarmNames, at most 100 (service model)
XRAY_BATCH_GET_TRACES = 5  # BatchGetTraces: 5 trace ids per call
LOGS_INSIGHTS_LOG_GROUPS = 50  # StartQuery: "You can include up to 50 log groups"


def chunks(items: Sequence[T], size: int) -> Iterator[list[T]]:
    """``items`` in consecutive batches of at most ``size`` (none for no items), order kept."""
    if size < 1:
        raise ValueError(f"chunk size must be at least 1, got {size}")
    for offset in range(0, len(items), size):
        yield list(items[offset:offset + size])
