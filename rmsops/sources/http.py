"""Health URLs probed into a frame: status and time of each, never raising (``rmsops.sources.probes``)."""

from __future__ import annotations

import pandas as pd

from rmsops.core import fanout
from rmsops.sources.probes import probe, take

COLUMNS = ["name", "url", "status", "seconds", "error"]


def fetch_health(urls: dict[str, str], timeout: float) -> pd.DataFrame:
    if not urls:
        return pd.DataFrame(columns=COLUMNS)
    # a probe the command started before its imports (``probes.start``) is taken, not sent again
    rows = fanout.each(lambda item: take(item[0], item[1], timeout) or probe(item[0], item[1], timeout),
                       list(urls.items()), 8, "rmsops-health-url")
    return pd.DataFrame(rows, columns=COLUMNS)
