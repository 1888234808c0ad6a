"""The first look: "is it up?" from a process the zygote forks early, shown before any runbook reports."""

from __future__ import annotations

import threading

import pytest

from rmsops.core.findings import Finding, Severity
from rmsops.core.window import resolve
from rmsops.execution import firstlook
from rmsops.execution.zygote import Zygote
from rmsops.render.progress import Progress


def _look(env_file, window=None) -> tuple[list[Finding], list[str]]:
    window = window or resolve("1h")
    zygote = Zygote().start(first_look=firstlook.order(str(env_file), window.start.isoformat(),
                                                       window.end.isoformat()))
    found: list[Finding] = []
    try:
        reader = threading.Thread(target=firstlook.read, args=(zygote.take_first_look(), found.extend))
        reader.start()
        reader.join(60)
        assert not reader.is_alive(), "the first look never finished"
        zygote.wait_ready()
        shared = [p.name for p in zygote.shared_cache.glob("*.pickle")]
    finally:
        zygote.stop()
    return found, shared


def test_the_incident_shows_in_the_first_look(demo_incident):
    found, shared = _look(demo_incident.env_file)
    by_check: dict[str, set[Severity]] = {}
    for f in found:
        by_check.setdefault(f.check, set()).add(f.severity)
    assert set(by_check) == set(firstlook.CHECKS)
    assert Severity.CRITICAL in by_check["app.health.endpoint"]  # the seeded 503
    assert Severity.CRITICAL in by_check["app.alb.target_health"]
    assert by_check["db.connectivity"] == {Severity.OK}
    assert shared, "what the first look fetched is left in the triage's shared cache for the runbooks"


def test_a_healthy_system_looks_ok(demo_healthy):
    found, _ = _look(demo_healthy.env_file)
    assert found and {f.severity for f in found} <= {Severity.OK, Severity.INFO}


def test_an_unreachable_environment_gives_errors_not_a_crash(env_file, tmp_path):
    dead = env_file(aws={"region": "us-east-1", "endpoint_url": "http://127.0.0.1:9",
                         "local_test_credentials": True},
                    database={"port": 9}, health_urls={"api": "http://127.0.0.1:9/health"})
    found, _ = _look(dead)
    assert {f.check for f in found} == set(firstlook.CHECKS)
    assert any(f.severity == Severity.ERROR for f in found)


def test_progress_shows_the_first_look_apart_from_the_runbooks():
    progress = Progress(["01-application-not-responding"], live=False)
    critical = Finding(check="app.health.endpoint", severity=Severity.CRITICAL, resource="https://rms/health",
                       title="GET /health answered 503", detail="", evidence={}, resolution="")
    ok = Finding(check="db.connectivity", severity=Severity.OK, resource="db", title="reachable", detail="",
                 evidence={}, resolution="")
    progress.first_look([critical, ok])
    assert progress.first_finding_seconds is not None
    screen = "\n".join(progress.render())
    assert "first look: 1 ok, 1 to look at" in screen
    assert "CRITICAL app.health.endpoint GET /health answered 503" in screen
    assert progress.rows["01-application-not-responding"].tally["critical"] == 0  # not a runbook's finding


def _in_a_fresh_python(code: str) -> str:
    """What ``code`` prints, run by a new interpreter (imports are what these tests measure)."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_the_first_look_modules_declare_exactly_its_checks():
    """The first look imports only MODULES (no matplotlib, not every check module): they must hold
    every first-look check, and a module listed for nothing would cost time for nothing."""
    probe = ("import importlib, sys\n"
             "from rmsops.core import registry\n"
             "from rmsops.execution import firstlook\n"
             "declared = {}\n"
             "for name in firstlook.MODULES:\n"
             "    before = set(registry.REGISTRY)\n"
             "    importlib.import_module(name)\n"
             "    declared[name] = set(registry.REGISTRY) - before\n"
             "missing = set(firstlook.CHECKS) - set(registry.REGISTRY)\n"
             "idle = [n for n, ids in declared.items() if not ids & set(firstlook.CHECKS)]\n"
             "print(sorted(missing), idle, 'matplotlib' in sys.modules)\n")
    assert _in_a_fresh_python(probe) == "[] [] False"


def test_each_waiting_check_is_declared_by_the_module_named_for_it():
    probe = ("import importlib\n"
             "from rmsops.core import registry\n"
             "from rmsops.execution import firstlook\n"
             "for check, module in firstlook.WAITING.items():\n"
             "    importlib.import_module(module)\n"
             "print(sorted(set(firstlook.WAITING) - set(registry.REGISTRY)))\n")
    assert _in_a_fresh_python(probe) == "[]"


def test_the_first_check_waits_for_neither_botocore_nor_psycopg():
    """What the zygote imports before the first look forks is enough for a first-look check, and
    it is light: the HTTP check's finding does not wait for botocore's or psycopg's imports."""
    probe = ("import importlib, sys\n"
             "from rmsops.core import registry\n"
             "from rmsops.execution import firstlook, zygote\n"
             "for name in zygote.FIRST_LOOK_MODULES:\n"
             "    importlib.import_module(name)\n"
             "from rmsops.core.context import Context\n"
             "early = [c for c in firstlook.CHECKS if c in registry.REGISTRY]\n"
             "heavy = [m for m in ('botocore.session', 'psycopg', 'matplotlib') if m in sys.modules]\n"
             "print(early, heavy)\n")
    assert _in_a_fresh_python(probe) == "['app.health.endpoint'] []"


def test_the_first_look_runs_the_runbooks_checks_ahead_into_the_shared_cache(demo_incident, monkeypatch):
    """A runbook's process then finds its checks judged: here a copy of one whose judge would fail
    if it ran again takes the first look's result. The first look also asked who the run is."""
    import dataclasses
    import time

    from rmsops.core import config, registry, sharedcache
    from rmsops.core.context import Context

    window = resolve("1h")
    stem, check = "04-tls-certificates", "tls.acm.expiry"
    zygote = Zygote().start(first_look=firstlook.order(str(demo_incident.env_file), window.start.isoformat(),
                                                       window.end.isoformat(), [stem]))
    try:
        firstlook.read(zygote.take_first_look(), lambda findings: None)
        monkeypatch.setenv(sharedcache.ENV, str(zygote.shared_cache))
        ctx = Context(config.load(demo_incident.env_file), window, runbook=stem)
        key = ctx._shared_key(f"check:{check}:{registry._digest(ctx.thresholds)}")
        deadline = time.monotonic() + 60
        while not sharedcache.SharedCache(zygote.shared_cache).has(key):
            assert time.monotonic() < deadline, "the first look did not run the runbook's checks ahead"
            time.sleep(0.2)

        def judge_again(ctx):
            raise AssertionError("judged twice")

        result = registry.run(dataclasses.replace(registry.get(check), fn=judge_again), ctx)
        assert [f.severity for f in result.findings] != [] and all(f.check == check for f in result.findings)
        assert "judged twice" not in " ".join(f.detail for f in result.findings)

        # Who the triage runs as was asked there too: the command reads it without botocore.
        from rmsops.core import aws
        from rmsops.execution import triage

        monkeypatch.setattr(aws, "caller_identity", lambda clients: pytest.fail("the command asked AWS itself"))
        told: dict[str, str] = {}
        triage._caller_identity(ctx.settings, told, zygote.shared_cache)
        assert told["arn"].startswith("arn:aws:") and told["account"]
    finally:
        zygote.stop()


def test_the_first_look_does_not_outlive_its_zygote(demo_incident):
    """A zygote stopped while it still imports is terminated, and cannot kill its children: the
    first look ends with it instead of running checks for a triage that is over."""
    import os
    import signal
    import time
    from pathlib import Path

    from rmsops.core import processes, runbooks

    window = resolve("1h")
    every = [rb.stem for rb in runbooks.triage_selection()]  # seconds of checks to run ahead
    zygote = Zygote().start(first_look=firstlook.order(str(demo_incident.env_file), window.start.isoformat(),
                                                       window.end.isoformat(), every))
    looked = os.fdopen(zygote.take_first_look(), "r", encoding="utf-8")  # open to the end: a closed
    try:
        assert looked.readline()  # pipe would end the first look itself; it is running, with a finding
        warm = zygote._process.pid
        children = [int(stat.parent.name) for stat in Path("/proc").glob("[0-9]*/stat")
                    if _parent_of(stat) == warm]
        assert children, "the zygote's first look was not found"
        os.kill(warm, signal.SIGKILL)
        deadline = time.monotonic() + 1  # running every check ahead would take it seconds more
        while any(processes.alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(processes.alive(pid) for pid in children)
    finally:
        looked.close()
        zygote.stop()


def _parent_of(stat) -> int:
    try:
        return int(stat.read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def test_a_check_that_waits_on_a_third_party_starts_with_the_first_look(demo_incident, monkeypatch):
    """The incident's payment gateway answers after 2.4 s. Its check starts when the first look
    does, not when the run-ahead reaches it (last: runbook 16 costs most) nor when runbook 16's
    process does: by the time the four first-look checks are done it holds its place in the shared
    cache, and the runbook that asks then waits for that answer instead of sending its own."""
    import dataclasses

    from rmsops.core import config, registry, runbooks, sharedcache
    from rmsops.core.context import Context

    window = resolve("1h")
    every = [rb.stem for rb in runbooks.triage_selection()]
    zygote = Zygote().start(first_look=firstlook.order(str(demo_incident.env_file), window.start.isoformat(),
                                                       window.end.isoformat(), every))
    try:
        firstlook.read(zygote.take_first_look(), lambda findings: None)  # returns once the four are done
        monkeypatch.setenv(sharedcache.ENV, str(zygote.shared_cache))
        ctx = Context(config.load(demo_incident.env_file), window, runbook="16-external-dependencies")
        check = "external.http.health"
        key = ctx._shared_key(f"check:{check}:{registry._digest(ctx.thresholds)}")
        assert sharedcache.SharedCache(zygote.shared_cache)._path(key).with_suffix(".lock").exists(), \
            "the waiting check had not started when the first look's checks were done"

        def judge_again(ctx):
            raise AssertionError("judged twice")

        result = registry.run(dataclasses.replace(registry.get(check), fn=judge_again), ctx)
        assert result.findings and all(f.check == check for f in result.findings)
        assert any("slow" in f.title for f in result.findings), [f.title for f in result.findings]
    finally:
        zygote.stop()
