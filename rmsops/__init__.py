"""rmsops: executable runbooks for the RMS production system."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rmsops.core import slowimports

__version__ = "0.1.0"

slowimports.skip()  # first: every rmsops process that touches a notebook would pay it
slowimports.one_blas_thread()  # before pandas imports numpy

if TYPE_CHECKING:
    from rmsops.notebook import RunbookSession


def open(env: str, runbook: str, **options: Any) -> RunbookSession:  # noqa: A001 - the notebook idiom
    """Open a runbook session for a notebook (imports IPython only when a notebook asks)."""
    from rmsops.notebook import open_runbook

    return open_runbook(env, runbook, **options)
