"""The process each of a triage's worker threads is running a runbook in (a forked kernel or runner).

A watchdog stops a runbook that overstays its timeout, and Ctrl-C stops them all, through this
table: the processes are the zygote's children, not the command's, so ``Popen`` cannot be used.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

_running: dict[int, ForeignProcess] = {}  # worker thread id -> its current process


class ForeignProcess:
    """Enough of Popen (for jupyter_client too) for a process that is not our child."""

    def __init__(self, pid: int, interruptible: bool = False):
        self.pid = pid
        self.interruptible = interruptible  # SIGINT stops its cell and it still writes its notebook
        self.stopped = False  # asked to stop (a timeout, Ctrl-C): it takes no further job
        self._handed_back = False  # its job is over and it may run another's: never stop it for this one
        self._lock = threading.Lock()
        self.stdout = self.stderr = self.stdin = None

    def poll(self) -> int | None:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return 0
        return None

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout or 0)
            time.sleep(0.02)
        return 0

    def send_signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def hand_back(self) -> bool:
        """Its job is over and it may take another (a runner): stopping this job no longer touches it.
        False when it was stopped first: then it takes no other job."""
        with self._lock:
            self._handed_back = not self.stopped
            return self._handed_back

    def stop(self, grace: float = 3.0) -> None:
        """Interrupt it, when it can take that, and kill it if it is still there after ``grace``."""
        with self._lock:
            if self._handed_back:
                return
            self.stopped = True
        if self.interruptible:
            self.send_signal(signal.SIGINT)
            timer = threading.Timer(grace, self._kill_if_same)
            timer.daemon = True
            timer.start()
        else:
            self.kill()

    def _kill_if_same(self) -> None:
        """Kill it unless its pid now names another process: ours lead their own session (setsid)."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return  # gone
        if int(fields[3]) == self.pid:  # the session id
            self.kill()


def register(process: ForeignProcess) -> None:
    _running[threading.get_ident()] = process


def hand_back(process: ForeignProcess) -> bool:
    """This thread's process has finished its job and may take another thread's (a runner): from now
    on, stopping this job does not touch it. False when it was stopped first: it takes no other job."""
    if _running.get(threading.get_ident()) is process:
        del _running[threading.get_ident()]
    return process.hand_back()


def running(thread_id: int) -> ForeignProcess | None:
    return _running.get(thread_id)
