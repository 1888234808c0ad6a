"""Secret values never leave the process: every text that is shown passes through ``redact``."""

from __future__ import annotations

import os
import threading

REDACTED = "********"
_ENV_SECRETS = ("PGPASSWORD", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
_known: set[str] = set()
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
    return text
