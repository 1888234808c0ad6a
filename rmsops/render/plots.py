"""The few chart kinds every runbook uses. Figures are built without pyplot (no global state).

Every figure is rendered by ``svg``, which first makes every text of it safe (``safe_texts``, in
``rmsops.render.safe_figure``). matplotlib is imported when a figure is made, not with this module.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from rmsops.render.imageformat import MEDIA_TYPE, SUFFIX  # noqa: F401 - what ``svg`` makes: part of this API
from rmsops.render.text import TIME_LABEL, shown_text  # noqa: F401 - shown_text: part of this module's API

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.axis import Axis
    from matplotlib.figure import Figure

STATE_COLOURS = {
    "healthy": "#2e7d32", "ok": "#2e7d32", "active": "#2e7d32", "running": "#2e7d32",
    "idle": "#90a4ae", "info": "#1565c0", "initial": "#1565c0", "unused": "#90a4ae",
    "warning": "#f9a825", "draining": "#f9a825", "idle in transaction": "#ef6c00",
    "idle in transaction (aborted)": "#c62828", "unhealthy": "#c62828", "critical": "#c62828",
    "error": "#6a1b9a", "unavailable": "#6a1b9a",
}
LINE_COLOURS = ("#c62828", "#ef6c00", "#f9a825")
NO_DATA_COLOUR = "#666"
# Series beyond this many, per service with a dozen services, are drawn grey and unnamed: a longer
# legend is read by nobody, hides the lines, and its text is most of the figure's drawing time.
MOST_NAMED_LINES = 8
OTHER_LINES_COLOUR = "#b0bec5"
# A vertical marker's label fits the height of a 3.4-inch chart at 7 points: longer ones ran over
# the time axis's labels. The whole text belongs in a table or list beside the chart.
MARKER_LABEL_CHARS = 40




# An ECS deployment bar or marker, by its rollout state (deploy.ecs.rollout, recovery history).
ROLLOUT_COLOURS = {"COMPLETED": "#2e7d32", "IN_PROGRESS": "#f9a825", "FAILED": "#c62828"}


def new_figure(size: tuple[float, float]) -> Figure:
    """An empty figure of ``size`` inches; matplotlib is imported here, when a figure is drawn."""
    from matplotlib.figure import Figure

    return Figure(figsize=size)


def no_data(ax: Axes, text: str) -> None:
    """Say in ``ax`` that it has nothing to draw. A figure whose every axes says so and draws
    nothing is shown as one line of text instead of an empty chart (``empty_notice``)."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color=NO_DATA_COLOUR)
    ax._rmsops_no_data = text


def empty_notice(fig: Figure) -> str:
    """What the figure's axes say they lack ("no datapoints in the window"), when every one of
    them draws nothing; else "": the figure is worth its ~0.1 s of drawing and a screenful."""
    notes = [getattr(ax, "_rmsops_no_data", "") for ax in fig.axes]
    if not notes or not all(notes) or any(ax.has_data() for ax in fig.axes):
        return ""
    return "; ".join(dict.fromkeys(notes))


def date_ticks(axis: Axis) -> None:
    """Concise date ticks (UTC) on a time axis."""
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    locator = AutoDateLocator()
    axis.set_major_locator(locator)
    axis.set_major_formatter(ConciseDateFormatter(locator))


def _figure(title: str, width: float = 9.0, height: float = 3.4, left_label_chars: int = 6,
            ylabel: bool = False) -> tuple[Figure, Any]:
    """One axes with margins set from the label lengths.

    Fixed margins instead of a layout engine: constrained layout draws every figure twice, and
    plots are most of a runbook's CPU time during a triage.
    """
    fig = new_figure((width, height))
    fixed_margins(fig, left_label_chars, ylabel=ylabel)
    ax = fig.add_subplot()
    ax.set_title(title, loc="left", fontsize=11)
    ax.grid(True, alpha=0.3)
    return fig, ax


def timeseries(frame: pd.DataFrame, title: str, ylabel: str = "",
               lines: Mapping[str, float] | None = None,
               markers: Iterable[tuple[datetime, str]] = (),
               window: tuple[datetime, datetime] | None = None, most: int | None = None) -> Figure:
    """One line per ``label`` over ``timestamp``; threshold lines; vertical deployment markers.

    ``most``: for series where higher is worse (utilisation per service), only the ``most`` with
    the highest peaks are coloured and named; the others are grey, one legend entry for them all.
    """
    fig, ax = _figure(title, left_label_chars=_tick_chars(frame, lines), ylabel=bool(ylabel))
    if frame.empty:
        no_data(ax, "no datapoints in the window")
    named, others = highest_peaks(frame, most)
    for label, series in frame.groupby("label", sort=True):
        if label in named:
            ax.plot(series["timestamp"], series["value"], marker=".", linewidth=1.4, label=str(label))
        else:
            ax.plot(series["timestamp"], series["value"], linewidth=0.9, color=OTHER_LINES_COLOUR, zorder=1)
    if others:
        ax.plot([], [], linewidth=0.9, color=OTHER_LINES_COLOUR, label=f"{len(others)} more with lower peaks")
    for (name, value), colour in zip((lines or {}).items(), LINE_COLOURS * 3, strict=False):
        ax.axhline(value, color=colour, linestyle="--", linewidth=1, label=f"{name} ({value:g})")
    for moment, text in markers:
        ax.axvline(moment, color="#455a64", linestyle=":", linewidth=1)
        # above the legend (zorder 5): a deployment early in the window is what the reader looks for
        ax.annotate(marker_label(text), (moment, 1), xycoords=("data", "axes fraction"), rotation=90,
                    va="top", ha="right", fontsize=7, color="#455a64", zorder=6,
                    bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8})
    if window:
        ax.set_xlim(*window)
    date_ticks(ax.xaxis)
    ax.set_xlabel(TIME_LABEL, fontsize=9)
    ax.set_ylabel(ylabel)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="upper left")
    return fig


def marker_label(text: str, most: int = MARKER_LABEL_CHARS) -> str:
    return text if len(text) <= most else text[:most - 1].rstrip() + "…"


def highest_peaks(frame: pd.DataFrame, most: int | None) -> tuple[set[str], list[str]]:
    """The labels to name (the ``most`` with the highest peaks; all when ``most`` is None) and the others."""
    if frame.empty:
        return set(), []
    peaks = frame.groupby("label")["value"].max().sort_values(ascending=False, kind="stable")
    cut = len(peaks) if most is None or len(peaks) <= most + 1 else most  # never "1 more" for one line
    return set(peaks.index[:cut]), sorted(peaks.index[cut:])


def bars(frame: pd.DataFrame, category: str, value: str, title: str,
         stack: str | None = None, xlabel: str = "") -> Figure:
    """Horizontal bars per category, optionally stacked by a state column (coloured by state)."""
    height = max(2.2, 0.45 * max(1, frame[category].nunique()) + 1.2)
    longest = max((len(str(name)) for name in frame[category].unique()), default=6)
    fig, ax = _figure(title, height=height, left_label_chars=longest)
    if frame.empty:
        no_data(ax, "nothing to show")
        return fig
    if stack:
        table = frame.pivot_table(index=category, columns=stack, values=value, aggfunc="sum",
                                  fill_value=0)
        left = pd.Series(0.0, index=table.index)
        for state in table.columns:
            ax.barh(table.index.astype(str), table[state], left=left, label=str(state),
                    color=STATE_COLOURS.get(str(state).lower()))
            left += table[state]
        ax.legend(fontsize=8, loc="lower right")
    else:
        ax.barh(frame[category].astype(str), frame[value], color="#1565c0")
    ax.set_xlabel(xlabel or value)
    if pd.api.types.is_integer_dtype(frame[value]):
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.invert_yaxis()
    return fig


def fixed_margins(fig: Figure, left_label_chars: int = 6, ylabel: bool = False, label_size: float = 10,
                  below_inches: float = 0.0, wspace: float | None = None, hspace: float | None = None) -> None:
    """Margins from the longest y tick label, instead of a layout engine.

    A layout engine (constrained, tight) draws every figure twice to measure it; plots are most of
    a runbook's CPU time during a triage. ``below_inches``: room under the axes (a legend).
    """
    width, height = fig.get_size_inches()
    left = 0.25 + 0.008 * label_size * min(left_label_chars, 60) + (0.25 if ylabel else 0.0)
    fig.subplots_adjust(left=min(0.55, left / width), right=1 - 0.2 / width, top=1 - 0.38 / height,
                        bottom=min(0.6, (0.62 + below_inches) / height), wspace=wspace, hspace=hspace)


def _tick_chars(frame: pd.DataFrame, lines: Mapping[str, float] | None) -> int:
    """How wide the y tick labels will be, roughly: the digits of the largest value."""
    values = [*(frame["value"].abs().tolist() if "value" in frame and not frame.empty else []),
              *(abs(v) for v in (lines or {}).values())]
    largest = max(values, default=1.0)
    return max(3, len(f"{largest:,.0f}") + (2 if largest < 10 else 0))


def svg(fig: Figure) -> bytes:
    """The figure as SVG bytes, every text of it redacted and cleaned first (``safe_figure.svg``)."""
    from rmsops.render import safe_figure

    return safe_figure.svg(fig)


def safe_texts(fig: Figure) -> Figure:
    """Make every text of the figure safe to show, without drawing it (``safe_figure.safe_texts``)."""
    from rmsops.render import safe_figure

    return safe_figure.safe_texts(fig)
