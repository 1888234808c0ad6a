"""Problems, not echoes: one problem seen by two checks is counted once; the verdict is not a problem."""

from __future__ import annotations

import pytest

from rmsops.core import problems, runbooks
from rmsops.core.findings import Finding, Severity
from rmsops.render import terminal

CRIT, WARN, OK = Severity.CRITICAL, Severity.WARNING, Severity.OK


def f(check: str, severity: Severity, resource: str = "alb:rms-alb") -> Finding:
    return Finding(check, severity, resource, f"{check} says {severity.value}")


def test_an_echo_on_the_same_resource_and_severity_is_the_primarys_problem():
    found = [f("api.latency.percentiles", CRIT), f("metrics.latency", CRIT), f("escalation.level", CRIT, "env:x")]
    assert problems.echoes(found) == {1: found[0]}
    assert problems.problems(found) == [found[0]]


@pytest.mark.parametrize("echo", [f("metrics.latency", WARN), f("metrics.latency", CRIT, "alb:other")],
                         ids=["another severity", "another resource"])
def test_an_echo_that_sees_something_else_is_a_problem_of_its_own(echo):
    found = [f("api.latency.percentiles", CRIT), echo]
    assert problems.echoes(found) == {} and problems.problems(found) == found


def test_an_echo_without_its_primary_in_the_set_counts():
    """`rmsops run 10` alone: the overview's latency finding is the only one."""
    assert problems.problems([f("metrics.latency", CRIT)]) == [f("metrics.latency", CRIT)]


def test_every_echo_names_a_check_of_another_runbook():
    for rb in runbooks.CATALOGUE:
        for check in rb.entries:
            if check.echo_of:
                primary_runbook, _ = runbooks.entry(check.echo_of)
                assert primary_runbook.stem != rb.stem, check.id


def test_the_terminal_counts_problems_and_points_echoes_at_their_primary(capsys):
    found = [f("api.latency.percentiles", CRIT), f("metrics.latency", CRIT), f("app.ecs.capacity", WARN),
             f("escalation.level", CRIT, "env:x"), f("app.alb.5xx", OK)]
    terminal.print_findings(found, most_urgent_last=True)
    terminal.print_tally(found)
    lines = capsys.readouterr().out.splitlines()
    assert any("metrics.latency" in line and "same as api.latency.percentiles" in line for line in lines)
    assert lines[-1].split() == ["1", "ok,", "1", "warning,", "1", "critical", "(1", "more", "repeats", "another",
                                 "check's", "finding)"]
