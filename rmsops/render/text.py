"""Text a report shows: legend labels shortened to fit, the top categories of a frame, a text as a
figure may draw it."""

from __future__ import annotations

from typing import Any

import pandas as pd

from rmsops.render import report

TIME_LABEL = "time (UTC)"  # every time axis: the window, the markers and the tables are all UTC


def labels_for(patterns: list[str], width: int) -> list[str]:
    """Chart labels: the start and the end of each pattern (causes often differ at the end), unique."""
    out: list[str] = []
    for text in patterns:
        head = width * 3 // 5
        label = text if len(text) <= width else f"{text[:head]}…{text[-(width - head - 1):]}"
        out.append(label if label not in out else f"{label} ({len(out) + 1})")
    return out


TOP = 10


def top(frame: pd.DataFrame, by: str, value: str, n: int = TOP) -> list[dict[str, Any]]:
    """The n largest totals of ``value`` per ``by``, as records."""
    if frame.empty:
        return []
    totals = frame.groupby(by)[value].sum().sort_values(ascending=False, kind="stable").head(n)
    return [{by: str(k), value: int(v)} for k, v in totals.items()]


def shown_text(value: object, mathtext: bool = False) -> str:
    """A text as a figure may draw it: the same redaction and control-character cleaning as a
    table cell (``report.clean``), and every ``$`` escaped so that matplotlib shows it as is
    instead of reading ``$...$`` as mathtext (an escaped ``\\$`` is drawn as ``$``).
    ``mathtext``: the text is matplotlib's own (a log axis's ``$10^{2}$``), keep its dollars."""
    text = report.clean(value)
    return text if mathtext else text.replace("$", r"\$")
