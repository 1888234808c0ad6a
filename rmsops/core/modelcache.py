"""botocore's service models kept parsed in the user's cache folder: read back in half the time.

Every process that makes AWS clients parses the models of the services it calls: 10 MB of JSON for
the services rmsops uses, 0.14 s of CPU, paid by ``rmsops check`` under its one interpreter lock.
``marshal`` reads the same plain dicts back in 0.06 s. A copy is named after the model file's path,
size and modification time and the interpreter's version: after an upgrade of botocore or Python
the old copy is simply not found. A missing, foreign or broken copy only means parsing the JSON;
failing to save one never fails a run. Copies are read only when this user owns them and nobody
else may write them: marshal is not meant for data someone else could have made. Whenever a copy is
written, those older than ``KEEP_DAYS`` go: an upgrade's leftovers do not pile up, and a model still
in use is parsed again once in that time.
"""

from __future__ import annotations

import contextlib
import hashlib
import marshal
import os
import stat
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rmsops.core import cachedir

KEEP_DAYS = 30


def folder() -> Path:
    return cachedir.root() / "models"


def load(source: str, parse: Callable[[], Any]) -> Any:
    """The parsed content of the model file ``source``: its cached copy, else ``parse()`` (then cached)."""
    try:
        info = os.stat(source)
    except OSError:
        return parse()
    key = f"{source}\0{info.st_size}\0{info.st_mtime_ns}\0{marshal.version}\0{sys.version}"
    copy = folder() / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.marshal"
    found = _read(copy)
    if found is not None:
        return found
    value = parse()
    _write(copy, value)
    return value


def _read(copy: Path) -> Any:
    try:
        fd = os.open(copy, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
            return None
        with os.fdopen(fd, "rb") as file:
            fd = -1  # the file object closes it
            return marshal.loads(file.read())
    except (OSError, ValueError, EOFError, TypeError):
        return None
    finally:
        if fd >= 0:
            os.close(fd)


def _write(copy: Path, value: Any) -> None:
    with contextlib.suppress(OSError, ValueError):
        cachedir.write(copy, marshal.dumps(value))
    _forget_old(copy.parent)


def _forget_old(where: Path) -> None:
    cutoff = time.time() - KEEP_DAYS * 86400
    for old in [*where.glob("*.marshal"), *where.glob("*.tmp")]:
        with contextlib.suppress(OSError):
            if old.lstat().st_mtime < cutoff:
                old.unlink()
