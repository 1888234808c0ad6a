"""What the on-call engineer reads: the bundle's index (the verdict first) and the runbook reports."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from rmsops import cli, notebook
from rmsops.render import db_figures, plots, report

APP, ESCALATION = "01-application-not-responding", "18-escalation"


class Page(HTMLParser):
    """The elements of a page, in order: (tag, attributes)."""

    def __init__(self, text: str):
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))

    def after(self, tag: str) -> tuple[str, dict[str, str | None]]:
        tags = [t for t, _ in self.elements]
        return self.elements[tags.index(tag) + 1]

    def all(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for t, attrs in self.elements if t == tag]


@pytest.fixture(scope="module")
def bundle(demo_incident, tmp_path_factory) -> Path:
    """One diagnostic runbook and escalation: the level is judged, and evidence is missing (02–16)."""
    out = tmp_path_factory.mktemp("reports") / "incident"
    assert cli.main(["triage", "-e", str(demo_incident.env_file), "-o", str(out),
                     "--runbook", "01", "--runbook", "18"]) == 1
    return out


def test_the_index_opens_on_the_escalation_banner(bundle):
    text = (bundle / "index.html").read_text()
    page = Page(text)
    tag, attrs = page.after("body")
    assert tag == "div" and attrs["class"] == "banner"
    assert attrs["data-severity"] == "critical", "the incident demo is level 0, coloured critical"
    banner = text[text.index("<div class='banner'"):text.index("</div>")]
    assert re.search(r"Escalation level 0 — critical issue", banner)
    assert "Call:" in banner and "evidence missing:" in banner and "02-database-connections" in banner


def test_the_timeline_follows_the_banner(bundle):
    """What is broken, since when, what changed just before: the first thing under the banner."""
    import json

    page = Page((bundle / "index.html").read_text())
    first_image = page.all("img")[0]
    assert first_image["src"] == "timeline.svg" and "changed just before" in first_image["alt"]
    assert b"<svg" in (bundle / "timeline.svg").read_bytes()
    assert "timeline.svg" in json.loads((bundle / "manifest.json").read_text())["files"]


def test_runbook_names_link_to_their_reports_and_back(bundle):
    page = Page((bundle / "index.html").read_text())
    links = {a["href"] for a in page.all("a")}
    for stem in (APP, ESCALATION):
        assert f"{stem}/{stem}.html" in links
        assert (bundle / stem / f"{stem}.html").exists()
        assert '<a href="../index.html">' in (bundle / stem / f"{stem}.html").read_text()


def test_every_image_has_alt_text(bundle):
    for path in (bundle / "index.html", bundle / APP / f"{APP}.html"):
        images = Page(path.read_text()).all("img")
        assert images, path
        assert all((img.get("alt") or "").strip() for img in images), path


def test_tables_left_align_text_round_seconds_and_say_where_the_rest_is():
    frame = pd.DataFrame({"target": [f"<b>10.0.0.{i}</b>" for i in range(20)],
                          "seconds": [1.23456 + i for i in range(20)], "tiny": [0.000123] * 20})
    html = report.table_html(frame, csv="tables/app.alb.latency.csv")
    assert "<td>&lt;b&gt;10.0.0.0&lt;/b&gt;</td>" in html, "text: left-aligned (the default), escaped"
    assert '<td class="num">1.23</td>' in html and "1.2345" not in html
    assert '<td class="num">0.00012</td>' in html, "a small value is not shown as 0.00"
    assert "10.0.0.15" not in html and "5 more rows in <code>tables/app.alb.latency.csv</code>" in html
    # two classes: as specific as the exported notebook's JupyterLab CSS, which right-aligns cells
    assert ".rmsops.rmsops th,.rmsops.rmsops td{text-align:left}" in report.STYLE
    assert ".rmsops.rmsops th.num,.rmsops.rmsops td.num{text-align:right" in report.STYLE


def test_executed_notebooks_record_the_bundle_not_the_staging_folder(bundle):
    """The run writes into a hidden staging folder renamed into place at the end; a notebook read
    later must name paths that exist."""
    import nbformat

    for stem in ("01-application-not-responding", "18-escalation"):
        nb = nbformat.read(bundle / stem / f"{stem}.ipynb", as_version=4)
        recorded = nb.metadata["papermill"]["parameters"]
        assert recorded["output_dir"] == str((bundle / stem).resolve())
        assert nb.metadata["papermill"]["output_path"] == str((bundle / stem / f"{stem}.ipynb").resolve())
        [injected] = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
        assert ".partial-" not in injected.source and str(bundle.resolve()) in injected.source
    assert recorded["findings"] == str((bundle / "findings.json").resolve())
    assert Path(recorded["findings"]).is_file()


def _local_targets(page: Path) -> list[Path]:
    """Files a page links to or shows from the bundle (not anchors, data: URIs or the web)."""
    parsed = Page(page.read_text())
    targets = [a.get("href") or "" for a in parsed.all("a")] + [img.get("src") or "" for img in parsed.all("img")]
    remote = ("#", "data:", "http:", "https:", "mailto:")
    local = [t.split("#", 1)[0] for t in targets if t and not t.startswith(remote)]
    return [page.parent / t for t in local if t]


def test_a_real_browser_shows_the_verdict_first_without_errors_or_broken_links(bundle, tmp_path):
    import matplotlib.image

    from tests import browser

    if browser.CHROMIUM is None:
        if browser.REQUIRED:
            pytest.fail("chromium is missing: .ci/run installs it (apt-get install chromium)")
        pytest.skip("chromium is not installed here (apt-get install chromium); CI runs this test")
    for name, page in (("index", bundle / "index.html"), ("report", bundle / APP / f"{APP}.html")):
        png = tmp_path / f"{name}.png"  # kept in the test's temp folder to look at
        assert browser.screenshot(page, png) == [], f"console messages on {name}"
        targets = _local_targets(page)
        assert targets and [t for t in targets if not t.exists()] == [], f"broken links on {name}: {targets}"
        pixels = matplotlib.image.imread(png)
        assert pixels.shape[:2] == (900, 1400)
        if name == "index":  # the first screen opens on the critical banner's red (#c62828)
            red, green, blue = pixels[20, 700][:3]
            assert red > 0.7 and green < 0.3 and blue < 0.3, pixels[20, 700]


def test_an_empty_chart_is_one_line_of_text_and_a_chart_with_something_to_show_an_image(tmp_path, monkeypatch):
    shown = []
    monkeypatch.setattr(notebook, "display", lambda obj, **_: shown.append(obj))
    session = notebook.RunbookSession(SimpleNamespace(output_dir=str(tmp_path)))
    image = tmp_path / "plots" / "x.y.svg"
    empty = pd.DataFrame(columns=["timestamp", "label", "value"])

    def plot(figure_of):
        session._plot(SimpleNamespace(id="x.y", plot=lambda result, ctx: figure_of()), None)
        return shown[-1]["text/html"]

    assert plot(lambda: plots.timeseries(empty, "CPU <b>")) == \
        '<p class="no-plot"><i>CPU &lt;b&gt;: no datapoints in the window</i></p>'
    assert not image.exists()
    statements = pd.DataFrame(columns=["query", "calls", "total_ms", "mean_ms"])
    assert "no statements recorded</i>" in plot(lambda: db_figures.statements_figure(
        statements, pd.Series(dtype=bool), 100, 50)), "every axes empty: one line"
    assert plot(lambda: plots.timeseries(empty, "CPU", lines={"limit": 5})).startswith("<img"), \
        "a threshold line is something to show"
    assert image.exists()
    image.unlink()
    moments = pd.to_datetime(["2026-12-03T08:00Z", "2026-12-03T08:01Z"])
    data = pd.DataFrame({"timestamp": moments, "label": ["api", "api"], "value": [1.0, 2.0]})
    assert plot(lambda: plots.timeseries(data, "CPU")).startswith("<img") and image.exists()


def test_a_dozen_services_name_the_highest_peaks_and_grey_the_rest():
    moments = pd.to_datetime(["2026-12-03T08:00Z", "2026-12-03T08:01Z"])
    peaks = {f"svc-{n:02d}": float(n) for n in range(12)}  # svc-11 peaks highest
    data = pd.DataFrame([{"timestamp": t, "label": name, "value": peak * i}
                         for name, peak in peaks.items() for i, t in enumerate(moments)])
    figure = plots.timeseries(data, "ECS utilization per service (%)", lines={"warning": 80}, most=8)
    legend = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert legend == [*(f"svc-{n:02d}" for n in range(4, 12)), "4 more with lower peaks", "warning (80)"]
    grey = [line for line in figure.axes[0].lines if line.get_color() == plots.OTHER_LINES_COLOUR]
    assert len(grey) == 5, "the four lowest drawn, and their one legend entry"
    assert len(figure.axes[0].lines) == 12 + 1 + 1
    nine = data[data["label"] >= "svc-03"]  # one more than ``most``: every line named, never "1 more"
    assert len(plots.timeseries(nine, "CPU", most=8).axes[0].get_legend().get_texts()) == 9
    assert plots.highest_peaks(data, None) == (set(peaks), [])
    assert plots.highest_peaks(data.iloc[0:0], 8) == (set(), [])


def test_an_empty_charts_line_of_text_leaks_no_secret_and_runs_no_markup(tmp_path, monkeypatch):
    """Its title may carry what an inspected system said (a statement, a service name): the line
    goes through the same redaction and escaping as every table cell."""
    from rmsops.core import secrets

    secrets.register("s3cr3t-t0ken-xyz")
    shown = []
    monkeypatch.setattr(notebook, "display", lambda obj, **_: shown.append(obj))
    session = notebook.RunbookSession(SimpleNamespace(output_dir=str(tmp_path)))
    title = "<script>x()</script> ALTER USER app PASSWORD 'hunter2' s3cr3t-t0ken-xyz"
    empty = pd.DataFrame(columns=["timestamp", "label", "value"])
    session._plot(SimpleNamespace(id="x.y", plot=lambda result, ctx: plots.timeseries(empty, title)), None)
    line = shown[-1]
    assert "<script>" not in line["text/html"] and "&lt;script&gt;" in line["text/html"]
    for text in (line["text/html"], line["text/plain"]):
        assert "hunter2" not in text and "s3cr3t-t0ken-xyz" not in text and "********" in text


def test_a_csv_is_written_as_if_every_cell_were_made_safe_whatever_the_column_types(tmp_path):
    """Only columns that can hold text are made safe cell by cell; the file is the same as if all were."""
    frame = pd.DataFrame({
        "when": pd.to_datetime(["2026-12-03 08:00", None, "2026-12-03 08:02"], utc=True),
        "count": [1, 2, 3], "ratio": [0.5, float("nan"), 1.25], "up": [True, False, True],
        "took": pd.to_timedelta([1, 2, 3], unit="s"), "=formula header": ["=HYPERLINK(1)", "-2", "ok"],
        "mixed": [1, "@import", None], "nullable": pd.array([1, None, 3], dtype="Int64"),
        "text": pd.array(["+x", None, "fine"], dtype="string"), "kind": pd.Categorical(["@a", "b", "@a"]),
    })
    written = report.write_csv(frame, tmp_path / "t.csv").read_text()
    every_cell = frame.map(report.csv_safe)
    every_cell.columns = [report.csv_safe(c) for c in frame.columns]
    assert written == every_cell.to_csv(index=False)
    assert "'=HYPERLINK(1)" in written and "'@import" in written and "'+x" in written and "'@a" in written
    assert "'=formula header" in written and "2026-12-03 08:00:00+00:00" in written and ",-2," not in written
