"""``rmsops demo``: a complete RMS production look-alike on this machine, no AWS account needed.

moto emulates the AWS APIs, a throwaway PostgreSQL plays the RDS database, and a
small HTTP server answers the health URLs. A scenario (``incident``, ``healthy``, …) decides what
the runbooks will find.

The environment (moto, psycopg) is imported only when asked for, so that ``rmsops --help`` can
name the scenarios without paying for it.
"""

from typing import Any

from rmsops.demo.scenarios import DEFAULT_SCENARIO, SCENARIOS, Scenario

__all__ = ["DEFAULT_SCENARIO", "SCENARIOS", "DemoEnvironment", "Scenario", "serve"]


def __getattr__(name: str) -> Any:
    if name in ("DemoEnvironment", "serve"):
        from rmsops.demo import environment

        return getattr(environment, name)
    raise AttributeError(f"module 'rmsops.demo' has no attribute {name!r}")
