"""HTTP probes of health URLs, and probes started before anything heavy is imported.

A health URL that answers slowly (a third-party gateway taking seconds) is measured by waiting
for it: nothing makes that wait shorter, but it need not start late. ``start`` sends the probes
the moment a command has read its environment file, in daemon threads, while pandas and the AWS
models are still being imported; the checks then ``take`` those answers instead of asking again.
Standard library only, so that starting them costs no import.
"""

from __future__ import annotations

import http.client
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import Future
from typing import Any

# The checks that GET configured URLs, and the settings field that lists each one's URLs: a command
# probes them as soon as it has read the environment (rmsops.cli), a triage's first look at its start.
PROBED_URLS = {"app.health.endpoint": "health_urls", "external.http.health": "external_health_urls"}

# Probes started by this process: (url, timeout) -> (started at, its answer when it comes)
_started: dict[tuple[str, float], tuple[float, Future]] = {}
_lock = threading.Lock()
FRESH_SECONDS = 60.0  # an answer older than this is not this command's: probe again


def probe(name: str, url: str, timeout: float) -> dict[str, Any]:
    """One GET; never raises. ``status`` is None when no HTTP answer came back."""
    started = time.monotonic()
    request = urllib.request.Request(url, headers={"User-Agent": "rmsops-health-check"})
    status, error = None, ""
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - configured URLs
            response.read(65536)  # a body that never arrives is a timeout, not a 200
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        error = "timed out" if isinstance(reason, TimeoutError) or "timed out" in str(reason) else str(reason)
    except http.client.HTTPException as exc:  # the peer does not speak HTTP
        error = f"not an HTTP answer ({type(exc).__name__})"
    return {"name": name, "url": url, "status": status, "seconds": round(time.monotonic() - started, 3),
            "error": error}


def start(urls: dict[str, str], timeout: float) -> None:
    """Probe each of ``urls`` ({name: url}) now, in the background; ``take`` collects the answers."""
    for name, url in urls.items():
        future: Future = Future()

        def run(name: str = name, url: str = url, future: Future = future) -> None:
            future.set_result(probe(name, url, timeout))

        with _lock:
            _started[(url, timeout)] = (time.monotonic(), future)
        threading.Thread(target=run, daemon=True, name="rmsops-probe").start()


def take(name: str, url: str, timeout: float) -> dict[str, Any] | None:
    """The answer of a probe ``start`` sent for this URL and timeout (waiting for it), once; else None."""
    with _lock:
        started = _started.pop((url, timeout), None)
    if started is None or time.monotonic() - started[0] > FRESH_SECONDS:
        return None
    try:
        answer = dict(started[1].result(timeout=timeout + 5))
    except TimeoutError:  # an answer trickling in past every socket timeout: as good as none
        waited = round(time.monotonic() - started[0], 3)
        return {"name": name, "url": url, "status": None, "seconds": waited, "error": "timed out"}
    answer["name"] = name
    return answer
