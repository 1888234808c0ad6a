"""Health URLs probed into a frame: status and time of each, never raising (``rmsops.sources.probes``)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pandas as pd

from rmsops.sources.probes import probe, take

COLUMNS = ["name", "url", "status", "seconds", "error"]


def fetch_health(urls: dict[str, str], timeout: float) -> pd.DataFrame:
    if not urls:
        return pd.DataFrame(columns=COLUMNS)
    with ThreadPoolExecutor(max_workers=min(8, len(urls))) as pool:
        # a probe the command started before its imports (``probes.start``) is taken, not sent again
        rows = list(pool.map(lambda item: take(item[0], item[1], timeout) or probe(item[0], item[1], timeout),
                             urls.items()))
    return pd.DataFrame(rows, columns=COLUMNS)
