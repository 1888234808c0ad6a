"""Keep the scenario's CloudWatch metrics coming while the demo runs.

The seed covers the hour before ``start()``. Without new datapoints a demo left
running would drift out of the runbooks' default one-hour window, and the
incident would quietly fade. Each minute this thread publishes the next point,
cycling through the scenario's last ten minutes (its steady state).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from rmsops.demo import seed_aws
from rmsops.demo.scenarios import MINUTES, Scenario

CYCLE = 10  # minutes of the series' tail that repeat


class MetricsTicker:
    def __init__(self, endpoint_url: str, scenario: Scenario, lb_dimension: str, last_seeded: datetime):
        self._cloudwatch = seed_aws.client_factory(endpoint_url)("cloudwatch")
        self._scenario = scenario
        self._dimension = lb_dimension
        self._next = last_seeded.replace(second=0, microsecond=0) + timedelta(minutes=1)
        self._count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rms-demo-metrics", daemon=True)

    def start(self) -> MetricsTicker:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            wait = (self._next - datetime.now(UTC)).total_seconds()
            if wait > 0:
                if self._stop.wait(min(wait, 60)):
                    return
                continue
            index = MINUTES - CYCLE + self._count % CYCLE
            try:
                seed_aws.put_metrics(self._cloudwatch, seed_aws.metric_data(
                    self._scenario, self._dimension, [(self._next, index)]))
            except Exception:  # noqa: BLE001, S112 - the server is going away; stop() follows
                if self._stop.wait(5):
                    return
                continue
            self._count += 1
            self._next += timedelta(minutes=1)
