"""The user's cache folder for rmsops: hints and copies that make the next run faster, never needed.

``$RMSOPS_CACHE_DIR``, else ``$XDG_CACHE_HOME/rmsops``, else ``~/.cache/rmsops``.
"""

from __future__ import annotations

import os
from pathlib import Path


def root() -> Path:
    folder = os.environ.get("RMSOPS_CACHE_DIR") or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rmsops"
    return Path(folder)
