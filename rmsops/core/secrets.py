"""Secret values never leave the process: every text that is shown passes through ``redact``."""

from __future__ import annotations

import io
import os
import re
import threading
from typing import TextIO

REDACTED = "********"
_ENV_SECRETS = ("PGPASSWORD", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
_known: set[str] = set()
# Passwords rmsops never knew, in text it shows: SQL from pg_stat_activity / pg_stat_statements
# (``CREATE ROLE .. PASSWORD '..'``, ``ALTER USER .. PASSWORD '..'``) and connection strings.
_SQL_PASSWORD = re.compile(r"(\bPASSWORD\s+)('(?:[^']|'')*'?)", re.IGNORECASE)  # SQL: always a literal
_CONNINFO_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'?|[^\s;&]+)", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(://[^/\s:@]+:)([^@\s/]+)(@)")
_lock = threading.Lock()


def register(value: str | None) -> None:
    """Remember a secret so that it is masked wherever it might appear."""
    if value and len(value) >= 4:
        with _lock:
            _known.add(value)


def redact(text: str) -> str:
    for name in _ENV_SECRETS:
        register(os.environ.get(name))
    with _lock:
        secrets = sorted(_known, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    if "assword" in text or "ASSWORD" in text:
        text = _SQL_PASSWORD.sub(rf"\1'{REDACTED}'", text)
        text = _CONNINFO_PASSWORD.sub(rf"\1{REDACTED}", text)
    if "://" in text:
        text = _URL_PASSWORD.sub(rf"\1{REDACTED}\3", text)
    return text


def redact_all(value: object) -> object:
    """``redact`` applied to every string inside nested dicts and lists (evidence, records)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_all(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_all(v) for v in value]
    return value


class RedactingWriter(io.TextIOBase):
    """A text stream that writes whole lines through ``redact`` (a forked runner's stderr, whose
    last line the command shows when the runner dies: a secret only the runner had learnt never
    reaches the report). A line is held until it ends, so that a secret written in pieces is still
    seen whole; ``flush`` writes what is held."""

    def __init__(self, inner: TextIO):
        self._inner = inner
        self._held = ""

    def write(self, text: str) -> int:
        self._held += text
        whole, newline, self._held = self._held.rpartition("\n")
        if newline:
            self._inner.write(redact(whole + newline))
        return len(text)

    def flush(self) -> None:
        if self._held:
            self._inner.write(redact(self._held))
            self._held = ""
        self._inner.flush()

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._inner.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._inner, "encoding", "utf-8")
