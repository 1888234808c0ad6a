"""How fast is a triage? (a) the stock papermill command over each runbook one after another,
(b) `rmsops triage`, (c) `rmsops check` over the same runbooks (the checks alone: the floor).

    .venv/bin/python benchmarks/triage.py [--scenario incident] [--jobs 4] [--repeat 3]

Runs against the embedded demo (served in a subprocess). Prints wall times, the ratios a/b and
b/c against the targets (a/b >= 5, b/c <= 2), the time until the first finding was shown, and
the AWS API calls each made (counted through RMSOPS_API_LOG, one line per call, in every process).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))


def serve_demo(scenario: str, folder: Path) -> tuple[subprocess.Popen, Path]:
    env_file = folder / "demo.yaml"
    process = subprocess.Popen([str(BIN / "rmsops"), "demo", "--serve", "--scenario", scenario,
                                "--env-file", str(env_file)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while not env_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the demo did not start")
        time.sleep(0.2)
    return process, env_file


def timed(command: list[str], api_log: Path, **kw) -> tuple[float, subprocess.CompletedProcess, Counter]:
    api_log.write_text("")
    env = {**os.environ, "RMSOPS_API_LOG": str(api_log)}
    began = time.monotonic()
    done = subprocess.run(command, env=env, capture_output=True, text=True, **kw)
    seconds = time.monotonic() - began
    return seconds, done, Counter(api_log.read_text().split())


def main() -> None:
    from rmsops.core import runbooks
    from rmsops.execution import triage

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="incident")
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3, help="runs of (b) and (c), in turns; medians quoted")
    args = parser.parse_args()
    selected = [*triage.default_selection(), runbooks.find(triage.ESCALATION)]
    work = Path(tempfile.mkdtemp(prefix="rmsops-bench-"))
    demo, env_file = serve_demo(args.scenario, work)
    api_log = work / "api.log"
    try:
        # (a) the stock papermill command, one runbook after another
        a_seconds, a_calls = 0.0, Counter()
        for rb in selected:
            seconds, done, calls = timed([str(BIN / "papermill"), "--no-progress-bar", str(rb.notebook),
                                          str(work / f"a-{rb.stem}.ipynb"), "-p", "env", str(env_file)],
                                         api_log, cwd=work)
            a_seconds += seconds
            a_calls += calls
            status = "ok" if done.returncode == 0 else f"exit {done.returncode}"
            print(f"  (a) {rb.stem:34} {seconds:6.1f} s  {status}", flush=True)
        # (b) rmsops triage and (c) rmsops check over the same runbooks (the checks alone), taken in
        # turns --repeat times: the median of each is quoted, so one noisy run does not decide.
        b_runs, c_runs, firsts = [], [], []
        for turn in range(args.repeat):
            bundle_dir = work / f"bundle-{turn}"
            b_run = timed([str(BIN / "rmsops"), "triage", "-e", str(env_file), "-o", str(bundle_dir),
                           "--jobs", str(args.jobs)], api_log)
            b_runs.append(b_run)
            firsts.append(json.loads((bundle_dir / "manifest.json").read_text()).get("first_finding_seconds"))
            c_runs.append(timed([str(BIN / "rmsops"), "check", "-e", str(env_file),
                                 *[rb.stem for rb in selected if rb.stem != triage.ESCALATION]], api_log))
            print(f"  turn {turn + 1}: (b) {b_run[0]:5.1f} s  (c) {c_runs[-1][0]:5.1f} s  "
                  f"first finding {firsts[-1]} s", flush=True)
        b_seconds, done, b_calls = sorted(b_runs, key=lambda run: run[0])[len(b_runs) // 2]
        c_seconds, _, c_calls = sorted(c_runs, key=lambda run: run[0])[len(c_runs) // 2]
        first = sorted(f for f in firsts if f is not None)[len(firsts) // 2] if any(firsts) else None
    finally:
        demo.send_signal(signal.SIGINT)
        demo.wait(timeout=60)
    runbook_count = len(selected)
    print(f"\nruntime: {runbook_count} runbooks, demo scenario {args.scenario}, {os.cpu_count()} cores\n")
    print(f"(a) stock papermill, one by one   {a_seconds:7.1f} s   {sum(a_calls.values()):5d} AWS calls")
    print(f"(b) rmsops triage --jobs {args.jobs:<2}       {b_seconds:7.1f} s   {sum(b_calls.values()):5d} AWS calls"
          f"   (exit {done.returncode})")
    print(f"(c) rmsops check (the floor)      {c_seconds:7.1f} s   {sum(c_calls.values()):5d} AWS calls")
    print(f"\na/b = {a_seconds / b_seconds:5.2f}x   (target >= 5x)")
    print(f"b/c = {b_seconds / c_seconds:5.2f}x   (target <= 2x)")
    print(f"first finding shown after {first} s   (target <= 3 s; from the command's start, median)")
    print(f"(b) and (c) are medians of {args.repeat} runs taken in turns: "
          f"(b) {', '.join(f'{r[0]:.1f}' for r in b_runs)} s; (c) {', '.join(f'{r[0]:.1f}' for r in c_runs)} s")
    print(f"\nmost frequent AWS calls in (b): {', '.join(f'{k} {v}' for k, v in b_calls.most_common(6))}")


if __name__ == "__main__":
    main()
