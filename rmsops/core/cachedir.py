"""The user's cache folder for rmsops: hints and copies that make the next run faster, never needed.

``$RMSOPS_CACHE_DIR``, else ``$XDG_CACHE_HOME/rmsops``, else ``~/.cache/rmsops``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def root() -> Path:
    folder = os.environ.get("RMSOPS_CACHE_DIR") or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rmsops"
    return Path(folder)


def write(target: Path, data: bytes) -> None:
    """Write ``target`` whole or not at all (a private folder made as needed): concurrent runs
    each write their own temporary file, and the last one renamed wins. Raises OSError."""
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("wb", dir=target.parent, delete=False, suffix=".tmp") as out:
        out.write(data)
    os.replace(out.name, target)
