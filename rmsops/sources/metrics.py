"""CloudWatch metrics as DataFrames, fetched in batches with GetMetricData."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from rmsops.sources import limits

if TYPE_CHECKING:
    from rmsops.core.context import Context
    from rmsops.core.window import Window

MAX_QUERIES_PER_CALL = limits.CLOUDWATCH_METRIC_QUERIES  # GetMetricData's limit


@dataclass(frozen=True)
class MetricQuery:
    id: str  # lower-case letter first, as the API requires
    namespace: str
    metric: str
    dimensions: tuple[tuple[str, str], ...]
    stat: str = "Sum"
    label: str = ""

    def to_api(self, period: int) -> dict:
        return {
            "Id": self.id,
            "Label": self.label or self.metric,
            "MetricStat": {
                "Metric": {"Namespace": self.namespace, "MetricName": self.metric,
                           "Dimensions": [{"Name": k, "Value": v} for k, v in self.dimensions]},
                "Period": period,
                "Stat": self.stat,
            },
        }


def period_for(window_seconds: float, max_points: int = 1440) -> int:
    """The smallest period (multiple of 60 s) that keeps a series under max_points."""
    minutes = max(1, int(-(-window_seconds // (60 * max_points))))
    return 60 * minutes


def fetch(ctx: Context, queries: list[MetricQuery], period: int | None = None,
          window: Window | None = None, region: str | None = None) -> pd.DataFrame:
    """One long frame: timestamp, id, label, value — sorted by time, one row per datapoint.

    ``window`` defaults to the run's; pass another (e.g. ``ctx.window.previous()``) for a baseline.
    ``region`` defaults to the environment's: metrics that live elsewhere (CloudFront's, in
    us-east-1) name theirs through ``regions.region_for``.
    """
    columns = ["timestamp", "id", "label", "value"]
    if not queries:
        return pd.DataFrame(columns=columns)
    window = window or ctx.window
    period = period or period_for(window.seconds)
    cloudwatch = ctx.client("cloudwatch", region)
    labels = {q.id: q.label or q.metric for q in queries}
    rows: list[tuple] = []
    for qid, ts, value in datapoints(cloudwatch, queries, period, window.start, window.end):
        rows.append((ts, qid, labels.get(qid, qid), value))
    frame = pd.DataFrame(rows, columns=columns)
    if frame.empty:
        return frame
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    return frame.sort_values(["id", "timestamp"]).reset_index(drop=True)


def datapoints(cloudwatch: Any, queries: list[MetricQuery], period: int, start: datetime, end: datetime
               ) -> Iterator[tuple[str, datetime, float]]:
    """(query id, timestamp, value) of every datapoint, oldest first per query.

    GetMetricData takes at most 500 queries a call and pages its answer (a query's values may
    continue on the next page): both are followed here, for every caller.
    """
    paginator = cloudwatch.get_paginator("get_metric_data")
    for batch in limits.chunks(queries, MAX_QUERIES_PER_CALL):
        for page in paginator.paginate(MetricDataQueries=[q.to_api(period) for q in batch], StartTime=start,
                                       EndTime=end, ScanBy="TimestampAscending"):
            for result in page["MetricDataResults"]:
                for ts, value in zip(result["Timestamps"], result["Values"], strict=False):
                    yield result["Id"], ts, float(value)


def fill_missing(frame: pd.DataFrame, start, end, period: int, value: float = 0.0) -> pd.DataFrame:
    """Count metrics are only published when non-zero: make the silent periods explicit zeros."""
    if frame.empty:
        return frame
    filled = []
    for (qid, label), rows in frame.groupby(["id", "label"], sort=False):
        step = pd.Timedelta(seconds=period)
        anchor = rows["timestamp"].min()  # the grid follows the datapoints' own alignment
        first = anchor - ((anchor - pd.Timestamp(start)) // step) * step
        grid = pd.date_range(start=first, end=pd.Timestamp(end), freq=step)
        series = rows.set_index("timestamp")["value"].reindex(grid, fill_value=value)
        filled.append(pd.DataFrame({"timestamp": grid, "id": qid, "label": label, "value": series.values}))
    return pd.concat(filled, ignore_index=True)
