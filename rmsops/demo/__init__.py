"""``rmsops demo``: a complete RMS production look-alike on this machine, no AWS account needed.

moto emulates the AWS APIs, a throwaway PostgreSQL plays the RDS database, and a
small HTTP server answers the health URLs. A scenario (``incident`` or
``healthy``) decides what the runbooks will find.
"""

from rmsops.demo.environment import DemoEnvironment, serve
from rmsops.demo.scenarios import DEFAULT_SCENARIO, SCENARIOS, Scenario

__all__ = ["DEFAULT_SCENARIO", "SCENARIOS", "DemoEnvironment", "Scenario", "serve"]
