"""`rmsops check` and `rmsops triage` reach the same findings on the served demo.

The two paths judge with the same check functions but fetch and run them differently: `check`
runs the checks in one process over one Context (a thread pool, shared fetches), a triage runs
the runbook notebooks in kernels forked from a zygote, each with its own Context, sharing fetches
through the triage's cache. Speed work on either side must never change a verdict, so here both
run against the same served demo over the same explicit window, one after the other, and their
findings must be the same multiset of (runbook, check, resource, severity), and of titles.

Each side runs as the command a person types (a subprocess): nothing the test process imported
or patched for earlier tests reaches either of them.

What legitimately differs between two runs a few seconds apart is only what is read live, when the
check runs, rather than out of the window — the age of the demo's idle-in-transaction sessions, the
age of a snapshot, a measured response time, a cumulative counter — and it is masked in the titles
that quote it (``CLOCK_IN_TITLE``). A verdict that compares such a quantity with a threshold can
only flip if the quantity crossed the threshold between the two runs; ``crossed_between_runs``
proves that from both sides' evidence before that one check is left out of the comparison. Nothing
else is masked: every other difference fails the test with both sides' findings and evidence.

db.connections.saturation and db.connections.by_state leave other rmsops sessions out (a triage's
concurrent runbooks each hold one): before they did, a triage counted one connection more than
`check` whenever runbook 02 ran while 07 held its session.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import warnings
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rmsops.core import runbooks
from rmsops.core.findings import iso

ESCALATION = "18-escalation"  # judges the other runbooks' findings: `check` has nothing to judge it on
DIAGNOSTIC = [rb.stem for rb in runbooks.triage_selection() if rb.stem != ESCALATION]  # 01–16

# Titles that quote a quantity read from the clock when the check ran, not from the window; the
# regex finds that quantity, which is replaced by "<clock>". All of them grow (or jitter) between
# two runs of the same environment, whatever the window:
CLOCK_IN_TITLE: dict[str, re.Pattern[str]] = {
    # "8 sessions idle in transaction (oldest 0.4 min)": the demo's sessions have been idle in
    # their transaction since the demo started, so they are older at every run.
    "db.connections.by_state": re.compile(r"(?<=\(oldest )[\d.]+ min(?=\))"),
    # "8 transactions idle for up to 5.2 min (…)", "pid 7 blocked for 70 s by …", "… waiting on a
    # lock for up to 40 s": the same sessions' age (a duration_text: s, min or h).
    "db.queries.long_running": re.compile(r"(?<= for )(?:up to )?[\d.]+ (?:s|min|h)\b"),
    "db.locks.blocked": re.compile(r"(?<= for )(?:up to )?[\d.]+ (?:s|min|h)\b"),
    # "payment-gateway is slow (2.4 s)": a response time, measured at each run.
    "app.health.endpoint": re.compile(r"(?<=slow \()[\d.]+ s(?=\))"),
    "external.http.health": re.compile(r"(?<=slow \()[\d.]+ s(?=\))"),
    # "Newest automated snapshot is 0 h old": the demo's snapshots were taken when it started and
    # their age is counted to now (hours, then days), so it ticks over while a session runs.
    "backup.rds.snapshots": re.compile(r"(?<=snapshot is )[\d.]+ (?:h|days)(?= old)"),
    # "Table cache hit rate 99.68%": pg_statio's block counters are cumulative and live, not
    # windowed; they move whenever anything reads a user table (in a freshly started demo, the
    # autovacuum of the tables it has just loaded).
    "db.cache.hit_rate": re.compile(r"(?<=cache hit rate )[\d.]+%"),
}
# Wall-clock ages counted in whole days (certificate expiry, access-key age) are not masked: they
# could only change if the two runs straddled a day boundary of the demo's age, hours after it started.

# Checks whose *verdict* compares such a clock-read quantity with a threshold: the evidence keys
# (anywhere in a finding's evidence) that hold the quantity, and those that hold the thresholds.
CLOCK_JUDGED: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "db.connections.by_state": (frozenset({"oldest_idle_in_transaction_seconds"}), frozenset({"max_age_seconds"})),
    "db.queries.long_running": (frozenset({"longest_seconds", "duration_seconds"}),
                                frozenset({"threshold_warning_seconds", "threshold_critical_seconds"})),
    "db.locks.blocked": (frozenset({"blocked_seconds", "seconds"}), frozenset({"threshold_seconds"})),
    "app.health.endpoint": (frozenset({"seconds"}), frozenset({"slow_seconds"})),
    "external.http.health": (frozenset({"seconds"}), frozenset({"slow_seconds"})),
    "db.cache.hit_rate": (frozenset({"hit_rate_pct"}), frozenset({"threshold_pct"})),
}


def fixed_window() -> tuple[str, str]:
    """The hour that ended two whole minutes ago.

    The demo keeps publishing each new minute's metrics and traces (``rmsops.demo.ticker``; traces
    once their minute is over): a window that ends two minutes back holds no minute still being
    written, so both commands read exactly the same datapoints, log lines and events in it.
    """
    end = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=2)
    return iso(end - timedelta(hours=1)), iso(end)


def rmsops(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rmsops.cli", *args], capture_output=True, text=True,
                          timeout=400, cwd=cwd, stdin=subprocess.DEVNULL)


@dataclass
class Runs:
    scenario: str
    window: tuple[str, str]
    check: subprocess.CompletedProcess
    check_doc: dict[str, Any]
    triage: subprocess.CompletedProcess
    triage_doc: dict[str, Any]
    manifest: dict[str, Any]

    @property
    def check_findings(self) -> list[dict[str, Any]]:
        return self.check_doc["findings"]

    @property
    def triage_findings(self) -> list[dict[str, Any]]:
        return [f for f in self.triage_doc["findings"] if f["runbook"] != ESCALATION]


# The incident is the shared served demo every suite run starts anyway. The healthy scenario is
# served for the suite too (test_triage's diff); here it proves that neither path finds a problem
# the other does not. Each scenario costs one `check` of 01–16 and one full triage.
@pytest.fixture(scope="module", params=["incident", "healthy"])
def runs(request, tmp_path_factory) -> Runs:
    demo = request.getfixturevalue(f"demo_{request.param}")
    folder = tmp_path_factory.mktemp(f"parity-{request.param}")
    start, end = fixed_window()
    window = ["--start", start, "--end", end]
    # check first (seconds), then the triage: sequential, never side by side, or each would see the
    # other's database sessions in pg_stat_activity.
    check = rmsops("check", "-e", str(demo.env_file), "--json", *window, *(s[:2] for s in DIAGNOSTIC), cwd=folder)
    assert check.returncode in (0, 1, 3), f"check exited {check.returncode}: {check.stderr[-3000:]}"
    out = folder / "bundle"
    triage = rmsops("triage", "-e", str(demo.env_file), "-o", str(out), *window, cwd=folder)
    assert triage.returncode in (0, 1, 3), \
        f"triage exited {triage.returncode}: {(triage.stdout + triage.stderr)[-3000:]}"
    return Runs(request.param, (start, end), check, json.loads(check.stdout),
                triage, json.loads((out / "findings.json").read_text()),
                json.loads((out / "manifest.json").read_text()))


def could_not_run(findings: list[dict[str, Any]]) -> list[str]:
    return [f"{f['check']} {f['resource']}: {f['title']}" for f in findings if f["severity"] == "error"]


def test_both_judged_the_same_environment_window_and_runbooks(runs):
    for doc in (runs.check_doc, runs.triage_doc):
        assert doc["environment"] == "demo"
        assert (doc["window"]["start"], doc["window"]["end"]) == runs.window
    assert runs.manifest["status"] == "complete"
    assert {stem: info["status"] for stem, info in runs.manifest["runbooks"].items()} == \
        {stem: "done" for stem in [*DIAGNOSTIC, ESCALATION]}
    assert {f["runbook"] for f in runs.check_findings} == set(DIAGNOSTIC)
    assert {f["runbook"] for f in runs.triage_findings} == set(DIAGNOSTIC)
    # Both sides judged the demo: a check that could not run (exit 3) would compare equal to itself
    # and prove nothing.
    assert could_not_run(runs.check_findings) == [], runs.check.stderr[-2000:]
    assert could_not_run(runs.triage_findings) == [], runs.triage.stderr[-2000:]


def test_same_verdicts(runs):
    """Every (runbook, check, resource, severity), as many times on each side."""
    check, triage = comparable(runs)
    assert_same(check, triage, verdict, "verdicts", runs)


def test_same_titles(runs):
    """And the same title, but for the quantity read off the clock (CLOCK_IN_TITLE)."""
    check, triage = comparable(runs)
    assert_same(check, triage, titled, "titles", runs)


# --- comparing --------------------------------------------------------------------------------


def verdict(f: dict[str, Any]) -> tuple[str, ...]:
    return f["runbook"], f["check"], f["resource"], f["severity"]


def titled(f: dict[str, Any]) -> tuple[str, ...]:
    pattern = CLOCK_IN_TITLE.get(f["check"])
    return (*verdict(f), pattern.sub("<clock>", f["title"]) if pattern else f["title"])


def comparable(runs: Runs) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Both sides' findings, without the checks whose clock-read quantity crossed a threshold
    between the two runs (each named in a warning: both verdicts were right when they were made)."""
    check, triage = runs.check_findings, runs.triage_findings
    for cid in CLOCK_JUDGED:
        why = crossed_between_runs(cid, [f for f in check if f["check"] == cid],
                                   [f for f in triage if f["check"] == cid])
        if why:
            warnings.warn(f"{runs.scenario}: {cid} left out of the comparison: {why}", stacklevel=2)
            check = [f for f in check if f["check"] != cid]
            triage = [f for f in triage if f["check"] != cid]
    return check, triage


def crossed_between_runs(cid: str, check: list[dict[str, Any]], triage: list[dict[str, Any]]) -> str:
    """Why *cid*'s verdicts may differ (a measured quantity on either side of a threshold), or ''."""
    if Counter(map(verdict, check)) == Counter(map(verdict, triage)):
        return ""  # same verdicts: nothing to explain, titles are compared as usual
    quantity_keys, threshold_keys = CLOCK_JUDGED[cid]
    thresholds = sorted(set(_numbers(check, threshold_keys)))
    if not thresholds or thresholds != sorted(set(_numbers(triage, threshold_keys))):
        return ""  # a threshold in force on one side only is a difference in itself, never excused
    seen = {"check": sorted(_numbers(check, quantity_keys)), "triage": sorted(_numbers(triage, quantity_keys))}
    for threshold in thresholds:
        above = {side: sum(v > threshold for v in values) for side, values in seen.items()}
        if above["check"] != above["triage"]:
            return (f"measured {seen['check']} (check) and {seen['triage']} (triage) against the threshold "
                    f"{threshold:g}: {above['check']} against {above['triage']} above it")
    return ""


def _numbers(findings: list[dict[str, Any]], keys: frozenset[str]) -> list[float]:
    found: list[float] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key in keys and isinstance(item, int | float) and not isinstance(item, bool):
                    found.append(float(item))
                else:
                    walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    for finding in findings:
        walk(finding.get("evidence") or {})
    return found


def assert_same(check: list[dict[str, Any]], triage: list[dict[str, Any]], key, what: str, runs: Runs) -> None:
    only_check = Counter(map(key, check)) - Counter(map(key, triage))
    only_triage = Counter(map(key, triage)) - Counter(map(key, check))
    if not only_check and not only_triage:
        return
    lines = [f"{runs.scenario}, window {runs.window[0]}–{runs.window[1]}: `rmsops check` and `rmsops triage` "
             f"differ in their {what}"]
    for side, extra, findings in (("check", only_check, check), ("triage", only_triage, triage)):
        for k, n in sorted(extra.items()):
            lines.append(f"  only in {side}{f' (×{n})' if n > 1 else ''}: {' | '.join(k)}")
            for f in findings:
                if key(f) == k:
                    lines.append(f"      title {f['title']!r}; evidence {json.dumps(f['evidence'], default=str)[:600]}")
                    break
    pytest.fail("\n".join(lines), pytrace=False)


def test_only_a_measure_that_crossed_a_threshold_excuses_a_verdict():
    """The one exemption, on made-up findings: it needs the same thresholds on both sides and a
    measured quantity on either side of one of them."""
    def long_running(severity: str, evidence: dict[str, Any]) -> dict[str, Any]:
        return {"runbook": "07-database-performance", "check": "db.queries.long_running", "resource": "db:x",
                "severity": severity, "title": "", "evidence": evidence}

    limits = {"threshold_warning_seconds": 300.0, "threshold_critical_seconds": 1800.0}
    before = long_running("ok", {"running": 8, "longest_seconds": 299.0, **limits})
    after = long_running("warning", {"duration_seconds": 301.0, "sessions": [{"duration_seconds": 301.0}], **limits})
    assert "threshold 300" in crossed_between_runs("db.queries.long_running", [before], [after])
    assert crossed_between_runs("db.queries.long_running", [before], [before]) == ""  # nothing to excuse
    assert crossed_between_runs("db.queries.long_running", [before], [  # differs, but crossed nothing
        long_running("warning", {"duration_seconds": 299.5, **limits})]) == ""
    one_sided = long_running("warning", {"duration_seconds": 301.0, "threshold_warning_seconds": 1.0,
                                         "threshold_critical_seconds": 1800.0})
    assert crossed_between_runs("db.queries.long_running", [before], [one_sided]) == ""  # e.g. -p on one side
