"""Checks, one module per guide area. Importing this package registers every check."""

from rmsops.checks import alb, database, ecs, health  # noqa: F401
