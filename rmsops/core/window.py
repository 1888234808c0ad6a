"""The time window a run looks at: ``--window 1h`` or ``--start T --end T``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from rmsops.core.errors import UserError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    def previous(self) -> Window:
        """The window of the same length just before this one (for 'against last hour')."""
        span = self.end - self.start
        return Window(self.start - span, self.start)


def parse_duration(text: str) -> timedelta:
    match = _DURATION.match(str(text))
    if not match:
        raise UserError(f"window {text!r} is not a duration; use e.g. 30m, 1h, 6h, 2d")
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise UserError(f"window {text!r} must be longer than zero")
    return timedelta(seconds=seconds)


def parse_time(text: str, name: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"{name} {text!r} is not a time; use ISO 8601, e.g. 2026-11-28T19:00:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def resolve(window: str = "1h", start: str = "", end: str = "", now: datetime | None = None) -> Window:
    """Build the window from a duration ending now, or from explicit start/end (end defaults to now)."""
    now = now or datetime.now(UTC)
    end_at = parse_time(end, "end") if end else now
    start_at = parse_time(start, "start") if start else end_at - parse_duration(window or "1h")
    if end_at > now + CLOCK_SKEW:
        raise UserError(f"end {end_at.isoformat()} is in the future; the window must end by now")
    if start_at >= end_at:
        raise UserError(f"start {start_at.isoformat()} is not before end {end_at.isoformat()}")
    return Window(start_at.astimezone(UTC), end_at.astimezone(UTC))
