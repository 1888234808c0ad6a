"""HTML for findings and tables. Every text from an inspected system is escaped here."""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from rmsops.core import secrets
from rmsops.core.findings import Finding, Severity, counts, sort_by_urgency

if TYPE_CHECKING:  # pandas costs half a second to import: the command line only needs clean()
    import pandas as pd

MAX_CELL = 300
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x9b]")  # ANSI escapes and other controls

BADGE = {
    Severity.CRITICAL: "#c62828", Severity.ERROR: "#6a1b9a", Severity.WARNING: "#ef6c00",
    Severity.INFO: "#1565c0", Severity.OK: "#2e7d32",
}
# Text left, numbers right. The class is doubled on purpose: the exported notebook's JupyterLab CSS
# right-aligns every cell with ``:not(.jp-RenderedMarkdown).jp-RenderedHTMLCommon td`` (two classes).
STYLE = """<style>
.rmsops table{border-collapse:collapse;font-size:13px;margin:4px 0 10px 0}
.rmsops th,.rmsops td{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top}
.rmsops th{background:#f5f5f5}
.rmsops.rmsops th,.rmsops.rmsops td{text-align:left}
.rmsops.rmsops th.num,.rmsops.rmsops td.num{text-align:right;font-variant-numeric:tabular-nums}
.rmsops .sev{color:#fff;border-radius:3px;padding:1px 6px;font-weight:bold;font-size:11px}
.rmsops .scroll{max-height:420px;overflow:auto}
</style>"""


def clean(value: object, limit: int = MAX_CELL) -> str:
    """Plain text safe for a terminal or a table cell: control characters removed, length capped."""
    if isinstance(value, bytes):
        text = value.decode("utf-8", errors="replace")
    else:
        text = value if isinstance(value, str) else str(value)
    text = secrets.redact(_CONTROL.sub("\N{REPLACEMENT CHARACTER}", text))
    return text if len(text) <= limit else text[: limit - 1] + "\N{HORIZONTAL ELLIPSIS}"


def esc(value: object, limit: int = MAX_CELL) -> str:
    return html.escape(clean(value, limit), quote=True)


def badge(severity: Severity) -> str:
    return f'<span class="sev" style="background:{BADGE[severity]}">{severity.value.upper()}</span>'


def findings_html(findings: Iterable[Finding], heading: str = "", anchor: str = "") -> str:
    rows = []
    for f in sort_by_urgency(findings):
        resolution = f"<br><i>What to do:</i> {esc(f.resolution, 600)}" if f.resolution else ""
        rows.append(
            f"<tr><td>{badge(f.severity)}</td><td><code>{esc(f.check)}</code></td>"
            f"<td>{esc(f.resource)}</td><td><b>{esc(f.title)}</b><br>{esc(f.detail, 600)}"
            f"{resolution}</td></tr>")
    head = f"<h4>{esc(heading)}</h4>" if heading else ""
    ident = f' id="{esc(anchor)}"' if anchor else ""  # the bundle's index links here
    return (f'{STYLE}<div class="rmsops"{ident}>{head}<table><tr><th>severity</th><th>check</th>'
            f'<th>resource</th><th>finding</th></tr>{"".join(rows)}</table></div>')


def findings_text(findings: Iterable[Finding]) -> str:
    return "\n".join(f"[{f.severity.value.upper():8}] {clean(f.check)} {clean(f.resource)}: {clean(f.title)}"
                     for f in sort_by_urgency(findings))


def table_html(df: pd.DataFrame, caption: str = "", max_rows: int = 15, csv: str = "") -> str:
    """A DataFrame as an escaped HTML table, readable at a glance.

    Every cell and header goes through ``esc`` (controls stripped, secrets redacted, capped,
    HTML-escaped). Text is left-aligned, numbers right-aligned; floats are rounded to what
    matters (``cell_text``). At most ``max_rows`` rows: the rest are counted, with the CSV that
    holds them all (``csv``, relative to the report) when there is one.
    """
    import pandas as pd

    shown = df.head(max_rows)
    numeric = [pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
               for dtype in shown.dtypes]
    head = "".join(f'<th{_NUM if num else ""}>{esc(column)}</th>' for column, num in zip(df.columns, numeric,
                                                                                        strict=True))
    rows = "".join(
        "<tr>" + "".join(f'<td{_NUM if num else ""}>{esc(cell_text(value))}</td>'
                         for value, num in zip(record, numeric, strict=True)) + "</tr>"
        for record in shown.itertuples(index=False, name=None))
    hidden = len(df) - len(shown)
    where = f" in <code>{esc(csv)}</code>" if csv else " not shown"
    plural = "s" if hidden != 1 else ""
    more = f"<p><i>\N{HORIZONTAL ELLIPSIS} {hidden} more row{plural}{where}.</i></p>" if hidden else ""
    cap = f"<p><b>{esc(caption)}</b></p>" if caption else ""
    body = f'<table class="data"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'
    return f'{STYLE}<div class="rmsops">{cap}<div class="scroll">{body}</div>{more}</div>'


_NUM = ' class="num"'


def cell_text(value: object) -> str:
    """A cell as a person reads it: blank for missing, floats to 2 decimals (seconds, ratios, MB;
    smaller than 0.01: 2 significant digits, never a misleading 0.00), whole floats without
    ``.0``, times to the second (``UTC`` instead of ``+00:00``)."""
    import math
    from datetime import datetime

    import numpy as np
    import pandas as pd

    if value is None or (np.ndim(value) == 0 and not isinstance(value, str | bytes) and pd.isna(value)):
        return ""
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, float | np.floating):
        number = float(value)
        if math.isinf(number) or number.is_integer():
            return str(number) if math.isinf(number) else f"{number:.0f}"
        return f"{number:.2f}" if abs(number) >= 0.01 else f"{number:.2g}"
    if isinstance(value, datetime):
        text = value.isoformat(sep=" ", timespec="seconds")
        return text[:-6] + " UTC" if text.endswith("+00:00") else text
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def counts_html(findings: list[Finding]) -> str:
    tally = counts(findings)
    parts = [f"{badge(Severity(name))} {n}" for name, n in tally.items() if n]
    return f'{STYLE}<div class="rmsops"><p>{" &nbsp; ".join(parts) or "no findings"}</p></div>'


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: object) -> object:
    """A cell a spreadsheet will not execute: text starting like a formula gets a leading quote."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        text = secrets.redact(_CONTROL.sub("\N{REPLACEMENT CHARACTER}", value))
        return "'" + text if text.startswith(_FORMULA_START) else text
    return value


def write_csv(df: pd.DataFrame, path: Path) -> Path:
    """A DataFrame as CSV that is safe to open in a spreadsheet (see ``csv_safe``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    safe = df.copy(deep=False)
    for position, dtype in enumerate(df.dtypes):
        if dtype.kind not in _NO_TEXT_KINDS:  # cell by cell only where text can be: most cells are numbers
            safe.isetitem(position, df.iloc[:, position].map(csv_safe))
    safe.columns = [csv_safe(str(c)) for c in df.columns]
    safe.to_csv(path, index=False)
    return path


# numpy's kinds of the columns that hold no text: booleans, numbers, datetimes and durations
_NO_TEXT_KINDS = frozenset("biufcmM")
