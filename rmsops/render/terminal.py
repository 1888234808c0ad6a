"""What a person sees on the terminal: findings in order of urgency, coloured when it is a terminal.

Everything printed here comes from inspected systems through ``report.clean`` (no control characters).
"""

from __future__ import annotations

import os
import sys

from rmsops.core.findings import Finding, Severity, counts, sort_by_urgency
from rmsops.render.report import clean


def _colour(text: str, severity: Severity, stream=sys.stdout) -> str:
    if not stream.isatty() or os.environ.get("NO_COLOR"):
        return text
    code = {"critical": "31;1", "error": "35;1", "warning": "33;1", "info": "34", "ok": "32"}
    return f"\033[{code[severity.value]}m{text}\033[0m"


def print_findings(findings: list[Finding], show_ok: bool = True) -> None:
    for f in sort_by_urgency(findings):
        if f.severity == Severity.OK and not show_ok:
            continue
        label = _colour(f"{f.severity.value.upper():8}", f.severity)
        print(f"  {label} {clean(f.check):28} {clean(f.title, 120)}")
        if f.severity in (Severity.ERROR, Severity.CRITICAL, Severity.WARNING) and f.detail:
            print(f"  {'':8} {'':28} {clean(f.detail, 160)}")


def print_tally(findings: list[Finding]) -> None:
    tally = counts(findings)
    print("  " + ", ".join(f"{n} {name}" for name, n in tally.items() if n))
