"""Runbooks run by kernel-less runners forked from the zygote (rmsops.execution.inline, cellengine).

The runner writes the same notebook a Jupyter kernel would: displays, printed text, a cell's value
and an error become the cell's outputs, papermill's metadata and error cell are there; a runner
handed back runs the next notebook in its process as a new kernel would, and one that was stopped
or died is never given another.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import papermill
import pytest

from rmsops.core import longlived, sharedcache
from rmsops.core.findings import MIME_TYPE
from rmsops.execution import cellengine, children, inline
from rmsops.execution.zygote import Zygote


def _notebook(tmp_path: Path, name: str, *sources: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    path = tmp_path / f"{name}.ipynb"
    nbformat.write(nb, path)
    return path


def _execute(tmp_path: Path, *sources: str) -> nbformat.NotebookNode:
    """In this process, as a runner does: papermill with the cell engine."""
    path = _notebook(tmp_path, "cells", *sources)
    return papermill.execute_notebook(str(path), str(tmp_path / "out.ipynb"), kernel_name="python3",
                                      engine_name=cellengine.NAME, progress_bar=False, cwd=str(tmp_path))


def test_displays_prints_and_values_become_the_outputs_a_kernel_would_give(tmp_path):
    nb = _execute(tmp_path,
                  "from IPython.display import HTML, display\n"
                  f"display({{'text/html': '<b>x</b>', 'text/plain': 'x', {MIME_TYPE!r}: {{'n': 1}}}}, raw=True)\n"
                  "display(HTML('<i>y</i>'))",
                  "print('to stdout'); print('again')",
                  "import sys; print('to stderr', file=sys.stderr)",
                  "6 * 7",
                  "None")
    first, printed, warned, value, nothing = (cell.outputs for cell in nb.cells)
    assert [o.output_type for o in first] == ["display_data", "display_data"]
    assert first[0].data[MIME_TYPE] == {"n": 1} and first[0].data["text/html"] == "<b>x</b>"
    assert first[1].data["text/html"] == "<i>y</i>"
    assert printed == [nbformat.v4.new_output("stream", name="stdout", text="to stdout\nagain\n")]
    assert warned[0].name == "stderr" and warned[0].text == "to stderr\n"
    assert value[0].output_type == "execute_result" and value[0].data["text/plain"] == "42"
    assert nothing == []
    assert [cell.execution_count for cell in nb.cells] == [1, 2, 3, 4, 5]
    assert nb.metadata.papermill.exception is False or nb.metadata.papermill.exception is None
    assert nb.metadata.language_info.name == "python"
    nbformat.validate(nb)


def test_an_error_stops_the_notebook_as_papermill_does_and_is_written(tmp_path):
    with pytest.raises(papermill.PapermillExecutionError) as raised:
        _execute(tmp_path, "x = 1", "raise RuntimeError('boom')", "never = True")
    assert raised.value.ename == "RuntimeError" and raised.value.evalue == "boom"
    written = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    failed = next(c for c in written.cells if c.get("outputs") and c.outputs[0].output_type == "error")
    assert failed.outputs[0].ename == "RuntimeError"
    assert "papermill-error-cell-tag" in written.cells[0].metadata.get("tags", [])  # papermill's banner
    assert written.cells[-1].execution_count is None  # after the error: not run


@pytest.fixture(scope="module")
def zygote():
    warm = Zygote().start()
    yield warm
    warm.stop()


def _probe_job(answer: str, on_cell_executed=None) -> str:
    """Run in a runner: what it sees of its process, written to ``answer``."""
    import gc
    import sys

    leaked = "_runner_state" in globals()
    globals()["_runner_state"] = "set by a runner"
    Path(answer).write_text(json.dumps({
        "pid": os.getpid(), "leaked": leaked, "cwd": os.getcwd(), "cache": os.environ.get(sharedcache.ENV),
        "warm": sorted(m for m in ("pandas", "botocore", "mistune", "rmsops.checks") if m in sys.modules),
        "collects_after": gc.get_threshold()[0],
        # nbformat's schema validator, compiled by the warm process's reading of a runbook
        "validators": [list(key[1:]) for key in sys.modules["nbformat.validator"].validators]}))
    return answer


def test_each_runner_is_its_own_process_and_nothing_leaks(zygote, tmp_path):
    pids = []
    for name in ("one", "two"):
        job = inline.job_order(_probe_job, str(tmp_path / f"{name}.json"))
        runner = zygote.fork_runner(job, str(tmp_path), dict(os.environ))
        with runner.conn:
            list(inline.read_messages(runner.conn))
        pids.append(runner.pid)
    one, two = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "two"))
    assert one["pid"] != two["pid"] and {one["pid"], two["pid"]} == set(pids)
    assert one["pid"] != os.getpid()
    assert two["leaked"] is False  # the first runner's global stayed in its process
    assert one["cache"] == str(zygote.shared_cache) and one["cwd"] == str(tmp_path)
    assert one["warm"] == ["botocore", "mistune", "pandas", "rmsops.checks"]
    assert [4, 5, False] in one["validators"]
    assert one["collects_after"] == longlived.SHORT_LIFE_THRESHOLD  # a runner lives seconds: few collections


def _failing_job(on_cell_executed=None):
    raise RuntimeError("the runner's own failure, for the log")


def test_a_runner_that_fails_outside_a_cell_says_why_in_its_log(zygote, tmp_path):
    runner = zygote.fork_runner(inline.job_order(_failing_job), str(tmp_path), dict(os.environ))
    with runner.conn:
        assert list(inline.read_messages(runner.conn)) == []  # no outcome: the command builds one
    deadline = time.monotonic() + 10
    while not runner.last_words() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert runner.last_words() == "RuntimeError: the runner's own failure, for the log"


def _failing_job_with_a_secret(on_cell_executed=None):
    from rmsops.core import secrets

    secrets.register("only-the-runner-knew-this")  # learnt in the runner (Secrets Manager): not the command
    raise RuntimeError("could not reach postgresql://rms:url-password@db:5432 with only-the-runner-knew-this")


def test_a_runners_last_words_have_its_secrets_masked(zygote, tmp_path):
    runner = zygote.fork_runner(inline.job_order(_failing_job_with_a_secret), str(tmp_path), dict(os.environ))
    with runner.conn:
        list(inline.read_messages(runner.conn))
    deadline = time.monotonic() + 10
    while not runner.last_words() and time.monotonic() < deadline:
        time.sleep(0.05)
    log = runner.log.read_text()
    assert "Traceback" in log and "only-the-runner-knew-this" not in log and "url-password" not in log
    assert runner.last_words() == "RuntimeError: could not reach postgresql://rms:********@db:5432 with ********"


def _pyplot_outputs(folder: str, on_cell_executed=None) -> list[str]:
    """In a runner (pyplot not yet imported, as in a runbook): a cell that draws with pyplot."""
    nb = _execute(Path(folder), "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.title('drawn')\nNone")
    return [o.output_type for o in nb.cells[0].outputs if "image/png" in o.get("data", {})]


def test_a_pyplot_figure_is_shown_as_a_kernel_would_show_it(zygote, tmp_path):
    runner = zygote.fork_runner(inline.job_order(_pyplot_outputs, str(tmp_path)), str(tmp_path), dict(os.environ))
    with runner.conn:
        outcomes = [inline.outcome_of(m) for m in inline.read_messages(runner.conn) if "outcome" in m]
    assert outcomes == [["display_data"]], runner.last_words()


def test_sigint_interrupts_the_running_cell_and_the_notebook_is_still_written(tmp_path):
    path = _notebook(tmp_path, "hang", "x = 'before'", "import time\nfor _ in range(600): time.sleep(0.1)", "y = 1")
    timer = threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    began = time.monotonic()
    with pytest.raises(papermill.PapermillExecutionError) as raised:
        papermill.execute_notebook(str(path), str(tmp_path / "out.ipynb"), kernel_name="python3",
                                   engine_name=cellengine.NAME, progress_bar=False, cwd=str(tmp_path))
    assert time.monotonic() - began < 30
    assert raised.value.ename == "KeyboardInterrupt"
    assert nbformat.read(tmp_path / "out.ipynb", as_version=4).cells[-1].execution_count is None


def _stop_between_cells_then_after_them(folder: str, on_cell_executed=None) -> dict:
    """In a runner: a stop that a cell swallows still runs no further cell; one after the last cell
    (while the report is written) cuts nothing short."""
    swallowed = ("import os, signal, time\ntry:\n    os.kill(os.getpid(), signal.SIGINT)\n    time.sleep(5)\n"
                 "except KeyboardInterrupt:\n    pass")
    try:
        _execute(Path(folder), "x = 1", swallowed, "never = True")
        error = ""
    except papermill.PapermillExecutionError as exc:
        error = exc.ename
    ran = [c.execution_count is not None and not any(o.output_type == "error" for o in c.outputs)
           for c in nbformat.read(Path(folder) / "out.ipynb", as_version=4).cells if c.cell_type == "code"]
    os.kill(os.getpid(), signal.SIGINT)  # now, as the report would be written
    time.sleep(0.2)
    return {"error": error, "ran": ran, "after": "written"}


def test_a_stop_ends_the_cells_but_never_the_writing_of_the_report(zygote, tmp_path):
    runner = zygote.fork_runner(inline.job_order(_stop_between_cells_then_after_them, str(tmp_path)), str(tmp_path),
                                dict(os.environ))
    with runner.conn:
        finished, outcome = inline.collect(runner.conn)
    assert finished, runner.last_words()
    assert outcome["error"] == "KeyboardInterrupt"
    assert outcome["ran"] == [True, True, False]  # the cell after the stop did not run
    assert outcome["after"] == "written"


def _stubborn(own_session: bool) -> subprocess.Popen:
    """A process that ignores SIGINT, leading its own session (as a runner does) or not."""
    code = ("import os, signal, sys, time\n" + ("os.setsid()\n" if own_session else "")
            + "signal.signal(signal.SIGINT, signal.SIG_IGN)\nprint('ready', flush=True)\ntime.sleep(60)")
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    return process


def test_a_runner_that_ignores_the_interrupt_is_killed_after_the_grace_and_nothing_else_is():
    runner_like, other = _stubborn(own_session=True), _stubborn(own_session=False)
    try:
        children.ForeignProcess(runner_like.pid, interruptible=True).stop(grace=0.3)
        children.ForeignProcess(other.pid, interruptible=True).stop(grace=0.3)  # its pid: not a runner's
        assert runner_like.wait(timeout=10) == -signal.SIGKILL
        time.sleep(1.0)
        assert other.poll() is None  # interrupted (ignored) but never killed: not a session leader
    finally:
        for process in (runner_like, other):
            process.kill()
            process.wait()


def _notebook_in_runner(folder: str, name: str, source: str, on_cell_executed=None) -> dict:
    """In a runner: a notebook run as a runbook is (papermill, the cell engine), what it saw."""
    nb = _execute_named(Path(folder), name, "import os\nseen = sorted(k for k in globals() if not k.startswith('_'))",
                        source, "seen")
    return {"pid": os.getpid(), "counts": [cell.execution_count for cell in nb.cells],
            "seen": nb.cells[-1].outputs[0].data["text/plain"], "cwd": os.getcwd(),
            "log": os.readlink("/proc/self/fd/2")}


def _execute_named(folder: Path, name: str, *sources: str) -> nbformat.NotebookNode:
    path = _notebook(folder, name, *sources)
    return papermill.execute_notebook(str(path), str(folder / f"{name}-out.ipynb"), kernel_name="python3",
                                      engine_name=cellengine.NAME, progress_bar=False, cwd=str(folder))


def _run_to_the_end(zygote, job: str, cwd: Path):
    runner = zygote.fork_runner(job, str(cwd), dict(os.environ), reusable=True)
    finished, outcome = inline.collect(runner.conn)
    assert finished, runner.last_words()
    return runner, outcome


def test_a_runner_handed_back_runs_the_next_notebook_in_its_process_as_in_a_new_kernel(zygote, tmp_path):
    """A triage's runbooks share a handful of processes (Zygote.release): the second notebook still
    sees none of the first's variables, counts its cells from 1, runs in its own folder and logs
    to its own file (its last words are its own)."""
    first_dir, second_dir = tmp_path / "a", tmp_path / "b"
    first_dir.mkdir(), second_dir.mkdir()
    runner, first = _run_to_the_end(zygote, inline.job_order(_notebook_in_runner, str(first_dir), "one",
                                                             "leftover = 'from the first runbook'"), first_dir)
    zygote.release(runner)
    again, second = _run_to_the_end(zygote, inline.job_order(_notebook_in_runner, str(second_dir), "two", "x = 2"),
                                    second_dir)
    again.conn.close()
    assert second["pid"] == first["pid"] == runner.pid == again.pid
    assert second["seen"] == first["seen"] and "leftover" not in second["seen"]  # as it began: IPython's names
    assert second["counts"] == first["counts"] == [1, 2, 3]
    assert first["cwd"] == str(first_dir) and second["cwd"] == str(second_dir)
    assert first["log"] == str(runner.log) and second["log"] == str(again.log) and again.log != runner.log


def test_a_runner_that_ended_or_was_stopped_is_never_given_another_job(zygote, tmp_path):
    # stopped (SIGINT during its job): it writes its outcome, then takes no further job
    stopped, outcome = _run_to_the_end(zygote, inline.job_order(_stop_between_cells_then_after_them, str(tmp_path)),
                                       tmp_path)
    zygote.release(stopped)
    other = tmp_path / "next"
    other.mkdir()
    fresh, answer = _run_to_the_end(zygote, inline.job_order(_notebook_in_runner, str(other), "n", "x = 1"), other)
    fresh.conn.close()
    assert answer["pid"] != stopped.pid and answer["counts"] == [1, 2, 3]
    # killed while it waited: the next job goes to a new runner
    waiting, _ = _run_to_the_end(zygote, inline.job_order(_notebook_in_runner, str(other), "m", "x = 1"), other)
    zygote.release(waiting)
    os.kill(waiting.pid, signal.SIGKILL)
    last, answer = _run_to_the_end(zygote, inline.job_order(_notebook_in_runner, str(other), "k", "x = 1"), other)
    last.conn.close()
    assert answer["pid"] not in (waiting.pid, stopped.pid)


def test_stopping_a_job_after_its_runner_was_handed_back_leaves_the_runner_alone():
    """A timeout that fires as the runbook ends must not interrupt the next runbook in that process."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        handed = children.ForeignProcess(process.pid, interruptible=True)
        children.register(handed)
        assert children.hand_back(handed) is True
        assert children.running(threading.get_ident()) is None
        handed.stop(grace=0.1)
        time.sleep(0.5)
        assert process.poll() is None and handed.stopped is False
        stopped = children.ForeignProcess(process.pid, interruptible=False)
        children.register(stopped)
        stopped.stop()
        assert children.hand_back(stopped) is False  # stopped first: it takes no other job
        assert process.wait(timeout=10) == -signal.SIGKILL
    finally:
        process.kill()
        process.wait()


def test_a_stopped_zygote_ends_the_runners_that_wait_for_a_job(tmp_path):
    warm = Zygote().start()
    try:
        runner, _ = _run_to_the_end(warm, inline.job_order(_notebook_in_runner, str(tmp_path), "w", "x = 1"), tmp_path)
        warm.release(runner)
    finally:
        warm.stop()
    process = children.ForeignProcess(runner.pid)
    deadline = time.monotonic() + 10
    while process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() == 0  # gone
