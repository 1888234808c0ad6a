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
