"""What a person sees on the terminal: findings in order of urgency, coloured when it is a terminal.

Everything printed here comes from inspected systems through ``report.clean`` (no control characters).
"""

from __future__ import annotations

import os
import sys

from rmsops.core.findings import Finding, Severity, counts, sort_by_urgency
from rmsops.core.problems import VERDICT, echoes, problems
from rmsops.render.report import clean


def _colour(text: str, severity: Severity, stream=None) -> str:
    if not (stream or sys.stdout).isatty() or os.environ.get("NO_COLOR"):
        return text
    code = {"critical": "31;1", "error": "35;1", "warning": "33;1", "info": "34", "ok": "32"}
    return f"\033[{code[severity.value]}m{text}\033[0m"


def show_ok(show_all: bool, stream=None) -> bool:
    """OK findings scroll the verdict off a terminal: shown there only with --all; a pipe gets them all."""
    return show_all or not (stream or sys.stdout).isatty()


def print_findings(findings: list[Finding], show_ok: bool = True, most_urgent_last: bool = False) -> None:
    """One line per finding (two for a problem). ``most_urgent_last``: the criticals end up at the
    bottom of the screen, just above the verdict, instead of scrolling away."""
    repeated = {id(findings[i]): primary for i, primary in echoes(findings).items()}
    ordered = sort_by_urgency(f for f in findings if not (most_urgent_last and f.check == VERDICT))
    for f in reversed(ordered) if most_urgent_last else ordered:
        if f.severity == Severity.OK and not show_ok:
            continue
        if id(f) in repeated:  # one line, pointing at the finding it repeats
            label = _colour(f"{f.severity.value.upper():8}", f.severity)
            print(f"  {label} {clean(f.check):28} same as {clean(repeated[id(f)].check)} ({clean(f.resource, 60)})")
            continue
        label = _colour(f"{f.severity.value.upper():8}", f.severity)
        print(f"  {label} {clean(f.check):28} {clean(f.title, 120)}")
        if f.severity in (Severity.ERROR, Severity.CRITICAL, Severity.WARNING) and f.detail:
            print(f"  {'':8} {'':28} {clean(f.detail, 160)}")


def print_tally(findings: list[Finding]) -> None:
    """Problems, each counted once: an echo of another check's finding and the verdict are not counted."""
    counted = problems(findings)
    tally = counts(counted)
    line = ", ".join(f"{n} {name}" for name, n in tally.items() if n) or "no finding"
    left_out = len(findings) - len(counted) - sum(f.check == VERDICT for f in findings)
    print(f"  {line}" + (f" ({left_out} more repeat{'s' if left_out == 1 else ''} another check's finding)"
                         if left_out else ""))


def print_verdict(findings: list[Finding]) -> None:
    """The last word on screen: the escalation level when the triage decided one, else the worst
    severity and what caused it."""
    escalation = next((f for f in findings if f.check == VERDICT), None)
    if escalation is not None:
        label = _colour(f"{'ESCALATE':8}", escalation.severity)
        print(f"  {label} {clean(escalation.title, 150)}")
        if escalation.detail:
            print(f"  {'':8} {clean(escalation.detail, 300)}")
        return
    worst = min((f.severity for f in findings), key=lambda s: s.rank, default=Severity.OK)
    causes = sorted({f.check for f in findings if f.severity == worst})
    label = _colour(f"{'VERDICT':8}", worst)
    if worst in (Severity.OK, Severity.INFO):
        print(f"  {label} nothing needs attention ({len(findings)} findings, none a warning or worse)")
    else:
        shown = ", ".join(clean(c) for c in causes[:6]) + (f" and {len(causes) - 6} more" if len(causes) > 6 else "")
        print(f"  {label} {worst.value.upper()}: {shown}")
