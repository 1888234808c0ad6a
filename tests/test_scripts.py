"""The guide's entry points keep working: ``scripts/daily-health-check.sh`` is ``rmsops check``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "daily-health-check.sh"


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "RMSOPS": str(Path(sys.executable).with_name("rmsops")),
           "RMSOPS_HEALTH_DIR": str(tmp_path / "health")}
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=180)


def _saved(result: subprocess.CompletedProcess) -> Path:
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("full output: "), result.stdout
    return Path(last.removeprefix("full output: "))


def test_the_daily_health_check_prints_the_problems_and_keeps_every_finding(demo_incident, tmp_path):
    result = _run(tmp_path, str(demo_incident.env_file))
    assert result.returncode == 1  # as `rmsops check`: critical findings in the incident
    saved = _saved(result)
    assert saved.parent == tmp_path / "health" and saved.name.endswith("-demo.txt")
    full = saved.read_text()
    shown = result.stdout
    assert "  OK " in full and "  OK " not in shown  # ok findings are in the file, not on the screen
    assert "CRITICAL app.alb.5xx" in shown and "VERDICT" in shown and "CRITICAL app.alb.5xx" in full


def test_the_daily_health_check_passes_on_the_exit_status_of_bad_input(tmp_path):
    result = _run(tmp_path, "no-such-environment")
    assert result.returncode == 2
    assert "unknown environment 'no-such-environment'" in _saved(result).read_text()
    assert "unknown environment" in result.stdout
