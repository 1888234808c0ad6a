"""Kernels forked from the warm zygote: isolated from each other, started with the runner's options."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import papermill
import pytest

from rmsops.core import sharedcache
from rmsops.execution import engine
from rmsops.execution.fastkernel import kernel_manager_class
from rmsops.execution.zygote import Zygote


@pytest.fixture(scope="module")
def zygote():
    warm = Zygote().start()
    yield warm
    warm.stop()


def _run(zygote: Zygote, tmp_path: Path, name: str, *sources: str, **options) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    nbformat.write(nb, tmp_path / f"{name}.ipynb")
    return papermill.execute_notebook(str(tmp_path / f"{name}.ipynb"), str(tmp_path / f"{name}-out.ipynb"),
                                      kernel_name="python3", engine_name=engine.NAME, progress_bar=False,
                                      kernel_manager_class=kernel_manager_class(zygote), cwd=str(tmp_path),
                                      **options)


def _answer(nb: nbformat.NotebookNode) -> dict:
    return json.loads(nb.cells[-1].outputs[0]["text"])


def test_each_runbook_gets_its_own_process_and_nothing_leaks(zygote, tmp_path):
    first = _run(zygote, tmp_path, "first", "import os, json, pandas\nleaked = 'state of runbook one'\n"
                 "pandas.set_option('display.max_rows', 3)",
                 "print(json.dumps({'pid': os.getpid()}))")
    second = _run(zygote, tmp_path, "second", "import os, json, pandas",
                  "print(json.dumps({'pid': os.getpid(), 'leaked': 'leaked' in globals(),"
                  " 'rows': pandas.get_option('display.max_rows')}))")
    one, two = _answer(first), _answer(second)
    assert one["pid"] != two["pid"]
    assert two["leaked"] is False
    assert two["rows"] == 60  # pandas' default: the first runbook's setting stayed in its process


def test_the_kernel_gets_the_runners_options_cwd_and_shared_cache(zygote, tmp_path):
    nb = _run(zygote, tmp_path, "options", "import os, json",
              "print(json.dumps({'history': get_ipython().history_manager.enabled, 'cwd': os.getcwd(),"
              f" 'cache': os.environ.get({sharedcache.ENV!r})}}))",
              extra_arguments=["--HistoryManager.enabled=False"])
    answer = _answer(nb)
    assert answer["history"] is False
    assert answer["cwd"] == str(tmp_path)
    assert answer["cache"] == str(zygote.shared_cache)


def test_the_runbook_modules_are_already_imported(zygote, tmp_path):
    nb = _run(zygote, tmp_path, "warm", "import sys, json",
              "print(json.dumps(sorted(m for m in ('pandas', 'matplotlib', 'botocore', 'rmsops.checks') "
              "if m in sys.modules)))")
    assert json.loads(nb.cells[-1].outputs[0]["text"]) == ["botocore", "matplotlib", "pandas", "rmsops.checks"]


def test_a_killed_runs_folder_is_swept_by_the_next_run(tmp_path, monkeypatch):
    """A command killed outright (kill -9) leaves its folder, shared cache and all: the next run
    deletes it once its process is gone and the folder has been still for a while; never a live
    run's, a fresh one's, a link, or anything else in the temp dir."""
    import os
    import subprocess
    import sys
    import tempfile
    import time

    from rmsops.execution import zygote as zygote_module

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                           text=True, check=True)
    dead = int(ended.stdout)

    def folder(pid: int, name: str, age: float) -> Path:
        path = tmp_path / f"{zygote_module.FOLDER_PREFIX}{pid}-{name}"
        (path / "shared").mkdir(parents=True)
        (path / "shared" / "check.pickle").write_bytes(b"found: secret SQL text")
        for touched in (path / "shared", path):
            os.utime(touched, (time.time() - age, time.time() - age))
        return path

    abandoned = folder(dead, "abc", age=3600)
    live = folder(os.getpid(), "def", age=3600)
    fresh = folder(dead, "ghi", age=10)
    other = tmp_path / "rmsops-zygote-notapid-x"
    other.mkdir()
    link = tmp_path / f"{zygote_module.FOLDER_PREFIX}{dead}-link"
    link.symlink_to(live)
    zygote_module.sweep_abandoned_folders()
    assert not abandoned.exists()
    assert live.exists() and fresh.exists() and other.exists() and link.is_symlink()
    assert (live / "shared" / "check.pickle").exists()


def test_a_folder_goes_as_soon_as_its_commands_lock_is_free(tmp_path, monkeypatch):
    """Folders made by this rmsops carry a lock their command holds while it lives: a sweep keeps a
    locked one however old and whatever its process id says, and deletes one whose lock is free at
    once, even if its process id is now someone else's."""
    import os
    import subprocess
    import sys
    import tempfile
    import time

    from rmsops.execution import zygote as zygote_module

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    claimed, held_lock = zygote_module.claim_folder()
    assert claimed.name.startswith(f"{zygote_module.FOLDER_PREFIX}{os.getpid()}-")
    assert not list(tmp_path.glob(f"{zygote_module.CLAIMING_PREFIX}*"))
    # Seen from here as another namespace's run would be: a process id that has ended.
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                           text=True, check=True)
    held = claimed.rename(tmp_path / f"{zygote_module.FOLDER_PREFIX}{int(ended.stdout)}-held")
    freed, freed_lock = zygote_module.claim_folder()
    (freed / "shared").mkdir()
    (freed / "shared" / "check.pickle").write_bytes(b"found: secret SQL text")
    long_ago = time.time() - 3600
    os.utime(held, (long_ago, long_ago))
    zygote_module.sweep_abandoned_folders()
    assert held.exists() and freed.exists()  # both commands still run: their locks are held

    os.close(freed_lock)  # its command ended (a kill -9 closes it the same way)
    zygote_module.sweep_abandoned_folders()
    assert not freed.exists()
    assert held.exists()
    os.close(held_lock)


def test_a_zygote_stopped_before_it_was_ready_reports_it_without_a_traceback(tmp_path, monkeypatch):
    """A signal during the warm-up stops the zygote and closes its pipes while the thread that waits
    for its "ready" line may not have read yet: it says the zygote stopped, it does not raise."""
    import subprocess
    import sys
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    warm = Zygote()
    warm._process = subprocess.Popen([sys.executable, "-c", "pass"], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
    warm._process.wait()
    warm._process.stdout.close()  # what stop() does once the zygote has ended
    warm._wait_ready()
    with pytest.raises(RuntimeError, match="did not start: stopped before it was ready"):
        warm.wait_ready(timeout=1)
    warm.stop()
    assert not warm.folder.exists()
