"""``rmsops demo``: start the demo environment, triage it (or serve it), stop everything."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rmsops.core import config, runbooks
from rmsops.core.errors import UserError
from rmsops.core.findings import Severity
from rmsops.demo import layout
from rmsops.demo.environment import DemoEnvironment
from rmsops.execution.zygote import Zygote


def _say(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


@contextmanager
def _terminate_as_exit() -> Iterator[None]:
    """SIGTERM stops the demo as Ctrl-C does, so its cleanup runs (the default action would orphan
    PostgreSQL)."""
    def handler(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def demo(scenario: str = "incident", serve: bool = False, output: Path = Path("reports/demo"),
         env_file: Path | None = None, lab: bool = False, region: str = layout.REGION, workers: int = 0,
         target_groups: int = layout.ALB_TARGET_GROUPS) -> int:
    """Exit 0 when the demo ran end to end (its findings are the point, not a failure).

    ``workers``: that many small, healthy worker services (rms-worker-01 …) besides the two behind the ALB.
    ``target_groups``: the ALB's; each beyond the two services' puts one more worker behind the ALB.
    """
    if lab:
        serve = True
    layout.use_region(region)
    try:
        layout.use_workers(workers, target_groups)
    except ValueError as exc:
        raise UserError(f"demo: {exc}") from None
    started = time.monotonic()
    estate = f", {workers} worker service{'s' if workers != 1 else ''}" if workers else ""
    if target_groups != layout.ALB_TARGET_GROUPS:
        estate += f", {target_groups} target groups"
    print(f"rmsops demo: starting the demo environment (scenario {scenario}, region {region}{estate})…",
          file=sys.stderr, flush=True)
    environment = DemoEnvironment(progress=_say)
    zygote = None if serve else Zygote().start()  # warms up the kernels while the demo starts
    with _terminate_as_exit():
        try:
            environment.start(scenario, env_file=_serve_path(env_file) if serve else None)
            if serve:
                return _serve(environment, lab)
            return _triage(environment, output, started, zygote)
        except KeyboardInterrupt:  # serving ends so; a demo triage cut short could not run: exit 3
            print("rmsops demo: interrupted; stopping everything it started", file=sys.stderr)
            return 0 if serve else 3
        finally:
            if zygote:
                zygote.stop()
            environment.stop()
            if serve and environment.env_file:
                environment.env_file.unlink(missing_ok=True)  # only valid while it runs


def _serve_path(env_file: Path | None) -> Path:
    if env_file:
        return env_file
    folder = config.parameters_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "demo.yaml"


def _triage(environment: DemoEnvironment, output: Path, started: float, zygote) -> int:
    from rmsops.core.window import resolve
    from rmsops.execution import bundle, triage
    from rmsops.render.progress import Progress
    from rmsops.render.terminal import print_findings, print_tally, print_verdict

    settings = config.load(environment.env_file)
    print("rmsops demo: triaging it with every runbook…", file=sys.stderr, flush=True)
    selected = [*triage.default_selection(), runbooks.find(triage.ESCALATION)]
    window = resolve("1h")
    progress = Progress([rb.stem for rb in selected], title=f"rmsops triage demo ({environment.scenario.name})")
    result = triage.run(settings, window, output, selected, force=True, zygote=zygote, progress=progress)
    print()
    print_findings(result.findings, show_ok=False, most_urgent_last=True)
    print_tally(result.findings)
    print_verdict(result.findings)
    print(f"\nreport:   {result.index}")
    print(f"findings: {result.findings_json}")
    print(f"bundle:   {result.zip}")
    print(f"manifest sha256: {bundle.manifest_digest(result.folder)}")
    print(f"(demo took {time.monotonic() - started:.1f} s; everything it started is stopped)")
    failed = any(f.severity == Severity.ERROR for f in result.findings)
    return 3 if failed else 0


def _serve(environment: DemoEnvironment, lab: bool) -> int:
    env_file = environment.env_file
    for line in environment.summary():
        _say(line)
    print(f"\nrmsops demo: serving. Environment file: {env_file}", flush=True)
    print("  try:  rmsops check -e demo    or    "
          f"papermill notebooks/01-application-not-responding.ipynb out.ipynb -p env {env_file}",
          flush=True)
    if lab:
        return _lab(env_file)
    print("  Ctrl-C stops it.", flush=True)
    while True:
        # Short naps: a signal delivered to another thread only sets a flag that the main thread
        # checks when it wakes, so a long sleep would leave Ctrl-C and SIGTERM unanswered.
        time.sleep(0.25)


def lab_command() -> list[str]:
    """JupyterLab on the runbooks, on this machine only; as root (a container, a CI box) it must be told."""
    command = [sys.executable, "-m", "jupyterlab", "--notebook-dir", str(runbooks.notebooks_dir()),
               "--ip", "127.0.0.1"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    if not os.environ.get("DISPLAY"):
        command.append("--no-browser")  # nothing to open it in: the address is printed instead
    return command


def _lab(env_file: Path) -> int:
    """JupyterLab on notebooks/, with env="demo" resolving to the served environment file."""
    env = {**os.environ, "RMSOPS_PARAMETERS_DIR": str(env_file.parent)}
    command = lab_command()
    print("  JupyterLab: open the http://127.0.0.1:…/lab?token=… address it prints below; Ctrl-C stops both.",
          flush=True)
    try:
        return subprocess.call(command, env=env)
    except FileNotFoundError:
        raise UserError("JupyterLab is not installed; run `make lab` (it installs it)") from None
