"""papermill's engine API with the cells run in this process, in an IPython shell (no kernel).

Used by the kernel-less runners of a triage (``rmsops.execution.inline``): papermill parameterizes
and records the notebook as usual (same metadata, injected-parameters cell, error cell), while
``CellEngine`` runs each code cell in one IPython shell per process and turns what it displays,
prints, returns and raises into the cell's outputs, as a kernel's messages would have.
"""

from __future__ import annotations

import io
import platform
import signal
import sys
from collections.abc import Callable
from typing import Any

from papermill.engines import Engine, papermill_engines

from rmsops.execution import inline
from rmsops.execution.engine import SparselySaved

NAME = inline.ENGINE_NAME

LANGUAGE_INFO = {"name": "python", "version": platform.python_version(), "mimetype": "text/x-python",
                 "codemirror_mode": {"name": "ipython", "version": 3}, "pygments_lexer": "ipython3",
                 "nbconvert_exporter": "python", "file_extension": ".py"}


# --- interrupting: cells only --------------------------------------------------------------------

_stop_requested = False
_in_cell = False


def interrupt_cells_only() -> None:
    """SIGINT (a stop or a timeout) interrupts the running cell and runs no further cell, but never
    cuts short what follows the last cell: the notebook, its findings and its report are written.
    For a runner's process, not an interactive one."""
    signal.signal(signal.SIGINT, _on_interrupt)


def _on_interrupt(signum: int, frame: Any) -> None:
    global _stop_requested
    _stop_requested = True
    if _in_cell:
        raise KeyboardInterrupt


def stop_requested() -> bool:
    """Whether a stop (SIGINT) came: a runner then takes no further notebook."""
    return _stop_requested


def _interrupted_output() -> dict[str, Any]:
    return {"output_type": "error", "ename": "KeyboardInterrupt", "evalue": "stopped before this cell ran",
            "traceback": ["KeyboardInterrupt: stopped before this cell ran"]}


# --- the shell that runs the cells ---------------------------------------------------------------

_shell: Any = None


def shell() -> Any:
    """One IPython shell per process whose displays, results and errors become notebook outputs."""
    global _shell
    if _shell is None:
        _shell = _make_shell()
    return _shell


def fresh_notebook() -> None:
    """Each notebook starts as in a new kernel: an empty namespace and its cells counted from 1.
    A runner may run several of a triage's runbooks, one after another (``rmsops.execution.zygote``):
    none sees another's variables. (IPython's ``reset`` does more, a full garbage collection among
    it: 60 ms a notebook, for nothing here.)"""
    ipython = shell()
    names = ipython.user_ns
    for name in [name for name in names if name not in ("__builtin__", "__builtins__", "__name__")]:
        del names[name]
    ipython.user_ns_hidden.clear()
    ipython.init_user_ns()
    ipython.cell_count = 0


def _make_shell() -> Any:
    from IPython.core.displayhook import DisplayHook
    from IPython.core.displaypub import DisplayPublisher
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets import Type
    from traitlets.config import Config

    class Publisher(DisplayPublisher):
        def publish(self, data, metadata=None, source=None, *, transient=None, update=False, **kwargs) -> None:
            self.shell.cell_outputs.append({"output_type": "display_data", "data": dict(data),
                                            "metadata": dict(metadata or {})})

        def clear_output(self, wait: bool = False) -> None:
            self.shell.cell_outputs.clear()

    class ResultHook(DisplayHook):
        def write_output_prompt(self) -> None:
            pass

        def write_format_data(self, format_dict, md_dict=None) -> None:
            self.shell.cell_outputs.append({"output_type": "execute_result", "data": dict(format_dict),
                                            "metadata": dict(md_dict or {}),
                                            "execution_count": self.shell.cell_count})

        def finish_displayhook(self) -> None:
            pass

    class Shell(InteractiveShell):
        display_pub_class = Type(Publisher)
        displayhook_class = Type(ResultHook)
        cell_outputs: list[dict[str, Any]] = []
        cell_count = 0
        cell_error: dict[str, Any] | None = None

        def _showtraceback(self, etype, evalue, stb) -> None:
            self.cell_error = {"output_type": "error", "ename": getattr(etype, "__name__", str(etype)),
                               "evalue": str(evalue), "traceback": list(stb)}
            self.cell_outputs.append(self.cell_error)

    config = Config()
    config.HistoryManager.enabled = False  # no SQLite file per process, for nothing
    config.InteractiveShell.colors = "nocolor"
    _inline_pyplot()
    return Shell.instance(config=config)


def _inline_pyplot() -> None:
    """As in a kernel, a cell that draws with pyplot shows its figures: pyplot, when a cell first
    imports it, takes the inline backend, which hooks itself to this shell. (matplotlib read
    MPLBACKEND when the warm process imported it, so the setting goes to its rcParams.)"""
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.rcParams["backend"] = "module://matplotlib_inline.backend_inline"


class _Stream(io.TextIOBase):
    """sys.stdout / sys.stderr during a cell: text becomes (merged) stream outputs."""

    def __init__(self, name: str, outputs: list[dict[str, Any]]):
        self.name, self.outputs = name, outputs

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if text:
            last = self.outputs[-1] if self.outputs else None
            if last is not None and last.get("output_type") == "stream" and last.get("name") == self.name:
                last["text"] += text
            else:
                self.outputs.append({"output_type": "stream", "name": self.name, "text": text})
        return len(text)


def run_cell(source: str) -> tuple[list[dict[str, Any]], int, dict[str, Any] | None]:
    """Run one cell's source: its outputs, its execution count and its error output, if any."""
    import nbformat

    global _in_cell
    ipython = shell()
    ipython.cell_count += 1
    if _stop_requested:  # interrupted between cells: this one does not run
        error = _interrupted_output()
        return [nbformat.from_dict(error)], ipython.cell_count, error
    ipython.cell_outputs = outputs = []
    ipython.cell_error = None
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Stream("stdout", outputs), _Stream("stderr", outputs)
    _in_cell = True
    try:
        ipython.run_cell(source, store_history=False)
    finally:
        _in_cell = False
        sys.stdout, sys.stderr = saved
    return [nbformat.from_dict(o) for o in outputs], ipython.cell_count, ipython.cell_error


class CellEngine(SparselySaved, Engine):
    """papermill's engine API, with cells run in this process (see the module's docstring)."""

    @classmethod
    def execute_managed_notebook(cls, nb_man: Any, kernel_name: str,
                                 on_cell_executed: Callable[..., None] | None = None, **_: Any) -> None:
        from nbclient.exceptions import CellExecutionError

        nb_man.nb.metadata["language_info"] = dict(LANGUAGE_INFO)
        fresh_notebook()
        for index, cell in enumerate(nb_man.nb.cells):
            try:
                nb_man.cell_start(cell, index)
                if cell.cell_type == "code":
                    cell.outputs, cell.execution_count, error = run_cell(cell.source)
                    if on_cell_executed is not None:
                        on_cell_executed(cell=cell, cell_index=index)
                    if error is not None:
                        raise CellExecutionError("\n".join(error["traceback"]), error["ename"], error["evalue"])
            except CellExecutionError as exc:
                nb_man.cell_exception(nb_man.nb.cells[index], cell_index=index, exception=exc)
                break
            finally:
                nb_man.cell_complete(nb_man.nb.cells[index], cell_index=index)


papermill_engines.register(NAME, CellEngine)
