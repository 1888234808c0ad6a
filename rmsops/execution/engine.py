"""papermill's nbclient engine, writing the output notebook less often.

Stock papermill rewrites the whole output notebook (plots included) before and after every cell.
With many runbooks running at once, that JSON is a real share of the command's CPU. This engine
writes it at the start, at most every ``SAVE_EVERY_SECONDS`` while cells run (so a long runbook
can be watched), and always at the end, also when the kernel dies or the runbook times out, so
the report still shows where it stopped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from papermill.engines import NBClientEngine, NotebookExecutionManager, papermill_engines

NAME = "rmsops"
SAVE_EVERY_SECONDS = 5.0


def write_notebook(nb: Any, path: str | Path) -> None:
    """Write an executed notebook as nbformat does, without its deep copy and schema validation.

    ``nbformat.writes`` copies the whole notebook (plots included) and validates it against the
    schema at every save: a second of the command's CPU over a triage, for a notebook that the
    kernel protocol already shaped. Transient fields go, as nbformat strips them; the file is
    replaced whole, so a reader never sees half of it.
    """
    for key in ("orig_nbformat", "orig_nbformat_minor", "signature"):
        nb.metadata.pop(key, None)
    for cell in nb.cells:
        cell.metadata.pop("trusted", None)
    target = Path(path)
    staging = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    staging.write_text(json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False, separators=(",", ": ")) + "\n",
                       encoding="utf-8")
    os.replace(staging, target)


class SparseSaves(NotebookExecutionManager):
    _final = False
    _saved = False

    def save(self, **kwargs: Any) -> None:
        due = (self.now() - self.last_save_time).total_seconds() >= SAVE_EVERY_SECONDS
        if self._final or not self._saved or due:
            self._saved = True
            if self.output_path:
                write_notebook(self.nb, self.output_path)
            self.last_save_time = self.now()

    def notebook_complete(self, **kwargs: Any) -> None:
        self._final = True
        super().notebook_complete(**kwargs)


class SparselySaved:
    """An engine mixin: papermill's ``Engine.execute_notebook`` with ``SparseSaves`` as its manager."""

    @classmethod
    def execute_notebook(cls, nb: Any, kernel_name: str, output_path: str | None = None,
                         progress_bar: bool = True, log_output: bool = False, autosave_cell_every: int = 30,
                         **kwargs: Any) -> Any:
        # The body of papermill's Engine.execute_notebook, with our manager.
        nb_man = SparseSaves(nb, output_path=output_path, progress_bar=progress_bar, log_output=log_output,
                             autosave_cell_every=autosave_cell_every)
        nb_man.notebook_start()
        try:
            cls.execute_managed_notebook(nb_man, kernel_name, log_output=log_output, **kwargs)
        finally:
            nb_man.cleanup_pbar()
            nb_man.notebook_complete()
        return nb_man.nb


class SparseSaveEngine(SparselySaved, NBClientEngine):
    """``NBClientEngine`` (cells run in a Jupyter kernel) with ``SparseSaves`` as its manager."""


papermill_engines.register(NAME, SparseSaveEngine)
