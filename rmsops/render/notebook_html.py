"""An executed runbook notebook as a standalone HTML report: the narrative and the outputs, code hidden.

Not nbconvert's HTMLExporter, whose lab template put 270 KB of JupyterLab's CSS into every report
and loaded require.js and MathJax from a CDN: offline (an incident bundle opened on a train, a
locked-down laptop) that fails, and online MathJax typesets any ``$…$`` of a log line or a SQL
statement as a formula. Its templates, preprocessors and deep copies of the notebook were also a
tenth of a triage runner's CPU. Here: one small stylesheet, no script at all (the page's
Content-Security-Policy forbids any), the narrative through mistune (the markdown parser
nbconvert uses), and each output as the notebook holds it: our own escaped HTML as it is, every
text output and traceback cleaned (controls and terminal colours removed, secrets redacted) and
escaped, every image an ``<img>`` with alt text.
"""

from __future__ import annotations

import base64
import html
import re
from functools import lru_cache
from typing import Any

from rmsops.render import report

# What an output shows, in order of preference (nbconvert's, without PDF and LaTeX).
_PRIORITY = ("text/html", "image/svg+xml", "image/png", "image/jpeg", "text/markdown", "text/plain")
_IMAGES = {"image/svg+xml", "image/png", "image/jpeg"}
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_TEXT_LIMIT = 200_000  # a stream or traceback is cut here: a report is not a log archive
_NO_ALT = "No description has been provided for this image"

# No script may run and nothing may load from elsewhere: styles are inline, images data URIs.
_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

STYLE = """
body{margin:0;padding:12px 24px 48px;color:#212121;background:#fff;font:14px/1.5 system-ui,-apple-system,
"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1500px}
h1,h2,h3,h4{font-weight:500;line-height:1.25;margin:1.1em 0 .45em}
h1{font-size:26px}h2{font-size:21px}h3{font-size:17px}h4{font-size:15px}
p{margin:.45em 0}
a{color:#0d47a1;text-decoration:none}a:hover{text-decoration:underline}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"DejaVu Sans Mono",monospace;font-size:12.5px}
code{background:#f3f3f3;border-radius:3px;padding:0 3px}
pre{background:#f7f7f7;border-radius:3px;padding:6px 8px;overflow:auto;white-space:pre-wrap;word-break:break-word}
pre code{background:none;padding:0}
pre.stderr,pre.error{background:#fdecea}
blockquote{border-left:4px solid #ddd;margin:.5em 0;padding:0 12px;color:#555}
table{border-collapse:collapse;font-size:13px;line-height:1.3;margin:4px 0 10px}
th,td{padding:2px 6px;text-align:left;vertical-align:top}
tbody tr:nth-child(odd){background:#fafafa}
img{max-width:100%;height:auto}
.output{margin:4px 0 10px;overflow-x:auto}
"""


def page(nb: Any, title: str) -> str:
    """The report of an executed notebook: every markdown cell rendered, every output shown."""
    parts = [_cell(cell) for cell in nb.get("cells", [])]
    heading = next((_plain_heading(cell) for cell in nb.get("cells", []) if cell.get("cell_type") == "markdown"), "")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{_POLICY}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{report.esc(heading or title)}</title><style>{STYLE}</style></head>\n"
            f"<body><main>\n{''.join(parts)}</main></body></html>\n")


def _cell(cell: Any) -> str:
    kind = cell.get("cell_type")
    if kind == "markdown":
        return f'<section class="narrative">{markdown(_source(cell))}</section>\n'
    if kind != "code":
        return ""
    shown = "".join(_output(output) for output in cell.get("outputs", []))
    return f'<div class="output">{shown}</div>\n' if shown else ""


def _source(cell: Any) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _output(output: Any) -> str:
    kind = output.get("output_type")
    if kind == "stream":
        name = "stderr" if output.get("name") == "stderr" else "stdout"
        return f'<pre class="{name}">{_text(output.get("text", ""))}</pre>'
    if kind == "error":
        lines = output.get("traceback") or [f"{output.get('ename', '')}: {output.get('evalue', '')}"]
        return f'<pre class="error">{_text(chr(10).join(lines))}</pre>'
    if kind not in ("display_data", "execute_result"):
        return ""
    data = output.get("data", {})
    mime = next((m for m in _PRIORITY if m in data), None)
    if mime is None:
        return ""
    value = data[mime]
    value = "".join(value) if isinstance(value, list) else value
    if mime == "text/html":
        return value  # made by the runbooks' own code, which escapes every text it puts in (``report``)
    if mime in _IMAGES:
        return _image(mime, value, data.get("text/plain", ""))
    if mime == "text/markdown":
        return markdown(value)
    return f"<pre>{_text(value)}</pre>"


def _image(mime: str, value: str, plain: Any) -> str:
    encoded = base64.b64encode(value.encode()).decode("ascii") if mime == "image/svg+xml" else value.replace("\n", "")
    alt = "".join(plain) if isinstance(plain, list) else str(plain or "")
    alt = alt.strip() if alt.strip() and not alt.startswith("<Figure size") else _NO_ALT
    return f'<img alt="{report.esc(alt)}" src="data:{mime};base64,{encoded}">'


def _text(value: Any) -> str:
    text = "".join(value) if isinstance(value, list) else str(value)
    return html.escape(report.clean(_ANSI.sub("", text), _TEXT_LIMIT))


@lru_cache(maxsize=512)
def markdown(source: str) -> str:
    """A runbook's narrative (the notebooks' own markdown, trusted) as HTML; headings get ids to
    link to. The same cells come in every run: rendered once per process."""
    return _parser()(source)


@lru_cache(maxsize=1)
def _parser():
    import mistune

    class Renderer(mistune.HTMLRenderer):
        def heading(self, text: str, level: int, **attrs: Any) -> str:
            ident = re.sub(r"[^\w.-]+", "-", re.sub(r"<[^>]+>", "", text)).strip("-")
            return f'<h{level} id="{html.escape(ident, quote=True)}">{text}</h{level}>\n'

    return mistune.create_markdown(renderer=Renderer(escape=False), plugins=["table", "strikethrough"])


def _plain_heading(cell: Any) -> str:
    """The first heading of a markdown cell as plain text (the page's title), else ""."""
    match = re.search(r"^#{1,6}\s+(.+?)\s*#*\s*$", _source(cell), re.MULTILINE)
    return re.sub(r"[*_`]", "", match.group(1)) if match else ""
