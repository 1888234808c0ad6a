"""Fetches shared by the runbooks of one triage, across their kernel processes.

Each runbook of a triage runs in its own process, and many of them need the same AWS data: the
ECS services, their task definitions, the load balancer. The first process to need a key fetches
it while holding that key's file lock, so the others wait for its answer instead of asking AWS
again; they then read it from the cache. A failed fetch is shared too (with the IAM action it
attempted), so an unreachable endpoint costs its timeout once, not once per runbook.

The cache is a private folder (0700) that lives as long as the triage's kernel zygote, named in
``RMSOPS_SHARED_CACHE``; outside a triage nothing is shared. Only plain data goes in: what cannot
be pickled is fetched and used locally as before.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

ENV = "RMSOPS_SHARED_CACHE"
T = TypeVar("T")


class SharedCache:
    def __init__(self, folder: Path):
        self.folder = folder

    def has(self, key: str) -> bool:
        """Whether ``key`` is in the cache (its value or its failure) now."""
        return self._path(key).exists()

    def _path(self, key: str) -> Path:
        return self.folder / f"{hashlib.sha256(key.encode()).hexdigest()[:40]}.pickle"

    def get(self, key: str, fetch: Callable[[], T]) -> T:
        """The value for ``key``: from the cache, or fetched now (once across processes)."""
        path = self._path(key)
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if we die
            if path.exists():
                return _unpack(path.read_bytes())
            try:
                value = fetch()
            except Exception as exc:
                from rmsops.core import failure

                _store(path, ("error", exc, failure.remembered_action()))
                raise
            _store(path, ("value", value, ""))
            return value


def current() -> SharedCache | None:
    """The cache of the triage this process belongs to, if any."""
    folder = os.environ.get(ENV, "")
    return SharedCache(Path(folder)) if folder else None


def _store(path: Path, entry: tuple[str, Any, str]) -> None:
    try:
        data = pickle.dumps(entry, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - not plain data: this process keeps it to itself
        return
    partial = path.with_suffix(".partial")
    partial.write_bytes(data)
    os.replace(partial, path)  # readers see all of it or nothing


def _unpack(data: bytes) -> Any:
    kind, value, action = pickle.loads(data)  # noqa: S301 - our own private folder, written above
    if kind == "error":
        from rmsops.core import failure

        failure.remember_action(action)  # so the error still names the IAM action, here too
        raise value
    return value
