"""The papermill engine that writes the output notebook sparsely: at the start, at the end, and when it dies."""

from __future__ import annotations

import nbformat
import papermill
import papermill.engines
import pytest
from nbclient.exceptions import DeadKernelError

from rmsops.execution import engine


def _notebook(tmp_path, *sources: str):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    path = tmp_path / "in.ipynb"
    nbformat.write(nb, path)
    return path


def _count_engine_writes(monkeypatch) -> list[str]:
    writes: list[str] = []
    real = engine.write_notebook

    def counting(nb, path):
        writes.append(path)
        real(nb, path)

    monkeypatch.setattr(engine, "write_notebook", counting)
    return writes


def test_cells_do_not_each_rewrite_the_notebook(tmp_path, monkeypatch):
    writes = _count_engine_writes(monkeypatch)
    source = _notebook(tmp_path, *[f"print({i})" for i in range(8)])
    out = tmp_path / "out.ipynb"
    papermill.execute_notebook(str(source), str(out), kernel_name="python3", engine_name=engine.NAME,
                               progress_bar=False)
    assert len(writes) == 2  # the start and the end; stock papermill writes 2 per cell, 17 here
    written = nbformat.read(out, as_version=4)
    nbformat.validate(written)  # written without nbformat's own validation: still a valid notebook
    assert [c.outputs[0]["text"] for c in written.cells] == [f"{i}\n" for i in range(8)]
    assert "papermill" in written.metadata and not list(tmp_path.glob(".*.tmp"))


def test_a_long_runbook_is_still_written_while_it_runs(tmp_path, monkeypatch):
    writes = _count_engine_writes(monkeypatch)
    monkeypatch.setattr(engine, "SAVE_EVERY_SECONDS", 0.2)
    source = _notebook(tmp_path, "import time", *["time.sleep(0.25)"] * 4)
    papermill.execute_notebook(str(source), str(tmp_path / "out.ipynb"), kernel_name="python3",
                               engine_name=engine.NAME, progress_bar=False)
    assert len(writes) >= 4


def test_a_dead_kernel_still_leaves_the_notebook_up_to_where_it_died(tmp_path, monkeypatch):
    source = _notebook(tmp_path, "print('before')", "import os; os._exit(9)", "print('never')")
    out = tmp_path / "out.ipynb"
    with pytest.raises(DeadKernelError):
        papermill.execute_notebook(str(source), str(out), kernel_name="python3", engine_name=engine.NAME,
                                   progress_bar=False)
    cells = nbformat.read(out, as_version=4).cells
    assert cells[0].outputs[0]["text"] == "before\n"
    assert not cells[2].outputs
