"""Keep the scenario's metrics coming while the demo runs.

The seed covers the hour before the demo started. Without new datapoints a demo left running
would drift out of the runbooks' default one-hour window, and the incident would quietly fade.
A ``MinuteTicker`` publishes the next minute each minute, cycling through the series' last ten
minutes (their steady state); each area hands it what to publish for a (minute, index).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from rmsops.demo import seed_aws
from rmsops.demo.scenarios import MINUTES, Scenario

CYCLE = 10  # minutes of the series' tail that repeat


class MinuteTicker:
    """Calls ``publish(minute, index)`` for each new minute, from a daemon thread, until stopped.

    ``index`` is the position in the seeded series (its last ``CYCLE`` minutes, cycled).
    ``after_the_minute``: publish a minute only once it is over (e.g. traces that must have ended).
    """

    def __init__(self, name: str, last_seeded: datetime, publish: Callable[[datetime, int], None],
                 after_the_minute: bool = False):
        self._publish = publish
        self._next = last_seeded.replace(second=0, microsecond=0) + timedelta(minutes=1)
        self._delay = timedelta(minutes=1) if after_the_minute else timedelta(0)
        self._count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> MinuteTicker:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            wait = (self._next + self._delay - datetime.now(UTC)).total_seconds()
            if wait > 0:
                if self._stop.wait(min(wait, 60)):
                    return
                continue
            try:
                self._publish(self._next, MINUTES - CYCLE + self._count % CYCLE)
            except Exception:  # noqa: BLE001, S112 - the server is going away; stop() follows
                if self._stop.wait(5):
                    return
                continue
            self._count += 1
            self._next += timedelta(minutes=1)


def metrics_ticker(endpoint_url: str, scenario: Scenario, lb_dimension: str, last_seeded: datetime) -> MinuteTicker:
    """The base scenario's ALB, ECS and RDS metrics."""
    cloudwatch = seed_aws.client_factory(endpoint_url)("cloudwatch")

    def publish(minute: datetime, index: int) -> None:
        seed_aws.put_metrics(cloudwatch, seed_aws.metric_data(scenario, lb_dimension, [(minute, index)]))

    return MinuteTicker("rms-demo-metrics", last_seeded, publish)
