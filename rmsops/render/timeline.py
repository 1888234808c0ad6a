"""The incident on one time axis, for the first screen of index.html: what is broken (ALB 5xx per
period), since when (the first period above the threshold) and what changed just before
(deployments, task definitions and API changes from CloudTrail, alarms going to ALARM).

Drawn from the bundle's own tables (``NN-name/tables/<check>.csv``), so it shows exactly the
evidence the runbooks kept, and calls nothing. The recent changes may be handed over instead of
read from escalation's table: a triage draws the timeline while escalation runs, from the same
result (the triage's shared cache).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import groupby
from pathlib import Path

import pandas as pd

from rmsops.core.findings import Finding
from rmsops.render import plots
from rmsops.sources import metrics
from rmsops.sources.alb import DISTINCT_5XX

FILE = "timeline.svg"
MAX_CHANGES = 8  # the most recent: more labels than this overlap and say nothing
TABLES = {
    "5xx": ("01-application-not-responding", "app.alb.5xx"),
    "changes": ("18-escalation", "escalation.recent_changes"),
    "alarms": ("10-monitoring-overview", "metrics.alarms"),
}
TITLE = "What is broken, since when, what changed just before (ALB 5xx; dotted: changes and alarms)"


def table(folder: Path, name: str) -> pd.DataFrame:
    """One of ``TABLES`` as the bundle keeps it; empty when missing or damaged."""
    runbook, check = TABLES[name]
    path = folder / runbook / "tables" / f"{check}.csv"
    try:
        return pd.read_csv(path) if path.is_file() else pd.DataFrame()
    except (OSError, ValueError, pd.errors.ParserError):
        return pd.DataFrame()  # a damaged table: the runbook's own report says what it holds


def times(column: pd.Series) -> pd.Series:
    """A column of times as UTC timestamps (NaT where unreadable)."""
    return pd.to_datetime(column, utc=True, errors="coerce")


def five_xx_metrics(folder: Path, period: int | None = None,
                    window: tuple[datetime, datetime] | None = None) -> pd.DataFrame:
    """Each distinct 5xx count per period, as the check fetched it (the ELB's 502 and 503 counts
    are inside its 5XX count: left out). With the ``period`` and ``window``, the periods AWS left
    silent (it publishes these counts only when non-zero) are zeros up to the last datapoint, so a
    line does not ramp across them."""
    raw = table(folder, "5xx")
    if raw.empty or not {"timestamp", "value", "label"} <= set(raw.columns):
        return pd.DataFrame(columns=["timestamp", "id", "label", "value"])
    per = raw.assign(timestamp=times(raw["timestamp"])).dropna(subset=["timestamp"])
    per = per[per["label"].isin(DISTINCT_5XX)].assign(id=lambda frame: frame["label"])
    if period and window and not per.empty:  # to the last datapoint: the latest minutes may be unpublished yet
        per = metrics.fill_missing(per, window[0], per["timestamp"].max(), int(period))
    return per[["timestamp", "id", "label", "value"]]


def five_xx(metric_rows: pd.DataFrame) -> pd.DataFrame:
    """5xx responses per period, the distinct counts summed: the ``timeseries`` frame shape."""
    total = metric_rows.groupby("timestamp", as_index=False)["value"].sum()
    return total.assign(label="ALB 5xx per period")


def markers(folder: Path, metric_rows: pd.DataFrame, threshold: float | None,
            window: tuple[datetime, datetime], changes: pd.DataFrame | None = None) -> list[tuple[datetime, str]]:
    """Changes (``changes``, else escalation's table), alarms and the first period in which a 5xx
    count is above the threshold (each count on its own, as the check judges them), inside the window."""
    found: list[tuple[datetime, str]] = []
    changes = table(folder, "changes") if changes is None else changes
    if not changes.empty and {"time", "kind", "what"} <= set(changes.columns):
        changes = changes.assign(time=times(changes["time"])).dropna(subset=["time"]).sort_values("time")
        for row in changes.tail(MAX_CHANGES).itertuples(index=False):
            found.append((row.time.to_pydatetime(), f"{row.kind}: {str(row.what)[:60]}"))
    alarms = table(folder, "alarms")
    if not alarms.empty and {"since", "alarm"} <= set(alarms.columns):
        for row in alarms.assign(since=times(alarms["since"])).dropna(subset=["since"]).itertuples(index=False):
            found.append((row.since.to_pydatetime(), f"ALARM {str(row.alarm)[:60]}"))
    if threshold is not None and not metric_rows.empty:
        above = metric_rows[metric_rows["value"] > threshold]
        if not above.empty:
            found.append((above["timestamp"].min().to_pydatetime(), "5xx above threshold from here"))
    start, end = window
    return _one_per_minute(sorted((moment, text) for moment, text in found if start <= moment <= end))


def _one_per_minute(marks: list[tuple[datetime, str]]) -> list[tuple[datetime, str]]:
    """Labels in the same minute overlap on the axis: one marker, the most telling label, and a count."""
    rank = ("5xx above", "ALARM", "deployment", "task definition", "api change")
    merged: list[tuple[datetime, str]] = []
    for minute, group in groupby(marks, key=lambda mark: mark[0].replace(second=0, microsecond=0)):
        labels = sorted((text for _, text in group),
                        key=lambda t: next((i for i, p in enumerate(rank) if t.startswith(p)), len(rank)))
        more = f" (+{len(labels) - 1} more)" if len(labels) > 1 else ""
        merged.append((minute, labels[0] + more))
    return merged


@dataclass(frozen=True)
class Drawn:
    """The picture's file in the bundle, and its marks as (UTC time "YYYY-MM-DD HH:MM", label), oldest
    first: the first screen lists them under the picture, to read or copy into the incident channel."""

    file: str
    marks: tuple[tuple[str, str], ...]


def write(folder: Path, window: tuple[datetime, datetime], findings: list[Finding],
          changes: pd.DataFrame | None = None) -> Drawn | None:
    """Draw the timeline into ``folder/timeline.svg``; None when there is nothing to show.
    ``changes``: escalation's recent changes (its check's data), else read from its table."""
    judged = next((f.evidence for f in findings if f.check == "app.alb.5xx" and f.evidence), {})
    threshold = judged.get("threshold_per_period") or None
    metric_rows = five_xx_metrics(folder, judged.get("period_seconds"), window)
    series = five_xx(metric_rows)
    marks = markers(folder, metric_rows, threshold, window, changes)
    if series.empty and not marks:
        return None
    figure = plots.timeseries(series, TITLE, "5xx responses",
                              lines={"5xx threshold": threshold} if threshold else None,
                              markers=marks, window=window)
    (folder / FILE).write_bytes(plots.svg(figure))
    return Drawn(FILE, tuple((f"{moment.astimezone(UTC):%Y-%m-%d %H:%M}", label) for moment, label in marks))
