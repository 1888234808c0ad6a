"""The triage's shared fetch cache: one fetch across processes, failures shared, private data kept local."""

from __future__ import annotations

import multiprocessing
import threading
import time
from pathlib import Path

import botocore.exceptions
import pytest

from rmsops.core import config, failure, sharedcache
from rmsops.core.context import Context
from rmsops.core.sharedcache import SharedCache
from rmsops.core.window import resolve


def _fetch_in_another_process(folder: str, key: str, calls: str) -> None:
    def fetch() -> dict:
        with open(calls, "a") as log:
            log.write("fetched\n")
        time.sleep(0.3)  # long enough for the others to be waiting on the lock
        return {"services": ["rms-backend"]}

    assert SharedCache(Path(folder)).get(key, fetch) == {"services": ["rms-backend"]}


def test_processes_asking_at_once_fetch_once(tmp_path):
    calls = tmp_path / "calls.log"
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_fetch_in_another_process, args=(str(tmp_path / "cache"), "k", str(calls)))
               for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    assert [w.exitcode for w in workers] == [0, 0, 0, 0]
    assert calls.read_text().count("fetched") == 1


def test_threads_of_one_process_fetch_once(tmp_path):
    cache, fetched = SharedCache(tmp_path), []

    def fetch() -> int:
        fetched.append(1)
        time.sleep(0.2)
        return 42

    answers: list[int] = []
    threads = [threading.Thread(target=lambda: answers.append(cache.get("k", fetch))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [42, 42, 42] and len(fetched) == 1


def test_keys_are_kept_apart(tmp_path):
    cache = SharedCache(tmp_path)
    assert cache.get("a", lambda: 1) == 1
    assert cache.get("b", lambda: 2) == 2
    assert cache.get("a", lambda: 3) == 1


def test_a_failure_is_shared_with_the_iam_action_it_attempted(tmp_path):
    cache = SharedCache(tmp_path)
    denied = botocore.exceptions.ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}},
                                             "DescribeServices")

    def fetch():
        failure.remember_action("ecs:DescribeServices")
        raise denied

    with pytest.raises(botocore.exceptions.ClientError):
        cache.get("k", fetch)
    failure.remember_action("sts:GetCallerIdentity")  # as if this process had been doing something else

    def must_not_run():
        raise AssertionError("the failure should have been shared")

    with pytest.raises(botocore.exceptions.ClientError) as raised:
        cache.get("k", must_not_run)
    assert "grant ecs:DescribeServices" in failure.describe(raised.value)


def test_what_cannot_be_pickled_is_fetched_again_not_shared(tmp_path):
    cache, fetched = SharedCache(tmp_path), []

    def fetch():
        fetched.append(1)
        return threading.Lock()  # a live object: no other process could use it

    cache.get("k", fetch)
    cache.get("k", fetch)
    assert len(fetched) == 2
    assert not list(tmp_path.glob("*.pickle"))


def test_the_cache_is_private(tmp_path):
    SharedCache(tmp_path / "shared").get("k", lambda: "v")
    assert (tmp_path / "shared").stat().st_mode & 0o077 == 0


def test_outside_a_triage_nothing_is_shared(monkeypatch, tmp_path):
    monkeypatch.delenv(sharedcache.ENV, raising=False)
    assert sharedcache.current() is None
    monkeypatch.setenv(sharedcache.ENV, str(tmp_path))
    assert sharedcache.current().folder == tmp_path


def test_context_memo_shares_between_contexts_in_a_triage(env_file, monkeypatch, tmp_path):
    """Two runbooks' contexts (as two kernels of one triage would have) fetch the same data once."""
    monkeypatch.setenv(sharedcache.ENV, str(tmp_path))
    fetched = []
    settings, window = config.load(env_file()), resolve("1h")
    first, second = Context(settings, window), Context(settings, window)
    other_window = Context(settings, resolve("2h"))
    other_window.memo("ecs.describe_services", lambda: fetched.append(1) or {"services": []})
    for ctx in (first, second):
        assert ctx.memo("ecs.describe_services", lambda: fetched.append(1) or {"services": []}) == {"services": []}
    assert len(fetched) == 2  # once for the triage's window, once for another window
    assert second.memo("drift.other_context", lambda: fetched.append(1) or "x", share=False) == "x"
    assert first.memo("drift.other_context", lambda: fetched.append(1) or "x", share=False) == "x"
    assert len(fetched) == 4  # not shared when asked not to


def test_a_check_runs_once_for_all_the_runbooks_of_a_triage(env_file, monkeypatch, tmp_path):
    """The first look runs checks ahead; a runbook's process then takes the result, placed as its own.
    Other thresholds (-p) make another result; the escalation level's input (the other runbooks'
    findings) is its own and it is never shared; escalation's recent changes are."""
    from rmsops.core import registry, runbooks
    from rmsops.core.findings import Finding, Severity

    runs = []

    def judge(ctx):
        runs.append(ctx.thresholds["error_rate_critical_pct"])
        finding = Finding("t.shared", Severity.WARNING, "r", f"judged at {len(runs)}", "", {}, "")
        return registry.CheckResult(findings=[finding])

    spec = registry.CheckSpec("t.shared", "01-application-not-responding", "1", judge, "a test check")
    settings, window = config.load(env_file()), resolve("1h")
    monkeypatch.setenv(sharedcache.ENV, str(tmp_path))
    ahead = registry.run(spec, Context(settings, window))
    runner = registry.run(spec, Context(settings, window, runbook="17-daily-health-check"))
    assert len(runs) == 1 and runner.findings[0].title == ahead.findings[0].title == "judged at 1"
    assert ahead.findings[0].runbook == "01-application-not-responding"
    assert runner.findings[0].runbook == "17-daily-health-check", "placed by the process that shows it"
    registry.run(spec, Context(settings, window, {"error_rate_critical_pct": 50}))
    assert len(runs) == 2 and runs[0] != 50 and runs[1] == 50
    level = registry.CheckSpec("escalation.level", runbooks.ESCALATION, "18", judge, "judges findings")
    registry.run(level, Context(settings, window))
    registry.run(level, Context(settings, window))
    assert len(runs) == 4
    changes = registry.CheckSpec("escalation.recent_changes", runbooks.ESCALATION, "18", judge, "reads AWS")
    registry.run(changes, Context(settings, window))
    registry.run(changes, Context(settings, window, runbook=runbooks.ESCALATION))
    assert len(runs) == 5, "the timeline and escalation take one result"
    monkeypatch.delenv(sharedcache.ENV)
    registry.run(spec, Context(settings, window))
    assert len(runs) == 6, "outside a triage every run judges again"


def test_the_first_look_runs_ahead_from_the_runbook_a_triage_starts_last():
    from rmsops.core import runbooks
    from rmsops.execution import firstlook

    stems = ["01-application-not-responding", "16-external-dependencies", "18-escalation"]
    ahead = firstlook.ahead(stems)
    in_order = sorted((runbooks.find(s) for s in stems), key=lambda rb: rb.cost)
    expected = [c.id for rb in in_order for c in rb.entries if c.id not in firstlook.CHECKS]
    assert ahead == [c for c in dict.fromkeys(expected) if c != "escalation.level"]
    assert not set(ahead) & set(firstlook.CHECKS), "the first look's own checks are done already"
    assert "escalation.recent_changes" in ahead, "the timeline draws them while escalation runs"
    assert "escalation.level" not in ahead, "it judges the other runbooks' findings, which come later"


def test_a_runbook_opened_in_a_triage_starts_its_checks_at_once(env_file, monkeypatch, tmp_path):
    """Its cells run the checks one after another; against a real account each waits on AWS, so
    they are started together when the runbook opens, and each cell takes its check's result.
    Outside a triage nothing is started: in JupyterLab a cell runs its check when it runs."""
    from rmsops.core import registry
    from rmsops.notebook import open_runbook

    registry.load_all()
    lock, running, most, judged = threading.Lock(), [0], [0], []

    def slow(ctx):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.2)  # an AWS call's wait
        with lock:
            running[0] -= 1
            judged.append(threading.current_thread().name)
        return registry.CheckResult(findings=[])

    stem = "16-external-dependencies"
    ids = [spec.id for spec in registry.for_runbook(stem)]
    for check_id in ids:
        spec = registry.get(check_id)
        monkeypatch.setitem(registry.REGISTRY, check_id, registry.CheckSpec(
            check_id, stem, spec.section, slow, spec.summary))
    monkeypatch.delenv(sharedcache.ENV, raising=False)
    settings, window = config.load(env_file()), resolve("1h")
    assert registry.start_ahead(stem, Context(settings, window, runbook=stem)) == 0
    time.sleep(0.1)
    assert judged == [], "outside a triage nothing runs ahead"

    monkeypatch.setenv(sharedcache.ENV, str(tmp_path))
    session = open_runbook(env_file(), runbook=stem)
    waited = time.monotonic() + 10
    while len(judged) < len(ids) and time.monotonic() < waited:  # opening alone starts them all
        time.sleep(0.02)
    assert len(judged) == len(ids) >= 3 and all(name.startswith("rmsops-ahead") for name in judged)
    assert most[0] > 1, "started together, not one after another"
    for check_id in ids:
        session.ctx.run(check_id)  # what each cell does
    assert len(judged) == len(ids), "each check judged once: the cells took the results started"
