"""The runbook report (``notebook_html``): every output shown, every text escaped, nothing that runs."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser

import nbformat
import pytest

from rmsops.core import secrets
from rmsops.render import notebook_html

SECRET = "report-secret-5b17c0de"
PIXEL = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c63000100000500010d0a2db40000000049454e44ae426082")).decode()
SVG = '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><text>5xx</text></svg>'


class Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


@pytest.fixture
def page(monkeypatch) -> tuple[str, list[tuple[str, dict]]]:
    monkeypatch.setattr(secrets, "_known", set())
    secrets.register(SECRET)
    hostile = f"\x1b[31mERROR\x1b[0m <script>alert(1)</script> cost $x$ password {SECRET}"
    shown_html = '<img alt="5xx per minute" src="data:image/svg+xml;base64,AA==">'
    figure = "<Figure size 640x480 with 1 Axes>"  # what pyplot's text/plain says: no description
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# 01 · Application *not* responding\n\nGuide `section`.\n\n## 1. Steps"),
        nbformat.v4.new_code_cell("x", outputs=[
            nbformat.v4.new_output("display_data", {"text/html": shown_html, "text/plain": "<figure>"}),
            nbformat.v4.new_output("display_data", {"image/png": PIXEL, "text/plain": figure}),
            nbformat.v4.new_output("display_data", {"image/svg+xml": SVG, "text/plain": "latency chart"}),
            nbformat.v4.new_output("stream", name="stdout", text=hostile),
            nbformat.v4.new_output("execute_result", {"text/plain": hostile}, execution_count=1),
            nbformat.v4.new_output("error", ename="RuntimeError", evalue=hostile,
                                   traceback=[f"\x1b[0;31mRuntimeError\x1b[0m: {hostile}"]),
        ]),
        nbformat.v4.new_code_cell("y = 1"),  # no output: nothing in the page
    ]
    text = notebook_html.page(nb, "01-application-not-responding")
    parser = Tags()
    parser.feed(text)
    return text, parser.tags


def test_nothing_in_the_report_runs_or_loads_from_elsewhere(page):
    text, tags = page
    assert not [t for t, _ in tags if t in ("script", "iframe", "object", "embed", "link")]
    policy = next(a["content"] for t, a in tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy")
    assert "default-src 'none'" in policy and "script-src" not in policy
    assert all(a["src"].startswith("data:image/") for t, a in tags if t == "img")
    assert "cdn" not in text and "mathjax" not in text.lower()


def test_every_text_output_is_cleaned_redacted_and_escaped(page):
    text, _ = page
    assert SECRET not in text and "\x1b" not in text and "[31m" not in text
    shown = f"ERROR &lt;script&gt;alert(1)&lt;/script&gt; cost $x$ password {secrets.REDACTED}"
    assert text.count(shown) == 3, "the stream, the result and the traceback"
    assert re.search(r'<pre class="error">RuntimeError: ERROR &lt;script', text)
    assert '<pre class="stdout">' in text


def test_images_are_embedded_with_alt_text_and_the_narrative_is_rendered(page):
    text, tags = page
    images = [a for t, a in tags if t == "img"]
    assert [a["alt"] for a in images] == ["5xx per minute", "No description has been provided for this image",
                                          "latency chart"]
    assert images[1]["src"] == f"data:image/png;base64,{PIXEL}"
    assert base64.b64decode(images[2]["src"].split(",", 1)[1]).decode() == SVG
    assert "<title>01 · Application not responding</title>" in text
    assert '<h1 id="01-Application-not-responding">01 · Application <em>not</em> responding</h1>' in text
    assert '<h2 id="1.-Steps">' in text and "<code>section</code>" in text
    assert text.count('<div class="output">') == 1, "a cell without output adds nothing"
