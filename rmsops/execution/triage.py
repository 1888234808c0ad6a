"""Triage: every diagnostic runbook at once, escalation last, one tamper-evident incident bundle.

Runbooks run concurrently, each in a process forked from a warm zygote (``rmsops.execution.zygote``):
a runner that executes and reports the notebook itself (``rmsops.execution.inline``), or with
``RMSOPS_ENGINE=kernel`` a Jupyter kernel. Each has its own process, so no state leaks between
them, but none pays the seconds of Python imports. A runbook that fails, hangs past its timeout
or loses its process only turns its own checks into ``error`` findings. The bundle is written
into a hidden staging folder and moved into place when complete; Ctrl-C leaves a bundle marked
incomplete, never a half-written one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import shutil
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from rmsops import __version__
from rmsops.core import budget, failure, registry, runbooks
from rmsops.core.config import Settings
from rmsops.core.errors import UserError
from rmsops.core.findings import (
    MIME_TYPE,
    Finding,
    Severity,
    document,
    exit_code,
    iso,
    sort_by_urgency,
    write_document,
)
from rmsops.core.runbooks import Runbook
from rmsops.core.window import Window
from rmsops.execution import bundle, interrupts
from rmsops.execution.children import ForeignProcess
from rmsops.execution.runner import RunOutcome, missing_check_findings, run_runbook, warm_exporter
from rmsops.execution.zygote import Runner, Zygote
from rmsops.render.imageformat import SUFFIX
from rmsops.render.progress import Progress

# The timeline's file in the bundle and its marks (rmsops.render.timeline.Drawn), as plain data: a
# runner sends it pickled, and unpickling that class would import pandas into the command (0.4 s).
Picture = tuple[str, tuple[tuple[str, str], ...]]

DEFAULT_JOBS = 4  # kernels mostly wait on AWS and the database: more than the cores pays
DEFAULT_TIMEOUT_SECONDS = 300
ESCALATION = runbooks.ESCALATION
LIBRARIES = ("boto3", "botocore", "pandas", "matplotlib", "papermill", "nbclient", "mistune", "ipykernel",
             "psycopg")


@dataclass
class TriageResult:
    outcomes: list[RunOutcome]
    findings: list[Finding]
    folder: Path
    index: Path
    findings_json: Path
    zip: Path | None
    status: str  # complete | incomplete
    first_finding_seconds: float | None = None
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        failed = any(o.status != "done" for o in self.outcomes) or self.status != "complete"
        return 3 if failed else exit_code(self.findings)


def default_selection() -> list[Runbook]:
    """01–16: the daily health check (17) is their quick subset, and escalation (18) runs last."""
    return [rb for rb in runbooks.triage_selection() if rb.stem != ESCALATION]


def run(settings: Settings, window: Window, out_dir: Path, selected: list[Runbook] | None = None,
        jobs: int = DEFAULT_JOBS, timeout: int = DEFAULT_TIMEOUT_SECONDS, force: bool = False,
        zygote: Zygote | None = None, progress: Progress | None = None, staging: Path | None = None,
        sign: str = "", interrupted: bool = False, params: dict[str, Any] | None = None) -> TriageResult:
    """Run the triage and write the bundle to ``out_dir`` (and ``out_dir``.zip).

    Whatever happens once it has started (Ctrl-C, SIGTERM, the run's time budget running out),
    a bundle is written: finished runbooks keep their findings, the others say why they did not
    finish, and the bundle is marked ``incomplete``. ``interrupted``: a signal arrived before the
    triage could start (the command line); only the bundle is written. ``params``: notebook
    parameters for every runbook (the command line's ``-p`` threshold overrides).
    """
    started_at, started = datetime.now(UTC), time.monotonic()
    outcomes: dict[str, RunOutcome] = {}
    stopped = _stop_reason() if interrupted else ""
    own_zygote = zygote is None
    identity: dict[str, str] = {}
    picture: list[Picture | None] = []  # the timeline, once drawn
    drawing: threading.Thread | None = None  # drawing it, while escalation runs
    installed = False
    try:
        installed = interrupts.install()
        # Absolute from here on: papermill changes the process's working directory while a notebook
        # runs, and runbooks run in concurrent threads.
        out_dir = out_dir.resolve()
        selected = selected if selected is not None else default_selection()
        diagnostics = [rb for rb in selected if rb.stem != ESCALATION]
        if out_dir.exists() and not force:
            raise UserError(f"{out_dir} exists; choose another -o or pass --force to replace it")
        if staging is None:
            bundle.prepare_folder(out_dir)
            staging = bundle.make_staging(out_dir)
        shown_by_caller = progress is not None  # the command line draws it from before the imports
        progress = progress or Progress([rb.stem for rb in selected], live=False)
        # A first look asks AWS who we are; otherwise ask now, alongside the runbooks.
        told = zygote.shared_cache if zygote is not None and zygote.looks_first else None
        who = threading.Thread(target=_caller_identity, args=(settings, identity, told), daemon=True)
        if told is None:
            who.start()
        if not interrupted:
            zygote = zygote or Zygote().start()
            if not zygote.runners:  # runners export their own reports, warm from the zygote
                threading.Thread(target=_warm_exporter_after, args=(zygote,), daemon=True,
                                 name="rmsops-warm-exporter").start()
            with contextlib.nullcontext() if shown_by_caller else progress:
                stopped = _run_all(diagnostics, settings, window, staging, jobs, timeout, zygote, progress, outcomes,
                                   params, final=out_dir)
                if not stopped and any(rb.stem == ESCALATION for rb in selected):
                    merged = [f for o in outcomes.values() for f in o.findings]
                    write_document(staging / "findings.json", document(merged, settings.name, window.start,
                                                                       window.end))
                    escalation = runbooks.find(ESCALATION)
                    # The timeline is drawn while escalation runs, from the same recent changes (the
                    # shared cache's); without runners, after it, from its table.
                    drawing = _start_timeline(zygote, staging, window, merged, settings, picture)
                    outcomes[ESCALATION] = _run_one(
                        escalation, settings, window, staging, timeout, zygote, progress,
                        {"findings": str((staging / "findings.json").resolve())}, final=out_dir)
                    if drawing is None:
                        picture.append(_timeline(staging, window, merged))
        if told is not None:
            who.start()  # reads what the first look found (asks itself if it found nothing)
        who.join(timeout=10)
    except KeyboardInterrupt:
        interrupts.hold()
        stopped = _stop_reason()
        _stop_running_runbooks()
    except BaseException:  # bad input or a bug: nothing is presented as a bundle
        _stop_running_runbooks()
        if own_zygote and zygote is not None:
            zygote.stop()
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        if installed:
            interrupts.restore()
        raise
    interrupts.hold()  # from here on the bundle is written, whatever signal comes
    if drawing is not None:
        drawing.join()  # ended with its runner, if stopped: never two writers of the timeline
    try:
        if own_zygote and zygote is not None:
            zygote.stop()
        assert staging is not None and selected is not None
        finished, findings = _final_findings(settings, selected, outcomes, stopped)
        write_document(staging / "findings.json", document(findings, settings.name, window.start, window.end))
        details = _details(settings, window, selected, finished, identity, started_at, stopped, jobs, timeout,
                           progress.first_finding_seconds if progress else None)
        drawn = picture[0] if picture else _timeline(staging, window, findings)
        (staging / "index.html").write_text(index_html(details, finished, findings, drawn), encoding="utf-8")
        bundle.write_manifest(staging, details)
        unsigned = _sign(staging, sign, settings) if sign else ""
        bundle.move_into_place(staging, out_dir, force=True)
        finished = [_rebased(o, staging, out_dir) for o in finished]
        archive = bundle.make_zip(out_dir, out_dir.with_name(out_dir.name + ".zip"))
    except BaseException:
        if staging is not None and staging.exists():
            shutil.rmtree(staging, ignore_errors=True)  # never a half-written bundle left behind
        raise
    finally:
        if installed:
            interrupts.restore()
    return TriageResult(finished, findings, out_dir, out_dir / "index.html", out_dir / "findings.json", archive,
                        "incomplete" if stopped else "complete",
                        progress.first_finding_seconds if progress else None, time.monotonic() - started,
                        {"stopped": stopped, "unsigned": unsigned})


def _final_findings(settings: Settings, selected: list[Runbook], outcomes: dict[str, RunOutcome],
                    stopped: str) -> tuple[list[RunOutcome], list[Finding]]:
    """The outcomes that count and the merged findings: a stopped triage keeps what finished, says
    why the rest did not, and still judges the escalation level on what it has (a lower bound)."""
    finished = [outcomes[rb.stem] for rb in selected if rb.stem in outcomes]
    if stopped:
        finished = [_stopped_outcome(o, stopped) if o.status != "done" else o for o in finished]
    findings = [f for o in finished for f in o.findings]
    for rb in selected:
        if rb.stem not in outcomes:
            findings += _not_run_findings(rb, stopped or "ended")
    if stopped and any(rb.stem == ESCALATION for rb in selected) and ESCALATION not in outcomes:
        findings = [f for f in findings if f.check != "escalation.level"] + [_escalation_of(findings, settings)]
    return finished, findings


def _escalation_of(findings: list[Finding], settings: Settings) -> Finding:
    """``escalation.level`` judged here, on the findings a stopped triage has (its runbook did not run)."""
    from rmsops.checks import escalation

    judged = [f for f in findings if not f.check.startswith("escalation.")]
    absent = escalation.absent_runbooks(judged)
    decision = escalation.decide(judged, unseen=[c for ids in absent.values() for c in ids], not_run=absent)
    finding = escalation.judge_level(decision, settings.name, len(judged), "the findings of this stopped triage")
    spec = registry.get("escalation.level")
    return finding.placed(ESCALATION, spec.section)


def _sign(staging: Path, spec: str, settings: Settings) -> str:
    """Sign the manifest; a signing failure leaves the bundle unsigned (and says why), never lost."""
    from rmsops.core.aws import AwsClients
    from rmsops.execution import signing

    try:
        signing.sign_manifest(staging, spec, lambda: AwsClients(settings.aws).client("kms"))
    except UserError as exc:
        return str(exc)
    return ""


def _stop_reason() -> str:
    signal_name = interrupts.received()
    return f"interrupted by {signal_name}" if signal_name else "interrupted (Ctrl-C)"


def _stopped_outcome(outcome: RunOutcome, reason: str) -> RunOutcome:
    """A runbook the stop cut short: its finished checks stand, the others say why they did not run."""
    outcome.status = "interrupted"
    outcome.error = f"the triage was {reason} while this runbook ran"
    kept = [f for f in outcome.findings if f.severity != Severity.ERROR or "runbook stopped" not in f.detail]
    outcome.findings = kept + missing_check_findings(outcome.runbook, kept, outcome.error)
    return outcome


def _not_run_findings(runbook: Runbook, reason: str) -> list[Finding]:
    return missing_check_findings(runbook, [], f"not run: the triage was {reason} before this runbook started")


def _warm_exporter_after(zygote: Zygote) -> None:
    """Load the reports' markdown parser once the kernels can start: until then the cores are busy
    warming them up."""
    with contextlib.suppress(Exception):  # an export that finds it cold loads it (and reports) itself
        zygote.wait_ready()
        warm_exporter()


def slowest_first(selected: list[Runbook]) -> list[Runbook]:
    """The order to start runbooks in: the last to finish are then quick ones, and no core idles long."""
    return sorted(selected, key=lambda rb: -rb.cost)


def _run_all(diagnostics: list[Runbook], settings: Settings, window: Window, staging: Path, jobs: int,
             timeout: int, zygote: Zygote, progress: Progress, outcomes: dict[str, RunOutcome],
             params: dict[str, Any] | None = None, final: Path | None = None) -> str:
    """Run the runbooks into ``outcomes`` (filled as each finishes, so a stop keeps them).

    Returns why it stopped early (a signal, the time budget), or ``""`` when every runbook ran.
    """
    pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="rmsops-runbook")
    futures: dict[Future, Runbook] = {
        pool.submit(_run_one, rb, settings, window, staging, timeout, zygote, progress, params, final): rb
        for rb in slowest_first(diagnostics)}
    stopped = ""
    try:
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for future in done:
                outcomes[futures[future].stem] = future.result()
            if pending and budget.exhausted():
                stopped = f"stopped when its time budget ran out ({budget.describe()})"
                break
    except KeyboardInterrupt:
        interrupts.hold()
        stopped = _stop_reason()
    if stopped:
        for name in ("papermill", "traitlets", "nbclient"):  # "kernel died": we killed it, on purpose
            logging.getLogger(name).setLevel(logging.CRITICAL)
        for future, rb in futures.items():
            if future.cancel():
                progress.state(rb.stem, "cancelled")
        _stop_running_runbooks()
        pool.shutdown(wait=True)  # the killed runbooks write what they had
        for future, rb in futures.items():
            if not future.cancelled() and future.done() and rb.stem not in outcomes:
                outcomes[rb.stem] = future.result()
    pool.shutdown(wait=False)
    return stopped


def _stop_running_runbooks() -> None:
    from rmsops.execution import children

    for thread in threading.enumerate():
        process = children.running(thread.ident or 0)
        if process is not None and process.poll() is None:
            process.stop()


def _run_one(runbook: Runbook, settings: Settings, window: Window, staging: Path, timeout: int,
             zygote: Zygote, progress: Progress, params: dict[str, Any] | None = None,
             final: Path | None = None) -> RunOutcome:
    """One runbook in a process forked from the zygote (a runner, or a kernel with
    ``RMSOPS_ENGINE=kernel``), with a watchdog for its whole-run timeout. ``final``: the bundle
    folder the staging folder becomes (the executed notebook records paths in it)."""
    from rmsops.execution import children

    progress.state(runbook.stem, "running")
    worker = threading.get_ident()
    timed_out = threading.Event()

    def overdue() -> None:
        process = children.running(worker)
        if process is not None and process.poll() is None:
            timed_out.set()
            process.stop()

    watchdog = threading.Timer(timeout, overdue)
    watchdog.daemon = True
    watchdog.start()

    def found(records: list[dict[str, Any]]) -> None:
        progress.findings(runbook.stem, [Finding.from_dict(f) for f in records])

    relocate = (staging, final) if final is not None else None
    try:
        if zygote.runners:
            outcome = _run_in_runner(runbook, settings, window, staging / runbook.stem, params, timeout, relocate,
                                     zygote, found)
        else:
            outcome = _run_in_kernel(runbook, settings, window, staging / runbook.stem, params, timeout, relocate,
                                     zygote, found)
    except Exception as exc:  # noqa: BLE001 - a runbook's failure never stops the others
        outcome = _failed_outcome(runbook, settings, window, staging, failure.describe(exc))
    finally:
        watchdog.cancel()
    if timed_out.is_set():
        reason = f"the runbook ran longer than its timeout ({timeout} s) and was stopped"
        outcome.error = reason
        outcome.status = "timeout"
        kept = [f for f in outcome.findings if f.severity != Severity.ERROR or "runbook stopped" not in f.detail]
        outcome.findings = kept + missing_check_findings(runbook, kept, reason)
    progress.state(runbook.stem, outcome.status)
    return outcome


def _run_in_runner(runbook: Runbook, settings: Settings, window: Window, folder: Path,
                   params: dict[str, Any] | None, timeout: int, relocate: tuple[Path, Path] | None,
                   zygote: Zygote, found: Any) -> RunOutcome:
    """The whole run in a runner forked from the zygote (``rmsops.execution.inline``); if it dies
    before its outcome (killed), the outcome is built here from the notebook as far as it got."""
    from rmsops.execution import children, inline
    from rmsops.execution.runner import finish_run

    started = time.monotonic()
    job = inline.job_order(run_runbook, runbook, settings, window, folder, params, timeout=timeout,
                           relocate=relocate, source=runbook.notebook, engine_name=inline.ENGINE_NAME)
    runner = zygote.fork_runner(job, str(runbook.notebook.parent), dict(os.environ), reusable=True)
    process = children.ForeignProcess(runner.pid, interruptible=True)
    children.register(process)
    seen: list[dict[str, Any]] = []  # what it showed: its notebook's file may be older

    def shown(records: list[dict[str, Any]]) -> None:
        seen.extend(records)
        found(records)

    finished, outcome = _collect(zygote, runner, process, shown)
    if finished:
        return outcome
    with contextlib.suppress(Exception):
        process.wait(timeout=5)  # its last words are written
    why = runner.last_words()
    return finish_run(runbook, settings, window, folder.resolve(), None,
                      f"the runbook's process ended before it finished{': ' + why if why else ''}", started,
                      relocate, seen=[Finding.from_dict(f) for f in seen])


def _run_in_kernel(runbook: Runbook, settings: Settings, window: Window, folder: Path,
                   params: dict[str, Any] | None, timeout: int, relocate: tuple[Path, Path] | None,
                   zygote: Zygote, found: Any) -> RunOutcome:
    from rmsops.execution.fastkernel import kernel_manager_class

    def on_cell_executed(cell, **_: Any) -> None:
        for output in cell.get("outputs", []):
            record = output.get("data", {}).get(MIME_TYPE)
            if record:
                found(record["findings"])

    return run_runbook(runbook, settings, window, folder, params, timeout=timeout, relocate=relocate,
                       kernel_manager_class=kernel_manager_class(zygote), on_cell_executed=on_cell_executed)


def _rebased(outcome: RunOutcome, staging: Path, folder: Path) -> RunOutcome:
    """The outcome's paths after the staging folder became the bundle."""
    def moved(path: Path | None) -> Path | None:
        return None if path is None else folder / path.relative_to(staging)

    outcome.notebook, outcome.html = moved(outcome.notebook), moved(outcome.html)
    outcome.findings_json = moved(outcome.findings_json)
    outcome.files = [moved(p) for p in outcome.files]
    return outcome


def _failed_outcome(runbook: Runbook, settings: Settings, window: Window, staging: Path, reason: str) -> RunOutcome:
    folder = staging / runbook.stem
    folder.mkdir(parents=True, exist_ok=True)
    findings = missing_check_findings(runbook, [], f"the runbook could not run: {reason}")
    path = folder / "findings.json"
    write_document(path, document(findings, settings.name, window.start, window.end))
    return RunOutcome(runbook, "failed", findings, folder / f"{runbook.stem}.ipynb", None, path, 0.0, reason)


def _caller_identity(settings: Settings, into: dict[str, str], told: Path | None = None) -> None:
    """Who ran the triage, as AWS sees it (for the bundle header); from the first look's shared
    cache ``told`` when one ran. Never raises."""
    from rmsops.core import sharedcache
    from rmsops.execution import firstlook

    def ask() -> dict[str, str]:
        from rmsops.core.aws import AwsClients, caller_identity

        return caller_identity(AwsClients(settings.aws))

    try:
        shared = told is not None and told.parent.is_dir()  # not once the zygote is stopped (Ctrl-C)
        into.update(sharedcache.SharedCache(told).get(firstlook.IDENTITY_KEY, ask) if shared else ask())
    except Exception as exc:  # noqa: BLE001 - the header says why it is unknown
        into.update(arn="unknown", error=failure.describe(exc))


def _versions() -> dict[str, str]:
    versions = {"rmsops": __version__, "python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "missing"
    return versions


def _details(settings: Settings, window: Window, selected: list[Runbook], outcomes: list[RunOutcome],
             identity: dict[str, str], started_at: datetime, stopped: str, jobs: int, timeout: int,
             first_finding: float | None) -> dict[str, Any]:
    ran = {o.runbook.stem: o for o in outcomes}
    return {
        "status": "incomplete" if stopped else "complete",
        "stopped": stopped,
        "environment": settings.name,
        "window": {"start": iso(window.start), "end": iso(window.end)},
        "started_at": iso(started_at),
        "ended_at": iso(datetime.now(UTC)),
        "run_by": {"aws": identity, "user": _local_user(), "host": platform.node()},
        "versions": _versions(),
        "parameters": {"jobs": jobs, "timeout_seconds": timeout, "runbooks": [rb.stem for rb in selected]},
        "first_finding_seconds": None if first_finding is None else round(first_finding, 3),
        "runbooks": {rb.stem: ({"status": ran[rb.stem].status, "seconds": round(ran[rb.stem].seconds, 3),
                                "error": ran[rb.stem].error} if rb.stem in ran
                               else {"status": "not run", "error": stopped or "the triage ended before it"})
                     for rb in selected},
    }


def _local_user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _start_timeline(zygote: Zygote, staging: Path, window: Window, findings: list[Finding], settings: Settings,
                    picture: list[Picture | None]) -> threading.Thread | None:
    """Draw the timeline in a runner forked from the warm zygote (matplotlib loaded, fonts cached:
    the command never imports matplotlib), in a thread that appends it to ``picture``; None when
    there are no runners (kernels: drawn here after escalation)."""
    if not zygote.runners:
        return None

    def draw() -> None:
        finished, drawn = _timeline_drawn(zygote, staging, window, findings, settings)
        if finished:  # else the bundle's end draws it from the tables, once this thread has ended
            picture.append(drawn)

    thread = threading.Thread(target=draw, daemon=True, name="rmsops-timeline")
    thread.start()
    return thread


def _timeline_drawn(zygote: Zygote, staging: Path, window: Window, findings: list[Finding],
                    settings: Settings) -> tuple[bool, Picture | None]:
    """Whether the timeline's runner finished (not when it failed or was stopped), and its picture."""
    from rmsops.execution import children, inline

    with contextlib.suppress(Exception):
        runner = zygote.fork_runner(inline.job_order(_timeline_job, staging, window, findings, str(settings.path)),
                                    str(staging), dict(os.environ), reusable=True)
        # Stopped with the runbooks' runners on a signal: never a second writer of the timeline.
        process = children.ForeignProcess(runner.pid, interruptible=True)
        children.register(process)
        return _collect(zygote, runner, process)
    return False, None


def _collect(zygote: Zygote, runner: Runner, process: ForeignProcess, found: Any = None) -> tuple[bool, Any]:
    """Read a runner to the end of its job; then hand it back for the next one, unless it was
    stopped or did not finish (``Zygote.release``)."""
    from rmsops.execution import children, inline

    try:
        finished, outcome = inline.collect(runner.conn, found)
    except BaseException:
        runner.conn.close()
        raise
    if children.hand_back(process) and finished:
        zygote.release(runner)
    else:
        runner.conn.close()
    return finished, outcome


def _timeline_job(staging: Path, window: Window, findings: list[Finding], env: str, on_cell_executed: Any = None
                  ) -> Picture | None:
    """In a runner: escalation's recent changes as escalation judges them, from the shared cache
    (the first look ran them ahead; else whichever of escalation and this asks first fetches them
    and the other waits), then the picture."""
    from rmsops.checks.escalation import RECENT_CHANGES
    from rmsops.core.context import Context

    changes = None
    with contextlib.suppress(Exception):  # then from escalation's table, if it is there yet
        ctx = Context.open(env, start=window.start.isoformat(), end=window.end.isoformat(), runbook=ESCALATION)
        try:
            changes = ctx.run(RECENT_CHANGES).data
        finally:
            ctx.close()
    return _timeline(staging, window, findings, changes)


def _timeline(staging: Path, window: Window, findings: list[Finding], changes: Any = None) -> Picture | None:
    from rmsops.render import timeline

    try:
        drawn = timeline.write(staging, (window.start, window.end), findings, changes)
        return (drawn.file, drawn.marks) if drawn else None
    except Exception:  # noqa: BLE001 - a picture must never cost the bundle; the reports hold the evidence
        return None


def _marks_html(marks: tuple[tuple[str, str], ...]) -> str:
    """The timeline's marks as a list under it: the same words as the picture, to read or copy."""
    from rmsops.render.report import esc

    if not marks:
        return ""
    items = "".join(f"<li><b>{esc(at[11:])}</b> {esc(label)}</li>" for at, label in marks)
    return (f"<p style='margin:0.3em 0 0'><b>Marked on the timeline</b> (UTC, {esc(marks[0][0][:10])}):</p>"
            f"<ul style='margin:0.2em 0 0'>{items}</ul>")


def index_html(details: dict[str, Any], outcomes: list[RunOutcome], findings: list[Finding],
               timeline: Picture | None = None) -> str:
    """The bundle's first page: the verdict first (``_banner``), then what broke, since when and what
    changed just before (``timeline``: the picture in the bundle and the marks it has, listed under
    it), the header, the findings that need attention, the key plots and the runbooks, each linked
    to its report."""
    from rmsops.core.problems import echoes, problems
    from rmsops.render.report import STYLE, badge, counts_html, esc

    escalation = next((f for f in findings if f.check == "escalation.level"), None)
    # The banner says the level, why and whom to call; the guide's steps follow the header.
    level = (f"<p><b>What to do now:</b> <i>{esc(escalation.resolution, 1200)}</i></p>"
             if escalation and escalation.resolution else "")
    reports = {o.runbook.stem: o for o in outcomes}
    rows = []
    repeated = {id(findings[i]): primary for i, primary in echoes(findings).items()}
    for f in sort_by_urgency(findings):
        if f.severity == Severity.OK:
            continue
        outcome = reports.get(f.runbook)
        link = (f'<a href="{esc(_report_href(outcome))}#check-{esc(f.check)}">{esc(f.check)}</a>'
                if outcome and outcome.html else esc(f.check))
        said = (f"<i>same problem as {esc(repeated[id(f)].check)}</i> (not counted twice)" if id(f) in repeated
                else f"<b>{esc(f.title)}</b><br>{esc(f.detail, 400)}")
        rows.append(f"<tr><td>{badge(f.severity)}</td><td>{link}</td><td>{esc(f.resource)}</td><td>{said}</td></tr>")
    runbook_rows = "".join(
        f"<tr><td>{_runbook_link(stem, reports.get(stem))}</td><td>{esc(info['status'])}</td>"
        f"<td class='num'>{info.get('seconds', '')}</td><td>{esc(info.get('error', ''))}</td></tr>"
        for stem, info in details["runbooks"].items())
    plots = _key_plots(outcomes, findings)
    who = details["run_by"]
    aws = who["aws"].get("arn", "unknown")
    incomplete = (f"<p style='color:#c62828'><b>INCOMPLETE:</b> the triage was {esc(details.get('stopped', ''))}; "
                  "the runbooks that finished keep their findings, the others say why they did not run.</p>"
                  if details["status"] != "complete" else "")
    versions = ", ".join(f"{esc(k)} {esc(v)}" for k, v in details["versions"].items())
    picture = (f"<img src='{esc(timeline[0])}' style='max-width:100%' alt='What is broken, since when and what "
               f"changed just before: ALB 5xx per period in the window, with deployments, CloudTrail changes, "
               f"alarms and the first period above the threshold marked'>{_marks_html(timeline[1])}"
               if timeline else "")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>rmsops triage — "
            f"{esc(details['environment'])}</title>{STYLE}{_BANNER_STYLE}</head>"
            f"<body style='font-family:sans-serif;margin:0'>{_banner(details, escalation, findings)}"
            f"<div class='rmsops' style='margin:1.5em 2em'>{picture}"
            f"<h1>Triage of {esc(details['environment'])}</h1>{incomplete}"
            f"<p><b>Window</b> {esc(details['window']['start'])} → {esc(details['window']['end'])} (UTC)<br>"
            f"<b>Run by</b> {esc(aws)} ({esc(who['user'])} on {esc(who['host'])}) at {esc(details['started_at'])}<br>"
            f"<b>Versions</b> {versions}</p>{level}{counts_html(problems(findings))}"
            f"<h2>Findings that need attention</h2><table><tr><th>severity</th><th>check</th><th>resource</th>"
            f"<th>finding</th></tr>{''.join(rows) or '<tr><td colspan=4>none</td></tr>'}</table>"
            f"{plots}<h2>Runbooks</h2><table><tr><th>runbook</th><th>status</th><th class='num'>seconds</th>"
            f"<th>error</th></tr>{runbook_rows}</table><p>Every file of this bundle is listed with its SHA-256 in "
            f"manifest.json; <code>rmsops verify</code> checks them.</p></div></body></html>")


_BANNER_STYLE = """<style>
.banner{color:#fff;padding:14px 2em 12px 2em;font-family:sans-serif;font-size:15px;line-height:1.45}
.banner .level{font-size:26px;font-weight:bold;margin:0 0 4px 0}
.banner p{margin:3px 0}
.banner a{color:#fff}
.banner .missing{background:rgba(0,0,0,.25);padding:4px 8px;border-radius:3px;display:inline-block}
</style>"""
_BANNER_TEXT = {Severity.WARNING: "#000"}  # orange is too light for white text


def _report_href(outcome: RunOutcome) -> str:
    """The runbook's HTML report, relative to index.html (the bundle's runbook folders sit beside it)."""
    assert outcome.html is not None
    return f"{outcome.html.parent.name}/{outcome.html.name}"


def _runbook_link(stem: str, outcome: RunOutcome | None) -> str:
    from rmsops.render.report import esc

    if outcome is None or outcome.html is None:
        return esc(stem)
    return f'<a href="{esc(_report_href(outcome))}">{esc(stem)}</a>'


def _missing_evidence(details: dict[str, Any], escalation: Finding | None) -> list[str]:
    """Runbooks that did not finish or did not run, with their status, and the stop reason if any."""
    missing = [f"{stem} ({info['status']})" for stem, info in details["runbooks"].items() if info["status"] != "done"]
    noted = {m.split(" ", 1)[0] for m in missing}
    if escalation is not None:
        missing += [f"{stem} (not run)" for stem in escalation.evidence.get("runbooks_not_run", []) or []
                    if stem not in noted]
        checks = escalation.evidence.get("missing_inputs", []) or []
        if checks:
            missing.append(f"{len(checks)} check{'s' if len(checks) != 1 else ''} could not run")
    if details["status"] != "complete":
        missing.insert(0, f"the triage was {details.get('stopped') or 'stopped'}")
    return missing


def _banner(details: dict[str, Any], escalation: Finding | None, findings: list[Finding]) -> str:
    """The verdict, full width, before anything else: the escalation level coloured by its severity,
    why, who to call, and which evidence is missing (then the level is a lower bound)."""
    from rmsops.render.report import BADGE, esc

    if escalation is not None:
        evidence = escalation.evidence
        severity = escalation.severity
        level = evidence.get("level", "?")
        headline = f"Escalation level {level} — {evidence.get('name', '')}"
        if evidence.get("lower_bound"):
            headline += " (at least: evidence is missing)"
        reasons = [r for r in evidence.get("reasons", []) if r.get("level") == level] or evidence.get("reasons", [])
        grouped: dict[str, list[str]] = {}  # one rule often fires on several checks: say it once
        for r in reasons:
            grouped.setdefault(r.get("why", ""), []).append(f"{r.get('check', '')} {r.get('severity', '')}")
        why = "; ".join(f"{rule} ({', '.join(checks)})" for rule, checks in list(grouped.items())[:3])
        why += f" (+{len(grouped) - 3} more)" if len(grouped) > 3 else ""
        why = why or escalation.title
        contacts = evidence.get("contacts", []) or []
        call = "; ".join(contacts) if contacts else "nobody yet: self-service (see the actions below)"
        lines = [f"<p><b>Why:</b> {esc(why, 800)}</p>", f"<p><b>Call:</b> {esc(call, 600)}</p>"]
    else:
        worst = sort_by_urgency(findings)[0].severity if findings else Severity.OK
        severity = worst if worst != Severity.OK else Severity.INFO
        headline = "Escalation level not judged"
        lines = [f"<p>{esc(ESCALATION)} was not part of this triage; the worst finding is "
                 f"<b>{esc(worst.value)}</b> (below).</p>"]
    missing = _missing_evidence(details, escalation)
    if missing:
        lines.append(f"<p class='missing'><b>evidence missing:</b> {esc('; '.join(missing), 1200)}</p>")
    colour = _BANNER_TEXT.get(severity, "#fff")
    return (f"<div class='banner' role='banner' data-severity='{esc(severity.value)}' "
            f"style='background:{BADGE[severity]};color:{colour}'><p class='level'>{esc(headline)}</p>"
            f"{''.join(lines)}</div>")


def _key_plots(outcomes: list[RunOutcome], findings: list[Finding], most: int = 6) -> str:
    """The plots of the most urgent checks, from the bundle's own image files, each with alt text."""
    from rmsops.render.report import esc

    available = {image.stem: f"{o.runbook.stem}/plots/{image.name}"
                 for o in outcomes for image in sorted((o.notebook.parent / "plots").glob(f"*{SUFFIX}"))}
    chosen: list[Finding] = []
    for f in sort_by_urgency(findings):
        if (f.severity in (Severity.CRITICAL, Severity.WARNING) and f.check in available
                and f.check not in {c.check for c in chosen}):
            chosen.append(f)
    images = "".join(f"<figure><img src='{esc(available[f.check])}' alt='{esc(f'{f.check}: {f.title}')}' "
                     f"style='max-width:900px'><figcaption>{esc(f.check)}</figcaption></figure>"
                     for f in chosen[:most])
    return f"<h2>Key plots</h2>{images}" if images else ""
