"""Bad input, across the commands: one clear line, exit 2, nothing run, nothing written or overwritten.

test_cli.py covers `run` and `check` (unknown environment or runbook, `-p` names and types, windows);
this suite covers the rest of the command line: `triage`, `action`, `verify`, `diff`, and
environment files with a mistyped key.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pytest

from rmsops import cli

ROOT = Path(__file__).resolve().parent.parent


def _zygote_folders() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("rmsops-zygote-*")}


@pytest.fixture
def env(env_file):
    return str(env_file())


CASES = [
    (["triage", "-e", "{env}", "-o", "{out}", "--runbook", "99"], "unknown runbook '99'"),
    (["triage", "-e", "nowhere", "-o", "{out}"], "unknown environment 'nowhere'"),
    (["triage", "-e", "{env}", "-o", "{out}", "--jobs", "0"], "--jobs must be at least 1"),
    (["triage", "-e", "{env}", "-o", "{out}", "-p", "nonsense=1"], "unknown threshold 'nonsense'"),
    (["triage", "-e", "{env}", "-o", "{out}", "--start", "2026-11-28T20:00:00Z", "--end", "2026-11-28T19:00:00Z"],
     "not before end"),
    (["triage", "-e", "{env}", "-o", "{out}", "--end", "2099-01-01T00:00:00Z"], "in the future"),
    (["triage", "-e", "{typo}", "-o", "{out}"], "did you mean 'database'"),
    (["triage", "-e", "{malformed}", "-o", "{out}"], "malformed YAML"),
    (["action", "force-new-deployment", "-e", "{env}", "--service", "rms-backend", "-a", "novalue"],
     "expected NAME=VALUE"),
    (["action", "teleport", "-e", "{env}"], "unknown action"),
    (["verify", "{out}"], "is not a folder"),
    (["diff", "{out}", "{out}"], "not a triage bundle"),
]


@pytest.mark.parametrize(("argv", "pattern"), CASES, ids=[f"{c[0][0]}-{i}" for i, c in enumerate(CASES)])
def test_bad_input_is_one_line_exit_2_and_nothing_is_run_or_written(capsys, tmp_path, env, argv, pattern):
    typo = tmp_path / "typo.yaml"
    typo.write_text(Path(env).read_text().replace("database:", "databse:"))
    malformed = tmp_path / "malformed.yaml"
    malformed.write_text("name: [oops\n")
    out = tmp_path / "out"
    args = [a.format(env=env, out=out, typo=typo, malformed=malformed) for a in argv]
    before = _zygote_folders()
    began = time.monotonic()
    code = cli.main(args)
    _, err = capsys.readouterr()
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("rmsops: error: "), err
    assert pattern in lines[0], lines[0]
    assert "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".out.partial-*")), "nothing may be written"
    assert _zygote_folders() <= before, "no kernel was started for bad input"
    assert time.monotonic() - began < 10


def test_an_existing_bundle_is_left_exactly_as_it_was(capsys, tmp_path, env):
    out = tmp_path / "inc-42"
    out.mkdir()
    (out / "evidence.txt").write_text("do not touch")
    code = cli.main(["triage", "-e", env, "-o", str(out)])
    _, err = capsys.readouterr()
    assert code == 2 and "--force" in err
    assert [p.name for p in out.iterdir()] == ["evidence.txt"]
    assert (out / "evidence.txt").read_text() == "do not touch"
