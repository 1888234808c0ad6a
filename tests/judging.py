"""What the judge tests of every area share: severities, thresholds with overrides, findings by resource."""

from __future__ import annotations

from rmsops.core.findings import Finding, Severity
from rmsops.core.thresholds import DEFAULTS

OK, INFO, WARNING, CRITICAL, ERROR = (Severity.OK, Severity.INFO, Severity.WARNING, Severity.CRITICAL,
                                      Severity.ERROR)


def thresholds(**overrides: float) -> dict[str, float]:
    return {**DEFAULTS, **overrides}


def by_resource(findings: list[Finding]) -> dict[str, Finding]:
    out = {f.resource: f for f in findings}
    assert len(out) == len(findings), "one finding per resource"
    return out
