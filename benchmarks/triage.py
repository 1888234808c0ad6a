"""How fast is rmsops against the physical floor? Every row of issue 12's table, in one run.

    .venv/bin/python benchmarks/triage.py [--scenario incident] [--jobs 4] [--repeat 3] [--workers 10]
                                          [--skip-papermill]

Serves the demo twice (the 2-service estate and the same with --workers more services), then
measures side by side, in turns, medians of --repeat:

* the import floor: a new Python importing pandas, matplotlib.pyplot, boto3 and psycopg (5 times
  at the start and twice in every turn, beside the runs it is the floor of; the median of all);
* (a) the stock papermill command over the 17 runbooks one after another (once: minutes);
* (b) `rmsops triage`, with the first finding timed as it appears on a terminal (a pty);
* (c) `rmsops check` over the same runbooks 01-16 (the checks alone, no notebooks), and the same on
  the healthy demo, which has no dependency that is slow on purpose (the incident's payment
  gateway takes 2.4 s to answer, and a check that measures it must wait for it);
* (d) `rmsops triage` over the 12-service estate.

Every time runs from the process start (the command is started and waited for here). For each
it gives the AWS calls per API (counted through RMSOPS_API_LOG in every process) and the CPU the
emulator spent answering (the demo process: moto and the demo's HTTP stand-ins; read from
/proc), so that the figures can be read for a real account, where AWS does that work elsewhere.
As root, it also gives the CPU of each command with every process it started (a cgroup each run
joins: the forked runners and the warm process included, which no parent waits for).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pty
import re
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))

FLOOR_IMPORTS = "import pandas, matplotlib.pyplot, boto3, psycopg"
FIRST_LOOK = re.compile(rb"first look:")  # the live view's first-look line (rmsops.render.progress)
TICKS = os.sysconf("SC_CLK_TCK")


def serve_demo(scenario: str, folder: Path, *extra: str) -> tuple[subprocess.Popen, Path]:
    env_file = folder / "demo.yaml"
    process = subprocess.Popen([str(BIN / "rmsops"), "demo", "--serve", "--scenario", scenario,
                                "--env-file", str(env_file), *extra], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not env_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the demo did not start")
        time.sleep(0.2)
    return process, env_file


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


@dataclass
class Run:
    seconds: float
    exit_code: int
    calls: Counter = field(default_factory=Counter)
    emulator_cpu: float = 0.0
    first_finding: float | None = None
    cpu: float | None = None  # the command and every process it started (a cgroup), when measurable


class TreeCpu:
    """CPU of a command and all its descendants (forked runners included, which no parent waits
    for): a cgroup the command joins before it runs. cgroup v1's cpuacct, else v2; as root."""

    ROOTS = (Path("/sys/fs/cgroup/cpuacct"), Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup"))

    def __init__(self) -> None:
        self.group: Path | None = None
        for root in self.ROOTS:
            if (root / "cgroup.procs").exists() and os.access(root, os.W_OK):
                try:
                    self.group = root / f"rmsops-bench-{os.getpid()}-{time.monotonic_ns()}"
                    self.group.mkdir()
                    break
                except OSError:
                    self.group = None

    def join(self) -> None:
        """In the child, before it runs the command (``preexec_fn``)."""
        if self.group is not None:
            (self.group / "cgroup.procs").write_text(str(os.getpid()))

    def seconds(self) -> float | None:
        if self.group is None:
            return None
        try:
            if (self.group / "cpuacct.usage").exists():
                return int((self.group / "cpuacct.usage").read_text()) / 1e9
            usage = dict(line.split() for line in (self.group / "cpu.stat").read_text().splitlines())
            return int(usage["usage_usec"]) / 1e6
        except (OSError, KeyError, ValueError):
            return None

    def remove(self) -> None:
        if self.group is not None:
            time.sleep(0.3)  # the last forked processes leave the group as they end
            with contextlib.suppress(OSError):
                self.group.rmdir()


def timed(command: list[str], api_log: Path, demo: subprocess.Popen | None, on_terminal: bool = False,
          extra_env: dict[str, str] | None = None, **kw) -> Run:
    """Run ``command``; with ``on_terminal`` its output goes to a pty and the first look is timed."""
    api_log.write_text("")
    env = {**os.environ, "RMSOPS_API_LOG": str(api_log), "COLUMNS": "160", "LINES": "50", **(extra_env or {})}
    emulator_before = cpu_seconds(demo.pid) if demo else 0.0
    first = None
    tree = TreeCpu()
    began = time.monotonic()
    if on_terminal:
        master, slave = pty.openpty()
        process = subprocess.Popen(command, env=env, stdout=slave, stderr=slave, stdin=subprocess.DEVNULL,
                                   preexec_fn=tree.join, **kw)
        os.close(slave)
        seen = b""
        while True:
            ready, _, _ = select.select([master], [], [], 0.02)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the command closed its terminal
                    break
                if not chunk:
                    break
                if first is None:
                    seen += chunk
                    if FIRST_LOOK.search(seen):
                        first = time.monotonic() - began
            elif process.poll() is not None:
                break
        code = process.wait()
        os.close(master)
    else:
        code = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              preexec_fn=tree.join, **kw).returncode
    seconds = time.monotonic() - began
    emulator = cpu_seconds(demo.pid) - emulator_before if demo else 0.0
    time.sleep(0.2)  # a forked runner's last CPU is counted once it has ended
    cpu = tree.seconds()
    tree.remove()
    return Run(seconds, code, Counter(api_log.read_text().split()), emulator, first, cpu)


def median_run(runs: list[Run]) -> Run:
    return sorted(runs, key=lambda run: run.seconds)[len(runs) // 2]


def import_floor(times: int) -> list[float]:
    """Seconds of ``times`` new Pythons importing the floor's packages, one after another."""
    runs = []
    for _ in range(times):
        began = time.monotonic()
        subprocess.run([sys.executable, "-c", FLOOR_IMPORTS], check=True)
        runs.append(time.monotonic() - began)
    return runs


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> None:
    from rmsops.core import runbooks
    from rmsops.execution import triage

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="incident")
    parser.add_argument("--jobs", type=int, default=4, help="rmsops triage --jobs")
    parser.add_argument("--repeat", type=int, default=3, help="turns of (b), (c), (d); medians quoted")
    parser.add_argument("--workers", type=int, default=10, help="services added for the larger estate (d)")
    parser.add_argument("--skip-papermill", action="store_true", help="leave out (a), which takes minutes")
    args = parser.parse_args()
    # As installed: pip compiles a wheel's modules, an editable checkout is compiled here (else,
    # where PYTHONDONTWRITEBYTECODE is set, every process of a triage compiles rmsops again).
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "rmsops")], stdout=subprocess.DEVNULL,
                   check=True)
    selected = [*triage.default_selection(), runbooks.find(triage.ESCALATION)]
    diagnostics = [rb.stem for rb in selected if rb.stem != triage.ESCALATION]
    work = Path(tempfile.mkdtemp(prefix="rmsops-bench-"))
    (work / "small").mkdir()
    (work / "large").mkdir()
    (work / "healthy").mkdir()
    small, small_env = serve_demo(args.scenario, work / "small")
    large, large_env = serve_demo(args.scenario, work / "large", "--workers", str(args.workers))
    healthy, healthy_env = serve_demo("healthy", work / "healthy")
    api_log = work / "api.log"
    cache = work / "cache"  # check times (slowest first) learnt in this run only, as on a new machine
    os.environ["RMSOPS_CACHE_DIR"] = str(cache)
    try:
        # Measured again in every turn, beside the runs it is the floor of: this machine's speed
        # drifts within minutes, and a floor taken only at the start made the ratios drift with it.
        floors = import_floor(5)
        print(f"  import floor ({FLOOR_IMPORTS}): {statistics.median(floors):.2f} s", flush=True)
        a_run = None
        if not args.skip_papermill:
            a_seconds, a_calls, a_cpu = 0.0, Counter(), 0.0
            for rb in selected:
                run = timed([str(BIN / "papermill"), "--no-progress-bar", str(rb.notebook),
                             str(work / f"a-{rb.stem}.ipynb"), "-p", "env", str(small_env)], api_log, small, cwd=work)
                a_seconds += run.seconds
                a_calls += run.calls
                a_cpu += run.emulator_cpu
                print(f"  (a) {rb.stem:34} {run.seconds:6.1f} s  exit {run.exit_code}", flush=True)
            a_run = Run(a_seconds, 0, a_calls, a_cpu)
        for env_file, demo in ((small_env, small), (healthy_env, healthy)):  # learns the checks' times
            timed([str(BIN / "rmsops"), "check", "-e", str(env_file), *diagnostics], api_log, demo)
        b_runs, c_runs, d_runs, h_runs, k_runs = [], [], [], [], []
        for turn in range(args.repeat):
            b_runs.append(timed([str(BIN / "rmsops"), "triage", "-e", str(small_env), "-o", str(work / f"b-{turn}"),
                                 "--jobs", str(args.jobs)], api_log, small, on_terminal=True))
            k_runs.append(timed([str(BIN / "rmsops"), "triage", "-e", str(small_env), "-o", str(work / f"k-{turn}"),
                                 "--jobs", str(args.jobs)], api_log, small, on_terminal=True,
                                extra_env={"RMSOPS_ENGINE": "kernel"}))
            c_runs.append(timed([str(BIN / "rmsops"), "check", "-e", str(small_env), *diagnostics], api_log, small))
            d_runs.append(timed([str(BIN / "rmsops"), "triage", "-e", str(large_env), "-o", str(work / f"d-{turn}"),
                                 "--jobs", str(args.jobs)], api_log, large, on_terminal=True))
            h_runs.append(timed([str(BIN / "rmsops"), "check", "-e", str(healthy_env), *diagnostics], api_log, healthy))
            floors += import_floor(2)
            b_run, c_run, d_run, h_run = b_runs[-1], c_runs[-1], d_runs[-1], h_runs[-1]
            print(f"  turn {turn + 1}: floor {statistics.median(floors[-2:]):4.2f} s, "
                  f"(b) {b_run.seconds:5.1f} s, with kernels {k_runs[-1].seconds:5.1f} s, "
                  f"first finding {b_run.first_finding or 0:.2f} s; "
                  f"(c) {c_run.seconds:5.1f} s, healthy {h_run.seconds:5.1f} s; (d) {d_run.seconds:5.1f} s", flush=True)
    finally:
        for demo in (small, large, healthy):
            demo.send_signal(signal.SIGTERM)
        for demo in (small, large, healthy):
            demo.wait(timeout=60)
    b, c, d, h = median_run(b_runs), median_run(c_runs), median_run(d_runs), median_run(h_runs)
    k = median_run(k_runs)
    firsts = [run.first_finding for run in b_runs if run.first_finding is not None]
    first = statistics.median(firsts) if firsts else None
    print(f"\n{len(selected)} runbooks, demo scenario {args.scenario}, {os.cpu_count()} cores, "
          f"load average before: {os.getloadavg()[0]:.2f}; medians of {args.repeat} turns\n")
    floor = statistics.median(floors)
    rows = [("import floor: " + FLOOR_IMPORTS, f"{floor:.2f} s",
             f"median of {len(floors)}, {min(floors):.2f}-{max(floors):.2f} s", "")]
    rows.append(("first finding on screen (triage, from process start)",
                 f"{first:.2f} s" if first is not None else "none seen", "<= 1.0 s",
                 verdict(first is not None and first <= 1.0)))
    rows.append(("(c) rmsops check, runbooks 01-16", f"{c.seconds:.2f} s = {c.seconds / floor:.1f}x floor",
                 f"<= 1.5x floor ({1.5 * floor:.2f} s)", verdict(c.seconds <= 1.5 * floor)))
    wait = slow_dependency_seconds(args.scenario)
    if wait:
        rows.append((f"    its wait floor: a health URL of this demo answers after {wait:.1f} s",
                     f"{c.seconds:.2f} s = {c.seconds / wait:.2f}x that wait", "",
                     "the target is below it" if 1.5 * floor < wait else ""))
    rows.append(("    the same on the healthy demo (no slow dependency)",
                 f"{h.seconds:.2f} s = {h.seconds / floor:.1f}x floor",
                 f"<= 1.5x floor ({1.5 * floor:.2f} s)", verdict(h.seconds <= 1.5 * floor)))
    rows.append(("(b) rmsops triage, 17 runbooks, bundle and zip",
                 f"{b.seconds:.2f} s = {b.seconds / c.seconds:.1f}x check", f"<= 1.5x check ({1.5 * c.seconds:.2f} s)",
                 verdict(b.seconds <= 1.5 * c.seconds)))
    rows.append(("    the same with forked Jupyter kernels (RMSOPS_ENGINE=kernel)",
                 f"{k.seconds:.2f} s = {k.seconds / c.seconds:.1f}x check", "", ""))
    if a_run:
        rows.append(("(a) stock papermill, one runbook after another",
                     f"{a_run.seconds:.1f} s = {a_run.seconds / b.seconds:.1f}x triage", ">= 15x triage",
                     verdict(a_run.seconds >= 15 * b.seconds)))
    rows.append((f"(d) triage over {2 + args.workers} services",
                 f"{d.seconds:.2f} s = {d.seconds / b.seconds:.2f}x (b)", "<= 1.3x (b)",
                 verdict(d.seconds <= 1.3 * b.seconds)))
    width = max(len(row[0]) for row in rows)
    print(f"{'figure':{width}}  {'measured':28}  {'target':28}  verdict")
    for name, measured, target, met in rows:
        print(f"{name:{width}}  {measured:28}  {target:28}  {met}")
    print("\nthe emulator's share (CPU the demo process spent answering, against the command's wall time),"
          "\nand the CPU of the command with every process it started (runners, warm process):")
    for label, run in (("(a)", a_run), ("(b)", b), ("(b) kernels", k), ("(c)", c), ("(c) healthy", h), ("(d)", d)):
        if run:
            tree = f"; rmsops {run.cpu:5.2f} s of CPU" if run.cpu is not None else ""
            print(f"  {label:11} {run.emulator_cpu:5.2f} s of CPU in {run.seconds:6.2f} s "
                  f"({100 * run.emulator_cpu / run.seconds:4.1f}%), {sum(run.calls.values())} AWS calls{tree}")
    print_cpu_floors(((f"(c) <= {1.5 * floor:.2f} s", c, 1.5 * floor), (f"(b) <= {1.5 * c.seconds:.2f} s", b,
                                                                      1.5 * c.seconds)))
    print("\nall times of the turns: " + "; ".join(
        f"{label} {', '.join(f'{r.seconds:.2f}' for r in runs)}" for label, runs in
        (("(b)", b_runs), ("(b) kernels", k_runs), ("(c)", c_runs), ("(c) healthy", h_runs), ("(d)", d_runs)))
          + f"; first finding {', '.join(f'{f:.2f}' for f in firsts)}; import floor "
          + ", ".join(f"{f:.2f}" for f in floors))
    apis = sorted(set().union(*(run.calls for run in (a_run, b, c, d) if run)))
    print(f"\nAWS calls per API{'':29}  {'(a)':>5} {'(b)':>5} {'(c)':>5} {'(d)':>5}")
    for api in apis:
        print(f"  {api:44} " + " ".join(f"{(run.calls[api] if run else 0):5d}" for run in (a_run, b, c, d)))
    print(f"  {'total':44} " + " ".join(f"{(sum(run.calls.values()) if run else 0):5d}" for run in (a_run, b, c, d)))
    print(f"\nexit codes: (b) {b.exit_code}, (c) {c.exit_code}, (d) {d.exit_code} (1 = criticals found: expected)")


def slow_dependency_seconds(scenario: str) -> float:
    """How long the scenario's slowest third-party health URL takes to answer: `rmsops check` probes
    it, and cannot end before it answers (the incident's payment gateway: 2.4 s)."""
    from rmsops.demo.areas import edge

    return edge.state_for(scenario).payment_delay_seconds


def print_cpu_floors(targets: tuple[tuple[str, Run, float], ...]) -> None:
    """The other floor: no run ends before the CPU it spent (ours and the emulator's) could be
    spread over every core. A target below it needs less CPU, not better overlap: say how much."""
    cores = os.cpu_count() or 1
    known = [(label, run, goal) for label, run, goal in targets if run and run.cpu is not None]
    if not known:
        return
    print(f"\nthe CPU floor (CPU of the command's processes and the emulator, spread over {cores} cores):")
    for label, run, goal in known:
        spent = run.cpu + run.emulator_cpu
        print(f"  {label:16} {spent:5.2f} s of CPU -> floor {spent / cores:5.2f} s; measured {run.seconds:5.2f} s "
              f"= {run.seconds / (spent / cores):.2f}x its floor; the target fits in at most "
              f"{goal * cores:5.2f} s of CPU ({100 * goal * cores / spent:3.0f}% of today's)")


if __name__ == "__main__":
    main()
