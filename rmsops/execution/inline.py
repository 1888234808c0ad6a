"""Runbooks run by papermill in processes forked from the zygote, without a Jupyter kernel.

A Jupyter kernel costs a triage more than its imports: each forked kernel still sets up its
application, its ZeroMQ sockets and threads (about 0.25 s of CPU before the first cell), and
every output it shows (tables, plots as base64) is serialised, signed, sent, parsed and
checked again in the command, then exported to HTML there, one runbook after another. Here the
zygote forks a *runner* per runbook that does the whole of ``run_runbook`` itself, with
``rmsops.execution.cellengine`` running the cells in-process: the executed notebook, its HTML
report and its findings are written by that process, and the command reads one line per cell
that found something, then the outcome.

A triage hands a runner whose runbook has ended the next runbook (``Zygote.release``): its
pages are copied from the zygote's already and its caches are warm, so 17 runbooks run in a
handful of processes. Each notebook still starts in a new namespace (``cellengine.fresh_notebook``),
its own folder, environment and log; a runner that failed, was stopped or killed takes no other.
SIGINT interrupts the running cell as a kernel interrupt would and runs no further cell; the
notebook, its findings and its report are still written (``cellengine.interrupt_cells_only``).
``RMSOPS_ENGINE=kernel`` brings back the forked Jupyter kernels (``rmsops.execution.fastkernel``).
This module is stdlib-only: the command imports it without papermill.
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import socket
from collections.abc import Callable, Iterator
from typing import Any

ENGINE_ENV = "RMSOPS_ENGINE"  # "kernel": forked Jupyter kernels instead
ENGINE_NAME = "rmsops-cells"  # papermill's name for rmsops.execution.cellengine


def enabled() -> bool:
    return os.environ.get(ENGINE_ENV, "inline").strip().lower() != "kernel"


# --- in the forked process -----------------------------------------------------------------------

def child_main(job: dict[str, Any], conn: socket.socket) -> None:
    """Run the job (a callable and its arguments: ``job_order``), giving it
    ``on_cell_executed``, and report on ``conn``: a JSON line of findings per cell that shows some,
    then what the job returned (pickled, base64)."""
    from rmsops.core.findings import MIME_TYPE

    def send(message: dict[str, Any]) -> None:
        conn.sendall(json.dumps(message).encode() + b"\n")

    def on_cell_executed(cell: Any, **_: Any) -> None:
        found = [f for output in cell.get("outputs", [])
                 for f in (output.get("data", {}).get(MIME_TYPE) or {}).get("findings", [])]
        if found:
            send({"findings": found})

    result = job["call"](*job["args"], **job["kwargs"], on_cell_executed=on_cell_executed)
    send({"outcome": base64.b64encode(pickle.dumps(result)).decode("ascii")})


def load_job(encoded: str) -> dict[str, Any]:
    """A job as ``job_order`` wrote it (the zygote's private socket: trusted, same user)."""
    return pickle.loads(base64.b64decode(encoded))


def job_order(call: Any, *args: Any, **kwargs: Any) -> str:
    """What a runner runs: ``call(*args, **kwargs, on_cell_executed=...)`` (e.g. ``run_runbook``)."""
    return base64.b64encode(pickle.dumps({"call": call, "args": args, "kwargs": kwargs})).decode("ascii")


def read_messages(conn: socket.socket) -> Iterator[dict[str, Any]]:
    """The child's messages, one dict per line, until it closes its end."""
    pending = b""
    while True:
        chunk = conn.recv(1 << 16)
        if not chunk:
            return
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if line.strip():
                yield json.loads(line)


def outcome_of(message: dict[str, Any]) -> Any:
    return pickle.loads(base64.b64decode(message["outcome"]))


def collect(conn: socket.socket, on_findings: Callable[[list[dict[str, Any]]], None] | None = None
            ) -> tuple[bool, Any]:
    """Read a runner to its end: (True, what its job returned), or (False, None) when it ended
    without saying (killed, or it failed outside its job). ``on_findings`` gets each cell's findings."""
    for message in read_messages(conn):
        if "findings" in message and on_findings is not None:
            on_findings(message["findings"])
        elif "outcome" in message:
            return True, outcome_of(message)
    return False, None

