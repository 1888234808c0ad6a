"""HTTP probes of health URLs: status and time of each, never raising."""

from __future__ import annotations

import http.client
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pandas as pd

COLUMNS = ["name", "url", "status", "seconds", "error"]


def probe(name: str, url: str, timeout: float) -> dict:
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


def fetch_health(urls: dict[str, str], timeout: float) -> pd.DataFrame:
    if not urls:
        return pd.DataFrame(columns=COLUMNS)
    with ThreadPoolExecutor(max_workers=min(8, len(urls))) as pool:
        rows = list(pool.map(lambda item: probe(item[0], item[1], timeout), urls.items()))
    return pd.DataFrame(rows, columns=COLUMNS)
