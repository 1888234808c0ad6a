"""How long do `rmsops check` and `rmsops triage` take when AWS throttles every call?

    .venv/bin/python benchmarks/throttled.py [--repeat 1]

Serves the demo incident, then points a copy of its environment at tests/throttled_aws.py, an
endpoint on 127.0.0.1 that answers every AWS call with a throttling error in the service's own
protocol (the database stays reachable). Times each command from the process start, prints its
exit code, its error findings and the AWS calls it made, against the targets (check <= 60 s,
triage <= 90 s, exit 3). For comparison it also times `rmsops check` with AWS answering.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.triage import BIN, serve_demo  # noqa: E402
from tests.throttled_aws import ThrottlingServer  # noqa: E402

TARGETS = {"check": 60.0, "triage": 90.0}


def timed(command: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    began = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True)
    return time.monotonic() - began, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, help="runs of each command; medians quoted")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rmsops-throttled-"))
    demo, env_file = serve_demo("incident", work)
    try:
        settings = yaml.safe_load(env_file.read_text())
        rows = []
        seconds, _ = timed([str(BIN / "rmsops"), "check", "-e", str(env_file)])
        rows.append(("check, AWS answering", seconds, None, "", ""))
        with ThrottlingServer() as server:
            settings["aws"]["endpoint_url"] = server.url
            throttled = work / "throttled.yaml"
            throttled.write_text(yaml.safe_dump(settings))
            for name in ("check", "triage"):
                times, calls = [], []
                for n in range(args.repeat):
                    server.calls.clear()
                    command = [str(BIN / "rmsops"), name, "-e", str(throttled)]
                    command += ["--json"] if name == "check" else ["-o", str(work / f"bundle-{n}")]
                    seconds, done = timed(command)
                    times.append(seconds)
                    calls.append(sum(server.calls.values()))
                findings = (json.loads(done.stdout)["findings"] if name == "check"
                            else json.loads((work / f"bundle-{n}" / "findings.json").read_text())["findings"])
                errors = [f for f in findings if f["severity"] == "error"]
                said = sum("AWS throttled" in f["detail"] for f in errors)
                rows.append((f"{name}, every AWS call throttled", statistics.median(times), done.returncode,
                             f"{len(errors)} error findings ({said} say AWS throttled), {len(findings)} in all",
                             f"{statistics.median(calls):.0f} AWS calls; top: "
                             + ", ".join(f"{k} {v}" for k, v in server.calls.most_common(4))))
    finally:
        demo.terminate()
        demo.wait(timeout=60)
    print(f"{'':38} {'seconds':>8} {'target':>7} {'exit':>5}")
    for label, seconds, code, findings, calls in rows:
        target = next((f"<= {v:g}" for k, v in TARGETS.items() if label.startswith(k) and "throttled" in label), "")
        print(f"{label:38} {seconds:8.1f} {target:>7} {'' if code is None else code:>5}  {findings}")
        if calls:
            print(f"{'':38} {calls}")


if __name__ == "__main__":
    main()
