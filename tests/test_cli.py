"""The command line: bad input is one clear line and exit 2, with nothing run."""

from __future__ import annotations

from pathlib import Path

import pytest

from rmsops import cli, runbooks
from rmsops.errors import UserError
from rmsops.runner import notebook_parameters, parse_overrides

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
    from rmsops import registry

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

    from rmsops import registry

    spec_ids = set(re.findall(r"^\| `([a-z0-9_]+\.[a-z0-9_.]+)` \|", SPEC.read_text(), flags=re.MULTILINE))
    assert len(spec_ids) > 50
    registry.load_all()
    produced = {spec.id for rb in runbooks.CATALOGUE for spec in registry.for_runbook(rb.stem)}
    assert spec_ids - produced == set(), "check ids of the spec no runbook produces"
    assert produced - spec_ids == set(), "check ids not in the spec"
    assert len(runbooks.CATALOGUE) == 18


def test_the_daily_health_check_is_the_quick_checks_of_the_others():
    from rmsops import registry

    daily = {spec.id for spec in registry.for_runbook("17")}
    assert "app.health.endpoint" in daily and "db.connections.saturation" in daily
    assert "db.queries.slow" not in daily and "recovery.config.drift" not in daily  # heavy ones stay out
    assert not any(cid.startswith("escalation.") for cid in daily)
