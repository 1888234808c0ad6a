"""A warm process that forks a runbook's process (a runner, or a Jupyter kernel) in milliseconds.

A stock Jupyter kernel starts a new Python, which then imports IPython, pandas, matplotlib,
boto3 and rmsops: seconds on a small machine, paid again for every notebook. Here one *zygote*
process pays it once and forks a fresh process per notebook: a runner (``rmsops.execution.inline``:
the notebook run, written and exported in that process) or, with ``RMSOPS_ENGINE=kernel``, a
kernel. The imports are shared copy-on-write; a triage gives a runner whose runbook has ended the
next one (``Zygote.release``), each notebook in a new namespace.

The zygote is single-threaded (forking a threaded process is unsafe) and listens on a Unix socket
in a private temp folder. This module is stdlib-only so the command line can start the zygote
before it imports anything heavy itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rmsops.core import longlived, processes, secrets, sharedcache
from rmsops.execution import inline

# What every runbook imports: loaded once in the zygote, inherited by every forked runner or kernel.
WARM_MODULES = ("IPython", "pandas", "numpy", "matplotlib", "matplotlib.figure", "botocore.session", "botocore.client",
                "psycopg", "yaml", "rmsops", "rmsops.notebook", "rmsops.checks", "rmsops.core.context",
                "rmsops.actions", "rmsops.render.plots", "rmsops.render.report")
# What a kernel adds: ipykernel (with debugpy) and what IPython imports as a kernel starts. Not for
# runners: they need none of it (about 0.3 s of the warm-up), and imported before a runner's shell
# exists, the inline backend could not hook itself to it and a cell drawing with pyplot would show nothing.
KERNEL_ONLY_MODULES = ("ipykernel.kernelapp", "ipykernel.ipkernel", "ipykernel.debugger",
                       "matplotlib_inline.backend_inline", "IPython.core.completerlib", "IPython.core.debugger",
                       "IPython.core.logger", "IPython.core.oinspect", "IPython.extensions.storemagic",
                       "IPython.utils.wildcard", "sqlite3", "pdb", "faulthandler", "tornado.platform.asyncio")
# Imported before the first look forks: what its first check needs (rmsops.execution.firstlook).
FIRST_LOOK_MODULES = ("rmsops.execution.firstlook", "rmsops.core.context", "rmsops.checks.health")
READY = b"ready\n"
# --- the zygote process -------------------------------------------------------------------------

def zygote_main(socket_path: str, first_look: str = "", warm_runners: bool = False) -> None:
    """Import everything, then fork a runner or a kernel for each request until the socket is closed.

    ``first_look``: a JSON order (``rmsops.execution.firstlook``) to fork a first-look process as soon as
    the checks are imported, before the kernel warm-up goes on.
    """
    import importlib

    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped automatically
    longlived.begin()  # the warm-up makes objects that all live on: collecting during it finds nothing
    for name in FIRST_LOOK_MODULES:
        importlib.import_module(name)
    children: list[int] = []  # killed when the zygote stops: no kernel or first look outlives a run
    if first_look:
        children.append(_fork_first_look(json.loads(first_look), Path(socket_path).parent / "shared"))
    for name in WARM_MODULES if warm_runners else (*KERNEL_ONLY_MODULES, *WARM_MODULES):
        importlib.import_module(name)
    from rmsops.core import aws, registry

    registry.load_all()  # every check module: a kernel that imports them itself pays ~0.25 s of CPU
    with contextlib.suppress(Exception):  # a failed warm-up only means a colder kernel
        _draw_once()

    # Forked kernels find every service model parsed, in memory. Not when a first look runs the
    # checks ahead: it makes the clients, and the runbooks take its results (0.6 s of CPU saved).
    if not first_look:
        with contextlib.suppress(Exception):  # a model that fails to load only means a colder kernel
            aws.preload_models()
    if warm_runners:
        _warm_runners()
    # What the warm-up made lives as long as every child: out of the collector's sight, a child's
    # collections neither walk it (CPU) nor write to its pages (copies of shared memory).
    longlived.end()
    longlived.collect_rarely()  # for every child: each lives as long as its runbooks
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the command's to handle, not ours
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(socket_path)
    server.listen(16)
    server.settimeout(1.0)
    parent = os.getppid()
    sys.stdout.buffer.write(READY)
    sys.stdout.flush()
    while True:
        try:
            conn, _ = server.accept()
        except TimeoutError:
            if os.getppid() != parent:  # the command that started us is gone: so are we
                _kill(children)
                os._exit(0)
            continue
        conn.settimeout(None)
        with conn:
            request = _read_line(conn)
            if not request:
                continue
            order = json.loads(request)
            if order.get("stop"):
                server.close()
                _kill(children)
                os._exit(0)  # nothing to flush or clean: skip tearing down the warm imports
            pid = os.fork()
            if pid == 0:
                server.close()
                if order.get("runner"):
                    _become_runner(order, conn)  # never returns; tells its pid, then reports on conn
                conn.close()
                _become_kernel(order)  # never returns
            children.append(pid)
            if not order.get("runner"):
                conn.sendall(f"{pid}\n".encode())


def _warm_runners() -> None:
    """What a kernel-less runner needs beyond the kernels' imports, made once here rather than in
    each of a triage's 17 runners: papermill, its engine, the reports' markdown parser with its
    patterns compiled, the IPython shell that runs the cells, and a
    botocore session (together about 70 ms of CPU per runner). A kernel forked from here drops that
    shell (a singleton) to make its own."""
    from rmsops.core import aws

    with contextlib.suppress(Exception):  # a failed warm-up only means a colder runner
        from rmsops.execution import cellengine, runner

        runner.warm_exporter()
        cellengine.shell()
        _read_a_notebook()
    aws.prepare_session()


def _read_a_notebook() -> None:
    """Read one runbook as papermill will: nbformat compiles its schema's validator (fastjsonschema
    writes and compiles Python) on the first read, about 60 ms that every runner paid on its own."""
    import nbformat

    from rmsops.core import runbooks

    nbformat.reads(runbooks.diagnostic()[0].notebook.read_text(encoding="utf-8"), as_version=4)


def _draw_once() -> None:
    """Render two small figures: the fonts, their metrics' caches and the SVG writer are then
    loaded here, once, instead of in every runner's first plot."""
    import pandas as pd

    from rmsops.render import plots

    frame = pd.DataFrame({"timestamp": pd.to_datetime([0, 60], unit="s", utc=True), "value": [1.0, 2.0],
                          "label": ["warm-up", "warm-up"]})
    plots.svg(plots.timeseries(frame, "warm-up 0123456789", "ylabel", lines={"limit": 1.5}))
    plots.svg(plots.bars(pd.DataFrame({"name": ["a"], "n": [1]}), "name", "n", "warm-up"))


def _die_with(parent: int) -> None:
    """In a forked child: be killed when ``parent`` ends, however it ends. A zygote stopped while it
    still imports is terminated and cannot kill its children; the first look must not outlive it,
    still running checks on a triage that is over (Linux; elsewhere the zygote's own kill)."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it ended before we asked
        os._exit(0)


def _kill(pids: list[int]) -> None:
    """Kill those of ``pids`` that are still our children (an ended child's pid may be reused)."""
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):  # most have ended and were reaped
            proc_stat = Path(f"/proc/{pid}/stat").read_text()
            if int(proc_stat.rsplit(")", 1)[1].split()[1]) == os.getpid():
                os.kill(pid, signal.SIGKILL)


def _fork_first_look(look: dict[str, Any], shared_cache: Path) -> int:
    out_fd = look.pop("fd")
    zygote = os.getpid()
    pid = os.fork()
    if pid == 0:
        try:
            _die_with(zygote)
            longlived.end()  # as a runner's (see zygote_main)
            longlived.collect_rarely()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.environ[sharedcache.ENV] = str(shared_cache)  # the runbooks reuse what it fetches
            from rmsops.execution import firstlook

            firstlook.take(look, out_fd)
        finally:
            os._exit(0)
    os.close(out_fd)  # the command sees the end of the pipe when the first look is done
    return pid


def _read_pid(conn: socket.socket) -> int | None:
    """A runner's first line, its pid (byte by byte: what follows is the runner's); None at the end."""
    first = b""
    while not first.endswith(b"\n"):
        byte = conn.recv(1)
        if not byte:
            return None
        first += byte
    return int(json.loads(first)["pid"])


def _read_line(conn: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data.strip()


def _settle(order: dict) -> None:
    """In a forked child: its own session (a terminal's Ctrl-C is the command's), stdin and stdout
    on /dev/null, then the order's cwd, environment and log (``_take_order``)."""
    os.setsid()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # interrupts the running cell
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    _take_order(order)


def _take_order(order: dict) -> None:
    """The order's cwd and environment, and stderr to its log (why it died)."""
    os.chdir(order.get("cwd") or os.getcwd())
    os.environ.clear()
    os.environ.update(order.get("env") or {})
    sys.stderr.flush()
    log = os.open(order["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log, 2)
    os.close(log)


def _become_runner(order: dict, conn: socket.socket) -> None:
    """In the forked child: say who it is, then run the order's job, reporting on ``conn``; then
    the next order the command sends on ``conn`` (``Zygote.release``), in this same process, until
    the command closes it. A job that fails outside its cells, or a stop (SIGINT), ends the process:
    the command then sees the end of the line."""
    try:
        from rmsops.execution import inline

        home = os.getcwd()  # where the zygote started: a job's modules are found from here
        conn.sendall(json.dumps({"pid": os.getpid()}).encode() + b"\n")
        job = inline.load_job(order["job"])  # before the chdir
        _settle(order)
        sys.stderr = secrets.RedactingWriter(sys.stderr)  # its last words are shown: see Runner.last_words
        from rmsops.execution import cellengine

        cellengine.interrupt_cells_only()  # a stop ends the cells, never the writing of the report
        while True:
            inline.child_main(job, conn)
            if not order.get("reusable"):
                break
            order = json.loads(_read_line(conn) or b"null")
            if not order or cellengine.stop_requested():
                break
            conn.sendall(json.dumps({"pid": os.getpid()}).encode() + b"\n")
            os.chdir(home)
            job = inline.load_job(order["job"])
            _take_order(order)
    except BaseException:  # noqa: BLE001 - the command sees the end of the line without an outcome
        import traceback

        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(0)


def _become_kernel(order: dict) -> None:
    """In the forked child: settled as the order says, then the kernel loop."""
    try:
        _settle(order)
        from ipykernel.kernelapp import IPKernelApp
        from IPython.core.interactiveshell import InteractiveShell

        if InteractiveShell.initialized():  # a zygote warmed for runners made their shell: a singleton
            type(InteractiveShell.instance()).clear_instance()

        app = IPKernelApp.instance()
        app.initialize(["-f", order["connection_file"], *order.get("args", [])])
        app.start()
    finally:
        os._exit(0)


@dataclass
class Runner:
    """A runner the zygote forked: its pid, the connection it reports on, and its log (stderr)."""

    pid: int
    conn: socket.socket
    log: Path

    def last_words(self) -> str:
        """The last line it wrote to stderr (a traceback's last line says why it ended), if any."""
        with contextlib.suppress(OSError):
            lines = [line.strip() for line in self.log.read_text(errors="replace").splitlines() if line.strip()]
            return lines[-1][:300] if lines else ""
        return ""


FOLDER_PREFIX = "rmsops-zygote-"
CLAIMING_PREFIX = "rmsops-claiming-"  # a folder being made: locked before it takes its name
OWNER_LOCK = "owner.lock"  # locked (flock) by the command that made the folder, for as long as it lives
ABANDONED_SECONDS = 300


def claim_folder() -> tuple[Path, int]:
    """A new private (0700) folder and the open lock that says its command still runs.

    The lock is taken before the folder is renamed to a name a sweep looks at, so no sweep ever
    sees it unlocked while its command lives. The operating system releases it when the command
    ends in any way (kill -9 too); the zygote, started with exec, does not inherit it."""
    staging = Path(tempfile.mkdtemp(prefix=CLAIMING_PREFIX))
    lock = os.open(staging / OWNER_LOCK, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)
    folder = staging.with_name(f"{FOLDER_PREFIX}{os.getpid()}-{staging.name[len(CLAIMING_PREFIX):]}")
    os.rename(staging, folder)
    return folder, lock


def sweep_abandoned_folders(now: float | None = None) -> None:
    """Delete the folders of runs whose command is gone without cleaning up (kill -9, a closed
    terminal's lost session): their shared cache holds what the checks fetched and found, log lines
    and SQL texts among them. Only this user's folders (not links). A folder whose owner's lock is
    free goes at once: the lock outlives no process, in any PID namespace. One without a lock (made
    by an older rmsops) goes when it is named after a process that has ended and has been untouched
    for ``ABANDONED_SECONDS`` (a process id seen from another PID namespace sharing this temp dir
    may be a live run)."""
    now = time.time() if now is None else now
    for folder in Path(tempfile.gettempdir()).glob(f"{FOLDER_PREFIX}*-*"):
        owner = folder.name[len(FOLDER_PREFIX):].split("-", 1)[0]
        with contextlib.suppress(OSError):
            info = folder.lstat()
            if not (owner.isdigit() and stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid()):
                continue
            released = _owner_released(folder)
            if released or (released is None and now - _last_change(folder) > ABANDONED_SECONDS
                            and not processes.alive(int(owner))):
                shutil.rmtree(folder, ignore_errors=True)


def _owner_released(folder: Path) -> bool | None:
    """Whether the command that made ``folder`` has ended (its lock is free); None without a lock."""
    try:
        lock = os.open(folder / OWNER_LOCK, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(lock)
    return True


def _last_change(folder: Path) -> float:
    shared = folder / "shared"
    return max(folder.lstat().st_mtime, shared.lstat().st_mtime if shared.is_dir() else 0.0)


class Zygote:
    """The warm process: started once (in the background), asked to fork runners or kernels."""

    def __init__(self) -> None:
        sweep_abandoned_folders()
        # Private (0700): the socket, logs, and the triage's shared cache. Locked while this process
        # lives, so that a later run can tell it was abandoned (sweep_abandoned_folders).
        self.folder, lock = claim_folder()
        self._owner_lock: int | None = lock
        self.socket_path = str(self.folder / "zygote.sock")
        self.shared_cache = self.folder / "shared"
        self.first_look_fd: int | None = None
        self.looks_first = False  # a first look runs (rmsops.execution.firstlook)
        self._process: subprocess.Popen | None = None
        self._ready = threading.Event()
        self._waiting: threading.Thread | None = None  # reads the zygote's "ready" line
        self._lock = threading.Lock()
        self._error = ""
        self.runners = inline.enabled()  # kernel-less runners, unless RMSOPS_ENGINE=kernel
        self._idle: list[Runner] = []  # runners whose job ended, waiting for the next (release)
        self._stopping = False

    def start(self, first_look: dict[str, Any] | None = None) -> Zygote:
        """Start warming up; with ``first_look`` (``rmsops.execution.firstlook.order``) also take a first look,
        whose findings ``first_look_fd`` then delivers (``rmsops.execution.firstlook.read``)."""
        fds: tuple[int, ...] = ()
        order = ""
        if first_look is not None:
            self.looks_first = True
            self.first_look_fd, write_fd = os.pipe()
            fds = (write_fd,)
            order = json.dumps({**first_look, "fd": write_fd})
        self._process = subprocess.Popen(
            [sys.executable, "-c",
             f"from rmsops.execution.zygote import zygote_main; "
             f"zygote_main({self.socket_path!r}, {order!r}, {self.runners!r})"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, pass_fds=fds)
        for fd in fds:
            os.close(fd)  # the zygote has its own copy
        self._waiting = threading.Thread(target=self._wait_ready, daemon=True, name="rmsops-zygote-ready")
        self._waiting.start()
        return self

    def _wait_ready(self) -> None:
        assert self._process and self._process.stdout
        try:
            line = self._process.stdout.readline()
            if line != READY:
                self._error = (self._process.stderr.read().decode(errors="replace") if self._process.stderr else "")
        except (ValueError, OSError):  # its pipes were closed: stopped (a signal) before it was ready
            self._error = self._error or "stopped before it was ready"
        self._ready.set()

    def wait_ready(self, timeout: float = 60.0) -> None:
        if not self._ready.wait(timeout) or self._error:
            raise RuntimeError(f"the kernel zygote did not start: {self._error.strip()[-500:]}")

    def fork_runner(self, job: str, cwd: str, env: dict[str, str], reusable: bool = False) -> Runner:
        """A runner process for one runbook (``rmsops.execution.inline``), with the connection on
        which it reports (``inline.read_messages``); the caller closes the connection.

        ``reusable``: once it has sent its job's outcome (``inline.collect``), the runner waits for
        another job instead of ending, and the caller hands it back (``release``) or closes the
        connection. A runner handed back takes this job in its process, if it is still there;
        otherwise the zygote forks a new one."""
        self.wait_ready()
        log = self.folder / f"runner-{uuid.uuid4().hex[:12]}.log"
        env = {**env, sharedcache.ENV: str(self.shared_cache)}
        order = json.dumps({"runner": True, "job": job, "cwd": cwd, "env": env, "log": str(log),
                            "reusable": reusable}) + "\n"
        while True:
            with self._lock:
                idle = self._idle.pop() if self._idle else None
            if idle is None:
                break
            with contextlib.suppress(OSError, ValueError):
                idle.conn.sendall(order.encode())
                if _read_pid(idle.conn) == idle.pid:
                    return Runner(idle.pid, idle.conn, log)
            idle.conn.close()  # it ended (stopped, killed): the next one, or a new one
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with self._lock:
                conn.connect(self.socket_path)
                conn.sendall(order.encode())
            pid = _read_pid(conn)
            if pid is None:
                raise RuntimeError("the zygote could not start a runner")
            return Runner(pid, conn, log)
        except BaseException:
            conn.close()
            raise

    def release(self, runner: Runner) -> None:
        """A runner whose job ended with its outcome: its process takes the next job (``fork_runner``).

        A fork is cheap; what a new process then does for the first time is not: copying every page
        of the warm process it writes to (Python's reference counts), ~9,000 page faults, and its first
        figure, a third slower than the next. A triage's 17 runbooks, escalation and timeline run in a
        handful of processes instead of one each (each in a fresh namespace: ``cellengine.fresh_notebook``)."""
        with self._lock:
            if not self._stopping:
                self._idle.append(runner)
                return
        runner.conn.close()

    def fork(self, connection_file: str, cwd: str | None, env: dict[str, str], args: list[str] | None = None) -> int:
        """A new kernel process; ``args`` are the kernel's ``--Name.trait=value`` options."""
        self.wait_ready()
        log = str(self.folder / f"kernel-{Path(connection_file).stem}.log")
        env = {**env, sharedcache.ENV: str(self.shared_cache)}  # the kernels of one triage share fetches
        order = json.dumps({"connection_file": connection_file, "cwd": cwd, "env": env, "log": log,
                            "args": args or []}) + "\n"
        with self._lock, socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(self.socket_path)
            conn.sendall(order.encode())
            answer = _read_line(conn)
        return int(answer)

    def take_first_look(self) -> int | None:
        """The read end of the first-look pipe, now the caller's to read and close."""
        fd, self.first_look_fd = self.first_look_fd, None
        return fd

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            idle, self._idle = self._idle, []
        for runner in idle:
            runner.conn.close()  # it ends at the end of its line
        unread = self.take_first_look()
        if unread is not None:
            os.close(unread)
        if self._process and self._process.poll() is None and not self._ready.is_set():
            self._process.terminate()  # still importing: no socket to ask on yet
        if self._process and self._process.poll() is None:
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                    conn.settimeout(2)
                    conn.connect(self.socket_path)
                    conn.sendall(b'{"stop": true}\n')
            except OSError:
                pass
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._waiting is not None:  # it reads the pipes until the zygote's end: not from a closed file
            self._waiting.join(timeout=2)
        for stream in (self._process.stdout, self._process.stderr) if self._process else ():
            if stream:
                stream.close()
        shutil.rmtree(self.folder, ignore_errors=True)
        if self._owner_lock is not None:
            os.close(self._owner_lock)
            self._owner_lock = None
