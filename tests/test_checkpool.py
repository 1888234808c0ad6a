"""`rmsops check` runs its checks concurrently, the slowest of last time first, and remembers times."""

from __future__ import annotations

import json
import threading
import types

from rmsops.core.findings import Finding, Severity
from rmsops.core.registry import CheckResult, CheckSpec
from rmsops.execution import checkpool, durations


def _specs(started: list[str], lock: threading.Lock) -> list[CheckSpec]:
    def make(cid: str):
        def fn(ctx) -> CheckResult:
            with lock:
                started.append(cid)
            return CheckResult(findings=[Finding(cid, Severity.OK, cid, "fine", "")])
        return CheckSpec(cid, "01-application-not-responding", "1", fn, f"summary of {cid}")
    return [make(f"c{n}") for n in range(6)]


def test_the_slowest_of_last_time_start_first_and_results_keep_the_order_given():
    started: list[str] = []
    specs = _specs(started, threading.Lock())
    ctx = types.SimpleNamespace(runbook="")
    results = checkpool.run_checks(ctx, specs, jobs=1, usual_seconds={"c4": 2.5, "c2": 0.7, "c9": 9.0})
    assert started == ["c4", "c2", "c0", "c1", "c3", "c5"]  # known slow ones, then catalogue order
    assert [r.check for r in results] == [s.id for s in specs]


def test_times_are_blended_per_environment_and_a_broken_file_is_only_a_missing_hint(tmp_path, monkeypatch):
    monkeypatch.setenv("RMSOPS_CACHE_DIR", str(tmp_path))
    assert durations.load("prod") == {}  # nothing yet
    durations.remember("prod", [CheckResult([], check="a", seconds=2.0), CheckResult([], check="b", seconds=-1.0)])
    durations.remember("prod", [CheckResult([], check="a", seconds=4.0)])
    durations.remember("staging", [CheckResult([], check="a", seconds=0.1)])
    assert durations.load("prod") == {"a": 3.0}  # blended; b never finished: not remembered
    assert durations.load("staging") == {"a": 0.1}
    durations.path().write_text("{not json")
    assert durations.load("prod") == {}
    durations.remember("prod", [CheckResult([], check="a", seconds=1.0)])  # rewrites a broken file
    assert json.loads(durations.path().read_text()) == {"prod": {"a": 1.0}}
    monkeypatch.setenv("RMSOPS_CACHE_DIR", str(tmp_path / "file-not-folder" / "x"))
    (tmp_path / "file-not-folder").write_text("")
    durations.remember("prod", [CheckResult([], check="a", seconds=1.0)])  # cannot write: no error
