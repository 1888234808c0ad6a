"""Figures drawn by hand (timelines, paired bars) for the checks' reports; the simple line and bar
charts are in ``plots``. Each takes what the check saw, never calls AWS or the database itself."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pandas as pd

from rmsops.core.findings import Severity
from rmsops.render import plots
from rmsops.render.plots import ROLLOUT_COLOURS
from rmsops.render.text import labels_for, top
from rmsops.sources.ecs import deployment_end, split_revision
from rmsops.sources.rds import SNAPSHOT_COLUMNS, utc

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from rmsops.core.context import Context
    from rmsops.core.registry import CheckResult

TIMELINE_TITLE = "ECS deployments (PRIMARY: until now; older: until replaced), by rollout state"

def plot_timeline(result: CheckResult, ctx: Context) -> Figure:
    """Snapshots as markers and the restorable window as a span, up to now."""
    row = result.data.iloc[0] if result.data is not None and not result.data.empty else {}
    snaps = result.frames.get("snapshots", pd.DataFrame(columns=SNAPSHOT_COLUMNS))
    earliest, latest = utc(row.get("earliest_restorable_time")), utc(row.get("latest_restorable_time"))
    now = utc(row.get("checked_at")) or datetime.now(UTC)
    fig = plots.new_figure((10, 2.8))
    plots.fixed_margins(fig, len("automated"))
    ax = fig.add_subplot()
    ax.set_title("Backups and the point-in-time restore window", loc="left", fontsize=11)
    ax.grid(True, axis="x", alpha=0.3)
    if latest is not None:
        ax.axvspan(earliest or latest, latest, ymin=0.15, ymax=0.85, color="#2e7d32", alpha=0.18,
                   label="restorable window")
        if now - latest > timedelta(seconds=1):
            ax.axvspan(latest, now, ymin=0.15, ymax=0.85, color="#c62828", alpha=0.25, label="not restorable yet")
    for kind, y, marker, colour in (("automated", 0.66, "o", "#1565c0"), ("manual", 0.33, "D", "#ef6c00")):
        part = snaps[snaps["type"] == kind] if not snaps.empty else snaps
        if not part.empty:
            ax.scatter(pd.to_datetime(part["created"], utc=True), [y] * len(part), marker=marker, s=40,
                       color=colour, label=f"{kind} snapshot", zorder=3)
    ax.axvline(now, color="#455a64", linestyle=":", linewidth=1)
    ax.annotate("now", (now, 0.98), xycoords=("data", "axes fraction"), va="top", ha="right", fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_yticks([0.33, 0.66], ["manual", "automated"])
    moments = [m for m in (earliest, latest, now) if m is not None]
    if not snaps.empty:
        moments += [utc(m) for m in snaps["created"].dropna()]
    start = min(moments) - timedelta(hours=6)
    ax.set_xlim(start, now + max(timedelta(hours=2), (now - start) * 0.03))
    plots.date_ticks(ax.xaxis)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="upper left", ncols=4)
    return fig


def rollout_timeline(df: pd.DataFrame, now: datetime, window: tuple[datetime, datetime] | None = None,
                     title: str = TIMELINE_TITLE) -> Figure:
    """One bar per deployment: from createdAt to now for the PRIMARY one (it is what runs) and to its
    last update for the others (the deployments it replaces), coloured by rollout state."""
    height = max(2.2, 0.45 * max(1, len(df)) + 1.2)
    fig = plots.new_figure((9.0, height))
    rows = df[df["created_at"].map(lambda v: isinstance(v, datetime))] if len(df) else df
    labels = [f"{row.service} {row.task_definition} ({row.status})" for row in rows.itertuples()]
    plots.fixed_margins(fig, max((len(label) for label in labels), default=6), label_size=8)
    ax = fig.add_subplot()
    ax.set_title(title, loc="left", fontsize=11)
    ax.grid(True, alpha=0.3)
    if rows.empty:
        plots.no_data(ax, "no deployment")
        return fig
    seen = set()
    for i, row in enumerate(rows.itertuples()):
        start = row.created_at
        end = deployment_end(row.status, row.rollout_state, start, row.updated_at, now)
        if window:
            start = max(start, window[0])
            end = max(end, start)
        state = row.rollout_state or "unknown"
        ax.barh(i, end - start, left=start, height=0.5, color=ROLLOUT_COLOURS.get(state, "#90a4ae"),
                label=None if state in seen else state)
        seen.add(state)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.invert_yaxis()
    if window:
        ax.set_xlim(*window)
    plots.date_ticks(ax.xaxis)
    ax.legend(fontsize=8, loc="lower right")
    return fig


def stacked_plot(frame: pd.DataFrame, column: str, value: str, title: str, ylabel: str, ctx: Context,
                 minutes: int, colours: dict[str, str] | None = None, empty: str = "nothing to show",
                 markers: list[tuple[datetime, str]] = ()) -> Figure:
    """Counts per bin stacked by *column* (largest total at the bottom, "other" on top), silent bins as zero,
    the legend under the chart, *markers* (deployments) as dotted lines."""
    wide = pd.DataFrame()
    if not frame.empty:
        step = f"{minutes}min"
        grid = pd.date_range(pd.Timestamp(ctx.window.start).floor(step), ctx.window.end, freq=step)
        wide = frame.pivot_table(index="timestamp", columns=column, values=value, aggfunc="sum", fill_value=0)
        order = (sorted(wide.columns) if colours  # fixed categories (status classes) in their own order
                 else sorted(wide.columns, key=lambda c: (c == "other", -wide[c].sum())))
        wide = wide.reindex(index=grid.union(wide.index), columns=order, fill_value=0)
    labels = labels_for([str(name) for name in wide.columns], 100)
    fig = plots.new_figure((9.0, 3.4 + 0.18 * len(labels)))
    rows = len(labels) if colours is None else 1
    plots.fixed_margins(fig, 5, ylabel=bool(ylabel), below_inches=0.1 + 0.16 * rows if len(labels) else 0.0)
    ax = fig.add_subplot()
    ax.set_title(title, loc="left", fontsize=11)
    ax.grid(True, alpha=0.3)
    if wide.empty:
        plots.no_data(ax, empty)
    else:
        ax.stackplot(wide.index, *[wide[c] for c in wide.columns], labels=labels, alpha=0.85,
                     colors=[colours.get(str(c), "#777") for c in wide.columns] if colours else None)
        fig.legend(loc="lower left", bbox_to_anchor=(0.01, 0.0), fontsize=7, frameon=False,
                   ncols=1 if colours is None else len(labels))
    for moment, text in markers:
        ax.axvline(moment, color="#455a64", linestyle=":", linewidth=1)
        ax.annotate(text, (moment, 1), xycoords=("data", "axes fraction"), rotation=90, va="top",
                    ha="right", fontsize=7, color="#455a64")
    ax.set_xlim(ctx.window.start, ctx.window.end)
    plots.date_ticks(ax.xaxis)
    ax.set_ylabel(ylabel)
    return fig


def _history_plot(result: CheckResult, ctx: Context):
    revisions = result.data
    deployments = result.frames.get("deployments", pd.DataFrame())
    listed = list(dict.fromkeys(revisions["service"])) if len(revisions) else []
    services = [s for s in listed if _has_history(revisions, deployments, s)]
    quiet = [s for s in listed if s not in services]
    footnote = textwrap.wrap(f"One revision and one deployment, nothing to roll back to (not drawn): "
                             f"{', '.join(quiet)}", 130) if quiet and services else []
    fig = plots.new_figure((9.0, max(2.6, 2.3 * max(1, len(services)) + 0.18 * len(footnote))))
    plots.fixed_margins(fig, 3, ylabel=True, hspace=0.55, below_inches=0.18 * len(footnote))
    if footnote:
        fig.text(0.01, 0.01, "\n".join(footnote), fontsize=8, color="#455a64", va="bottom")
    if not services:
        ax = fig.add_subplot()
        plots.no_data(ax, f"one revision and one deployment each, nothing to roll back to: {', '.join(quiet)}"
                      if quiet else "no task definition revision")
        return fig
    axes = fig.subplots(len(services), 1, squeeze=False)[:, 0]
    now = ctx.window.end
    for ax, service in zip(axes, services, strict=True):
        ax.set_title(f"{service}: task definition revisions (dots: registered) and deployments (bars)",
                     loc="left", fontsize=10)
        ax.grid(True, alpha=0.3)
        revs = revisions[revisions["service"] == service]
        dated = revs[revs["registered_at"].map(lambda v: isinstance(v, datetime))]
        ax.scatter(list(dated["registered_at"]), list(dated["revision"]), color="#1565c0", zorder=3,
                   label="registered")
        rows = deployments[deployments["service"] == service] if len(deployments) else deployments
        seen = set()
        for row in rows.itertuples():
            revision = split_revision(row.task_definition)[1]
            if revision is None or not isinstance(row.created_at, datetime):
                continue
            end = deployment_end(row.status, row.rollout_state, row.created_at, row.updated_at, now)
            state = row.rollout_state or "unknown"
            ax.barh(revision, end - row.created_at, left=row.created_at, height=0.4,
                    color=ROLLOUT_COLOURS.get(state, "#90a4ae"), label=None if state in seen else f"deploy {state}")
            seen.add(state)
        newest = max(dated["registered_at"], default=None)
        for row in dated.itertuples():
            tag = row.images.rsplit(":", 1)[-1] if row.images else ""
            last = len(dated) > 1 and row.registered_at == newest  # at the right edge: its label goes left
            ax.annotate(f"{row.task_definition} {tag}", (row.registered_at, row.revision), fontsize=7,
                        xytext=(-4 if last else 4, 7), textcoords="offset points", color="#1565c0",
                        ha="right" if last else "left", zorder=4,  # readable over a deployment's bar
                        bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8})
        if len(revs):
            ax.set_ylim(revs["revision"].min() - 0.6, revs["revision"].max() + 0.8)
            ax.set_yticks(sorted(set(revs["revision"])))
        ax.set_ylabel("revision")
        plots.date_ticks(ax.xaxis)
        ax.legend(fontsize=8, loc="upper left")
    return fig


def _has_history(revisions: pd.DataFrame, deployments: pd.DataFrame, service: str) -> bool:
    """Whether a service's panel shows more than one dot: a second revision or a second deployment.
    With a dozen services most have neither, and a panel each would bury the one that changed."""
    deployed = deployments[deployments["service"] == service] if len(deployments) else deployments
    return int((revisions["service"] == service).sum()) > 1 or len(deployed) > 1


def two_bars(frame: pd.DataFrame, value: str, left: tuple[str, str], right: tuple[str, str]) -> Figure:
    """Two horizontal bar charts side by side: the top categories of two columns."""
    width, height = 10.0, 3.6
    fig = plots.new_figure((width, height))
    for index, (column, title) in enumerate((left, right)):
        totals = top(frame, column, value) if len(frame) else []
        # Each half gets room for its own labels (no layout engine: see plots.fixed_margins).
        labels = 0.25 + 0.08 * max((len(str(t[column])[:40]) for t in totals), default=4)
        half = width / 2
        ax = fig.add_axes(((index * half + labels) / width, 0.62 / height,
                           (half - labels - 0.3) / width, 1 - 1.0 / height))
        ax.set_title(title, loc="left", fontsize=11)
        ax.grid(True, alpha=0.3)
        if not totals:
            plots.no_data(ax, "nothing to show")
            continue
        ax.barh([t[column][:40] for t in totals], [t[value] for t in totals], color="#c62828")
        ax.invert_yaxis()
        ax.set_xlabel(value)
    return fig


def expiry_figure(labels: list[str], days: list[float | None], title: str, thresholds: dict[str, float],
                  severity_of: Callable[[float], Severity]) -> Figure:
    """Horizontal bars of days to expiry, coloured by the check's verdict, with the warning/critical lines."""
    shown = [(name, d) for name, d in zip(labels, days, strict=True) if d is not None and not pd.isna(d)]
    fig = plots.new_figure((9.0, max(2.2, 0.45 * len(shown) + 1.2)))
    plots.fixed_margins(fig, max((len(name) for name, _ in shown), default=6))
    ax = fig.add_subplot()
    ax.set_title(title, loc="left", fontsize=11)
    ax.grid(True, axis="x", alpha=0.3)
    if not shown:
        plots.no_data(ax, "no certificate with an expiry date")
        return fig
    colours = {Severity.CRITICAL: "#c62828", Severity.WARNING: "#f9a825", Severity.OK: "#2e7d32"}
    names = [name for name, _ in shown]
    values = [float(d) for _, d in shown]
    ax.barh(names, values, color=[colours[severity_of(v)] for v in values])
    for name, value in zip(("critical", "warning"), (thresholds["cert_critical_days"],
                                                   thresholds["cert_warning_days"]), strict=True):
        ax.axvline(value, color=colours[Severity(name)], linestyle="--", linewidth=1,
                   label=f"{name} ({value:g} days)")
    ax.axvline(0, color="#37474f", linewidth=1)
    ax.set_xlabel("days until the certificate expires (negative: expired)")
    ax.invert_yaxis()
    ax.legend(fontsize=8, loc="lower right")
    return fig

