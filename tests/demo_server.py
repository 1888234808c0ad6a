"""A demo environment served by a real ``rmsops demo --serve`` subprocess, shared by the session.

Loaded as a pytest plugin (``-p tests.demo_server``) so that nbval's notebook items get it too:
the notebooks' default ``env = "demo"`` resolves through $RMSOPS_PARAMETERS_DIR, which points
at the folder where the served demo wrote ``demo.yaml``. A subprocess keeps moto's in-process
patches (unhealthy targets, ECS events) out of the test process.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

READY_TIMEOUT_SECONDS = 120


class ServedDemo:
    def __init__(self, scenario: str, region: str = "us-east-1", extra: tuple[str, ...] = (),
                 env: dict[str, str] | None = None):
        """``extra``: more ``rmsops demo`` arguments (``--workers 10``); ``env``: more environment variables."""
        self.scenario = scenario
        self.region = region
        self.extra = extra
        self.env = env or {}
        self.folder = Path(tempfile.mkdtemp(prefix=f"rmsops-demo-{scenario}-{region}-"))
        self.env_file = self.folder / "demo.yaml"
        self.log = self.folder / "serve.log"
        self._process: subprocess.Popen | None = None

    def start(self) -> ServedDemo:
        with self.log.open("w") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "rmsops.cli", "demo", "--serve", "--scenario", self.scenario,
                 "--region", self.region, "--env-file", str(self.env_file), *self.extra],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env={**os.environ, **self.env})
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while not self.env_file.exists():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"demo did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.2)
        return self

    def stop(self) -> None:
        if self._process and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()


_served: dict[tuple[str, str], ServedDemo] = {}


def served(scenario: str = "incident", region: str = "us-east-1") -> ServedDemo:
    """Start (once per session) and return the served demo of a scenario in a region."""
    if not _served:
        # Also when this module is not loaded as the plugin (`pytest tests/test_x.py` without
        # `-p tests.demo_server`): its session hook never runs then, and the demos would outlive us.
        atexit.register(stop_all)
    if (scenario, region) not in _served:
        _served[(scenario, region)] = ServedDemo(scenario, region).start()
    return _served[(scenario, region)]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """nbval items run the notebooks with env="demo": serve it and point the kernel at it."""
    if type(item).__module__.startswith("nbval"):
        os.environ["RMSOPS_PARAMETERS_DIR"] = str(served("incident").folder)


def stop_all() -> None:
    for demo in _served.values():
        demo.stop()


def pytest_sessionfinish(session: pytest.Session) -> None:
    stop_all()


@pytest.fixture(scope="session")
def demo_incident() -> ServedDemo:
    return served("incident")


@pytest.fixture(scope="session")
def demo_healthy() -> ServedDemo:
    return served("healthy")


@pytest.fixture(scope="session")
def demo_eu() -> ServedDemo:
    """The incident in eu-west-1: CloudFront's metrics, certificate and WAF, and the global
    services' CloudTrail events, are where AWS keeps them (us-east-1)."""
    return served("incident", region="eu-west-1")
