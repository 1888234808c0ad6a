"""The embedded demo environment: emulated AWS, a real PostgreSQL and the RMS health URLs.

Usage::

    with DemoEnvironment(progress=print).start("incident") as demo:
        ctx = Context.open(demo.env_file)
        ...

``start()`` runs, in this process: a moto ``ThreadedMotoServer`` on 127.0.0.1, a
``LocalPostgres`` (started in a background thread while AWS is being seeded, since
both take about two seconds), and a small HTTP server for the health URLs. It seeds
the scenario and writes the environment file. ``stop()`` undoes all of it in
reverse order; it is idempotent, and a ``stop()`` interrupted by a second Ctrl-C
can simply be called again.
"""

from __future__ import annotations

import atexit
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from rmsops.core.errors import UserError
from rmsops.demo import areas, envfile, scenarios, seed_db
from rmsops.demo.health_server import HealthServer
from rmsops.demo.localpg import LocalPostgres, LocalPostgresError, find_bindir
from rmsops.demo.scenarios import Scenario

if TYPE_CHECKING:  # moto and boto3 are imported by start(), while PostgreSQL boots
    from rmsops.demo.moto_patches import MotoPatches
    from rmsops.demo.seed_aws import SeededAws

Progress = Callable[[str], None]
MAX_CONNECTIONS = 30

_active_lock = threading.Lock()
_active: DemoEnvironment | None = None  # moto's backends are global: one demo per process


def _quiet(_message: str) -> None:
    pass


class DemoEnvironment:
    """One running demo. Attributes are set by ``start()``; ``timings`` holds seconds per phase."""

    def __init__(self, progress: Progress | None = None):
        self.progress: Progress = progress or _quiet
        self.scenario: Scenario | None = None
        self.env_file: Path | None = None
        self.endpoint_url = ""
        self.postgres: LocalPostgres | None = None
        self.health_urls: dict[str, str] = {}
        self.aws: SeededAws | None = None
        self.timings: dict[str, float] = {}
        self.extra_settings: dict = {}  # what the area seeders add to the environment file
        self.monitor_password = ""
        self._cleanups: list[tuple[str, Callable[[], None]]] = []
        self._stopping = False
        self._started = False

    # --- lifecycle ------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._started and bool(self._cleanups)

    def start(self, scenario: str = scenarios.DEFAULT_SCENARIO, env_file: Path | None = None,
              progress: Progress | None = None) -> DemoEnvironment:
        """Start and seed everything, then write the environment file (a temp dir unless *env_file*).

        On any failure, or a KeyboardInterrupt/SystemExit raised by a signal handler, whatever was
        started is stopped again before the exception propagates.
        """
        spec = scenarios.get(scenario)  # UserError before anything starts
        try:
            bindir = find_bindir()  # no PostgreSQL: say so at once, not after seeding AWS
        except LocalPostgresError as exc:
            raise UserError(f"demo: {exc}") from None
        if progress is not None:
            self.progress = progress
        if self._started:
            raise RuntimeError("this DemoEnvironment was already started; create a new one")
        self._claim()
        self._started = True
        atexit.register(self.stop)  # unregistered by a complete stop()
        self.scenario = spec
        began = time.monotonic()
        try:
            self.monitor_password = seed_db.new_password()
            database = self._start_database(spec, bindir)  # in a thread: initdb, start, seed (~3 s)
            self._start_moto()
            from rmsops.demo.moto_patches import MotoPatches

            patches = MotoPatches()
            patches.install()
            self._push("moto patches", patches.remove)
            from rmsops.demo import layout

            workers = f" + {len(layout.WORKERS)} workers" if layout.WORKERS else ""
            self._phase("aws", f"AWS resources seeded (scenario {spec.name}: ECS{workers}, ALB, RDS, metrics, logs)",
                        lambda: self._seed_aws(spec, patches))
            self._strict_limits()
            self._phase("health", None, lambda: self._start_health(spec))
            self._wait_database(database, spec)
            self._write_env_file(spec, env_file)
        except BaseException:
            self.stop()
            raise
        self.timings["total"] = time.monotonic() - began
        self.progress(f"demo environment ready ({spec.name})… {self.timings['total']:.1f} s")
        return self

    def stop(self) -> None:
        """Undo everything ``start()`` did, newest first. Idempotent; safe after a failed start.

        A signal handler should raise (KeyboardInterrupt/SystemExit) rather than call this while
        ``start()`` is running: ``start()`` then cleans up itself. If ``stop()`` is interrupted,
        the unfinished steps stay queued and the next ``stop()`` (or ``atexit``) finishes them.
        """
        if self._stopping:
            return  # re-entered from a signal handler while stopping
        self._stopping = True
        began = time.monotonic()
        try:
            while self._cleanups:
                name, cleanup = self._cleanups[-1]
                try:
                    cleanup()
                except Exception as exc:  # noqa: BLE001 - keep tearing down the rest
                    self.progress(f"warning: stopping {name} failed: {type(exc).__name__}: {exc}")
                # A BaseException (second Ctrl-C) leaves the step on the stack for the next stop().
                self._cleanups.pop()
            self._release()
            atexit.unregister(self.stop)
        finally:
            self._stopping = False
        if self._started:
            self.timings["stop"] = time.monotonic() - began

    def __enter__(self) -> DemoEnvironment:
        if not self._started:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def summary(self) -> list[str]:
        """A few lines for the terminal: what runs where and how to use it."""
        if not self.running or self.scenario is None or self.env_file is None:
            return ["demo environment not running"]
        pg = self.postgres
        return [
            f"scenario   {self.scenario.name}: {self.scenario.summary}",
            f"AWS (moto) {self.endpoint_url}",
            f"PostgreSQL 127.0.0.1:{pg.port if pg else '?'} database rms",
            f"health     {', '.join(self.health_urls.values())}",
            f"env file   {self.env_file}",
        ]

    # --- phases ---------------------------------------------------------------------------------

    def _start_database(self, spec: Scenario, bindir: Path) -> Future[seed_db.ConnectionLoad]:
        """PostgreSQL start and seeding run in a thread: they are mostly subprocess and server work."""
        pg = LocalPostgres(max_connections=MAX_CONNECTIONS, bindir=bindir)
        self.postgres = pg
        monitor_password = self.monitor_password
        timings = self.timings

        def start_and_seed() -> seed_db.ConnectionLoad:
            began = time.monotonic()
            pg.start()
            timings["postgres"] = time.monotonic() - began
            began = time.monotonic()
            app_password = seed_db.new_password()
            app_conninfo = pg.conninfo(user=seed_db.APP_ROLE, password=app_password)
            with pg.connect() as conn:
                load = seed_db.seed(conn, app_conninfo, monitor_password, app_password,
                                    spec.db_held_connections, spec.db_idle_in_transaction)
                areas.seed_db(areas.DbSeed(spec, conn, pg, app_conninfo, cleanup=self._push))
            timings["database"] = time.monotonic() - began
            return load

        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rms-demo-postgres")
        future = pool.submit(start_and_seed)
        pool.shutdown(wait=False)

        def stop_database() -> None:
            # A start in flight cannot be interrupted: let it finish, then close and stop. (A Ctrl-C
            # during this wait propagates and leaves this step queued for the next stop().)
            try:
                load = future.result()
            except Exception:  # noqa: BLE001 - the start failed: nothing is held; stop what started
                load = None
            if load is not None:
                load.close()
            pg.stop()

        self._push("PostgreSQL", stop_database)
        return future

    def _wait_database(self, future: Future[seed_db.ConnectionLoad], spec: Scenario) -> None:
        waited = time.monotonic()
        try:
            load = future.result()
        except LocalPostgresError as exc:  # e.g. no PostgreSQL binaries: the message says what to do
            raise UserError(f"demo: cannot start PostgreSQL: {exc}") from exc
        self.timings["database_wait"] = time.monotonic() - waited
        assert self.postgres is not None
        self.progress(f"PostgreSQL on 127.0.0.1:{self.postgres.port} (started in parallel)… "
                      f"{self.timings['postgres']:.1f} s")
        self.progress(f"database rms seeded; {load.count} application connections held, "
                      f"{spec.db_idle_in_transaction} idle in transaction… {self.timings['database']:.1f} s")

    def _start_moto(self) -> None:
        from moto.server import ThreadedMotoServer

        began = time.monotonic()
        werkzeug = logging.getLogger("werkzeug")
        level = werkzeug.level
        werkzeug.setLevel(logging.CRITICAL)  # otherwise every request is logged to stderr
        self._push("werkzeug logging", lambda: werkzeug.setLevel(level))
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()

        def stop_moto() -> None:
            if getattr(server, "_server", None) is None:
                return
            server.stop()
            server._server.server_close()  # ThreadedMotoServer.stop() leaves the socket open
            server._server = None

        self._push("moto server", stop_moto)
        from rmsops.demo import moto_patches

        moto_patches.reset_moto()  # a clean account, even if this process ran a demo before
        self._push("moto state", moto_patches.reset_moto)
        host, port = server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"
        self.timings["moto"] = time.monotonic() - began
        self.progress(f"AWS emulator (moto) on {self.endpoint_url}… {self.timings['moto']:.1f} s")

    def _seed_aws(self, spec: Scenario, patches: MotoPatches) -> None:
        from rmsops.demo import seed_aws
        from rmsops.demo.ticker import metrics_ticker

        client = seed_aws.client_factory(self.endpoint_url)  # shared: service models load once
        self.aws = seed_aws.seed(self.endpoint_url, spec, patches, self.monitor_password, client=client)
        assert self.aws.seeded_at is not None
        area_seed = areas.AwsSeed(spec, client, self.endpoint_url,
                                  self.aws, patches, self.aws.seeded_at, cleanup=self._push)
        areas.seed_aws(area_seed)
        self.extra_settings = area_seed.settings
        ticker = metrics_ticker(self.endpoint_url, spec, self.aws.load_balancer_dimension,
                                self.aws.seeded_at).start()
        self._push("metrics ticker", ticker.stop)

    def _strict_limits(self) -> None:
        """With RMSOPS_DEMO_STRICT_LIMITS set: AWS's per-call maxima and pages of two from now on
        (after the seeding, which lists without paging)."""
        from rmsops.demo import strict_limits

        if strict_limits.enabled():
            self._push("strict AWS limits", strict_limits.install())
            self.progress(f"AWS's per-call maxima enforced, lists in pages of {strict_limits.PAGE_SIZE} "
                          f"({strict_limits.ENV})")

    def _start_health(self, spec: Scenario) -> str:
        server = HealthServer(spec.health_status).start()
        self._push("health server", server.stop)
        self.health_urls = server.urls
        codes = ", ".join(f"{name} {spec.health_status.get(name, 200)}" for name in self.health_urls)
        return f"health URLs on {server.base_url} ({codes})"

    def _write_env_file(self, spec: Scenario, env_file: Path | None) -> None:
        if env_file is None:
            folder = Path(tempfile.mkdtemp(prefix="rmsops-demo-"))
            self._push("temp dir", lambda: shutil.rmtree(folder, ignore_errors=True))
            env_file = folder / "demo.yaml"
        path = Path(env_file)
        self._push("environment file", lambda: path.unlink(missing_ok=True))
        assert self.postgres is not None
        envfile.write(path, envfile.render(spec.name, self.endpoint_url, self.postgres.port, self.health_urls,
                                           self.extra_settings))
        self.env_file = path
        self.progress(f"environment file {path}")

    # --- helpers --------------------------------------------------------------------------------

    def _phase(self, key: str, message: str | None, run: Callable[[], str | None]) -> None:
        began = time.monotonic()
        said = run()
        self.timings[key] = time.monotonic() - began
        self.progress(f"{message or said}… {self.timings[key]:.1f} s")

    def _push(self, name: str, cleanup: Callable[[], None]) -> None:
        self._cleanups.append((name, cleanup))

    def _claim(self) -> None:
        global _active
        with _active_lock:
            if _active is not None and _active is not self:
                raise UserError("a demo environment is already running in this process; stop it first")
            _active = self

    def _release(self) -> None:
        global _active
        with _active_lock:
            if _active is self:
                _active = None


def serve(scenario: str = scenarios.DEFAULT_SCENARIO, env_file: Path | None = None,
          progress: Progress | None = None) -> DemoEnvironment:
    """Start the demo; the caller keeps it alive and calls ``stop()`` (the CLI on Ctrl-C/SIGTERM)."""
    return DemoEnvironment(progress=progress).start(scenario, env_file)
