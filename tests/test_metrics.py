"""CloudWatch helpers: period choice and zero-filling of count metrics."""

from __future__ import annotations

import pandas as pd
import pytest

from rmsops.sources.metrics import fill_missing, period_for


@pytest.mark.parametrize(("seconds", "period"), [(3600, 60), (86400, 60), (86400 * 2, 120), (86400 * 7, 420)])
def test_period_keeps_series_under_1440_points(seconds, period):
    assert period_for(seconds) == period
    assert seconds / period <= 1440


def test_fill_missing_makes_silent_minutes_zero_on_the_datapoints_grid():
    frame = pd.DataFrame({"timestamp": pd.to_datetime(["2026-11-28T10:05:30Z", "2026-11-28T10:08:30Z"], utc=True),
                          "id": "m0", "label": "HTTPCode_ELB_5XX_Count", "value": [3.0, 4.0]})
    start, end = pd.Timestamp("2026-11-28T10:00:00Z"), pd.Timestamp("2026-11-28T10:10:00Z")
    filled = fill_missing(frame, start, end, 60)
    assert len(filled) == 10
    assert filled["value"].sum() == 7.0
    assert (filled["timestamp"].dt.second == 30).all()
    assert filled.set_index("timestamp").loc[pd.Timestamp("2026-11-28T10:06:30Z"), "value"] == 0.0


def test_fill_missing_leaves_an_empty_frame_empty():
    empty = pd.DataFrame(columns=["timestamp", "id", "label", "value"])
    assert fill_missing(empty, pd.Timestamp("2026-11-28T10:00Z"), pd.Timestamp("2026-11-28T11:00Z"), 60).empty
