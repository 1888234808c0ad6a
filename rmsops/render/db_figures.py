"""The figures of the database-performance runbook (07): statements, locks, table sizes.

Each takes the check's frames and thresholds and returns a Figure, built without pyplot like
``rmsops.render.plots``' own. Nothing here draws or saves: the caller renders through ``plots.svg``,
which makes every text safe first (secrets redacted, SQL drawn literally), so a statement's
text in a tick label goes through the same path as any other figure's.

Also the two texts for people the figures share with the findings (``duration_text``,
``one_line``): they live here, below the checks, so that a figure says "61 s" exactly where a
finding does.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import pandas as pd

from rmsops.render import plots

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

SLOW_COLOUR = "#c62828"
STATEMENT_COLOUR = "#1565c0"
LABEL_CHARS = 48  # a statement's tick label; plots.fixed_margins makes room for it


def duration_text(seconds: float) -> str:
    """A duration for people: never negative (clocks and snapshots disagree by milliseconds), never "-0 s"."""
    if seconds != seconds:  # NaN: no start time recorded
        return "an unknown time"
    seconds = max(0.0, float(seconds))
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def one_line(text: Any, limit: int = 160) -> str:
    """SQL or a message as one short line (newlines and runs of spaces collapsed)."""
    flat = re.sub(r"\s+", " ", str(text or "")).strip()
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


# --- db.queries.slow ---------------------------------------------------------------------------


def statements_figure(statements: pd.DataFrame, slow: pd.Series, mean_limit_ms: float,
                      min_calls: float) -> Figure:
    """Top statements by total time (bars) and calls against mean time (scatter).

    ``slow``: which rows the judge calls slow (boolean, on ``statements``' index), so the figure
    colours exactly what the findings list; the thresholds only draw the lines.
    """
    fig = plots.new_figure((11, 4.2))
    plots.fixed_margins(fig, LABEL_CHARS, label_size=7, wspace=0.3)
    bars, scatter = fig.subplots(1, 2, width_ratios=[1.3, 1])
    for ax in (bars, scatter):
        ax.grid(True, alpha=0.3)
    bars.set_title("Top statements by total time", loc="left", fontsize=11)
    scatter.set_title("Calls against mean time", loc="left", fontsize=11)
    if statements.empty:
        for ax in (bars, scatter):
            plots.no_data(ax, "no statements recorded")
        return fig
    top = statements.sort_values("total_ms", ascending=False).head(10)
    colours = [SLOW_COLOUR if s else STATEMENT_COLOUR for s in slow.loc[top.index]]
    bars.barh(range(len(top)), top["total_ms"] / 1000, color=colours)
    bars.set_yticks(range(len(top)), [one_line(q, LABEL_CHARS) for q in top["query"]], fontsize=7)
    bars.invert_yaxis()
    bars.set_xlabel("total time (s)")
    _calls_against_mean(scatter, statements, slow, mean_limit_ms, min_calls)
    return fig


def _calls_against_mean(ax: Axes, statements: pd.DataFrame, slow: pd.Series, mean_limit_ms: float,
                        min_calls: float) -> None:
    ax.scatter(statements.loc[~slow, "calls"], statements.loc[~slow, "mean_ms"], s=18, color=STATEMENT_COLOUR,
               label="statement")
    ax.scatter(statements.loc[slow, "calls"], statements.loc[slow, "mean_ms"], s=30, color=SLOW_COLOUR,
               label="slow")
    _plain_log_axes(ax)
    ax.axhline(mean_limit_ms, color="#ef6c00", linestyle="--", linewidth=1, label=f"{mean_limit_ms:g} ms")
    ax.axvline(min_calls, color="#f9a825", linestyle="--", linewidth=1, label=f"{min_calls:g} calls")
    ax.set_xlabel("calls")
    ax.set_ylabel("mean time (ms)")
    ax.legend(fontsize=8, loc="upper right")  # not "best": it tries every place, for every point


def _plain_log_axes(ax: Axes) -> None:
    """Log axes labelled 0.01, 1, 100 at the decades only. matplotlib's default labels are
    mathtext (10⁻²): its parser takes 0.3 s to build in each process that first uses it, and the
    minor ticks it adds double the axes' drawing time."""
    from matplotlib.ticker import FuncFormatter, NullLocator

    for axis, scale in ((ax.xaxis, ax.set_xscale), (ax.yaxis, ax.set_yscale)):
        scale("log")
        axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axis.set_minor_locator(NullLocator())


# --- db.locks.blocked --------------------------------------------------------------------------


def lock_levels(blocked: pd.DataFrame) -> dict[int, int]:
    """Column of each pid in the blocked → blocker graph: 0 for sessions that block but wait on no one."""
    edges: dict[int, set[int]] = {}
    for row in blocked.itertuples(index=False):
        edges.setdefault(int(row.blocked_pid), set()).add(int(row.blocking_pid))
    pids = set(edges) | {p for targets in edges.values() for p in targets}
    levels: dict[int, int] = {}

    def level(pid: int, seen: frozenset[int]) -> int:
        if pid in levels:
            return levels[pid]
        if pid in seen or pid not in edges:  # a cycle (deadlock in the making) or a root blocker
            return 0
        value = 1 + max(level(p, seen | {pid}) for p in edges[pid])
        levels[pid] = value
        return value

    for pid in sorted(pids):
        levels[pid] = level(pid, frozenset())
    return levels


def locks_figure(blocked: pd.DataFrame, states: pd.DataFrame) -> Figure:
    """Connections by state (bars) beside the blocked → blocker graph."""
    fig = plots.new_figure((11, 3.8))
    plots.fixed_margins(fig, len("idle in transaction (aborted)"), wspace=0.1)
    left, right = fig.subplots(1, 2, width_ratios=[1, 1.4])
    _connections_by_state(left, states)
    right.set_title("Blocked → blocker", loc="left", fontsize=11)
    right.set_axis_off()
    if blocked.empty:
        plots.no_data(right, "no blocked sessions")
    else:
        _blocking_graph(right, blocked)
    return fig


def _connections_by_state(ax: Axes, states: pd.DataFrame) -> None:
    ax.set_title("Client connections by state", loc="left", fontsize=11)
    if states.empty:
        plots.no_data(ax, "no client connections")
        return
    ax.barh(states["state"].astype(str), states["connections"],
            color=[plots.STATE_COLOURS.get(str(s), STATEMENT_COLOUR) for s in states["state"]])
    ax.invert_yaxis()
    ax.set_xlabel("connections")
    ax.grid(True, axis="x", alpha=0.3)


def _graph_positions(levels: dict[int, int]) -> dict[int, tuple[float, float]]:
    """Axes-fraction position of each pid: a column per level, its pids spread top to bottom."""
    columns: dict[int, list[int]] = {}
    for pid, lvl in sorted(levels.items(), key=lambda kv: (kv[1], kv[0])):
        columns.setdefault(lvl, []).append(pid)
    width = max(columns) + 1
    return {pid: ((lvl + 0.5) / width, 1 - (i + 1) / (len(pids) + 1))
            for lvl, pids in columns.items() for i, pid in enumerate(pids)}


def _node_labels(blocked: pd.DataFrame) -> dict[int, str]:
    info: dict[int, str] = {}
    for row in blocked.itertuples(index=False):  # a session that waits is labelled by its wait
        info.setdefault(int(row.blocked_pid), f"waiting {duration_text(float(row.blocked_seconds or 0))}")
    for row in blocked.itertuples(index=False):
        info.setdefault(int(row.blocking_pid), str(row.blocking_state or ""))
    return info


def _blocking_graph(ax: Axes, blocked: pd.DataFrame) -> None:
    levels = lock_levels(blocked)
    position = _graph_positions(levels)
    for row in blocked.drop_duplicates(["blocked_pid", "blocking_pid"]).itertuples(index=False):
        start, end = position[int(row.blocked_pid)], position[int(row.blocking_pid)]
        ax.annotate("", xy=end, xytext=start, xycoords="axes fraction", textcoords="axes fraction",
                    arrowprops={"arrowstyle": "-|>", "color": SLOW_COLOUR, "shrinkA": 30, "shrinkB": 45,
                                "mutation_scale": 14})
        middle = tuple((a + b) / 2 for a, b in zip(end, start, strict=True))
        ax.text(middle[0], middle[1] + 0.04, "waits for", ha="center", fontsize=7, color=SLOW_COLOUR,
                transform=ax.transAxes)
    info = _node_labels(blocked)
    for pid, (x, y) in position.items():
        blocked_here = levels[pid] > 0
        ax.text(x, y, f"pid {pid}\n{info.get(pid, '')}", ha="center", va="center", fontsize=8,
                transform=ax.transAxes,
                bbox={"boxstyle": "round", "fc": "#ffebee" if blocked_here else "#fff3e0",
                      "ec": SLOW_COLOUR if blocked_here else "#ef6c00"})


# --- db.tables.size ----------------------------------------------------------------------------

SIZE_PARTS = (("table_bytes", "table", "#1565c0"), ("index_bytes", "indexes", "#ef6c00"),
              ("toast_bytes", "TOAST", "#6a1b9a"))


def table_sizes_figure(tables: pd.DataFrame) -> Figure:
    """The 15 largest tables, each bar split into table, indexes and TOAST (MB)."""
    top = tables.head(15)
    names = [f"{s}.{t}" for s, t in zip(top.get("schema", []), top.get("table", []), strict=True)]
    fig = plots.new_figure((9, max(2.4, 0.4 * len(top) + 1.3)))
    plots.fixed_margins(fig, max((len(n) for n in names), default=6))
    ax = fig.add_subplot()
    ax.set_title("Largest tables: table, indexes, TOAST", loc="left", fontsize=11)
    ax.grid(True, axis="x", alpha=0.3)
    if top.empty:
        plots.no_data(ax, "no user tables")
        return fig
    left = pd.Series(0.0, index=top.index)
    for column, label, colour in SIZE_PARTS:
        values = top[column].astype(float) / 2**20
        ax.barh(names, values, left=left, label=label, color=colour)
        left += values
    ax.invert_yaxis()
    ax.set_xlabel("MB")
    from matplotlib.ticker import FuncFormatter

    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.legend(fontsize=8, loc="lower right")
    return fig
