"""How long does a fleet triage take for 1, 2 and 4 environments?

    .venv/bin/python benchmarks/fleet.py [--sizes 1 2 4] [--repeat 1]

Serves the demo incident once and copies its environment file under the names demo-a, demo-b, …
(all pointing at the one served demo), then times `rmsops triage -e demo-a -e demo-b … -o DIR`
from the process start for each fleet size, and prints its exit code and every environment's
escalation level from the fleet's findings.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.triage import BIN, serve_demo  # noqa: E402


def environment_copies(env_file: Path, count: int) -> list[Path]:
    """The served demo's environment file under ``count`` other names."""
    text = env_file.read_text()
    copies = []
    for letter in string.ascii_lowercase[:count]:
        copy = env_file.with_name(f"demo-{letter}.yaml")
        copy.write_text(text.replace("\nname: demo\n", f"\nname: demo-{letter}\n"))
        copies.append(copy)
    return copies


def fleet_triage(environments: list[Path], out: Path) -> tuple[float, int, dict[str, object]]:
    command = [str(BIN / "rmsops"), "triage", "-o", str(out)]
    for env in environments:
        command += ["-e", str(env)]
    began = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.monotonic() - began
    levels: dict[str, object] = {}
    findings = out / "findings.json"
    if findings.exists():
        for member in json.loads(findings.read_text()).get("environments", []):
            levels[member.get("environment", "?")] = member.get("escalation_level")
    return seconds, done.returncode, levels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--repeat", type=int, default=1)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rmsops-fleet-bench-") as tmp:
        demo, env_file = serve_demo("incident", Path(tmp))
        try:
            copies = environment_copies(env_file, max(options.sizes))
            for size in options.sizes:
                runs = [fleet_triage(copies[:size], Path(tmp) / f"fleet-{size}-{turn}")
                        for turn in range(options.repeat)]
                median = statistics.median(seconds for seconds, _, _ in runs)
                _, code, levels = runs[-1]
                detail = f"escalation levels {levels}" if levels else "one environment: a plain bundle"
                print(f"{size} environment(s): {median:.1f} s (median of {len(runs)}), exit {code}, {detail}")
        finally:
            demo.terminate()
            demo.wait(60)


if __name__ == "__main__":
    main()
