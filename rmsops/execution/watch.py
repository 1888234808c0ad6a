"""``rmsops watch``: when one of the environment's CloudWatch alarms enters ALARM, triage, then tell.

One triage per incident. An alarm that fires while a triage runs, or within the cooldown after it
(and not before its window), joins that incident instead of starting another. What was handled is
kept in a small state file beside the bundles (``.rmsops-watch-<env>.json``), so a restarted
watcher neither triages the same firing twice nor forgets a notification it owed. One watcher per
environment and output folder (a lock file), so never two triages of one environment at once.

The triage runs as a child process (``rmsops triage``): its signals, memory and bundle are its
own, and the watcher stays a small loop that keeps polling while it runs. Stopping the watcher
(SIGTERM, Ctrl-C) stops the child the way a person would (SIGTERM): the bundle is written and
marked incomplete, and it is still announced.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from rmsops.core import failure, processes
from rmsops.core.aws import AwsClients
from rmsops.core.config import Settings
from rmsops.core.errors import UserError
from rmsops.core.findings import iso
from rmsops.execution import notify
from rmsops.render.report import clean
from rmsops.sources import alarms as alarm_source

DEFAULT_INTERVAL = timedelta(seconds=60)
DEFAULT_LOOKBACK = timedelta(minutes=30)
DEFAULT_COOLDOWN = timedelta(minutes=15)
MAX_WINDOW = timedelta(hours=24)  # an alarm firing for days still gets a window a triage can read
STOP_GRACE_SECONDS = 120  # a stopped triage writes its bundle; it may take this long
TICK_SECONDS = 0.5  # how often a running triage is looked at (polls of AWS follow the interval)
STATE_SCHEMA = "rmsops.watch/1"


@dataclass
class Incident:
    """One triage and the alarms it answers."""

    folder: str  # the bundle's name under the output folder
    alarms: list[str]  # the first started it, the others joined
    keys: list[str]  # alarm@since of every firing it answers
    started_at: str
    window: dict[str, str]
    pid: int | None = None
    ended_at: str | None = None
    exit_code: int | None = None
    notified: list[dict[str, Any]] | None = None  # None: owed

    @property
    def running(self) -> bool:
        return self.ended_at is None


@dataclass
class State:
    path: Path
    environment: str
    incidents: list[Incident] = field(default_factory=list)
    in_alarm: dict[str, str] = field(default_factory=dict)  # name -> key, at the last look

    @classmethod
    def load(cls, path: Path, environment: str) -> State:
        if not path.exists():
            return cls(path, environment)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            incidents = [Incident(**item) for item in raw["incidents"]]
            in_alarm = {str(name): str(key) for name, key in (raw.get("in_alarm") or {}).items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise UserError(f"watch state {path} is damaged ({clean(str(exc), 120)}); move it aside to start "
                            "afresh (alarms already firing will then be triaged again)") from None
        return cls(path, environment, incidents, in_alarm)

    def save(self) -> None:
        """Written whole and moved into place: a crash leaves the old state or the new one."""
        body = {"schema": STATE_SCHEMA, "environment": self.environment,
                "incidents": [asdict(incident) for incident in self.incidents], "in_alarm": self.in_alarm}
        partial = self.path.with_name(self.path.name + ".partial")
        partial.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
        os.replace(partial, self.path)

    def handled(self, key: str) -> bool:
        return any(key in incident.keys for incident in self.incidents)

    def latest(self) -> Incident | None:
        return self.incidents[-1] if self.incidents else None


def state_path(out: Path, environment: str) -> Path:
    return out / f".rmsops-watch-{_safe_name(environment)}.json"


def bundle_name(moment: datetime, alarm: str) -> str:
    """``<UTC timestamp>-<alarm name>``, safe as one folder name."""
    return f"{moment.astimezone(UTC):%Y%m%dT%H%M%SZ}-{_safe_name(alarm)}"


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")[:80] or "alarm"


def triage_window(alarms: Sequence[alarm_source.Alarm], now: datetime,
                  lookback: timedelta) -> tuple[datetime, datetime]:
    """From ``lookback`` before the earliest firing to now, never longer than a day."""
    start = min(alarm.since for alarm in alarms) - lookback
    return max(start, now - MAX_WINDOW), now


class Lock:
    """One watcher per environment and output folder: a second one is bad input, not a race."""

    def __init__(self, out: Path, environment: str):
        self.path = out / f".rmsops-watch-{_safe_name(environment)}.lock"
        self._file: IO[str] | None = None

    def __enter__(self) -> Lock:
        self._file = self.path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.seek(0)
            holder = self._file.read().strip() or "another process"
            self._file.close()
            raise UserError(f"another `rmsops watch` already watches this environment into {self.path.parent} "
                            f"(pid {clean(holder, 20)}); stop it first, or give another -o") from None
        self._file.truncate(0)
        self._file.write(str(os.getpid()))
        self._file.flush()
        return self

    def __exit__(self, *_: object) -> None:
        if self._file is not None:
            self._file.close()


def _print(line: str) -> None:
    print(f"{datetime.now(UTC):%H:%M:%S} {line}", file=sys.stderr, flush=True)


@dataclass
class Options:
    interval: timedelta = DEFAULT_INTERVAL
    lookback: timedelta = DEFAULT_LOOKBACK
    cooldown: timedelta = DEFAULT_COOLDOWN
    triage_args: Sequence[str] = ()  # passed on to `rmsops triage` (--runbook, -p, --jobs, --sign)
    notify_attempts: int = 3
    notify_backoff_seconds: float = 2.0


class Watcher:
    """The loop's state and steps; ``run`` drives them, tests may call the steps one by one."""

    def __init__(self, settings: Settings, out: Path, targets: Sequence[notify.Target], options: Options,
                 log: Callable[[str], None] = _print, clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.settings, self.out, self.targets, self.options = settings, out.resolve(), list(targets), options
        self.log, self.clock = log, clock
        self.state = State.load(state_path(self.out, settings.name), settings.name)
        self._clients = AwsClients(settings.aws)
        self._child: subprocess.Popen | None = None
        self.deliveries: list[notify.Delivery] = []

    # --- the steps ------------------------------------------------------------------------------

    def firing(self) -> list[alarm_source.Alarm]:
        return alarm_source.firing(self._clients.client("cloudwatch"), self.settings)

    def poll(self) -> list[alarm_source.Alarm]:
        """Look at the alarms once: each new firing joins the current incident or starts one."""
        firing = self.firing()
        new = [alarm for alarm in firing if self._is_new(alarm)]
        self.state.in_alarm = {alarm.name: alarm.key for alarm in firing}
        joining = {alarm.key: incident for alarm in new if (incident := self._incident_to_join(alarm))}
        for alarm in new:
            if alarm.key in joining:
                incident = joining[alarm.key]
                incident.keys.append(alarm.key)
                if alarm.name in incident.alarms:
                    continue
                incident.alarms.append(alarm.name)
                self.log(f"ALARM {clean(alarm.name, 120)} (since {alarm.since:%H:%M:%S} UTC) joins the incident "
                         f"{incident.folder}")
        fresh = [alarm for alarm in new if alarm.key not in joining]
        if fresh:
            self._start(fresh[0], fresh[1:])
        self.state.save()
        return new

    def _is_new(self, alarm: alarm_source.Alarm) -> bool:
        """A firing not handled yet. An alarm that stayed in ALARM since the last look is not new,
        unless AWS says it changed state in between (an OK and back between two looks)."""
        if self.state.handled(alarm.key):
            return False
        return alarm.name not in self.state.in_alarm or alarm.transitioned

    def _incident_to_join(self, alarm: alarm_source.Alarm) -> Incident | None:
        last = self.state.latest()
        if last is None:
            return None
        if last.running:
            return last
        ended = datetime.fromisoformat(last.ended_at or last.started_at)
        window_start = datetime.fromisoformat(last.window["start"])
        return last if window_start <= alarm.since <= ended + self.options.cooldown else None

    def _start(self, alarm: alarm_source.Alarm, others: list[alarm_source.Alarm]) -> None:
        now = self.clock()
        # Alarms seen in the same look belong to the same incident: one triage, its window covering them.
        together = [alarm, *others]
        start, end = triage_window(together, now, self.options.lookback)
        name = bundle_name(now, alarm.name)
        incident = Incident(folder=name, alarms=[a.name for a in together], keys=[a.key for a in together],
                            started_at=iso(now), window={"start": iso(start), "end": iso(end)})
        self.state.incidents.append(incident)
        self.log(f"ALARM {clean(alarm.name, 120)} (since {alarm.since:%H:%M:%S} UTC): triage of "
                 f"{start:%H:%M}–{end:%H:%M} UTC into {self.out / name}")
        for other in others:
            self.log(f"ALARM {clean(other.name, 120)} (since {other.since:%H:%M:%S} UTC) joins it")
        try:
            self._child = self._launch(incident)
        except OSError as exc:  # no disk, no interpreter: said, and the next firing tries again
            incident.ended_at, incident.exit_code, incident.notified = iso(now), 3, []
            self.log(f"could not start the triage: {clean(exc.strerror or str(exc), 200)}")
        else:
            incident.pid = self._child.pid
        self.state.save()

    def _launch(self, incident: Incident) -> subprocess.Popen:
        command = [sys.executable, "-m", "rmsops.cli", "triage", "-e", str(self.settings.path),
                   "-o", str(self.out / incident.folder), "--start", incident.window["start"],
                   "--end", incident.window["end"], *self.options.triage_args]
        log = (self.out / f"{incident.folder}.log").open("w", encoding="utf-8")
        with log:
            # Its own session: a Ctrl-C at the watcher's terminal is the watcher's to pass on.
            return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)

    @property
    def busy(self) -> bool:
        return self._child is not None and self._child.poll() is None

    def reap(self) -> Incident | None:
        """If the triage has ended: record it and announce its bundle. The incident, if one ended."""
        if self._child is None or self._child.poll() is None:
            return None
        code, self._child = self._child.returncode, None
        incident = next(i for i in reversed(self.state.incidents) if i.running)
        incident.ended_at, incident.exit_code = iso(self.clock()), code
        self.state.save()
        folder = self.out / incident.folder
        status = "written" if (folder / "manifest.json").is_file() else "NOT written"
        self.log(f"triage ended (exit {code}); bundle {status}: {folder} (its output: {folder}.log)")
        self._announce(incident)
        return incident

    def resume(self) -> None:
        """After a restart: incidents left running or unannounced by the last watcher."""
        for incident in self.state.incidents:
            if incident.running:
                if processes.alive(incident.pid):
                    # The last watcher's triage is still writing: wait for its bundle, as it would have.
                    self.log(f"the triage {incident.folder} of the last watcher is still running; waiting")
                    _wait_for_exit(incident.pid, STOP_GRACE_SECONDS)
                incident.ended_at = iso(self.clock())
                self.state.save()
            if incident.notified is None and (self.out / incident.folder / "manifest.json").is_file():
                self._announce(incident)

    def _announce(self, incident: Incident) -> None:
        folder = self.out / incident.folder
        if not self.targets:
            incident.notified = []
            self.state.save()
            return
        message = notify.compose(folder, incident.alarms[:1], self.settings.name, joined=incident.alarms[1:])
        sent = notify.deliver(self.targets, message, folder, aws=self.settings.aws,
                              attempts=self.options.notify_attempts,
                              backoff_seconds=self.options.notify_backoff_seconds, log=self.log)
        self.deliveries += sent
        incident.notified = [asdict(delivery) for delivery in sent]
        self.state.save()
        for delivery in sent:
            outcome = "sent" if delivery.ok else f"FAILED after {delivery.attempts} attempts: {delivery.error}"
            self.log(f"notify {delivery.target}: {outcome}")

    def stop_triage(self) -> None:
        """SIGTERM to a running triage (it writes its bundle, marked incomplete), then reap it."""
        if self.busy:
            assert self._child is not None
            self.log("stopping the running triage; its bundle is written and marked incomplete")
            self._child.send_signal(signal.SIGTERM)
            try:
                self._child.wait(STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                self._child.kill()
                self._child.wait()
        self.reap()

    # --- the loop -------------------------------------------------------------------------------

    def run(self, once: bool, stop: threading.Event) -> int:
        """Until ``stop`` (or, with ``once``, one look and its triage). With ``once`` the exit status
        is 0 when no triage was needed, else the triage's, and 3 if the alarms could not be read or a
        notification failed; a watcher stopped by a signal exits 0."""
        self.resume()
        codes: list[int] = []
        next_poll = 0.0
        while not stop.is_set():
            ended = self.reap()
            if ended is not None and ended.exit_code is not None:
                codes.append(ended.exit_code)
                if once:
                    break
            if time.monotonic() >= next_poll:
                next_poll = time.monotonic() + self.options.interval.total_seconds()
                if not self._look(once):
                    codes.append(3)
                    if once:
                        break
                if once and not self.busy:
                    break
            stop.wait(TICK_SECONDS if self.busy or not once else 0)
        self.stop_triage()
        if not once:
            self.log(f"stopped; what was handled is in {self.state.path}")
            return 0  # a watcher stopped on purpose; what it found is in the bundles and messages
        if any(not d.ok for d in self.deliveries):
            codes.append(3)
        return max(codes, default=0)

    def _look(self, once: bool) -> bool:
        """One poll; an AWS failure is one line (and, in a loop, tried again at the next interval)."""
        try:
            self.poll()
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - throttling, no permission, endpoint down: said, not fatal
            again = "" if once else f"; trying again in {self.options.interval.total_seconds():g} s"
            self.log(f"could not read the alarms: {clean(failure.describe(exc), 300)}{again}")
            return False
        return True


def _wait_for_exit(pid: int | None, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while processes.alive(pid) and time.monotonic() < deadline:
        time.sleep(0.5)


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event):
    """SIGTERM and Ctrl-C set ``stop``: the loop finishes its step, stops a triage cleanly, exits."""
    def handler(signum: int, _frame: object) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
