"""Ctrl-C and SIGTERM during a run: stop the work once, then finish writing what was done.

The first signal raises ``KeyboardInterrupt`` in the main thread, which stops the waiting and
kills the running kernels. Later signals, and any signal once ``hold()`` was called (the bundle is
being written), only are remembered: an impatient second Ctrl-C must not leave half a bundle.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)

_previous: dict[int, Any] = {}
_state = {"received": "", "holding": False}


def install() -> bool:
    """Handle SIGINT and SIGTERM as above (main thread only; elsewhere nothing changes).

    True when this call installed the handlers (and so should ``restore()`` them).
    """
    if threading.current_thread() is not threading.main_thread() or _previous:
        return False
    _state.update(received="", holding=False)
    for signum in SIGNALS:
        _previous[signum] = signal.signal(signum, _handler)
    return True


def _handler(signum: int, frame: Any) -> None:
    first = not _state["received"]
    if first:
        _state["received"] = signal.Signals(signum).name
    if first and not _state["holding"]:
        raise KeyboardInterrupt


def hold() -> None:
    """From now on a signal is only remembered: what follows must finish."""
    _state["holding"] = True


def received() -> str:
    """The name of the first signal received (``SIGTERM``, ``SIGINT``), or ``""``."""
    return _state["received"]


def restore() -> None:
    for signum, handler in _previous.items():
        signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
    _previous.clear()
