"""The few chart kinds every runbook uses. Figures are built without pyplot (no global state).

Every figure is rendered by ``png``, which first makes every text of it safe (``safe_texts``).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from datetime import datetime

import matplotlib
import pandas as pd
from matplotlib import dates as mdates
from matplotlib import ticker
from matplotlib.axis import Axis
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.ticker import Formatter, MaxNLocator

from rmsops.render import report

matplotlib.rcParams["svg.fonttype"] = "none"

STATE_COLOURS = {
    "healthy": "#2e7d32", "ok": "#2e7d32", "active": "#2e7d32", "running": "#2e7d32",
    "idle": "#90a4ae", "info": "#1565c0", "initial": "#1565c0", "unused": "#90a4ae",
    "warning": "#f9a825", "draining": "#f9a825", "idle in transaction": "#ef6c00",
    "idle in transaction (aborted)": "#c62828", "unhealthy": "#c62828", "critical": "#c62828",
    "error": "#6a1b9a", "unavailable": "#6a1b9a",
}
LINE_COLOURS = ("#c62828", "#ef6c00", "#f9a825")


TIME_LABEL = "time (UTC)"  # every time axis: the window, the markers and the tables are all UTC
_DATE_FORMATTERS = (mdates.DateFormatter, mdates.ConciseDateFormatter, mdates.AutoDateFormatter)


# An ECS deployment bar or marker, by its rollout state (deploy.ecs.rollout, recovery history).
ROLLOUT_COLOURS = {"COMPLETED": "#2e7d32", "IN_PROGRESS": "#f9a825", "FAILED": "#c62828"}


def _figure(title: str, width: float = 9.0, height: float = 3.4, left_label_chars: int = 6,
            ylabel: bool = False) -> tuple[Figure, object]:
    """One axes with margins set from the label lengths.

    Fixed margins instead of a layout engine: constrained layout draws every figure twice, and
    plots are most of a runbook's CPU time during a triage.
    """
    fig = Figure(figsize=(width, height))
    fixed_margins(fig, left_label_chars, ylabel=ylabel)
    ax = fig.add_subplot()
    ax.set_title(title, loc="left", fontsize=11)
    ax.grid(True, alpha=0.3)
    return fig, ax


def timeseries(frame: pd.DataFrame, title: str, ylabel: str = "",
               lines: Mapping[str, float] | None = None,
               markers: Iterable[tuple[datetime, str]] = (),
               window: tuple[datetime, datetime] | None = None) -> Figure:
    """One line per ``label`` over ``timestamp``; threshold lines; vertical deployment markers."""
    fig, ax = _figure(title, left_label_chars=_tick_chars(frame, lines), ylabel=bool(ylabel))
    if frame.empty:
        ax.text(0.5, 0.5, "no datapoints in the window", ha="center", va="center",
                transform=ax.transAxes, color="#666")
    for label, series in frame.groupby("label", sort=True):
        ax.plot(series["timestamp"], series["value"], marker=".", linewidth=1.4, label=str(label))
    for (name, value), colour in zip((lines or {}).items(), LINE_COLOURS * 3, strict=False):
        ax.axhline(value, color=colour, linestyle="--", linewidth=1, label=f"{name} ({value:g})")
    for moment, text in markers:
        ax.axvline(moment, color="#455a64", linestyle=":", linewidth=1)
        ax.annotate(text, (moment, 1), xycoords=("data", "axes fraction"), rotation=90,
                    va="top", ha="right", fontsize=7, color="#455a64")
    if window:
        ax.set_xlim(*window)
    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    ax.set_xlabel(TIME_LABEL, fontsize=9)
    ax.set_ylabel(ylabel)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="upper left")
    return fig


def bars(frame: pd.DataFrame, category: str, value: str, title: str,
         stack: str | None = None, xlabel: str = "") -> Figure:
    """Horizontal bars per category, optionally stacked by a state column (coloured by state)."""
    height = max(2.2, 0.45 * max(1, frame[category].nunique()) + 1.2)
    longest = max((len(str(name)) for name in frame[category].unique()), default=6)
    fig, ax = _figure(title, height=height, left_label_chars=longest)
    if frame.empty:
        ax.text(0.5, 0.5, "nothing to show", ha="center", va="center", transform=ax.transAxes,
                color="#666")
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


def shown_text(value: object, mathtext: bool = False) -> str:
    """A text as a figure may draw it: the same redaction and control-character cleaning as a
    table cell (``report.clean``), and every ``$`` escaped so that matplotlib shows it as is
    instead of reading ``$...$`` as mathtext (an escaped ``\\$`` is drawn as ``$``).
    ``mathtext``: the text is matplotlib's own (a log axis's ``$10^{2}$``), keep its dollars."""
    text = report.clean(value)
    return text if mathtext else text.replace("$", r"\$")


# Formatters that only turn numbers and dates into text, some of it mathtext on purpose; every
# other formatter (fixed labels, categories, functions) may carry text from an inspected system.
_NUMBER_FORMATTERS = frozenset({
    ticker.ScalarFormatter, ticker.LogFormatter, ticker.LogFormatterExponent, ticker.LogFormatterMathtext,
    ticker.LogFormatterSciNotation, ticker.LogitFormatter, ticker.EngFormatter, ticker.PercentFormatter,
    ticker.NullFormatter, mdates.DateFormatter, mdates.ConciseDateFormatter, mdates.AutoDateFormatter,
})


class SafeFormatter(Formatter):
    """Tick labels (categories, SQL, dates) are made at draw time: clean what the formatter made."""

    def __init__(self, inner: Formatter):
        self.inner = inner
        self.mathtext = type(inner) in _NUMBER_FORMATTERS

    def set_axis(self, axis) -> None:
        self.axis = axis
        self.inner.set_axis(axis)

    def __call__(self, x, pos=None) -> str:
        return shown_text(self.inner(x, pos), self.mathtext)

    def format_ticks(self, values) -> list[str]:
        return [shown_text(label, self.mathtext) for label in self.inner.format_ticks(values)]

    def format_data(self, value) -> str:
        return shown_text(self.inner.format_data(value), self.mathtext)

    def format_data_short(self, value) -> str:
        return report.clean(self.inner.format_data_short(value))  # the tooltip: plain text

    def get_offset(self) -> str:
        return shown_text(self.inner.get_offset(), self.mathtext)

    def set_locs(self, locs) -> None:
        self.inner.set_locs(locs)

    def _set_locator(self, locator) -> None:
        self.inner._set_locator(locator)


def safe_texts(fig: Figure) -> Figure:
    """Make every text of the figure safe to show, without drawing it.

    Titles, axis labels, legends, annotations and figure texts exist already: each is cleaned
    once (``shown_text``; a text already cleaned is left alone, so calling this twice is
    harmless). Tick labels are made by the axes' formatters when the figure is drawn: every
    formatter is wrapped in a ``SafeFormatter``. The walk does not go into the ticks (asking an
    axis for its children makes every tick, which only the draw should do): their labels are
    rewritten by the formatters at every draw.
    """
    stack: list = [fig]
    while stack:
        artist = stack.pop()
        if isinstance(artist, Axis):
            for level, setter in ((artist.major, artist.set_major_formatter),
                                  (artist.minor, artist.set_minor_formatter)):
                if not isinstance(level.formatter, SafeFormatter):  # shared axes share a ticker
                    setter(SafeFormatter(level.formatter))
            stack += [artist.label, artist.offsetText]
            continue
        if isinstance(artist, Text):
            _clean_text(artist)
        stack += artist.get_children()
    return fig


def _clean_text(artist: Text) -> None:
    text = artist.get_text()
    if text and getattr(artist, "_rmsops_shown", None) != text:
        shown = shown_text(text) if artist.get_parse_math() else report.clean(text)
        artist.set_text(shown)
        artist._rmsops_shown = shown


def label_time_axes(fig: Figure) -> Figure:
    """Label every unlabelled time x axis ``time (UTC)``: dates are drawn in UTC, and at 3 a.m. a
    reader should not have to wonder. An axis is a time axis when its ticks are formatted as dates."""
    for ax in fig.axes:
        formatter = ax.xaxis.get_major_formatter()
        inner = formatter.inner if isinstance(formatter, SafeFormatter) else formatter
        if isinstance(inner, _DATE_FORMATTERS) and not ax.get_xlabel() and ax.xaxis.get_visible():
            ax.set_xlabel(TIME_LABEL, fontsize=9)
    return fig


def png(fig: Figure, dpi: int = 100) -> bytes:
    """The figure as PNG bytes, every text of it redacted and cleaned first (``safe_texts``);
    a time axis without a label says ``time (UTC)`` (``label_time_axes``)."""
    label_time_axes(fig)
    safe_texts(fig)
    buffer = io.BytesIO()
    # zlib level 3: half the time of the default 6, for files about 5% larger
    fig.savefig(buffer, format="png", dpi=dpi, pil_kwargs={"compress_level": 3})
    return buffer.getvalue()
