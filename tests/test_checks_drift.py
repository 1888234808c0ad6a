"""Runbook 09 (environment-drift): the judges with small frames, then two environments in moto.

The moto layer builds a production and a staging cluster in one emulated account (separate VPCs,
same-named security groups, task definitions whose environment values and secret ARNs are
distinctive strings) and checks the comparison through ``ctx.run``, including that no value or
secret reference ever reaches a finding or a frame.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
from moto import mock_aws

from rmsops.checks import drift
from rmsops.core.findings import Severity
from tests import aws_seed as seed

OK, INFO, WARNING, ERROR = Severity.OK, Severity.INFO, Severity.WARNING, Severity.ERROR
RUNBOOK = "09-environment-drift"
SECRET_VALUES = ("prod-db.internal.example", "stg-db.internal.example", "p00l-s3cr3t-value-42",
                 "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-XyZ12",
                 "arn:aws:secretsmanager:us-east-1:123456789012:secret:stg/db-AbC34",
                 "arn:aws:ssm:us-east-1:123456789012:parameter/stg/stripe-k3y")


# =============================================================================================
# Layer 1: pure functions
# =============================================================================================

@pytest.mark.parametrize(("name", "expected"), [
    ("rms-staging-tasks", "rms-tasks"), ("rms-production-tasks", "rms-tasks"), ("staging-rms", "rms"),
    ("rms_prod_alb", "rms_alb"), ("rms-alb", "rms-alb"), ("rms-demo", "rms"), ("", ""),
])
def test_neutral_takes_environment_words_out(name, expected):
    assert drift.neutral(name, drift.env_tokens("demo")) == expected


@pytest.mark.parametrize(("image", "expected"), [
    ("123456789012.dkr.ecr.us-east-1.amazonaws.com/rms-backend:2.14.0", ("rms-backend", "2.14.0")),
    ("nginx", ("nginx", "latest")), ("nginx:1.27", ("nginx", "1.27")),
    ("localhost:5000/team/app:1", ("team/app", "1")),
    ("repo/app@sha256:0123456789abcdef0123", ("repo/app", "sha256:0123456789ab")),
])
def test_split_image(image, expected):
    assert drift.split_image(image) == expected


def test_reduce_task_definition_keeps_names_never_values():
    td = {"family": "f", "revision": 3, "cpu": "512", "memory": "1024",
          "taskRoleArn": "arn:aws:iam::1:role/rms-prod-task",
          "containerDefinitions": [{"name": "api", "image": "repo/api:1", "memory": 1024,
                                    "environment": [{"name": "B", "value": SECRET_VALUES[0]},
                                                    {"name": "A", "value": SECRET_VALUES[2]}],
                                    "secrets": [{"name": "DB_PASSWORD", "valueFrom": SECRET_VALUES[3]}],
                                    "healthCheck": {"command": ["CMD-SHELL", "curl -f localhost/health"],
                                                    "interval": 10}}]}
    reduced = drift.reduce_task_definition(td)
    text = json.dumps(reduced)
    assert not any(v in text for v in SECRET_VALUES)
    api = reduced["containers"]["api"]
    assert api["env"] == ["A", "B"] and api["secrets"] == ["DB_PASSWORD"]
    assert api["image_tag"] == "1" and "interval 10 s" in api["health_check"]
    assert reduced["task_role"] == "rms-prod-task"


def test_pairs_by_name_then_by_position():
    this = {"api": {}, "web": {}, "worker": {}}
    other = {"api": {}, "frontend": {}}
    assert drift.pairs(this, other, ("api", "web", "worker"), ("api", "frontend")) == [
        ("api", "api"), ("web", "frontend"), ("worker", None)]


def profile(env=(), secrets=(), memory="1024", image="repo/api:1", health="curl -f /h", role="rms-prod-task"):
    return {"cpu": "512", "memory": memory, "task_role": role, "execution_role": "exec",
            "containers": {"api": {"env": sorted(env), "secrets": sorted(secrets), "image_repository": "repo/api",
                                   "image_tag": image.rsplit(":", 1)[1], "cpu": 256, "memory": 512,
                                   "memory_reservation": None, "health_check": health}}}


def test_judge_environment_names_in_one_only_are_warnings():
    this, other = ({"api": profile(["A", "B"], ["S1"])}, {"api": profile(["A", "C"], ["S1", "S2"])})
    matched = [("api", "api")]
    df = drift.environment_frame(this, other, matched)
    [finding] = drift.judge_environment(df, matched, "production", "staging", "rms")
    assert finding.severity is WARNING and finding.resource == "ecs:rms/api"
    assert finding.evidence["only_in_production"] == ["B"]
    assert finding.evidence["only_in_staging"] == ["C", "S2 (secret)"]


def test_judge_environment_same_names_is_ok_and_missing_twin_is_info():
    this, other = {"api": profile(["A"]), "web": profile()}, {"api": profile(["A"])}
    matched = [("api", "api"), ("web", None)]
    findings = drift.judge_environment(drift.environment_frame(this, other, matched), matched, "p", "s", "rms")
    assert [f.severity for f in findings] == [OK, INFO]


def test_judge_resources_differences_are_info():
    tokens = drift.env_tokens("production", "staging")
    this = {"api": profile(memory="1024", image="repo/api:2.14.0", role="rms-production-task")}
    other = {"api": profile(memory="2048", image="repo/api:2.15.0", role="rms-staging-task")}
    matched = [("api", "api")]
    df = drift.resources_frame(this, other, matched, tokens)
    [finding] = drift.judge_resources(df, matched, "production", "staging", "rms")
    assert finding.severity is INFO
    changed = {d["attribute"] for d in finding.evidence["differences"]}
    assert changed == {"memory", "image_tag"}  # roles are the same once the environment name is out
    [same] = drift.judge_resources(drift.resources_frame(this, this, matched, tokens), matched, "p", "s", "rms")
    assert same.severity is OK


def rules(*rows) -> pd.DataFrame:
    return pd.DataFrame([{"service": "api", "rule": f"tcp {p} from {s}", "protocol": "tcp", "ports": p,
                          "source": s} for p, s in rows], columns=["service", "rule", "protocol", "ports", "source"])


@pytest.mark.parametrize(("here", "there", "expected"), [
    ([("8000", "sg rms-alb")], [("8000", "sg rms-alb")], OK),
    ([("8000", "sg rms-alb"), ("22", "10.0.0.0/8")], [("8000", "sg rms-alb")], INFO),  # extra, private
    ([("8000", "sg rms-alb"), ("22", "0.0.0.0/0")], [("8000", "sg rms-alb")], WARNING),  # extra, open to all
    ([("8000", "sg rms-alb")], [("8000", "sg rms-alb"), ("8080", "sg rms-alb")], WARNING),  # missing here
])
def test_judge_security_groups(here, there, expected):
    matched = [("api", "api")]
    df = drift.rules_frame(rules(*here), rules(*there), matched)
    [finding] = drift.judge_security_groups(df, matched, "production", "staging", "rms")
    assert finding.severity is expected
    assert finding.evidence["rules_compared"] == len({*here, *there})


# =============================================================================================
# Layer 2: two environments in moto
# =============================================================================================

@pytest.fixture(scope="module")
def moto_world():
    with mock_aws():
        seed.network()
        yield


def build_environment(cluster: str, cidr: str, env: list[tuple[str, str]], secrets: list[tuple[str, str]],
                      memory: str, open_ssh: bool = False) -> None:
    ec2, ecs = seed.client("ec2"), seed.client("ecs")
    vpc = ec2.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=cidr.replace("0.0/16", "1.0/24"))["Subnet"]["SubnetId"]
    alb = ec2.create_security_group(GroupName=f"rms-{cluster.split('-')[1]}-alb", Description="alb", VpcId=vpc)
    tasks = ec2.create_security_group(GroupName="rms-ecs-tasks", Description="tasks", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=tasks, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 8000, "ToPort": 8000, "UserIdGroupPairs": [{"GroupId": alb["GroupId"]}]}])
    if open_ssh:
        ec2.authorize_security_group_ingress(GroupId=tasks, IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    ecs.create_cluster(clusterName=cluster)
    for service in ("rms-backend", "rms-frontend"):
        family = f"{cluster}-{service}"
        ecs.register_task_definition(
            family=family, networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="512",
            memory=memory if service == "rms-backend" else "512",
            containerDefinitions=[{"name": service, "image": f"repo/{service}:2.14.0", "memory": 512,
                                   "environment": [{"name": n, "value": v} for n, v in env],
                                   "secrets": [{"name": n, "valueFrom": v} for n, v in secrets]}])
        ecs.create_service(cluster=cluster, serviceName=service, taskDefinition=family, desiredCount=1,
                           launchType="FARGATE", networkConfiguration={"awsvpcConfiguration": {
                               "subnets": [subnet], "securityGroups": [tasks]}})


@pytest.fixture(scope="module")
def environments(moto_world):
    build_environment("rms-production", "10.20.0.0/16",
                      [("DB_HOST", SECRET_VALUES[0]), ("DB_POOL_MAX_OVERFLOW", SECRET_VALUES[2])],
                      [("DB_PASSWORD", SECRET_VALUES[3])], memory="1024", open_ssh=True)
    build_environment("rms-staging", "10.21.0.0/16", [("DB_HOST", SECRET_VALUES[1])],
                      [("DB_PASSWORD", SECRET_VALUES[4]), ("STRIPE_KEY", SECRET_VALUES[5])], memory="2048")


@pytest.fixture
def compared(environments, env_file, make_context):
    staging = env_file(name="staging", ecs={"cluster": "rms-staging"})
    return make_context(name="production", drift={"compare_with": str(staging)})


def test_environment_names_differ_and_no_value_is_shown(compared):
    result = compared.run("drift.taskdef.environment")
    findings = {f.resource: f for f in result.findings}
    backend = findings["ecs:rms-production/rms-backend"]
    assert backend.severity is WARNING and backend.runbook == RUNBOOK
    assert backend.evidence["only_in_production"] == ["DB_POOL_MAX_OVERFLOW"]
    assert backend.evidence["only_in_staging"] == ["STRIPE_KEY (secret)"]
    shown = json.dumps([f.to_dict() for f in result.findings]) + result.data.to_csv()
    assert not any(value in shown for value in SECRET_VALUES)


def test_resources_memory_differs_is_info(compared):
    result = compared.run("drift.taskdef.resources")
    findings = {f.resource: f for f in result.findings}
    backend = findings["ecs:rms-production/rms-backend"]
    assert backend.severity is INFO
    assert [(d["attribute"], d["production"], d["staging"]) for d in backend.evidence["differences"]] == [
        ("memory", "1024", "2048")]
    assert findings["ecs:rms-production/rms-frontend"].severity is OK


def test_security_groups_open_only_here_is_warning(compared):
    result = compared.run("drift.network.security_groups")
    findings = {f.resource: f for f in result.findings}
    backend = findings["ecs:rms-production/rms-backend"]
    assert backend.severity is WARNING
    assert backend.evidence["only_in_production"] == ["tcp 22 from 0.0.0.0/0"]
    assert backend.evidence["only_in_staging"] == []  # rms-production-alb and rms-staging-alb are one group
    assert "tcp 8000 from sg rms-alb" in set(result.data["rule"])


def test_every_check_is_info_when_not_configured(environments, make_context):
    ctx = make_context()
    for cid in ("drift.taskdef.environment", "drift.taskdef.resources", "drift.network.security_groups"):
        [finding] = ctx.run(cid).findings
        assert finding.severity is INFO and "compare" in finding.title.lower() + finding.detail.lower()


def test_compare_with_a_relative_path_beside_the_environment_file(environments, env_file, make_context):
    staging = env_file(name="staging", ecs={"cluster": "rms-staging"})
    ctx = make_context(name="production", drift={"compare_with": f"./{staging.name}"})
    assert drift.other_context(ctx).settings.name == "staging"


def test_the_other_environment_shares_aws_clients_only_when_it_reaches_aws_the_same_way(environments, env_file,
                                                                                         make_context):
    same = make_context(drift={"compare_with": str(env_file(name="staging", ecs={"cluster": "rms-staging"}))})
    assert drift.other_context(same).client("ec2") is same.client("ec2")  # one session, one client each
    elsewhere = env_file(name="staging", ecs={"cluster": "rms-staging"}, aws={"region": "eu-west-1"})
    apart = make_context(drift={"compare_with": str(elsewhere)})
    other = drift.other_context(apart)
    assert other.settings.aws.region == "eu-west-1" and other.aws is not apart.aws


def test_unknown_compare_environment_is_an_error_finding(environments, make_context):
    ctx = make_context(drift={"compare_with": "no-such-environment"})
    [finding] = ctx.run("drift.taskdef.environment").findings
    assert finding.severity is ERROR and "no-such-environment" in finding.detail


def test_a_service_missing_here_is_info(environments, env_file, make_context):
    staging = env_file(name="staging", ecs={"cluster": "rms-staging"})
    ctx = make_context(name="production", ecs={"services": ["rms-backend", "rms-worker"]},
                       drift={"compare_with": str(staging)})
    findings = {f.resource: f for f in ctx.run("drift.taskdef.resources").findings}
    assert findings["ecs:rms-production/rms-worker"].severity is INFO
    assert findings["ecs:rms-production/rms-backend"].severity is INFO
