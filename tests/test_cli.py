"""The command line: bad input is one clear line and exit 2, with nothing run."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from rmsops import cli
from rmsops.core import runbooks, thresholds
from rmsops.core.errors import UserError
from rmsops.execution.runner import notebook_parameters, parse_overrides
from rmsops.render import listing

ROOT = Path(__file__).resolve().parent.parent
RB01 = runbooks.find("01")


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(err: str, pattern: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("rmsops: error: ")
    assert pattern in lines[0], lines[0]
    assert "Traceback" not in err


@pytest.mark.parametrize(("argv", "pattern"), [
    (["run", "01", "-e", "nowhere"], "unknown environment 'nowhere'"),
    (["run", "99", "-e", "production"], "unknown runbook '99'"),
    (["run", "01", "-e", "production", "-p", "nonsense=1"], "has no parameter 'nonsense'"),
    (["run", "01", "-e", "production", "-p", "alb_5xx_per_minute=lots"], "expected float"),
    (["run", "01", "-e", "production", "-p", "novalue"], "expected NAME=VALUE"),
    (["run", "01", "-e", "production", "-p", "env=staging"], "own option"),
    (["run", "01", "-e", "production", "--window", "1 hour"], "is not a duration"),
    (["run", "01", "-e", "production", "--start", "2026-11-28T20:00:00Z", "--end", "2026-11-28T19:00:00Z"],
     "not before end"),
    (["check", "-e", "production", "--end", "2099-01-01T00:00:00Z"], "in the future"),
    (["check", "nope", "-e", "production"], "unknown runbook 'nope'"),
    (["frobnicate"], "invalid choice"),
    (["run", "01"], "required: -e/--env"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, monkeypatch, tmp_path, argv, pattern):
    monkeypatch.setenv("RMSOPS_PARAMETERS_DIR", str(ROOT / "parameters"))
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, *argv, *(["-o", str(tmp_path / "out")] if argv[0] == "run" else []))
    assert code == 2
    assert_one_line_error(err, pattern)
    assert not (tmp_path / "out").exists(), "nothing may be written for bad input"


def test_malformed_yaml_is_exit_2(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [oops\n")
    code, _, err = run_cli(capsys, "check", "-e", str(bad))
    assert code == 2
    assert_one_line_error(err, "malformed YAML at line")


def test_missing_key_is_exit_2(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "parameters" / "staging.yaml").read_text().replace("  cluster: rms-staging\n", ""))
    code, _, err = run_cli(capsys, "check", "-e", str(bad))
    assert code == 2
    assert_one_line_error(err, "missing key 'ecs.cluster'")


def test_list_shows_runbooks_checks_and_thresholds(capsys, monkeypatch):
    monkeypatch.setenv("RMSOPS_PARAMETERS_DIR", str(ROOT / "parameters"))
    code, out, _ = run_cli(capsys, "list")
    assert code == 0
    for rb in runbooks.CATALOGUE:
        assert rb.stem in out and rb.guide_section in out
        for cid in rb.checks:
            assert cid in out
    assert "alb_5xx_per_minute" in out and "production" in out


@pytest.mark.parametrize("name", ["01", "1", "01-application-not-responding", "application-not-responding",
                                  "01-application-not-responding.ipynb"])
def test_runbooks_are_found_by_number_or_name(name):
    assert runbooks.find(name) is RB01


def test_overrides_are_typed_like_the_notebook_defaults():
    params = parse_overrides(RB01, ["alb_5xx_per_minute=20", "health_slow_seconds=0.5"])
    assert params == {"thresholds": {"alb_5xx_per_minute": 20.0, "health_slow_seconds": 0.5}}
    params = parse_overrides(RB01, ["thresholds={'alb_5xx_per_minute': 3}"])
    assert params == {"thresholds": {"alb_5xx_per_minute": 3}}
    with pytest.raises(UserError, match="expected dict"):
        parse_overrides(RB01, ["thresholds=[1]"])


def test_every_catalogue_notebook_has_the_standard_parameters():
    for rb in runbooks.CATALOGUE:
        assert rb.notebook.exists(), rb.notebook
        assert {"env", "window", "start", "end", "thresholds", "output_dir"} <= set(notebook_parameters(rb))


def test_every_catalogue_check_is_registered_and_every_registered_check_is_catalogued():
    from rmsops.core import registry

    registry.load_all()
    catalogued = {cid for rb in runbooks.CATALOGUE for cid in rb.checks}
    assert catalogued == set(registry.REGISTRY)
    for cid in catalogued:
        spec = registry.get(cid)
        assert cid in runbooks.find(spec.runbook).checks


SPEC = ROOT.parent / "shared" / "spec" / "checks.md"


@pytest.mark.skipif(not SPEC.exists(), reason="the spec (../shared/spec/checks.md) is not beside this checkout")
def test_every_check_id_of_the_spec_is_produced_by_some_runbook():
    import re

    from rmsops.core import registry

    spec_ids = set(re.findall(r"^\| `([a-z0-9_]+\.[a-z0-9_.]+)` \|", SPEC.read_text(), flags=re.MULTILINE))
    assert len(spec_ids) > 50
    registry.load_all()
    produced = {spec.id for rb in runbooks.CATALOGUE for spec in registry.for_runbook(rb.stem)}
    assert spec_ids - produced == set(), "check ids of the spec no runbook produces"
    assert produced - spec_ids == set(), "check ids not in the spec"
    assert len(runbooks.CATALOGUE) == 18


def test_the_daily_health_check_is_the_quick_checks_of_the_others():
    from rmsops.core import registry

    daily = {spec.id for spec in registry.for_runbook("17")}
    assert "app.health.endpoint" in daily and "db.connections.saturation" in daily
    assert "db.queries.slow" not in daily and "recovery.config.drift" not in daily  # heavy ones stay out
    assert not any(cid.startswith("escalation.") for cid in daily)


# --- rmsops list: from the catalogue alone, thresholds in force, pipe-safe ---------------------

LIST_MAIN = "import sys; from rmsops.cli import main; sys.exit(main(sys.argv[1:]))"


def test_list_thresholds_shows_defaults_values_in_force_and_where_they_come_from(capsys, monkeypatch):
    monkeypatch.setenv("RMSOPS_PARAMETERS_DIR", str(ROOT / "parameters"))
    code, out, err = run_cli(capsys, "list", "--thresholds")
    assert code == 0 and not err
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert set(rows) == set(thresholds.DEFAULTS)
    assert rows["missing_index_use_pct"] == ["missing_index_use_pct", "95", "95", "default"]
    code, out, _ = run_cli(capsys, "list", "--thresholds", "-e", "production", "-p", "missing_index_use_pct=90")
    assert code == 0
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert rows["missing_index_use_pct"].split() == ["missing_index_use_pct", "95", "90", "-p"]
    assert rows["db_saturation_warning_pct"].endswith("environment file")  # production.yaml sets it
    assert rows["cache_hit_rate_pct"].endswith("default")


def test_list_shows_the_summaries_with_the_thresholds_in_force(capsys):
    _, out, _ = run_cli(capsys, "list")
    assert "(≥ 10000 rows, < 95% index use)" in out
    _, out, _ = run_cli(capsys, "list", "-p", "missing_index_use_pct=90", "-p", "missing_index_min_rows=500")
    [line] = [line for line in out.splitlines() if "db.indexes.missing" in line]
    assert "(≥ 500 rows, < 90% index use)" in line


@pytest.mark.parametrize(("argv", "pattern"), [
    (["list", "-p", "nonsense=1"], "unknown threshold 'nonsense'"),
    (["list", "--thresholds", "-p", "cache_hit_rate_pct=lots"], "expected a number"),
    (["list", "-p", "novalue"], "expected NAME=VALUE"),
    (["list", "-e", "nowhere"], "unknown environment 'nowhere'"),
])
def test_list_bad_input_is_one_line_and_exit_2(capsys, monkeypatch, argv, pattern):
    monkeypatch.setenv("RMSOPS_PARAMETERS_DIR", str(ROOT / "parameters"))
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    assert_one_line_error(err, pattern)


def test_list_imports_nothing_heavy():
    heavy = ("pandas", "numpy", "boto3", "botocore", "matplotlib", "psycopg", "nbformat", "rmsops.checks",
             "rmsops.execution.runner", "rmsops.core.registry", "rmsops.actions")
    code = ("import contextlib, io, sys; from rmsops.cli import main\n"
            "for argv in (['list'], ['list', '--thresholds', '-e', 'production', '-p', 'cache_hit_rate_pct=98']):\n"
            "    with contextlib.redirect_stdout(io.StringIO()):\n"
            "        assert main(argv) == 0\n"
            f"print(','.join(m for m in {heavy!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "RMSOPS_PARAMETERS_DIR": str(ROOT / "parameters")})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"rmsops list imported {done.stdout.strip()}"


def test_list_into_head_is_quiet_and_exit_0():
    done = subprocess.run(["bash", "-c", f"set -o pipefail; '{sys.executable}' -c '{LIST_MAIN}' list | head -1"],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.stdout.startswith("01-application-not-responding")
    assert done.stderr == "" and done.returncode == 0


def test_list_into_a_closed_pipe_is_quiet_and_exit_0():
    # The reader is gone before the first write: the write fails with EPIPE every time.
    child = subprocess.Popen([sys.executable, "-c", LIST_MAIN, "list"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, cwd=ROOT)
    child.stdout.close()
    err = child.stderr.read()
    assert child.wait(timeout=60) == 0
    assert err == b""


def test_the_actions_listed_are_the_real_ones_with_their_arguments():
    import inspect

    from rmsops import actions

    assert set(listing.ACTION_ARGUMENTS) == set(actions.ACTIONS)
    for name, planner in actions.ACTIONS.items():
        params = list(inspect.signature(planner).parameters.values())[1:]
        assert listing.ACTION_ARGUMENTS[name] == tuple(
            (p.name, p.default is inspect.Parameter.empty) for p in params), name


def test_the_action_usage_listed_works_with_the_argument_parser(capsys):
    import inspect

    from rmsops import actions

    _, out, _ = run_cli(capsys, "list")
    listed = [line.strip() for line in out.splitlines() if line.strip().startswith("rmsops action ")]
    assert len(listed) == len(actions.ACTIONS)
    assert "rmsops action scale-service -e ENV --service SERVICE -a count=COUNT" in listed
    for line in listed:
        argv = shlex.split(line.replace("[", "").replace("]", ""))[1:]
        args = cli.build_parser().parse_args(argv)
        assert args.fn is cli.cmd_action and args.env == "ENV"
        arguments = dict(cli._key_value(item) for item in args.arguments)
        if args.service:
            arguments["service"] = args.service
        inspect.signature(actions.ACTIONS[args.action]).bind(None, **arguments)  # what actions.plan checks


def test_action_arguments_are_written_as_the_command_line_takes_them():
    text = listing.action_arguments({"service": "rms-backend", "count": 6})
    assert text == "--service rms-backend -a count=6"
    args = cli.build_parser().parse_args(["action", "scale-service", "-e", "x", *shlex.split(text)])
    assert args.service == "rms-backend" and args.arguments == ["count=6"]
    assert listing.action_arguments({"paths": ["/a", "/b c"]}) == "-a 'paths=/a,/b c'"


def test_the_listed_notebook_parameters_are_the_runners():
    for rb in runbooks.CATALOGUE:
        assert listing.notebook_parameter_names(rb) == list(notebook_parameters(rb)), rb.stem


# --- one command line: -p everywhere, the verdict last ---------------------------------------------

def _check_json(env_file, *extra: str) -> dict[str, set[str]]:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        cli.main(["check", "07", "-e", str(env_file), "--json", *extra])
    severities: dict[str, set[str]] = {}
    for f in json.loads(out.getvalue())["findings"]:
        severities.setdefault(f["check"], set()).add(f["severity"])
    return severities


def test_check_takes_threshold_overrides(demo_incident):
    assert _check_json(demo_incident.env_file)["db.stats.stale"] == {"warning"}  # the demo's unanalysed table
    relaxed = _check_json(demo_incident.env_file, "-p", "stale_stats_modified_pct=1e9")
    assert relaxed["db.stats.stale"] == {"ok"}


@pytest.mark.parametrize("command", [["check"], ["triage", "-o", "never-written"]])
def test_an_unknown_threshold_override_is_one_line_and_exit_2(command, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = cli.main([*command, "-e", str(ROOT / "parameters" / "production.yaml"), "-p", "slow_query_mean=5"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "slow_query_mean" in err[0] and "Traceback" not in err[0]
    assert not (tmp_path / "never-written").exists()


def test_the_terminal_ends_with_the_criticals_and_the_verdict(capsys, monkeypatch):
    from rmsops.core.findings import Finding, Severity
    from rmsops.render import terminal

    findings = [Finding("a.b.ok", Severity.OK, "r", "fine"), Finding("a.b.crit", Severity.CRITICAL, "r", "down"),
                Finding("a.b.warn", Severity.WARNING, "r", "slow"),
                Finding("escalation.level", Severity.CRITICAL, "env:x", "Level 2: page the on-call lead", "why")]
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.setenv("NO_COLOR", "1")
    terminal.print_findings(findings, show_ok=terminal.show_ok(False), most_urgent_last=True)
    terminal.print_verdict(findings)
    lines = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert [words[1] for words in lines[:2]] == ["a.b.warn", "a.b.crit"]  # no OK line on a terminal
    assert lines[-2][:2] == ["ESCALATE", "Level"] and lines[-1] == ["why"]
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False)
    assert terminal.show_ok(False) and terminal.show_ok(True)  # a pipe gets every finding


def test_without_an_escalation_the_verdict_names_the_worst(capsys):
    from rmsops.core.findings import Finding, Severity
    from rmsops.render import terminal

    terminal.print_verdict([Finding("x.y.z", Severity.WARNING, "r", "t"), Finding("x.y.w", Severity.OK, "r", "t")])
    terminal.print_verdict([Finding("x.y.w", Severity.OK, "r", "t")])
    first, second = capsys.readouterr().out.splitlines()
    assert first.split() == ["VERDICT", "WARNING:", "x.y.z"]
    assert "nothing needs attention" in second


def test_demo_help_names_every_scenario(capsys):
    from rmsops.demo.scenarios import SCENARIOS

    with pytest.raises(SystemExit):
        cli.main(["demo", "--help"])
    text = "".join(capsys.readouterr().out.split())  # help wraps lines at hyphens too
    assert len(SCENARIOS) >= 7 and all(name in text for name in SCENARIOS)


def test_lab_runs_as_root_and_without_a_display(monkeypatch):
    from rmsops.demo import cli as demo_cli

    monkeypatch.setattr(demo_cli.os, "geteuid", lambda: 0)
    monkeypatch.delenv("DISPLAY", raising=False)
    command = demo_cli.lab_command()
    assert "--allow-root" in command and "--no-browser" in command
    assert command[command.index("--ip") + 1] == "127.0.0.1"
    monkeypatch.setattr(demo_cli.os, "geteuid", lambda: 1000)
    assert "--allow-root" not in demo_cli.lab_command()


def _help_texts() -> str:
    import contextlib
    import io

    texts = []
    for command in ([], ["list"], ["run"], ["check"], ["triage"], ["verify"], ["diff"], ["demo"], ["action"]):
        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
            cli.main([*command, "--help"])
        texts.append(out.getvalue())
    return "\n".join(texts)


def test_every_command_the_help_and_list_print_works_as_printed(capsys):
    """Commands shown to a person (in backticks in --help, and `rmsops list`'s action lines) parse as
    printed, with the placeholders filled in."""
    import re

    shown = re.findall(r"`(rmsops [^`]+)`", " ".join(_help_texts().split()))
    cli.main(["list"])
    shown += [line.strip() for line in capsys.readouterr().out.splitlines() if line.strip().startswith("rmsops ")]
    assert len(shown) >= 8
    filled = {"ENV": "production", "SERVICE": "rms-backend", "COUNT": "6", "MEMORY": "2048", "REVISION": "3",
              "PATHS": "/index.html", "TIME": "2026-11-28T19:00:00Z", "TARGET": "rms-restored",
              "SNAPSHOT": "snap-1"}
    parser = cli.build_parser()
    for command in shown:
        words = shlex.split(re.sub(r"[\[\]]", "", command))[1:]
        words = [re.sub(r"\b[A-Z]+\b", lambda m: filled.get(m.group(0), m.group(0)), w) for w in words]
        parser.parse_args(words)  # a UserError (exit 2) here is a command that does not work as printed


@pytest.mark.parametrize("earlier_handler", [False, True])
def test_the_command_ends_with_its_status_its_whole_output_and_every_exit_handler(tmp_path, earlier_handler):
    """`rmsops` skips the interpreter's teardown, never what comes before it: the whole output (to
    a file, where an exit handler's last line waits in the buffer), the status, the exit handlers
    registered during the run, and one registered before the command started (coverage's, from a
    .pth file)."""
    marker = str(tmp_path / "ran")
    script = ("import atexit, sys\n"
              + (f"atexit.register(lambda: open({marker!r} + '.earlier', 'w').close())\n" if earlier_handler else "")
              + "import rmsops.cli\n"
              "listing = rmsops.cli.main\n"
              "def main():\n"
              f"    atexit.register(lambda: open({marker!r} + '.during', 'w').close())\n"
              "    atexit.register(print, \"a handler's last line\")\n"
              "    return listing(['list']) or 5\n"
              "rmsops.cli.main = main\n"
              "rmsops.cli.entry()\n")
    whole = subprocess.run([sys.executable, "-m", "rmsops.cli", "list"], capture_output=True, text=True,
                           timeout=60).stdout
    out = tmp_path / "out.txt"
    buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    with out.open("w") as stdout:
        code = subprocess.run([sys.executable, "-c", script], stdout=stdout, env=buffered, timeout=60).returncode
    assert code == 5
    assert out.read_text() == whole + "a handler's last line\n" and whole.count("\n") > 100
    assert (tmp_path / "ran.during").exists()
    assert (tmp_path / "ran.earlier").exists() == earlier_handler
