"""Environment files: the shipped examples load; every kind of mistake is one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rmsops.core import config
from rmsops.core.errors import ConfigError, UserError
from tests.conftest import BASE_ENV, merge

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", ["production", "staging"])
def test_shipped_environments_load_with_the_guides_names(name, monkeypatch):
    monkeypatch.setenv("RMSOPS_PARAMETERS_DIR", str(ROOT / "parameters"))
    settings = config.load(name)
    assert settings.name == name
    assert settings.cluster == f"rms-{name}"
    assert settings.services == ("rms-backend", "rms-frontend")
    assert settings.database.instance == f"rms-{name}-db"
    assert settings.log_groups["backend"] == "/ecs/rms-backend"
    assert settings.log_groups["rds"] == f"/aws/rds/instance/rms-{name}-db/postgresql"
    assert settings.cloudfront_comment == "RMS Frontend"
    assert settings.protected is (name == "production")
    assert all(url.startswith("https://") for url in settings.health_urls.values())


def test_shipped_environments_hold_no_password():
    for path in (ROOT / "parameters").glob("*.yaml"):
        raw = yaml.safe_load(path.read_text())
        assert "password" not in raw.get("database", {}), path


def test_a_path_works_as_well_as_a_name(env_file):
    path = env_file()
    assert config.load(str(path)).name == "test"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "env.yaml"
    path.write_text(text)
    return path


def test_unknown_environment_names_the_known_ones(monkeypatch):
    monkeypatch.setenv("RMSOPS_PARAMETERS_DIR", str(ROOT / "parameters"))
    with pytest.raises(ConfigError, match=r"unknown environment 'prodution'.*production.*staging"):
        config.load("prodution")


def test_demo_when_not_running_says_how_to_start_it(tmp_path, monkeypatch):
    monkeypatch.setenv("RMSOPS_PARAMETERS_DIR", str(tmp_path))
    with pytest.raises(ConfigError, match="rmsops demo --serve"):
        config.load("demo")


def test_malformed_yaml_names_file_and_line(tmp_path):
    path = _write(tmp_path, "name: x\naws: [unclosed\n")
    with pytest.raises(ConfigError) as err:
        config.load(str(path))
    assert str(path) in str(err.value) and "line" in str(err.value)
    assert "\n" not in str(err.value)


def test_top_level_must_be_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match="expected a mapping"):
        config.load(str(_write(tmp_path, "- just\n- a list\n")))


@pytest.mark.parametrize(("changes", "message"), [
    ({"databse": {}}, r"unknown key 'databse'; did you mean 'database'"),
    ({"database": {"prot": 1}}, r"unknown key 'database.prot'; did you mean 'database.port'"),
    ({"database": {"port": "5432x"}}, r"database.port: expected integer, got text '5432x'"),
    ({"ecs": {"services": []}}, r"ecs.services: expected list"),
    ({"protected": "yes"}, r"protected: expected true/false"),
    ({"aws": "us-east-1"}, r"aws: expected a mapping"),
    ({"health_urls": {"api": "ftp://x"}}, r"health_urls.api: expected an http\(s\) URL"),
    ({"thresholds": {"alb_5xx_per_minit": 3}}, r"unknown threshold 'alb_5xx_per_minit'"),
    ({"thresholds": {"alb_5xx_per_minute": "many"}}, r"must be a number"),
    ({"aws": {"local_test_credentials": True}}, r"only allowed with an aws.endpoint_url on 127.0.0.1"),
])
def test_mistakes_are_one_line_naming_the_key(tmp_path, changes, message):
    path = _write(tmp_path, yaml.safe_dump(merge(BASE_ENV, changes)))
    with pytest.raises(ConfigError, match=message) as err:
        config.load(str(path))
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_missing_required_key_and_section(tmp_path):
    raw = merge(BASE_ENV, {})
    del raw["database"]["host"]
    with pytest.raises(ConfigError, match=r"missing key 'database.host'"):
        config.load(str(_write(tmp_path, yaml.safe_dump(raw))))
    del raw["database"]
    with pytest.raises(ConfigError, match=r"missing section 'database'"):
        config.load(str(_write(tmp_path, yaml.safe_dump(raw))))


def test_threshold_overrides_apply_and_defaults_remain(env_file):
    settings = config.load(str(env_file(thresholds={"alb_5xx_per_minute": 25})))
    assert settings.thresholds["alb_5xx_per_minute"] == 25.0
    assert settings.thresholds["db_saturation_critical_pct"] == 95.0


def test_local_test_credentials_accepted_for_loopback(env_file):
    path = env_file(aws={"endpoint_url": "http://127.0.0.1:5000", "local_test_credentials": True})
    assert config.load(str(path)).aws.local_test_credentials is True


def test_config_error_is_a_user_error():
    assert issubclass(ConfigError, UserError)


def test_ca_bundle_is_resolved_beside_the_environment_file(env_file, tmp_path):
    path = env_file(tls={"endpoints": ["https://api.example.com"], "ca_bundle": "ca.pem"})
    with pytest.raises(ConfigError, match=r"tls.ca_bundle: no file .*ca.pem"):
        config.load(str(path))
    (path.parent / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    assert config.load(str(path)).tls_ca_bundle == str((path.parent / "ca.pem").resolve())


@pytest.mark.parametrize(("changes", "message"), [
    ({"tls": {"endpoints": ["http://plain.example.com"]}}, r"tls.endpoints: expected https URLs"),
    ({"logs_query": "grep"}, r"logs_query: expected 'insights' or 'filter'"),
    ({"external": {"health_urls": {"payments": "status.example.com"}}}, r"external.health_urls.payments"),
])
def test_newer_keys_are_validated_too(tmp_path, changes, message):
    path = _write(tmp_path, yaml.safe_dump(merge(BASE_ENV, changes)))
    with pytest.raises(ConfigError, match=message):
        config.load(str(path))


ATHENA = {"database": "rms_logs", "alb_table": "alb_access_logs", "waf_table": "waf_logs",
          "output_location": "s3://aws-athena-query-results-123456789012-us-east-1/rmsops/"}


def test_the_athena_section_is_read_with_its_defaults(env_file):
    assert config.load(str(env_file())).athena is None  # without it: DuckDB reads the ALB's logs
    athena = config.load(str(env_file(athena=ATHENA))).athena
    assert athena == config.AthenaSettings(database="rms_logs", workgroup="primary", alb_table="alb_access_logs",
                                           waf_table="waf_logs", output_location=ATHENA["output_location"],
                                           max_scanned_mb=1024.0)


def test_the_production_example_documents_the_athena_section():
    example = (ROOT / "parameters" / "production.yaml").read_text()
    commented = "\n".join(line.split("# ", 1)[1] for line in example.splitlines()
                          if line.startswith("# athena:") or line.startswith("#   "))
    raw = merge(BASE_ENV, yaml.safe_load(commented))
    assert set(raw["athena"]) == set(config.SCHEMA["athena"])  # every key shown, each valid
    assert config._athena(raw["athena"], Path("production.yaml")).max_scanned_mb == 1024.0


@pytest.mark.parametrize(("changes", "message"), [
    ({"athena": {"alb_table": "alb_access_logs"}}, r"athena.database: missing"),
    ({"athena": {"database": "rms_logs"}}, r"athena: name alb_table and/or waf_table"),
    ({"athena": {**ATHENA, "alb_table": "alb; DROP TABLE x"}}, r"athena.alb_table: expected a Glue name"),
    ({"athena": {**ATHENA, "database": "rms-logs"}}, r"athena.database: expected a Glue name"),
    ({"athena": {**ATHENA, "output_location": "rms-results/q/"}}, r"athena.output_location: expected s3://"),
    ({"athena": {**ATHENA, "max_scanned_mb": 0}}, r"athena.max_scanned_mb: expected a number above 0"),
    ({"athena": {**ATHENA, "max_scanned_mb": "1 GB"}}, r"athena.max_scanned_mb: expected number, got text"),
    ({"athena": {**ATHENA, "workgroup": "rms ops"}}, r"athena.workgroup: expected a workgroup name"),
    ({"athena": {**ATHENA, "albtable": "x"}}, r"unknown key 'athena.albtable'; did you mean 'athena.alb_table'"),
    ({"athena": "rms_logs"}, r"athena: expected a mapping"),
])
def test_athena_mistakes_are_one_line_naming_the_key(tmp_path, changes, message):
    path = _write(tmp_path, yaml.safe_dump(merge(BASE_ENV, changes)))
    with pytest.raises(ConfigError, match=message) as err:
        config.load(str(path))
    assert str(path) in str(err.value) and "\n" not in str(err.value)
