"""Objects a process makes once and keeps to its end (imports, models, the check registry).

Python's collector walks every container it tracks, again and again as a process allocates:
the imports of pandas, matplotlib and boto3 alone are hundreds of thousands. Made inside
``setting_up()``, they are not collected while they are made (nothing there is garbage) and are
frozen afterwards (``gc.freeze``), out of the collector's sight. In a process that forks, frozen
objects also stay shared: a child's collections would otherwise write to their pages.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


def begin() -> None:
    """From here, no collection: what is made now lives on (see ``end``)."""
    gc.disable()


def end() -> None:
    """Freeze everything made so far, and collect again from here."""
    gc.freeze()
    gc.enable()


@contextmanager
def setting_up() -> Iterator[None]:
    """No collection inside; everything made by the end is frozen."""
    was_enabled = gc.isenabled()
    begin()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()
