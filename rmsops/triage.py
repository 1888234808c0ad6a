"""Triage: every diagnostic runbook against one environment and window, one report folder."""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

from rmsops import report
from rmsops.config import Settings
from rmsops.findings import Finding, document, exit_code, iso, sort_by_urgency, write_document
from rmsops.runbooks import Runbook
from rmsops.runner import RunOutcome, run_runbook
from rmsops.window import Window


@dataclass
class TriageResult:
    outcomes: list[RunOutcome]
    findings: list[Finding]
    index: Path
    findings_json: Path

    @property
    def exit_code(self) -> int:
        failed = any(o.status == "failed" for o in self.outcomes)
        return 3 if failed else exit_code(self.findings)


def run(settings: Settings, window: Window, out_dir: Path, selected: list[Runbook],
        timeout: int = 600, progress=print) -> TriageResult:
    """Run the runbooks one after another into ``out_dir/<stem>/`` and merge their findings."""
    out_dir.mkdir(parents=True, exist_ok=True)
    outcomes = []
    for runbook in selected:
        progress(f"  {runbook.stem} …")
        outcome = run_runbook(runbook, settings, window, out_dir / runbook.stem, timeout=timeout)
        progress(f"  {runbook.stem}: {outcome.status} in {outcome.seconds:.1f} s")
        outcomes.append(outcome)
    findings = [f for o in outcomes for f in o.findings]
    findings_json = out_dir / "findings.json"
    write_document(findings_json, document(findings, settings.name, window.start, window.end))
    index = out_dir / "index.html"
    index.write_text(index_html(settings, window, outcomes, findings, out_dir), encoding="utf-8")
    return TriageResult(outcomes, findings, index, findings_json)


def index_html(settings: Settings, window: Window, outcomes: list[RunOutcome],
               findings: list[Finding], out_dir: Path) -> str:
    links = "".join(
        f'<li><a href="{html.escape(str(o.html.relative_to(out_dir)))}">{html.escape(o.runbook.stem)}</a>'
        f" — {html.escape(o.status)}, {o.seconds:.1f} s</li>"
        for o in outcomes if o.html)
    problems = [f for f in sort_by_urgency(findings) if f.severity.value not in ("ok",)]
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>rmsops triage — "
            f"{report.esc(settings.name)}</title></head><body style='font-family:sans-serif'>"
            f"<h1>Triage of {report.esc(settings.name)}</h1>"
            f"<p>Window {iso(window.start)} → {iso(window.end)}</p>"
            f"{report.counts_html(findings)}"
            f"{report.findings_html(problems or findings, 'Findings that need attention')}"
            f"<h2>Runbook reports</h2><ul>{links}</ul></body></html>")
