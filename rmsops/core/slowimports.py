"""What imports would cost for things rmsops never uses: an optional library, numpy's BLAS threads.

``jsonschema`` (imported by ``nbformat``, so by papermill and every notebook write) loads the
optional ``rfc3987_syntax`` when it is installed (JupyterLab's ``jupyter_events`` installs it), and
that module builds a LALR parser for the IRI grammar as it is imported: 1.4 s of CPU, in every
process that touches a notebook, to validate ``iri`` formats that no notebook schema has.
Marking it absent makes jsonschema skip that one format checker, as it does when it is not
installed. Call ``skip()`` before anything imports jsonschema.

numpy's OpenBLAS starts a thread per core as it is imported, and those threads spin a while waiting
for matrix work that never comes: 0.04-0.1 s of CPU in every process that imports pandas (``rmsops
check``: 1.35 -> 1.24 s of CPU), taken from the other core, where the emulator or another runbook
runs. rmsops multiplies no matrices; ``one_blas_thread()`` asks for one thread unless the user set
the number.
"""

from __future__ import annotations

import os
import sys

SKIPPED = ("rfc3987_syntax",)
BLAS_THREADS = ("OPENBLAS_NUM_THREADS",)  # numpy's wheels bundle OpenBLAS


def skip() -> None:
    for name in SKIPPED:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type] - None: "import fails", per importlib


def one_blas_thread() -> None:
    """Before numpy is imported: it reads these once, when it loads its BLAS library."""
    for name in BLAS_THREADS:
        os.environ.setdefault(name, "1")
