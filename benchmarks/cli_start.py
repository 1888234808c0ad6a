"""How fast does the command line answer? `rmsops --help`, `rmsops list` and `rmsops list --thresholds`,
each timed from process start to exit, and whether each imported anything heavy.

    .venv/bin/python benchmarks/cli_start.py [--repeat 7]

Each command runs --repeat times as a subprocess (the installed `rmsops` entry point, so the time
includes the interpreter's start-up); prints the median and the max wall time, against the target
(under 0.8 s), and the heavy modules one more run imported (pandas, boto3, matplotlib, …), found by
running the same command under `python -X importtime`. No test asserts these times.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TARGET_SECONDS = 0.8
HEAVY = ("pandas", "numpy", "boto3", "botocore", "matplotlib", "psycopg", "nbformat", "rmsops.checks",
         "rmsops.execution.runner")
COMMANDS = (["--help"], ["list"], ["list", "--thresholds"])


def entry_point() -> list[str]:
    script = BIN / "rmsops"
    return [str(script)] if script.exists() else [sys.executable, "-m", "rmsops.cli"]


def timed(argv: list[str], env: dict[str, str]) -> float:
    began = time.monotonic()
    done = subprocess.run([*entry_point(), *argv], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seconds = time.monotonic() - began
    if done.returncode != 0:
        raise SystemExit(f"rmsops {' '.join(argv)} failed: {done.stderr.decode(errors='replace').strip()}")
    return seconds


def heavy_imports(argv: list[str], env: dict[str, str]) -> list[str]:
    """The heavy top-level modules the command imported, from `python -X importtime`'s report."""
    code = "import sys; from rmsops.cli import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code, *argv], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()
                if line.startswith("import time:")}
    return [name for name in HEAVY if name in imported]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="runs of each command (default 7)")
    args = parser.parse_args()
    env = {**os.environ, "RMSOPS_PARAMETERS_DIR": str(ROOT / "parameters")}
    print(f"{'command':32} {'median':>8} {'max':>8}  target < {TARGET_SECONDS:g} s  heavy imports")
    for argv in COMMANDS:
        times = [timed(argv, env) for _ in range(args.repeat)]
        median, worst = statistics.median(times), max(times)
        verdict = "ok" if worst < TARGET_SECONDS else ("median ok" if median < TARGET_SECONDS else "SLOW")
        heavy = ", ".join(heavy_imports(argv, env)) or "none"
        print(f"{'rmsops ' + ' '.join(argv):32} {median:7.3f}s {worst:7.3f}s  {verdict:15} {heavy}")


if __name__ == "__main__":
    main()
