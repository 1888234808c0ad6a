"""Seeding helpers for moto in decorator/context mode (see /work/shared/notes/moto-coverage.md).

Everything here talks to moto's in-process backends; call it only while ``mock_aws`` is active.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime

import boto3
from moto.core import DEFAULT_ACCOUNT_ID
from moto.moto_api import state_manager

REGION = "us-east-1"
CLUSTER = "rms-production"
SERVICES = ("rms-backend", "rms-frontend")
ALB = "rms-alb"


def client(service: str, region: str | None = None):
    return boto3.client(service, region_name=region or REGION)


def backend(module: str):
    """The moto backend of one service (e.g. ``"ecs"``) for the default account and region."""
    backends = __import__(f"moto.{module}.models", fromlist=["x"])
    name = {"elbv2": "elbv2_backends", "cloudwatch": "cloudwatch_backends", "ecs": "ecs_backends"}[module]
    return getattr(backends, name)[DEFAULT_ACCOUNT_ID][REGION]


def reset(*modules: str) -> None:
    """Wipe the state of some services (cheap), keeping EC2's default VPC (expensive to rebuild)."""
    for module in modules:
        backend(module).reset()


def network() -> dict:
    """awsvpc configuration on the default VPC; moto requires securityGroups."""
    ec2 = client("ec2")
    sg = ec2.describe_security_groups(GroupNames=["default"])["SecurityGroups"][0]["GroupId"]
    subnets = [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]]
    return {"awsvpcConfiguration": {"subnets": subnets[:2], "securityGroups": [sg]}}


def manual_task_states() -> None:
    """Keep RUNNING tasks RUNNING across describe_tasks (moto advances them otherwise)."""
    state_manager.set_transition(model_name="ecs::task", transition={"progression": "manual", "times": 999})


def create_service(name: str, desired: int, running: int, setenv: Callable[[str, str], None],
                   cluster: str = CLUSTER) -> None:
    """A Fargate service whose describe_services reports ``running`` of ``desired``.

    moto reads MOTO_ECS_SERVICE_RUNNING when the service is created, so ``setenv`` (e.g.
    ``monkeypatch.setenv``) is called just before.
    """
    ecs = client("ecs")
    ecs.create_cluster(clusterName=cluster)
    ecs.register_task_definition(
        family=name, networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="256", memory="512",
        containerDefinitions=[{"name": name, "image": "nginx:1", "essential": True,
                               "memory": 512, "cpu": 256}])  # container memory: required by run_task
    setenv("MOTO_ECS_SERVICE_RUNNING", str(running))
    ecs.create_service(cluster=cluster, serviceName=name, taskDefinition=name, desiredCount=desired,
                       launchType="FARGATE", networkConfiguration=network())


def run_tasks(service: str, health: list[str | None], cluster: str = CLUSTER) -> list[str]:
    """Start one RUNNING task per entry of ``health`` in the service's group.

    moto never reports ``healthStatus`` by itself; it serialises the Task model's ``health_status``
    attribute, so that is what a non-None entry sets. Returns the task ids.
    """
    ecs = client("ecs")
    ids = []
    for status in health:
        arn = ecs.run_task(cluster=cluster, taskDefinition=service, count=1, launchType="FARGATE",
                           networkConfiguration=network(), group=f"service:{service}")["tasks"][0]["taskArn"]
        if status is not None:
            backend("ecs").tasks[cluster][arn].health_status = status  # the dict exists after run_task
        ids.append(arn.rsplit("/", 1)[-1])
    return ids


def create_alb(targets: Mapping[str, list[str]], name: str = ALB) -> tuple[str, dict[str, str]]:
    """An ALB with one ip target group per key, each registering the given IPs on port 8080.

    Returns the load balancer ARN and the target group ARNs by name.
    """
    elb = client("elbv2")
    net = network()["awsvpcConfiguration"]
    lb = elb.create_load_balancer(Name=name, Subnets=net["subnets"], SecurityGroups=net["securityGroups"],
                                  Scheme="internet-facing", Type="application")["LoadBalancers"][0]
    vpc = client("ec2").describe_subnets(SubnetIds=net["subnets"][:1])["Subnets"][0]["VpcId"]
    groups = {}
    for group, ips in targets.items():
        tg = elb.create_target_group(Name=group, Protocol="HTTP", Port=8080, VpcId=vpc,
                                     TargetType="ip")["TargetGroups"][0]["TargetGroupArn"]
        if ips:
            elb.register_targets(TargetGroupArn=tg, Targets=[{"Id": ip, "Port": 8080} for ip in ips])
        groups[group] = tg
    return lb["LoadBalancerArn"], groups


@contextlib.contextmanager
def target_states(states: Mapping[str, tuple[str, str, str]]) -> Iterator[None]:
    """Make targets (by IP) report ``(state, reason, description)`` instead of moto's 'healthy'."""
    from unittest import mock

    from moto.elbv2.models import FakeHealthStatus, FakeTargetGroup

    original = FakeTargetGroup.health_for

    def patched(self, target, ec2_backend):
        health = original(self, target, ec2_backend)
        if target["Id"] in states:
            state, reason, description = states[target["Id"]]
            return FakeHealthStatus(health.instance_id, health.port, health.health_check_port,
                                    state, reason, description)
        return health

    with mock.patch.object(FakeTargetGroup, "health_for", patched):
        yield


def lb_dimension(lb_arn: str) -> str:
    """The CloudWatch LoadBalancer dimension: the ARN part after ``:loadbalancer/``."""
    return lb_arn.split(":loadbalancer/", 1)[1]


def put_counts(lb_arn: str, metric: str, counts: Mapping[datetime, float]) -> None:
    """One AWS/ApplicationELB datapoint (a count) per timestamp, as the ALB publishes them."""
    cw = client("cloudwatch")
    dims = [{"Name": "LoadBalancer", "Value": lb_dimension(lb_arn)}]
    data = [{"MetricName": metric, "Dimensions": dims, "Timestamp": ts, "Value": float(v), "Unit": "Count"}
            for ts, v in counts.items()]
    for offset in range(0, len(data), 20):
        cw.put_metric_data(Namespace="AWS/ApplicationELB", MetricData=data[offset:offset + 20])


def create_distribution(comment: str = "RMS Frontend", enabled: bool = True) -> dict:
    config_ = {"CallerReference": f"ref-{comment}-{datetime.now().timestamp()}", "Comment": comment,
               "Enabled": enabled,
               "Origins": {"Quantity": 1, "Items": [{"Id": "alb", "DomainName": "rms-alb.example.com",
                                                     "CustomOriginConfig": {"HTTPPort": 80, "HTTPSPort": 443,
                                                                            "OriginProtocolPolicy": "http-only"}}]},
               "DefaultCacheBehavior": {"TargetOriginId": "alb", "ViewerProtocolPolicy": "redirect-to-https",
                                        "ForwardedValues": {"QueryString": False, "Cookies": {"Forward": "none"}},
                                        "MinTTL": 0}}
    return client("cloudfront").create_distribution(DistributionConfig=config_)["Distribution"]
