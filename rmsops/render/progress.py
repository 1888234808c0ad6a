"""The live view of a triage: each runbook's state, elapsed time, findings as they arrive.

On a terminal the view is redrawn in place a few times a second; elsewhere (CI, a pipe, a
cron mail) it stays quiet and only the final summary is printed by the caller.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TextIO

from rmsops.core.findings import Finding, Severity
from rmsops.render.report import clean

STATES = ("queued", "running", "done", "failed", "timeout", "cancelled")
_COLOUR = {"critical": "31;1", "error": "35;1", "warning": "33;1", "info": "34", "ok": "32",
           "done": "32", "failed": "31;1", "timeout": "31;1", "running": "36", "cancelled": "35"}


@dataclass
class _Row:
    state: str = "queued"
    started: float | None = None
    ended: float | None = None
    tally: dict[str, int] = field(default_factory=lambda: {s.value: 0 for s in Severity})


class Progress:
    """Thread-safe: runbook workers report, a drawing thread shows (only on a terminal)."""

    def __init__(self, runbooks: list[str], title: str = "", stream: TextIO | None = None,
                 live: bool | None = None, started: float | None = None):
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.title = title
        self.rows = {name: _Row() for name in runbooks}
        self.started = time.monotonic() if started is None else started
        self.first_finding_seconds: float | None = None
        self.latest: Finding | None = None
        self.looked: list[Finding] = []  # the first look's findings (rmsops.execution.firstlook)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()  # the first look arrived: draw now, not at the next tick
        self._drawn_lines = 0
        self._thread: threading.Thread | None = None

    # --- reporting (any thread) -----------------------------------------------------------------

    def state(self, runbook: str, state: str) -> None:
        with self._lock:
            row = self.rows.setdefault(runbook, _Row())
            row.state = state
            now = time.monotonic()
            if state == "running":
                row.started = now
            elif state in ("done", "failed", "timeout", "cancelled"):
                row.ended = now

    def findings(self, runbook: str, findings: list[Finding]) -> None:
        with self._lock:
            if findings and self.first_finding_seconds is None:
                self.first_finding_seconds = time.monotonic() - self.started
            row = self.rows.setdefault(runbook, _Row())
            for finding in findings:
                row.tally[finding.severity.value] += 1
                if self.latest is None or finding.severity.rank <= self.latest.severity.rank:
                    self.latest = finding

    def first_look(self, findings: list[Finding]) -> None:
        """Findings of the first look: shown above the runbooks, not counted in their rows."""
        with self._lock:
            if findings and self.first_finding_seconds is None:
                self.first_finding_seconds = time.monotonic() - self.started
            self.looked += findings
        self._wake.set()

    # --- drawing --------------------------------------------------------------------------------

    def __enter__(self) -> Progress:
        if self.live:
            self._thread = threading.Thread(target=self._loop, daemon=True, name="rmsops-progress")
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=2)
            self._draw()  # the final state stays on screen

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.25)
            self._wake.clear()
            if not self._stop.is_set():
                self._draw()

    def _paint(self, text: str, key: str) -> str:
        return f"\033[{_COLOUR[key]}m{text}\033[0m" if self.live and key in _COLOUR else text

    def render(self) -> list[str]:
        now = time.monotonic()
        with self._lock:
            lines = [f"{self.title}  {now - self.started:5.1f} s", *self._first_look_lines()]
            for name, row in self.rows.items():
                elapsed = ""
                if row.started is not None:
                    elapsed = f"{(row.ended or now) - row.started:5.1f} s"
                tally = " ".join(self._paint(f"{n} {sev}", sev) for sev, n in row.tally.items() if n)
                lines.append(f"  {name:34} {self._paint(f'{row.state:9}', row.state)} {elapsed:>7}  {tally}")
            if self.latest is not None:
                sev = self.latest.severity.value
                lines.append(f"  latest: {self._paint(sev.upper(), sev)} {clean(self.latest.check)} "
                             f"{clean(self.latest.title, 90)}")
        return lines

    def _first_look_lines(self, most: int = 4) -> list[str]:
        if not self.looked:
            return []
        urgent = sorted((f for f in self.looked if f.severity.rank <= Severity.WARNING.rank),
                        key=lambda f: f.severity.rank)
        lines = [f"  first look: {len(self.looked) - len(urgent)} ok"
                 + (f", {len(urgent)} to look at" if urgent else "")]
        for f in urgent[:most]:
            sev = f.severity.value
            lines.append(f"    {self._paint(sev.upper(), sev)} {clean(f.check)} {clean(f.title, 90)}")
        return lines

    def _draw(self) -> None:
        lines = self.render()
        up = f"\033[{self._drawn_lines}F" if self._drawn_lines else ""
        self.stream.write(up + "".join(f"\033[2K{line}\n" for line in lines))
        self.stream.flush()
        self._drawn_lines = len(lines)
