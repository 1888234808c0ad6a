"""papermill's nbclient engine, writing the output notebook less often.

Stock papermill rewrites the whole output notebook (plots included) before and after every cell.
With many runbooks running at once, that JSON is a real share of the command's CPU. This engine
writes it at the start, at most every ``SAVE_EVERY_SECONDS`` while cells run (so a long runbook
can be watched), and always at the end, also when the kernel dies or the runbook times out, so
the report still shows where it stopped.
"""

from __future__ import annotations

from typing import Any

from papermill.engines import NBClientEngine, NotebookExecutionManager, papermill_engines

NAME = "rmsops"
SAVE_EVERY_SECONDS = 5.0


class _SparseSaves(NotebookExecutionManager):
    _final = False
    _saved = False

    def save(self, **kwargs: Any) -> None:
        due = (self.now() - self.last_save_time).total_seconds() >= SAVE_EVERY_SECONDS
        if self._final or not self._saved or due:
            self._saved = True
            super().save(**kwargs)

    def notebook_complete(self, **kwargs: Any) -> None:
        self._final = True
        super().notebook_complete(**kwargs)


class SparseSaveEngine(NBClientEngine):
    """``NBClientEngine`` with ``_SparseSaves`` as its execution manager."""

    @classmethod
    def execute_notebook(cls, nb: Any, kernel_name: str, output_path: str | None = None,
                         progress_bar: bool = True, log_output: bool = False, autosave_cell_every: int = 30,
                         **kwargs: Any) -> Any:
        # The body of papermill's Engine.execute_notebook, with our manager.
        nb_man = _SparseSaves(nb, output_path=output_path, progress_bar=progress_bar, log_output=log_output,
                              autosave_cell_every=autosave_cell_every)
        nb_man.notebook_start()
        try:
            cls.execute_managed_notebook(nb_man, kernel_name, log_output=log_output, **kwargs)
        finally:
            nb_man.cleanup_pbar()
            nb_man.notebook_complete()
        return nb_man.nb


papermill_engines.register(NAME, SparseSaveEngine)
