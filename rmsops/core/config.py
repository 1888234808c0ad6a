"""Environment files: find them, read them, validate them into ``Settings``.

Every problem is reported as one line naming the file, the key and what was
expected, so a typo at 3 a.m. costs seconds.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from rmsops.core.errors import ConfigError, UserError

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE_DATA = Path(__file__).resolve().parents[1] / "_data"  # notebooks and example files, in a wheel


def parameters_dirs() -> list[Path]:
    """Where named environments are looked for, in order: $RMSOPS_PARAMETERS_DIR (set on purpose,
    e.g. by the tests), ./parameters, the user's config folder (~/.config/rmsops), and the
    parameters/ of the checkout rmsops runs from (none when installed from a wheel)."""
    folders = [Path(env)] if (env := os.environ.get("RMSOPS_PARAMETERS_DIR")) else []
    config_home = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    folders += [Path.cwd() / "parameters", config_home / "rmsops"]
    if (REPO_ROOT / "pyproject.toml").is_file():  # a checkout, not site-packages
        folders.append(REPO_ROOT / "parameters")
    return list(dict.fromkeys(folders))


def parameters_dir() -> Path:
    """The folder to write a named environment to (the served demo's): the first that exists, else
    the user's config folder."""
    return next((folder for folder in parameters_dirs() if folder.is_dir()), parameters_dirs()[-1])


def known_environments() -> list[str]:
    return sorted({p.stem for folder in parameters_dirs() if folder.is_dir() for p in folder.glob("*.yaml")})


def example_environments() -> list[Path]:
    """The documented example files (production, staging) shipped with rmsops, to copy and edit."""
    folder = PACKAGE_DATA / "parameters" if (PACKAGE_DATA / "parameters").is_dir() else REPO_ROOT / "parameters"
    return sorted(p for p in folder.glob("*.yaml") if p.stem != "demo")


def resolve_env_path(env: str | os.PathLike[str]) -> Path:
    """A name in one of the parameters folders (``production``) or a path to a YAML file."""
    text = str(env)
    if not text:
        raise ConfigError("no environment given; pass -e NAME (one of the files in parameters/)")
    looks_like_path = os.sep in text or text.endswith((".yaml", ".yml"))
    if looks_like_path:
        path = Path(text).expanduser()
        if not path.is_file():
            raise ConfigError(f"environment file {text} does not exist")
        return path
    for folder in parameters_dirs():
        if (folder / f"{text}.yaml").is_file():
            return folder / f"{text}.yaml"
    names = known_environments()
    looked = ", ".join(str(folder) for folder in parameters_dirs())
    examples = ", ".join(str(p) for p in example_environments())
    hint = ("start it with `rmsops demo --serve`" if text == "demo" else
            f"known: {', '.join(names)}" if names else f"copy and edit an example ({examples})")
    raise ConfigError(f"unknown environment {text!r}: no {text}.yaml in {looked}; {hint}")


# --- the schema -----------------------------------------------------------------------------
# Each key maps to (type, required). A nested dict is a section.
_STR, _INT, _BOOL, _LIST, _MAP, _NUM = "text", "integer", "true/false", "list", "mapping", "number"

SCHEMA: dict[str, Any] = {
    "name": (_STR, True),
    "protected": (_BOOL, False),
    "aws": {
        "region": (_STR, True),
        "profile": (_STR, False),
        "endpoint_url": (_STR, False),
        "local_test_credentials": (_BOOL, False),
    },
    "ecs": {
        "cluster": (_STR, True),
        "services": (_LIST, True),
    },
    "alb": {
        "name": (_STR, True),
        "target_groups": (_LIST, True),
    },
    "database": {
        "instance": (_STR, True),
        "host": (_STR, True),
        "port": (_INT, False),
        "dbname": (_STR, True),
        "user": (_STR, True),
        "password_secret": (_STR, False),
        "iam_auth": (_BOOL, False),
        "sslmode": (_STR, False),
        "statement_timeout_ms": (_INT, False),
    },
    "logs": {
        "backend": (_STR, False),
        "frontend": (_STR, False),
        "rds": (_STR, False),
        "waf": (_STR, False),  # the ALB's web ACL (REGIONAL scope): logs in the environment's region
        "waf_cloudfront": (_STR, False),  # CloudFront's web ACL (CLOUDFRONT scope): logs in us-east-1
    },
    "cloudfront": {
        "comment": (_STR, False),
        "asset_paths": (_LIST, False),
        "base_url": (_STR, False),
    },
    "tls": {
        "endpoints": (_LIST, False),
        "ca_bundle": (_STR, False),
    },
    "drift": {
        "compare_with": (_STR, False),
    },
    "recovery": {
        "terraform_dir": (_STR, False),
    },
    "external": {
        "health_urls": (_MAP, False),
        "email_domain": (_STR, False),
        "dkim_selectors": (_LIST, False),
        "dns_server": (_STR, False),
    },
    "alarms": {  # what `rmsops watch` watches; default: alarms on the configured resources
        "names": (_LIST, False),
        "prefix": (_STR, False),
    },
    "athena": {  # large logs on AWS's engine (docs/athena); without it DuckDB reads the ALB's S3 objects
        "workgroup": (_STR, False),
        "database": (_STR, False),  # required when the section is there (checked in _athena)
        "alb_table": (_STR, False),
        "waf_table": (_STR, False),
        "output_location": (_STR, False),
        "max_scanned_mb": (_NUM, False),
    },
    "logs_query": (_STR, False),
    "health_urls": (_MAP, False),
    "thresholds": (_MAP, False),
}


@dataclass(frozen=True)
class AwsSettings:
    region: str
    profile: str | None = None
    endpoint_url: str | None = None
    # Fixed dummy credentials for a local emulator (the demo's moto server); loopback only.
    local_test_credentials: bool = False


@dataclass(frozen=True)
class DatabaseSettings:
    instance: str
    host: str
    dbname: str
    user: str
    port: int = 5432
    password_secret: str | None = None
    iam_auth: bool = False
    sslmode: str = "prefer"
    statement_timeout_ms: int = 15_000


@dataclass(frozen=True)
class AthenaSettings:
    """Where Athena reads the logs: the tables of docs/athena/*.sql, in ``database``."""

    database: str
    workgroup: str = "primary"
    alb_table: str | None = None  # the ALB access logs (docs/athena/alb_access_logs.sql)
    waf_table: str | None = None  # the ALB web ACL's WAF logs in S3 (docs/athena/waf_logs.sql)
    output_location: str | None = None  # s3://... for the results; default: the workgroup's
    max_scanned_mb: float = 1024.0  # a query that scans more is stopped (see rmsops.sources.athena)


@dataclass(frozen=True)
class Settings:
    """One validated environment file."""

    name: str
    path: Path
    aws: AwsSettings
    cluster: str
    services: tuple[str, ...]
    alb_name: str
    target_groups: tuple[str, ...]
    database: DatabaseSettings
    protected: bool = False
    log_groups: dict[str, str] = field(default_factory=dict)
    cloudfront_comment: str = "RMS Frontend"
    asset_paths: tuple[str, ...] = ()
    cdn_base_url: str | None = None  # default: https://<the distribution's domain>
    health_urls: dict[str, str] = field(default_factory=dict)
    tls_endpoints: tuple[str, ...] = ()  # https URLs whose live certificate is checked
    tls_ca_bundle: str | None = None  # a PEM file of CAs to trust instead of the system store
    drift_compare_with: str | None = None  # another environment (name or path)
    terraform_dir: str | None = None  # an infrastructure workspace for `terraform plan`
    external_health_urls: dict[str, str] = field(default_factory=dict)
    email_domain: str | None = None
    dkim_selectors: tuple[str, ...] = ()
    dns_server: str | None = None  # "ip" or "ip:port"; default: the system resolver
    # How log queries run: "insights" (CloudWatch Logs Insights, aggregated on AWS's side) or
    # "filter" (filter_log_events, aggregated here: for emulators without Insights).
    logs_query: str = "insights"
    # `rmsops watch`: these alarms and those named with this prefix; neither: every alarm whose
    # dimensions name the ALB, a target group, a service or the DB instance above.
    alarm_names: tuple[str, ...] = ()
    alarm_prefix: str | None = None
    athena: AthenaSettings | None = None  # None: ALB access logs are read here with DuckDB
    thresholds: dict[str, float] = field(default_factory=dict)


# libyaml's parser where PyYAML was built with it: a tenth of the pure-Python parser's time (4 ms
# for an environment file), the same documents, errors with the same line and column.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(text: str) -> Any:
    """``yaml.safe_load``, with libyaml when it is there. Raises yaml.YAMLError."""
    return yaml.load(text, Loader=_YAML_LOADER)  # noqa: S506 - a safe loader, C or Python


def load(env: str | os.PathLike[str]) -> Settings:
    """Read and validate an environment file; raise ConfigError with one readable line."""
    path = resolve_env_path(env)
    try:
        raw = read_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ConfigError(f"{path}: malformed YAML{where}: {problem}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top, got {_kind(raw)}")
    _validate(raw, SCHEMA, path, prefix="")
    return in_region(_settings(raw, path), os.environ.get(REGION_OVERRIDE, ""))


# `rmsops triage --region R`: the same environment in another region (a fleet's member). An
# environment variable, so that the warm process and every kernel of the run read it too.
REGION_OVERRIDE = "RMSOPS_REGION"
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")


def check_region(region: str) -> str:
    if not _REGION.match(region):
        raise ConfigError(f"region {region!r} is not an AWS region name (e.g. us-east-1, eu-west-1)")
    return region


def in_region(settings: Settings, region: str) -> Settings:
    """The environment in ``region`` instead of its own (unchanged when ``region`` is empty)."""
    if not region or region == settings.aws.region:
        return settings
    return replace(settings, aws=replace(settings.aws, region=check_region(region)))


def _validate(raw: dict[str, Any], schema: dict[str, Any], path: Path, prefix: str) -> None:
    for key in raw:
        if key not in schema:
            close = difflib.get_close_matches(str(key), list(schema), n=1)
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else f"; known: {', '.join(schema)}"
            raise ConfigError(f"{path}: unknown key '{prefix}{key}'{hint}")
    for key, spec in schema.items():
        name = f"{prefix}{key}"
        if isinstance(spec, dict):
            value = raw.get(key)
            if value is None:
                if any(req for kind, req in spec.values() if not isinstance(kind, dict)):
                    raise ConfigError(f"{path}: missing section {name!r}")
                continue
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: {name}: expected a mapping, got {_kind(value)}")
            _validate(value, spec, path, prefix=f"{name}.")
            continue
        kind, required = spec
        value = raw.get(key)
        if value is None:
            if required:
                raise ConfigError(f"{path}: missing key {name!r} ({kind})")
            continue
        if not _is_kind(value, kind):
            raise ConfigError(f"{path}: {name}: expected {kind}, got {_kind(value)} {value!r}")


def _is_kind(value: Any, kind: str) -> bool:
    if kind == _STR:
        return isinstance(value, str) and value.strip() != ""
    if kind == _INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == _NUM:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == _BOOL:
        return isinstance(value, bool)
    if kind == _LIST:
        return isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value)
    if kind == _MAP:
        return isinstance(value, dict)
    raise AssertionError(kind)


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "text", bool: "true/false", int: "an integer",
            float: "a number", type(None): "nothing"}.get(type(value), type(value).__name__)


def _settings(raw: dict[str, Any], path: Path) -> Settings:
    from rmsops.core import thresholds

    db = raw["database"]
    health = _urls(raw.get("health_urls"), "health_urls", path)
    external = raw.get("external") or {}
    external_health = _urls(external.get("health_urls"), "external.health_urls", path)
    tls = raw.get("tls") or {}
    for url in tls.get("endpoints") or []:
        if not url.startswith("https://"):
            raise ConfigError(f"{path}: tls.endpoints: expected https URLs, got {url!r}")
    logs_query = raw.get("logs_query", "insights")
    if logs_query not in ("insights", "filter"):
        raise ConfigError(f"{path}: logs_query: expected 'insights' or 'filter', got {logs_query!r}")
    cloudfront = raw.get("cloudfront") or {}
    try:
        overrides = thresholds.merge(raw.get("thresholds"), source=f"{path}: thresholds")
    except UserError as exc:
        raise ConfigError(str(exc)) from None
    aws = raw["aws"]
    if aws.get("local_test_credentials") and not _is_loopback(aws.get("endpoint_url")):
        raise ConfigError(f"{path}: aws.local_test_credentials is only allowed with an "
                          "aws.endpoint_url on 127.0.0.1 or localhost (a local emulator)")
    return Settings(
        name=raw["name"],
        path=path.resolve(),
        protected=bool(raw.get("protected", False)),
        aws=AwsSettings(region=aws["region"], profile=aws.get("profile"),
                        endpoint_url=aws.get("endpoint_url"),
                        local_test_credentials=bool(aws.get("local_test_credentials", False))),
        cluster=raw["ecs"]["cluster"],
        services=tuple(raw["ecs"]["services"]),
        alb_name=raw["alb"]["name"],
        target_groups=tuple(raw["alb"]["target_groups"]),
        database=DatabaseSettings(
            instance=db["instance"], host=db["host"], dbname=db["dbname"], user=db["user"],
            port=db.get("port", 5432), password_secret=db.get("password_secret"),
            iam_auth=bool(db.get("iam_auth", False)), sslmode=db.get("sslmode", "prefer"),
            statement_timeout_ms=db.get("statement_timeout_ms", 15_000),
        ),
        log_groups={k: v for k, v in (raw.get("logs") or {}).items() if v},
        cloudfront_comment=cloudfront.get("comment", "RMS Frontend"),
        asset_paths=tuple(cloudfront.get("asset_paths") or ()),
        cdn_base_url=cloudfront.get("base_url"),
        health_urls=health,
        tls_endpoints=tuple(tls.get("endpoints") or ()),
        tls_ca_bundle=_existing_file(tls.get("ca_bundle"), "tls.ca_bundle", path),
        drift_compare_with=(raw.get("drift") or {}).get("compare_with"),
        terraform_dir=(raw.get("recovery") or {}).get("terraform_dir"),
        external_health_urls=external_health,
        email_domain=external.get("email_domain"),
        dkim_selectors=tuple(external.get("dkim_selectors") or ()),
        dns_server=external.get("dns_server"),
        logs_query=logs_query,
        alarm_names=tuple((raw.get("alarms") or {}).get("names") or ()),
        alarm_prefix=(raw.get("alarms") or {}).get("prefix"),
        athena=_athena(raw.get("athena"), path),
        thresholds=overrides,
    )


_ATHENA_NAME = re.compile(r"^[A-Za-z0-9_]{1,255}$")  # Glue names: they are written into the SQL
_WORKGROUP = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


def _athena(raw: dict[str, Any] | None, path: Path) -> AthenaSettings | None:
    if raw is None:
        return None
    if not raw.get("database"):
        raise ConfigError(f"{path}: athena.database: missing (text): the Glue database of the log tables")
    for key in ("database", "alb_table", "waf_table"):
        if raw.get(key) is not None and not _ATHENA_NAME.match(raw[key]):
            raise ConfigError(f"{path}: athena.{key}: expected a Glue name (letters, digits, _), got {raw[key]!r}")
    if not (raw.get("alb_table") or raw.get("waf_table")):
        raise ConfigError(f"{path}: athena: name alb_table and/or waf_table (the tables of docs/athena/*.sql)")
    workgroup = raw.get("workgroup", "primary")
    if not _WORKGROUP.match(workgroup):
        raise ConfigError(f"{path}: athena.workgroup: expected a workgroup name, got {workgroup!r}")
    output = raw.get("output_location")
    if output is not None and not re.match(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$", output):
        raise ConfigError(f"{path}: athena.output_location: expected s3://bucket/prefix/, got {output!r}")
    limit = raw.get("max_scanned_mb", 1024.0)
    if limit <= 0:
        raise ConfigError(f"{path}: athena.max_scanned_mb: expected a number above 0, got {limit!r}")
    return AthenaSettings(database=raw["database"], workgroup=workgroup, alb_table=raw.get("alb_table"),
                          waf_table=raw.get("waf_table"), output_location=output, max_scanned_mb=float(limit))


def _existing_file(value: str | None, key: str, path: Path) -> str | None:
    """A file named in the environment file, relative to it; it must exist."""
    if not value:
        return None
    found = (path.parent / Path(value).expanduser()).resolve()
    if not found.is_file():
        raise ConfigError(f"{path}: {key}: no file {found}")
    return str(found)


def _urls(raw: Any, key: str, path: Path) -> dict[str, str]:
    urls = {str(k): str(v) for k, v in (raw or {}).items()}
    for name, url in urls.items():
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"{path}: {key}.{name}: expected an http(s) URL, got {url!r}")
    return urls


def _is_loopback(url: str | None) -> bool:
    from urllib.parse import urlparse

    host = urlparse(url or "").hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")
