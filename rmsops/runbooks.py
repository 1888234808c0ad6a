"""The runbook catalogue: one notebook per section of the troubleshooting guide."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rmsops.config import REPO_ROOT
from rmsops.errors import UserError


@dataclass(frozen=True)
class Runbook:
    stem: str
    title: str
    guide_section: str
    checks: tuple[str, ...]  # the catalogue's check ids, in the order the notebook runs them
    diagnostic: bool = True

    @property
    def notebook(self) -> Path:
        return notebooks_dir() / f"{self.stem}.ipynb"

    @property
    def number(self) -> str:
        return self.stem.split("-", 1)[0]


CATALOGUE: tuple[Runbook, ...] = (
    Runbook("01-application-not-responding", "Application not responding",
            "1. Application Not Responding",
            ("app.health.endpoint", "app.ecs.capacity", "app.ecs.unhealthy_tasks",
             "app.alb.target_health", "app.alb.5xx")),
    Runbook("02-database-connections", "Database connection issues",
            "2. Database Connection Issues",
            ("db.rds.status", "db.connectivity", "db.connections.saturation",
             "db.connections.by_state", "db.connections.trend")),
)

_BY_STEM = {rb.stem: rb for rb in CATALOGUE}


def notebooks_dir() -> Path:
    return REPO_ROOT / "notebooks"


def section(stem: str) -> str:
    return _BY_STEM[stem].guide_section


def find(name: str) -> Runbook:
    """By stem (``01-application-not-responding``), number (``01``, ``1``) or name without number."""
    text = name.strip().removesuffix(".ipynb")
    if text in _BY_STEM:
        return _BY_STEM[text]
    for rb in CATALOGUE:
        if text.isdigit() and int(text) == int(rb.number):
            return rb
        if text == rb.stem.split("-", 1)[1]:
            return rb
    known = ", ".join(rb.stem for rb in CATALOGUE)
    raise UserError(f"unknown runbook {name!r}; known: {known} (see `rmsops list`)")


def diagnostic() -> list[Runbook]:
    return [rb for rb in CATALOGUE if rb.diagnostic]
