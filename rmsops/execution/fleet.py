"""Fleet triage: several environments (and regions) at once, one bundle each, one fleet index.

``rmsops triage -e A -e B -o DIR`` (or ``--fleet FILE``) runs one ``rmsops triage`` per member as
a child process, within a bound: ``--jobs`` is shared across the fleet, so at most ``jobs``
runbooks run at once in all. Each child writes ``DIR/<member>/`` (its bundle, exactly as a single
triage writes it) and its terminal output to ``DIR/<member>.log``. One member that cannot run
(credentials, an unreachable endpoint, a broken environment file) is an error row in the fleet
index, never the end of the fleet run. The window is resolved once, so every member looks at
the same minutes.

Children rather than threads: a triage owns its process (signal handlers, a warm zygote, the run's
time budget), and a member that crashes or hangs takes nothing else with it.
"""

from __future__ import annotations

import html
import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from rmsops.core import config
from rmsops.core.errors import UserError
from rmsops.core.findings import Finding, Severity, iso, read_document, sort_by_urgency
from rmsops.core.window import Window
from rmsops.render.report import STYLE, badge, clean, esc

FINDINGS_SCHEMA = "rmsops.fleet-findings/1"
ESCALATION = "escalation.level"
PRECEDENCE = (0, 3, 2, 1)  # escalation levels, the most serious first (rmsops.checks.escalation)
CHILD_EXIT = {0: "ok", 1: "problems found", 2: "bad input", 3: "could not run everything"}


@dataclass(frozen=True)
class Member:
    """One environment of the fleet, in one region (None: the environment file's own)."""

    env: str  # a name in parameters/ or a path, as `-e` takes it
    region: str | None = None
    label: str = ""  # the bundle's folder name under the fleet folder

    def args(self) -> list[str]:
        return ["-e", self.env, *(["--region", self.region] if self.region else [])]


@dataclass
class MemberResult:
    member: Member
    exit_code: int | None = None  # None: it did not start
    seconds: float = 0.0
    error: str = ""  # why there is no usable bundle
    findings: list[Finding] = field(default_factory=list)
    environment: str = ""
    status: str = ""  # the bundle's: complete | incomplete

    @property
    def folder_name(self) -> str:
        return self.member.label

    @property
    def escalation(self) -> Finding | None:
        return next((f for f in self.findings if f.check == ESCALATION), None)

    @property
    def level(self) -> int | None:
        found = self.escalation
        level = found.evidence.get("level") if found else None
        return level if isinstance(level, int) else None

    @property
    def worst(self) -> Finding | None:
        """The most urgent problem besides the escalation verdict itself."""
        ranked = sort_by_urgency(f for f in self.findings if f.check != ESCALATION)
        return ranked[0] if ranked and ranked[0].severity != Severity.OK else None


# --- who is in the fleet ----------------------------------------------------------------------------

def members(envs: Sequence[str], fleet_file: str | None, region: str | None = None) -> list[Member]:
    """``-e`` values and the fleet file's entries, each with a unique folder name; ``region``
    (``--region``) for those that name none."""
    found = [Member(env) for env in envs]
    if fleet_file:
        found += read_fleet(Path(fleet_file))
    if not found:
        raise UserError("name an environment with -e, or a fleet with --fleet FILE")
    if region:
        config.check_region(region)
        found = [m if m.region else Member(m.env, region) for m in found]
    for member in found:
        if member.region:
            config.check_region(member.region)
    return _labelled(found)


def read_fleet(path: Path) -> list[Member]:
    """A YAML list (or ``environments:`` list) of names/paths, or of ``{env: X, regions: [..]}``.
    Relative paths are relative to the fleet file."""
    try:
        raw = config.read_yaml(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"--fleet {path}: cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise UserError(f"--fleet {path}: malformed YAML{where}") from None
    entries = raw.get("environments") if isinstance(raw, dict) else raw
    if not isinstance(entries, list) or not entries:
        raise UserError(f"--fleet {path}: expected a list of environments (names, paths, or "
                        "{env: NAME, regions: [..]}), optionally under 'environments:'")
    found: list[Member] = []
    for number, entry in enumerate(entries, 1):
        env, regions = _entry(entry, path, number)
        found += [Member(env, region) for region in regions] if regions else [Member(env)]
    return found


def _entry(entry: Any, path: Path, number: int) -> tuple[str, list[str]]:
    if isinstance(entry, str) and entry.strip():
        return _relative(entry.strip(), path), []
    if isinstance(entry, dict) and isinstance(entry.get("env"), str) and set(entry) <= {"env", "regions"}:
        regions = entry.get("regions") or []
        if not isinstance(regions, list) or not all(isinstance(r, str) and r.strip() for r in regions):
            raise UserError(f"--fleet {path}: entry {number}: regions: expected a list of region names")
        return _relative(entry["env"].strip(), path), [r.strip() for r in regions]
    raise UserError(f"--fleet {path}: entry {number}: expected a name, a path or {{env: NAME, regions: [..]}}, "
                    f"got {type(entry).__name__}")


def _relative(env: str, fleet_file: Path) -> str:
    """A path in the fleet file is relative to it; a bare name is looked up as `-e` does."""
    if env.endswith((".yaml", ".yml")) or "/" in env:
        return str((fleet_file.parent / Path(env).expanduser()).resolve())
    return env


def _labelled(found: list[Member]) -> list[Member]:
    """Folder names from the environments' own names (and regions), unique within the fleet."""
    labelled: list[Member] = []
    used: set[str] = set()
    for member in found:
        base = _safe(_name_of(member.env)) + (f"-{_safe(member.region)}" if member.region else "")
        label, n = base, 2
        while label in used:
            label, n = f"{base}-{n}", n + 1
        used.add(label)
        labelled.append(Member(member.env, member.region, label))
    return labelled


def _name_of(env: str) -> str:
    """The environment file's ``name:``; its file name when the file cannot be read (it will be an
    error row, with the reason, once it runs)."""
    try:
        return config.load(env).name
    except UserError:
        return Path(env).stem or "environment"


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")[:60] or "environment"


# --- running it -------------------------------------------------------------------------------------

def shares(member_count: int, jobs: int) -> tuple[int, int]:
    """(members at once, runbooks at once in each): never more than ``jobs`` runbooks in all."""
    at_once = max(1, min(member_count, jobs))
    return at_once, max(1, jobs // at_once)


def run(fleet: list[Member], out: Path, window: Window, jobs: int, passed: Sequence[str],
        tell: Callable[[str], None]) -> list[MemberResult]:
    """Triage every member (``passed``: options for each `rmsops triage`); the results in fleet order.

    A member whose environment file is broken is an error row at once and takes no share of
    ``jobs``. Ctrl-C or SIGTERM (as KeyboardInterrupt, ``rmsops.execution.interrupts``): the
    running triages get SIGTERM and write their bundles, marked incomplete; members not started
    yet are error rows."""
    results = {member.label: _unreadable(member) for member in fleet}
    ready = [member for member in fleet if results[member.label] is None]
    at_once, each = shares(len(ready), jobs)
    tell(f"{len(ready)} environments, {at_once} at a time, {each} runbook(s) at once in each"
         + (f"; {len(fleet) - len(ready)} cannot be read" if len(ready) < len(fleet) else ""))
    args = ["--start", iso(window.start), "--end", iso(window.end), "--jobs", str(each), *passed]
    runs = _Runs()
    pool = ThreadPoolExecutor(max_workers=at_once, thread_name_prefix="rmsops-fleet")
    futures = {member.label: pool.submit(runs.triage, member, out, args, tell) for member in ready}
    for label, future in futures.items():
        while True:
            try:
                results[label] = future.result()
                break
            except KeyboardInterrupt:
                tell("interrupted: the running triages write their bundles (marked incomplete)")
                runs.stop()
    pool.shutdown()
    return [results[member.label] for member in fleet]


def _unreadable(member: Member) -> MemberResult | None:
    """An error row for a member whose environment file cannot be used; None when it can."""
    try:
        config.in_region(config.load(member.env), member.region or "")
    except UserError as exc:
        return MemberResult(member, exit_code=2, error=clean(str(exc), 300))
    return None


class _Runs:
    """The children of one fleet run, so that a signal can reach them all."""

    def __init__(self) -> None:
        self._children: set[subprocess.Popen] = set()
        self._lock = threading.Lock()
        self.stopped = False

    def stop(self) -> None:
        with self._lock:
            self.stopped = True
            for child in self._children:
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)

    def triage(self, member: Member, out: Path, args: list[str], tell: Callable[[str], None]) -> MemberResult:
        result = MemberResult(member)
        command = [sys.executable, "-m", "rmsops.cli", "triage", *member.args(), "-o", str(out / member.label),
                   *args]
        started = time.monotonic()
        with (out / f"{member.label}.log").open("w", encoding="utf-8") as log, self._lock:
            if self.stopped:
                result.error = "not started: the fleet run was interrupted"
                return result
            # Its own session: the fleet passes a Ctrl-C on itself, once, as SIGTERM.
            child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
            self._children.add(child)
        tell(f"{member.label}: started")
        result.exit_code, result.seconds = child.wait(), time.monotonic() - started
        _read_bundle(result, out)
        level = "" if result.level is None else f", escalation level {result.level}"
        said = result.error or CHILD_EXIT.get(result.exit_code, f"exit {result.exit_code}")
        tell(f"{member.label}: {said}{level} ({result.seconds:.1f} s)")
        return result


def _read_bundle(result: MemberResult, out: Path) -> None:
    folder = out / result.member.label
    try:
        document, result.findings = read_document(folder / "findings.json")
        result.environment = str(document.get("environment", ""))
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        result.status = str(manifest.get("status", ""))
    except (OSError, ValueError, KeyError, TypeError):
        result.error = _last_error(out / f"{result.member.label}.log") or "no bundle was written"


def _last_error(log: Path) -> str:
    """The child's own one-line reason (``rmsops: error: …``), for the error row."""
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    said = [line.removeprefix("rmsops: error: ") for line in lines if line.startswith("rmsops: ")]
    return said[-1][:300] if said else ""


def summary_line(result: MemberResult) -> str:
    """One line per environment for the terminal: its verdict and its worst problem."""
    if result.error:
        return f"{clean(result.member.label, 60):24} NOT RUN  {clean(result.error, 160)}"
    escalation, worst = result.escalation, result.worst
    verdict = (f"level {result.level}" if result.level is not None else
               worst.severity.value.upper() if worst else "OK")
    problem = f"{clean(worst.check, 40)}: {clean(worst.title, 100)}" if worst else "nothing at warning or above"
    said = f" ({clean(escalation.title, 60)})" if escalation and result.level is not None else ""
    incomplete = "" if result.status in ("", "complete") else f" [{clean(result.status, 20)}]"
    return f"{clean(result.member.label, 60):24} {verdict:9}{incomplete} {problem}{said}"


def exit_code(results: list[MemberResult]) -> int:
    """The worst of the members' (a member that did not run at all counts as 3)."""
    return max((3 if r.exit_code is None else r.exit_code for r in results), default=0)


# --- what it writes ---------------------------------------------------------------------------------

def ranked(results: list[MemberResult]) -> list[MemberResult]:
    """Errors first (nothing is known), then by escalation level, most serious first, then by criticals."""
    def key(result: MemberResult) -> tuple[int, int, int]:
        if result.error:
            return (0, 0, 0)
        level = PRECEDENCE.index(result.level) + 1 if result.level in PRECEDENCE else len(PRECEDENCE) + 1
        criticals = sum(f.severity == Severity.CRITICAL for f in result.findings)
        return (1, level, -criticals)
    return sorted(results, key=key)


def findings_document(results: list[MemberResult], window: Window) -> dict[str, Any]:
    """Every member's findings, each tagged with its environment and the member's folder."""
    tagged = []
    for result in results:
        for finding in result.findings:
            tagged.append({**finding.to_dict(), "environment": result.environment or result.member.label,
                           "member": result.member.label})
    return {"schema": FINDINGS_SCHEMA, "window": {"start": iso(window.start), "end": iso(window.end)},
            "generated_at": iso(datetime.now(UTC)),
            "environments": [{"member": r.member.label, "environment": r.environment, "region": r.member.region,
                              "exit_code": r.exit_code, "status": "error" if r.error else r.status,
                              "error": r.error, "escalation_level": r.level,
                              "bundle": f"{r.member.label}/"} for r in results],
            "findings": tagged}


def index_html(results: list[MemberResult], window: Window) -> str:
    rows = "\n".join(_row(r) for r in ranked(results))
    headline = _headline(ranked(results)[0]) if results else "no environment"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>rmsops fleet triage</title>{STYLE}</head>
<body style="font-family:sans-serif;margin:1.5em 2em"><main class="rmsops">
<h1>Fleet triage: {len(results)} environments</h1>
<p>Window {window.start:%Y-%m-%d %H:%M}–{window.end:%H:%M} UTC. Most serious: <strong>{headline}</strong></p>
<table>
<thead><tr><th>environment</th><th>escalation</th><th>worst problem</th><th>findings</th><th>run</th></tr></thead>
<tbody>
{rows}
</tbody></table>
<p>Every finding of every environment, tagged by environment: <a href="findings.json">findings.json</a>.
Each environment's own bundle is its folder; its terminal output is <code>NAME.log</code>.</p>
</main></body></html>
"""


def _headline(worst: MemberResult) -> str:
    if worst.error:
        return f"{esc(worst.member.label)}: could not be triaged"
    said = esc(worst.escalation.title) if worst.escalation else "no escalation level"
    return f"{esc(worst.member.label)}: {said}"


def _row(result: MemberResult) -> str:
    name = esc(result.member.label)
    link = f'<a href="{html.escape(result.member.label)}/index.html">{name}</a>'
    if result.error:
        return (f"<tr><td>{name}</td><td>{badge(Severity.ERROR)} not triaged</td><td colspan=\"2\">"
                f"{esc(result.error)}</td><td><a href=\"{html.escape(result.member.label)}.log\">output</a></td></tr>")
    escalation = result.escalation
    level = esc(escalation.title) if escalation else "no escalation level (runbook 18 did not run)"
    verdict = badge(escalation.severity) if escalation else ""
    worst = result.worst
    problem = f"{badge(worst.severity)} {esc(worst.check)}: {esc(worst.title)}" if worst else "none"
    counts = ", ".join(f"{sum(f.severity == s for f in result.findings)} {s.value}"
                       for s in (Severity.CRITICAL, Severity.ERROR, Severity.WARNING))
    status = "" if result.status == "complete" else f" ({esc(result.status or 'unknown')})"
    return (f"<tr><td>{link}{status}</td><td>{verdict} {level}</td><td>{problem}</td><td>{counts}</td>"
            f"<td style=\"white-space:nowrap\">{result.seconds:.1f} s</td></tr>")


def write(out: Path, results: list[MemberResult], window: Window) -> Path:
    (out / "findings.json").write_text(json.dumps(findings_document(results, window), indent=2, default=str) + "\n",
                                       encoding="utf-8")
    index = out / "index.html"
    index.write_text(index_html(results, window), encoding="utf-8")
    return index
