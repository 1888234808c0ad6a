"""Runbook 05 (cdn-static-assets): judges, then CloudFront/CloudWatch against moto and a local asset server.

Layer 1 feeds small DataFrames to the pure judge functions. Layer 2 seeds moto (one mock for the module;
CloudFront and CloudWatch reset per test): distributions found by comment, moto's managed state held at
InProgress, CloudFront metrics put into CloudWatch (moto publishes none), assets served by a local HTTP
server standing in for the distribution's domain. The invalidate-cloudfront action is planned, dry-run
and executed against moto. Layer 3 runs the checks and the notebook against the served demo.
"""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime, timedelta

import nbformat
import pandas as pd
import pytest
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.moto_api import state_manager

from rmsops import actions
from rmsops.actions.cloudfront import parse_paths
from rmsops.checks.cdn import (
    ASSET_COLUMNS,
    DISTRIBUTION_COLUMNS,
    asset_base_url,
    judge_assets,
    judge_cache_hit,
    judge_distribution,
    judge_error_rate,
)
from rmsops.core import config, registry
from rmsops.core.errors import UserError
from rmsops.demo.areas.edge_servers import Route, RouteServer
from rmsops.render import plots
from tests import aws_seed as seed
from tests.judging import CRITICAL, INFO, OK, WARNING, by_resource, thresholds

T0 = datetime(2026, 11, 28, 19, 0, tzinfo=UTC)


# =============================================================================================
# Layer 1: judges
# =============================================================================================

def distributions(*rows) -> pd.DataFrame:
    """rows: (id, status, enabled)."""
    return pd.DataFrame([{"id": i, "domain": f"{i.lower()}.cloudfront.net", "status": s, "enabled": e,
                          "aliases": ["rms.company.com"], "origins": ["rms-alb"], "last_modified": T0}
                         for i, s, e in rows], columns=DISTRIBUTION_COLUMNS)


def test_judge_distribution():
    found = by_resource(judge_distribution(distributions(("E1", "Deployed", True), ("E2", "InProgress", True),
                                                         ("E3", "Deployed", False)), "RMS Frontend"))
    assert {r: f.severity for r, f in found.items()} == {
        "cloudfront:E1": OK, "cloudfront:E2": WARNING, "cloudfront:E3": CRITICAL}
    assert "disabled" in found["cloudfront:E3"].title and "InProgress" in found["cloudfront:E2"].title
    assert "3 distributions share the comment" in found["cloudfront:E1"].detail
    assert found["cloudfront:E1"].evidence["last_modified"] == T0


def test_judge_distribution_missing_is_critical():
    [finding] = judge_distribution(distributions(), "RMS Frontend")
    assert finding.severity is CRITICAL and finding.resource == "cloudfront:RMS Frontend"


def assets(*rows) -> pd.DataFrame:
    """rows: (path, status or None, error)."""
    return pd.DataFrame([{"path": p, "url": f"https://cdn{p}", "status": s, "seconds": 0.02, "error": e,
                          "x_cache": "Hit from cloudfront" if s == 200 else "", "content_type": "",
                          "content_length": None} for p, s, e in rows], columns=ASSET_COLUMNS)


PATHS = ("/a.png", "/b.js", "/c.css", "/d.css")


def test_judge_assets_some_failing_are_warnings():
    df = assets(("/a.png", 200, ""), ("/b.js", 404, ""), ("/c.css", 503, ""), ("/d.css", 403, ""))
    found = by_resource(judge_assets(df, "https://cdn", PATHS))
    assert {r: f.severity for r, f in found.items()} == {
        "https://cdn/a.png": OK, "https://cdn/b.js": WARNING, "https://cdn/c.css": WARNING,
        "https://cdn/d.css": WARNING}
    assert "invalidate-cloudfront" in found["https://cdn/b.js"].resolution
    assert "S3 bucket permissions" in found["https://cdn/d.css"].resolution
    assert "ALB health" in found["https://cdn/c.css"].resolution
    assert "3 of 4 assets fail" in found["https://cdn/b.js"].detail
    assert "Hit from cloudfront" in found["https://cdn/a.png"].detail


def test_judge_assets_all_failing_is_critical():
    df = assets(("/a.png", 404, ""), ("/b.js", None, "timed out"))
    found = judge_assets(df, "https://cdn", PATHS[:2])
    assert [f.severity for f in found] == [CRITICAL, CRITICAL]
    assert "no answer (timed out)" in found[1].title and "all 2 assets fail" in found[1].detail


def test_judge_assets_redirect_is_not_a_failure():
    [finding] = judge_assets(assets(("/a.png", 304, "")), "https://cdn", PATHS[:1])
    assert finding.severity is OK


def test_judge_assets_nothing_to_test_is_info():
    assert [f.severity for f in judge_assets(assets(), "https://cdn", ())] == [INFO]
    [finding] = judge_assets(assets(), None, PATHS)
    assert finding.severity is INFO and finding.resource == "cloudfront.base_url"


def rates(**series: list[float]) -> pd.DataFrame:
    rows = [(T0 + timedelta(minutes=i), name, name, v) for name, values in series.items()
            for i, v in enumerate(values)]
    return pd.DataFrame(rows, columns=["timestamp", "id", "label", "value"])


def test_judge_error_rate():
    low = rates(**{"4xxErrorRate": [1, 2, 1], "5xxErrorRate": [0.1, 0.3, 0.2]})
    [finding] = judge_error_rate(low, thresholds(), "E1")
    assert finding.severity is OK and finding.evidence["metrics"]["4xxErrorRate"]["average"] == pytest.approx(1.333)
    high5 = rates(**{"4xxErrorRate": [1, 2, 1], "5xxErrorRate": [0.2, 9, 12]})  # average 7.07 > 5
    [finding] = judge_error_rate(high5, thresholds(), "E1")
    assert finding.severity is WARNING and "5xx error rate 7.1%" in finding.title
    assert "ALB health" in finding.resolution
    high4 = rates(**{"4xxErrorRate": [8, 7, 9]})
    [finding] = judge_error_rate(high4, thresholds(), "E1")
    assert finding.severity is WARNING and "invalidate-cloudfront" in finding.resolution
    assert judge_error_rate(high5, thresholds(cdn_error_rate_pct=10), "E1")[0].severity is OK


def test_judge_error_rate_a_short_peak_below_the_average_threshold_is_ok():
    [finding] = judge_error_rate(rates(**{"5xxErrorRate": [0, 0, 0, 0, 0, 0, 0, 0, 0, 30]}), thresholds(), "E1")
    assert finding.severity is OK and finding.evidence["metrics"]["5xxErrorRate"]["peak"] == 30


def test_judge_error_rate_no_data_and_no_traffic_is_info_and_says_where_it_looked():
    [finding] = judge_error_rate(rates(), thresholds(), "E1", region="us-east-1")
    assert finding.severity is INFO and "AWS/CloudFront in us-east-1 (DistributionId=E1" in finding.detail
    assert judge_error_rate(rates(), thresholds(), None)[0].severity is INFO


def test_judge_error_rate_traffic_without_error_rates_is_a_blind_spot_warning():
    [finding] = judge_error_rate(rates(), thresholds(), "E1", region="us-east-1", requests=12_000)
    assert finding.severity is WARNING and "could not be seen" in finding.title
    assert "12000 requests" in finding.detail
    assert finding.evidence["looked_in"].startswith("AWS/CloudFront in us-east-1")
    with_rates = rates(**{"4xxErrorRate": [1, 2, 1], "5xxErrorRate": [0.1, 0.3, 0.2]})
    assert judge_error_rate(with_rates, thresholds(), "E1", requests=12_000)[0].severity is OK


@pytest.mark.parametrize(("values", "expected"), [([92, 88, 90], OK), ([70, 75, 65], INFO), ([40, 30, 55], WARNING),
                                                  ([80, 80], OK)])
def test_judge_cache_hit(values, expected):
    [finding] = judge_cache_hit(rates(CacheHitRate=values), thresholds(), "E1")
    assert finding.severity is expected


def test_judge_cache_hit_no_data_explains_the_additional_metric():
    [finding] = judge_cache_hit(rates(), thresholds(), "E1")
    assert finding.severity is INFO and "additional metrics" in finding.detail


@pytest.mark.parametrize(("text", "expected"), [
    ("/*", ["/*"]), ("/index.html /assets/*", ["/index.html", "/assets/*"]), ("/a,/b, /a", ["/a", "/b"]),
    (["/x", "/y"], ["/x", "/y"])])
def test_parse_paths(text, expected):
    assert parse_paths(text) == expected


@pytest.mark.parametrize(("text", "message"), [("", "at least one path"), ("assets/*", "must start with '/'"),
                                               ("/a*/b", "only at the end")])
def test_parse_paths_refuses_bad_paths(text, message):
    with pytest.raises(UserError, match=message):
        parse_paths(text)


# =============================================================================================
# Layer 2: moto and a local asset server
# =============================================================================================

@pytest.fixture(scope="module")
def moto_world():
    with mock_aws():
        yield


@pytest.fixture
def aws(moto_world):
    from moto.cloudfront.models import cloudfront_backends

    cloudfront_backends[DEFAULT_ACCOUNT_ID]["global"].reset()
    seed.reset("cloudwatch")




def test_distribution_found_by_comment(aws, make_context):
    dist = seed.create_distribution()
    seed.create_distribution("Marketing site")
    result = make_context().run("cdn.cloudfront.distribution")
    [finding] = result.findings
    assert (finding.resource, finding.severity) == (f"cloudfront:{dist['Id']}", OK)
    assert finding.evidence["domain"] == dist["DomainName"] and list(result.data["id"]) == [dist["Id"]]


def test_distribution_other_comment_configured(aws, make_context):
    seed.create_distribution()
    [finding] = make_context(cloudfront={"comment": "RMS Frontend (staging)"}).run(
        "cdn.cloudfront.distribution").findings
    assert finding.severity is CRITICAL and "RMS Frontend (staging)" in finding.title


def test_distribution_disabled_is_critical(aws, make_context):
    dist = seed.create_distribution()
    cloudfront = seed.client("cloudfront")
    current = cloudfront.get_distribution_config(Id=dist["Id"])
    cloudfront.update_distribution(Id=dist["Id"], IfMatch=current["ETag"],
                                   DistributionConfig={**current["DistributionConfig"], "Enabled": False})
    [finding] = make_context().run("cdn.cloudfront.distribution").findings
    assert finding.severity is CRITICAL and "disabled" in finding.title


def test_distribution_in_progress_is_warning(aws, make_context):
    """moto moves a distribution to Deployed when described; hold its managed state at InProgress."""
    state_manager.set_transition(model_name="cloudfront::distribution",
                                 transition={"progression": "manual", "times": 999})
    try:
        seed.create_distribution()
        [finding] = make_context().run("cdn.cloudfront.distribution").findings
    finally:
        state_manager.unset_transition(model_name="cloudfront::distribution")
    assert finding.severity is WARNING and finding.evidence["status"] == "InProgress"


def test_distribution_missing_is_critical(aws, make_context):
    [finding] = make_context().run("cdn.cloudfront.distribution").findings
    assert finding.severity is CRITICAL


@pytest.fixture(scope="module")
def asset_server():
    server = RouteServer({
        "/assets/logo.png": Route(200, content_type="image/png", body=b"png",
                                  headers=(("X-Cache", "Hit from cloudfront"),)),
        "/assets/app.js": Route(200, content_type="application/javascript"),
        "/assets/broken.js": Route(502),
        "/assets/slow.css": Route(200, delay=2.0),
    }).start()
    try:
        yield server
    finally:
        server.stop()


def run_assets(make_context, base: str, paths: list[str], **overrides):
    ctx = make_context(cloudfront={"base_url": base, "asset_paths": paths}, thresholds=overrides or None)
    return ctx.run("cdn.assets.reachable")


def test_assets_through_the_base_url(aws, asset_server, make_context):
    base = asset_server.base_url
    result = run_assets(make_context, base, ["/assets/logo.png", "assets/app.js", "/assets/missing.png",
                                             "/assets/broken.js"])
    found = by_resource(result.findings)
    assert {r.removeprefix(base): f.severity for r, f in found.items()} == {
        "/assets/logo.png": OK, "/assets/app.js": OK, "/assets/missing.png": WARNING, "/assets/broken.js": WARNING}
    logo = found[base + "/assets/logo.png"].evidence
    assert (logo["status"], logo["x_cache"], logo["content_type"], logo["content_length"]) == (
        200, "Hit from cloudfront", "image/png", 3)
    assert found[base + "/assets/missing.png"].evidence["status"] == 404


def test_assets_all_failing_is_critical(aws, asset_server, make_context):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    findings = run_assets(make_context, asset_server.base_url, ["/nope.png", "/assets/broken.js"]).findings
    assert [f.severity for f in findings] == [CRITICAL, CRITICAL]
    [refused] = run_assets(make_context, f"http://127.0.0.1:{port}", ["/assets/logo.png"]).findings
    assert refused.severity is CRITICAL and refused.evidence["status"] is None and refused.evidence["error"]


def test_assets_timeout(aws, asset_server, make_context):
    [finding] = run_assets(make_context, asset_server.base_url, ["/assets/slow.css"],
                           health_timeout_seconds=0.5).findings
    assert finding.severity is CRITICAL and finding.evidence["error"] == "timed out"


def test_asset_base_url_defaults_to_the_distribution_domain(aws, make_context):
    dist = seed.create_distribution()
    assert asset_base_url(make_context()) == f"https://{dist['DomainName']}"
    assert asset_base_url(make_context(cloudfront={"base_url": "https://static.example/"})) == "https://static.example"


def test_assets_without_distribution_or_base_url_is_info(aws, make_context):
    [finding] = make_context(cloudfront={"asset_paths": ["/a.png"]}).run("cdn.assets.reachable").findings
    assert finding.severity is INFO and finding.resource == "cloudfront.base_url"


def put_rates(distribution_id: str, ctx, series: dict[str, list[float]], ending_minutes_ago: int = 1) -> None:
    """Per-minute CloudFront datapoints ending *ending_minutes_ago* before the window's end."""
    end = ctx.window.end.replace(second=0, microsecond=0) - timedelta(minutes=ending_minutes_ago)
    dims = [{"Name": "DistributionId", "Value": distribution_id}, {"Name": "Region", "Value": "Global"}]
    data = [{"MetricName": name, "Dimensions": dims, "Timestamp": end - timedelta(minutes=len(values) - 1 - i),
             "Value": float(v), "Unit": "Percent"} for name, values in series.items() for i, v in enumerate(values)]
    seed.client("cloudwatch").put_metric_data(Namespace="AWS/CloudFront", MetricData=data)


def test_error_rate_and_cache_hit_against_moto(aws, make_context):
    dist, other = seed.create_distribution(), seed.create_distribution("Marketing site")
    ctx = make_context()
    put_rates(dist["Id"], ctx, {"4xxErrorRate": [1, 1.5, 2], "5xxErrorRate": [2, 9, 14],
                                "CacheHitRate": [60, 70, 65]})
    put_rates(other["Id"], ctx, {"5xxErrorRate": [0, 0, 0], "CacheHitRate": [10, 10, 10]})
    put_rates(dist["Id"], ctx, {"5xxErrorRate": [0, 0, 0, 0, 0]}, ending_minutes_ago=120)  # outside the window
    rate = ctx.run("cdn.cloudfront.error_rate")
    [finding] = rate.findings
    assert finding.severity is WARNING and finding.resource == f"cloudfront:{dist['Id']}"
    assert finding.evidence["metrics"]["5xxErrorRate"] == {"average": 8.333, "peak": 14.0, "lowest": 2.0,
                                                           "datapoints": 3}
    hit = ctx.run("cdn.cloudfront.cache_hit")
    assert [f.severity for f in hit.findings] == [INFO]
    assert hit.findings[0].evidence["metrics"]["CacheHitRate"]["average"] == 65.0
    assert set(rate.data["label"]) == {"4xxErrorRate", "5xxErrorRate"} and set(hit.data["label"]) == {"CacheHitRate"}
    for check_id, result in (("cdn.cloudfront.error_rate", rate), ("cdn.cloudfront.cache_hit", hit)):
        assert plots.svg(registry.get(check_id).plot(result, ctx)).startswith(b"<?xml")


def test_metrics_without_data_or_distribution_are_info(aws, make_context):
    ctx = make_context()
    assert [f.severity for f in ctx.run("cdn.cloudfront.error_rate").findings] == [INFO]
    seed.create_distribution()
    ctx = make_context()
    assert [f.severity for f in ctx.run("cdn.cloudfront.error_rate").findings] == [INFO]
    assert [f.severity for f in ctx.run("cdn.cloudfront.cache_hit").findings] == [INFO]


# --- the invalidate-cloudfront action -----------------------------------------------------------

def test_invalidate_plan_dry_run_and_execution(aws, make_context, tmp_path):
    dist = seed.create_distribution()
    seed.create_distribution("Marketing site")
    ctx = make_context()
    plan = actions.plan(ctx, "invalidate-cloudfront")
    assert plan.target == dist["Id"] and plan.operation == "create_invalidation"
    assert plan.params["InvalidationBatch"]["Paths"] == {"Quantity": 1, "Items": ["/*"]}
    assert plan.cli == f"aws cloudfront create-invalidation --distribution-id {dist['Id']} --paths '/*'"
    audit = tmp_path / "audit.jsonl"
    dry = actions.execute(ctx, plan, audit_log=audit)
    assert dry.dry_run and dry.outcome == "planned"
    cloudfront = seed.client("cloudfront")
    assert cloudfront.list_invalidations(DistributionId=dist["Id"])["InvalidationList"]["Quantity"] == 0
    plan = actions.plan(ctx, "invalidate-cloudfront", paths="/index.html /assets/*")
    done = actions.execute(ctx, plan, confirm="yes", audit_log=audit)
    assert done.outcome == "done"
    [item] = cloudfront.list_invalidations(DistributionId=dist["Id"])["InvalidationList"]["Items"]
    paths = cloudfront.get_invalidation(DistributionId=dist["Id"], Id=item["Id"])["Invalidation"][
        "InvalidationBatch"]["Paths"]["Items"]
    assert paths == ["/index.html", "/assets/*"]
    assert [json.loads(line)["outcome"] for line in audit.read_text().splitlines()] == ["planned", "done"]


def test_invalidate_needs_exactly_one_distribution(aws, make_context):
    with pytest.raises(UserError, match="no CloudFront distribution with comment 'RMS Frontend'"):
        actions.plan(make_context(), "invalidate-cloudfront")
    seed.create_distribution()
    seed.create_distribution()
    with pytest.raises(UserError, match="2 CloudFront distributions have the comment"):
        actions.plan(make_context(), "invalidate-cloudfront")


def test_invalidate_protected_environment_needs_the_distribution_id(aws, make_context, tmp_path):
    dist = seed.create_distribution()
    ctx = make_context(protected=True)
    plan = actions.plan(ctx, "invalidate-cloudfront")
    with pytest.raises(UserError, match=f"--confirm {dist['Id']}"):
        actions.execute(ctx, plan, confirm="yes", audit_log=tmp_path / "a.jsonl")
    assert seed.client("cloudfront").list_invalidations(DistributionId=dist["Id"])["InvalidationList"]["Quantity"] == 0


# =============================================================================================
# Layer 3: the served demo
# =============================================================================================

def demo_results(scenario: str) -> dict[str, list]:
    from rmsops.core.context import Context
    from tests.demo_server import served

    ctx = Context.open(served(scenario).env_file)
    try:
        results = ctx.run_all("05-cdn-static-assets")
    finally:
        ctx.close()
    json.dumps([f.to_dict() for r in results for f in r.findings], allow_nan=False)  # strict JSON evidence
    return {r.check: r.findings for r in results}


def test_demo_incident_shows_the_origin_failing_behind_cloudfront():
    found = demo_results("incident")
    [rate] = found["cdn.cloudfront.error_rate"]
    assert rate.severity is WARNING and "5xx" in rate.title
    assert [f.severity for f in found["cdn.cloudfront.distribution"]] == [OK]
    assert {f.severity for f in found["cdn.assets.reachable"]} == {OK} and len(found["cdn.assets.reachable"]) == 3


def test_demo_healthy_has_nothing_above_info():
    found = demo_results("healthy")
    assert {f.severity for findings in found.values() for f in findings} <= {OK, INFO}
    assert [f.severity for f in found["cdn.cloudfront.cache_hit"]] == [OK]


def test_notebook_runs_against_the_demo(tmp_path):
    from rmsops.core import runbooks
    from rmsops.core.window import resolve
    from rmsops.execution.runner import collect_findings, run_runbook
    from tests.demo_server import served

    outcome = run_runbook(runbooks.find("05"), config.load(served("incident").env_file), resolve("1h"), tmp_path)
    assert outcome.status == "done", outcome.error
    findings = collect_findings(nbformat.read(outcome.notebook, as_version=4))
    assert {f.check for f in findings} == set(runbooks.find("05").checks)
    audit = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [(r["action"], r["dry_run"]) for r in audit] == [("invalidate-cloudfront", True)]
    assert outcome.html is not None and outcome.html.read_text().count("data:image/svg+xml;base64") >= 2
