"""Problems, not echoes: what a tally of an incident counts.

Two checks may read the same signal (the monitoring overview's ``metrics.latency`` repeats runbook
06's ``api.latency.percentiles``). The catalogue says which check echoes which (``Check.echo_of``);
in one set of findings, an echo of a primary finding on the same resource at the same severity is
the same problem seen twice. ``escalation.level`` is the verdict about the problems, not one of
them. findings.json keeps every finding (the contract); the tallies on screen and in the index
count problems.
"""

from __future__ import annotations

from collections.abc import Iterable

from rmsops.core import runbooks
from rmsops.core.findings import Finding, Severity

VERDICT = "escalation.level"


def echo_of(check_id: str) -> str:
    try:
        return runbooks.entry(check_id)[1].echo_of
    except KeyError:
        return ""


def echoes(findings: Iterable[Finding]) -> dict[int, Finding]:
    """Index (in ``findings``) of each echo → the primary finding it repeats."""
    listed = list(findings)
    primaries = {(f.check, f.resource, f.severity): f for f in listed}
    found: dict[int, Finding] = {}
    for index, finding in enumerate(listed):
        primary = echo_of(finding.check)
        if primary and finding.severity != Severity.OK:
            match = primaries.get((primary, finding.resource, finding.severity))
            if match is not None:
                found[index] = match
    return found


def problems(findings: Iterable[Finding]) -> list[Finding]:
    """The findings that are problems in their own right: no echo, no verdict."""
    listed = list(findings)
    repeated = echoes(listed)
    return [f for i, f in enumerate(listed) if i not in repeated and f.check != VERDICT]
