"""What a runbook notebook calls: run a check and show it, show an action's plan, summarise.

Each check's findings are also recorded in the executed notebook as a display
output of type ``application/vnd.rmsops.findings+json`` (the scrapbook pattern),
so the notebook alone is the evidence and the runner can read the findings back.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from IPython.display import HTML, display

from rmsops import actions
from rmsops.core.context import Context
from rmsops.core.errors import UserError
from rmsops.core.findings import MIME_TYPE, Finding, iso, read_document
from rmsops.core.registry import CheckResult, get, start_ahead
from rmsops.render import plots, report


class RunbookSession:
    """A Context plus display. One per executed notebook."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.results: list[CheckResult] = []

    @property
    def findings(self) -> list[Finding]:
        return [f for r in self.results for f in r.findings]

    def header(self) -> None:
        s, w = self.ctx.settings, self.ctx.window
        back = ('<p><a href="../index.html">\N{LEFTWARDS ARROW} back to the incident bundle (index.html): '
                "the escalation level and every runbook</a></p>" if self._in_bundle() else "")
        # HTML, escaped: Markdown would pass any HTML in these names straight through to the report.
        display(HTML(
            f"{back}<p><b>Environment</b> <code>{report.esc(s.name)}</code> · <b>window</b> {iso(w.start)} → "
            f"{iso(w.end)} · <b>cluster</b> <code>{report.esc(s.cluster)}</code> · <b>database</b> "
            f"<code>{report.esc(s.database.instance)}</code> · times in UTC</p>"))

    def _in_bundle(self) -> bool:
        """Whether this report is one runbook of a triage bundle (``index.html`` one folder up):
        the bundle's folder itself, or the hidden folder it is written into (``.NAME.partial-PID``)."""
        if not self.ctx.output_dir:
            return False
        parent = Path(self.ctx.output_dir).resolve().parent
        return (parent / "index.html").exists() or _STAGING.fullmatch(parent.name) is not None

    def __getitem__(self, check_id: str) -> CheckResult:
        """The result of a check run earlier, for interactive digging: ``rb["app.alb.5xx"].data``."""
        for result in reversed(self.results):
            if result.check == check_id:
                return result
        raise KeyError(f"{check_id} has not run in this notebook")

    def run(self, check_id: str, show_data: bool = True) -> None:
        """Run one check, then show its findings, its plot and its data."""
        result = self.ctx.run(check_id)
        self.results.append(result)
        spec = get(check_id)
        summary = spec.summary_with(self.ctx.thresholds)  # with this run's thresholds, overrides included
        display({"text/html": report.findings_html(result.findings, f"{check_id} — {summary}",
                                                   anchor=f"check-{check_id}"),
                 "text/plain": report.findings_text(result.findings),
                 MIME_TYPE: {"check": check_id, "findings": [f.to_dict() for f in result.findings]}},
                raw=True)
        if spec.plot is not None and result.data is not None:
            self._plot(spec, result)
        if show_data and result.data is not None and not result.data.empty:
            display(HTML(report.table_html(result.data, csv=self._csv(f"{check_id}.csv"))))
        for name, frame in result.frames.items():
            if show_data and not frame.empty:
                display(HTML(report.table_html(frame, caption=name.replace("_", " "),
                                               csv=self._csv(f"{check_id}.{name}.csv"))))
        self._save_tables(check_id, result)

    def _csv(self, name: str) -> str:
        """Where the whole table is, relative to the report (``_save_tables`` writes it), if anywhere."""
        return f"tables/{name}" if self.ctx.output_dir else ""

    def _save_tables(self, check_id: str, result: CheckResult) -> None:
        """With an output folder (a report run): every table as CSV beside the report."""
        if not self.ctx.output_dir:
            return
        folder = Path(self.ctx.output_dir) / "tables"
        if result.data is not None and not result.data.empty:
            report.write_csv(result.data, folder / f"{check_id}.csv")
        for name, frame in result.frames.items():
            if not frame.empty:
                report.write_csv(frame, folder / f"{check_id}.{name}.csv")

    def run_quick(self, runbook: str) -> None:
        """Run the quick checks of another runbook (the daily health check), findings only."""
        from rmsops.core.registry import for_runbook

        for spec in for_runbook(runbook, quick_only=True):
            self.run(spec.id, show_data=False)

    def _plot(self, spec, result: CheckResult) -> None:
        try:
            figure = spec.plot(result, self.ctx)
        except Exception as exc:  # noqa: BLE001 - a failed chart must not hide the findings
            display(HTML(f"<p><i>(plot unavailable: {report.esc(type(exc).__name__)})</i></p>"))
            return
        notice = plots.empty_notice(figure)
        if notice:  # an empty chart says less than a line, and takes a screenful and 0.1 s to draw
            title = _figure_title(figure) or f"plot of {spec.id}"
            display({"text/html": f'<p class="no-plot"><i>{report.esc(title)}: {report.esc(notice)}</i></p>',
                     "text/plain": f"<{report.clean(title)}: {report.clean(notice)}>"}, raw=True)
            return
        image = plots.svg(figure)  # texts made safe first: the title below is the cleaned one
        alt = _figure_title(figure) or f"plot of {spec.id}"
        # An <img> with the figure's title as alt text (the HTML export gives a bare image none).
        # An SVG inside an <img> runs no script and loads nothing. Stored once: a second copy as
        # image/svg+xml would double every notebook's size, and with it the saves and the export;
        # the file is in plots/ beside the report.
        encoded = base64.b64encode(image).decode("ascii")
        display({"text/html": f'<img alt="{report.esc(alt)}" src="data:{plots.MEDIA_TYPE};base64,{encoded}">',
                 "text/plain": f"<figure: {report.clean(alt)}>"}, raw=True)
        if self.ctx.output_dir:
            folder = Path(self.ctx.output_dir) / "plots"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{spec.id}{plots.SUFFIX}").write_bytes(image)

    def action(self, name: str, **arguments: Any) -> None:
        """Show an action as a dry run (diagnostic runbooks never change anything).

        Never raises into the notebook: a plan whose lookups fail (AWS denied or unreachable while
        reading what the action would change) is shown with the reason, and the runbook carries on
        to its summary.
        """
        from rmsops.core import failure
        from rmsops.render.listing import action_arguments

        args = report.clean(action_arguments(arguments))  # --service X -a count=6: what `rmsops action` takes
        try:
            plan = actions.plan(self.ctx, name, **arguments)
        except UserError as exc:
            display(HTML(f"<p><i>Action {report.esc(name)} unavailable: {report.esc(str(exc))}</i></p>"))
            return
        except Exception as exc:  # noqa: BLE001 - a dry run never fails its runbook
            display(HTML(
                f"<p><i>Action {report.esc(name)}: could not look up what it would change: "
                f"{report.esc(failure.describe(exc))}. Nothing was changed. To plan it again once that is "
                f"fixed: <code>rmsops action {report.esc(name)} -e {report.esc(self.ctx.settings.name)} "
                f"{report.esc(args)}</code></i></p>"))
            return
        try:
            record = actions.execute(self.ctx, plan, confirm=None)
            audited = f"Audit record written ({report.esc(record.outcome)})."
        except Exception as exc:  # noqa: BLE001 - the plan is still worth showing
            audited = f"The audit record could not be written: {report.esc(failure.describe(exc))}."
        confirm = plan.target if self.ctx.settings.protected else "yes"
        display(HTML(
            f'{report.STYLE}<div class="rmsops"><p><b>Dry run</b> — {report.esc(plan.summary)}.</p>'
            f"<p>To do it: <code>rmsops action {report.esc(name)} -e {report.esc(self.ctx.settings.name)} "
            f"{report.esc(args)} --confirm {report.esc(confirm)}</code><br>"
            f"AWS CLI equivalent: <code>{report.esc(plan.cli)}</code><br>"
            f"{audited}</p></div>"))

    def summary(self) -> None:
        """All findings of this notebook, most urgent first."""
        findings = self.findings
        display(HTML(report.counts_html(findings)))
        display({"text/html": report.findings_html(findings, "All findings"),
                 "text/plain": report.findings_text(findings)}, raw=True)


_STAGING = re.compile(r"\..+\.partial-\d+")  # bundle.make_staging's hidden folder


def _figure_title(figure: Any) -> str:
    """The figure's title (its suptitle, else the titles of its axes), for alt text."""
    suptitle = getattr(figure, "_suptitle", None)
    titles = [suptitle.get_text()] if suptitle is not None and suptitle.get_text() else []
    for ax in figure.axes:
        titles += [t for t in (ax.get_title(loc) for loc in ("left", "center", "right")) if t]
    return " · ".join(dict.fromkeys(titles)).replace("\\$", "$")  # plots.shown_text escaped dollars


def open_runbook(env: str | Path, runbook: str, window: str = "1h", start: str = "", end: str = "",
                 thresholds: Mapping[str, object] | None = None,
                 output_dir: str | Path = "", findings: str | Path = "") -> RunbookSession:
    """The one line a notebook needs: ``rb = rmsops.open(env, runbook=..., window=window)``.

    ``findings``: a findings.json of an earlier run (a triage) for runbooks that judge findings.
    """
    ctx = Context.open(env, window=window, start=start, end=end, threshold_overrides=thresholds,
                       runbook=runbook, output_dir=Path(output_dir) if output_dir else None)
    if findings:
        ctx.prior_findings = read_document(Path(findings))[1]
    session = RunbookSession(ctx)
    start_ahead(runbook, ctx)  # in a triage: its checks' waits overlap (registry.start_ahead)
    session.header()
    return session
