"""Optional libraries that cost seconds at import and that rmsops never uses: kept out.

``jsonschema`` (imported by ``nbformat``, so by papermill and every notebook write) loads the
optional ``rfc3987_syntax`` when it is installed (JupyterLab's ``jupyter_events`` installs it), and
that module builds a LALR parser for the IRI grammar as it is imported: 1.4 s of CPU, in every
process that touches a notebook, to validate ``iri`` formats that no notebook schema has.
Marking it absent makes jsonschema skip that one format checker, as it does when it is not
installed. Call ``skip()`` before anything imports jsonschema.
"""

from __future__ import annotations

import sys

SKIPPED = ("rfc3987_syntax",)


def skip() -> None:
    for name in SKIPPED:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type] - None: "import fails", per importlib
