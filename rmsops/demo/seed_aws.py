"""Build the emulated RMS AWS account through boto3 against the moto server.

Everything a real account would show for RMS production: the VPC, the ECS
cluster with its services and tasks, the ALB with target groups and listener,
the RDS instance, the CloudWatch metrics of the last hour, log groups with log
lines, the CloudFront distribution and the monitor role's secret. What moto
cannot represent through the API is finished by ``moto_patches``.

With ``rmsops demo --workers N`` (``layout.WORKERS``) also N small worker services, healthy in every
scenario: a task definition, one HEALTHY task, a COMPLETED deployment, steady-state events, their
own security group (no ingress), AWS/ECS CPU and memory metrics and a log group each; no target group,
unless ``--target-groups`` puts the first ones behind the ALB: then each has a target group with its
task registered (healthy), a listener rule (``/workers/<name>/*``) and the ALB may reach port 8080.
"""

from __future__ import annotations

import functools
import json
import random
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from botocore.config import Config

from rmsops.demo import layout, moto_patches
from rmsops.demo.layout import (
    ALB,
    CLOUDFRONT_COMMENT,
    CLUSTER,
    DB_INSTANCE,
    LOG_GROUPS,
    MONITOR_USER,
    SECRET_NAME,
    SERVICES,
    ServiceSpec,
)
from rmsops.demo.moto_patches import MotoPatches
from rmsops.demo.scenarios import MINUTES, Scenario, ServiceState

STEADY_SINCE = timedelta(days=3, hours=4, minutes=12)  # the last uneventful deployment
WORKER_STATE = ServiceState(desired=1, running=1)  # every worker (layout.WORKERS), in every scenario


@dataclass
class SeededAws:
    """Names and ids the rest of the demo (and curious users) may want."""

    vpc_id: str = ""
    load_balancer_arn: str = ""
    load_balancer_dns: str = ""
    target_groups: dict[str, str] = field(default_factory=dict)  # name -> ARN
    tasks: dict[str, list[str]] = field(default_factory=dict)  # service -> task ARNs
    targets: dict[str, list[str]] = field(default_factory=dict)  # target group -> target ids
    distribution_id: str = ""
    secret_arn: str = ""
    seeded_at: datetime | None = None  # "now" of the seed: the last minute with metrics

    @property
    def load_balancer_dimension(self) -> str:
        """The CloudWatch ``LoadBalancer`` dimension: the ARN after ``:loadbalancer/``."""
        return self.load_balancer_arn.split(":loadbalancer/", 1)[1]


def client_factory(endpoint_url: str) -> Callable[..., Any]:
    """``make(service, region=None)``: a client in ``region``, by default the environment's."""
    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing")
    config = Config(retries={"max_attempts": 0})  # a moto bug is a 500: fail at once, don't retry

    clients: dict[tuple[str, str], Any] = {}

    def make(service: str, region: str | None = None) -> Any:  # one client per service and region
        key = (service, region or layout.REGION)
        if key not in clients:
            clients[key] = session.client(service, endpoint_url=endpoint_url, config=config, region_name=key[1])
        return clients[key]

    return make


def seed(endpoint_url: str, scenario: Scenario, patches: MotoPatches, monitor_password: str,
         now: datetime | None = None, progress: Callable[[str], None] = lambda _: None,
         client: Callable[[str], Any] | None = None) -> SeededAws:
    """Create the account's resources for *scenario*; *patches* must be installed already."""
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    client = client or client_factory(endpoint_url)
    out = SeededAws(seeded_at=now)
    network = _network(client("ec2"), out)
    _load_balancer(client("elbv2"), network, out)
    _ecs(client("ecs"), client("elbv2"), scenario, network, patches, out, now)
    _rds(client("rds"), network)
    _metrics(client("cloudwatch"), scenario, out, now)
    _logs(client("logs"), scenario, out, now)
    _cloudfront(client("cloudfront", layout.GLOBAL_REGION), out)
    out.secret_arn = client("secretsmanager").create_secret(
        Name=SECRET_NAME, Description="rmsops read-only monitor role (pg_monitor) for the demo database",
        SecretString=json.dumps({"username": MONITOR_USER, "password": monitor_password}),
    )["ARN"]
    return out


# --- network -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Network:
    vpc: str
    public: list[str]
    private: list[str]
    alb_sg: str
    tasks_sg: str
    db_sg: str
    workers_sg: str = ""  # the workers' tasks take no inbound traffic (only with layout.WORKERS)


def _network(ec2: Any, out: SeededAws) -> _Network:
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16", TagSpecifications=[_tags("vpc", "rms-production")])
    vpc_id = vpc["Vpc"]["VpcId"]
    # ECS awsvpc tasks need DNS hostnames (moto fails run_task without them, and so would AWS).
    ec2.modify_vpc_attribute(VpcId=vpc_id, EnableDnsHostnames={"Value": True})
    out.vpc_id = vpc_id

    def subnet(cidr: str, zone: str, name: str) -> str:
        return ec2.create_subnet(VpcId=vpc_id, CidrBlock=cidr, AvailabilityZone=f"{layout.REGION}{zone}",
                                 TagSpecifications=[_tags("subnet", name)])["Subnet"]["SubnetId"]

    public = [subnet("10.0.0.0/24", "a", "rms-public-a"), subnet("10.0.1.0/24", "b", "rms-public-b")]
    private = [subnet("10.0.10.0/24", "a", "rms-private-a"), subnet("10.0.11.0/24", "b", "rms-private-b")]

    def group(name: str, description: str, port: int, source: dict[str, Any]) -> str:
        gid = ec2.create_security_group(GroupName=name, Description=description, VpcId=vpc_id)["GroupId"]
        ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": port, "ToPort": port, **source}])
        return gid

    alb_sg = group("rms-alb", "RMS ALB: HTTP from anywhere", 80,
                   {"IpRanges": [{"CidrIp": "0.0.0.0/0", "Description": "internet"}]})
    tasks_sg = group("rms-ecs-tasks", "RMS ECS tasks: from the ALB", 8000,
                     {"UserIdGroupPairs": [{"GroupId": alb_sg, "Description": "rms-alb"}]})
    ec2.authorize_security_group_ingress(GroupId=tasks_sg, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80,
         "UserIdGroupPairs": [{"GroupId": alb_sg, "Description": "rms-alb"}]}])
    db_sg = group("rms-db", "RMS PostgreSQL: from the ECS tasks", 5432,
                  {"UserIdGroupPairs": [{"GroupId": tasks_sg, "Description": "rms-ecs-tasks"}]})
    workers_sg = ""
    if layout.WORKERS:
        workers_sg = ec2.create_security_group(GroupName="rms-workers", VpcId=vpc_id,
                                               Description="RMS worker tasks: no inbound traffic")["GroupId"]
    if any(spec.port for spec in layout.WORKERS):  # some behind the ALB (--target-groups)
        ec2.authorize_security_group_ingress(GroupId=workers_sg, IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": layout.WORKER_PORT, "ToPort": layout.WORKER_PORT,
             "UserIdGroupPairs": [{"GroupId": alb_sg, "Description": "rms-alb"}]}])
    return _Network(vpc_id, public, private, alb_sg, tasks_sg, db_sg, workers_sg)


def _tags(kind: str, name: str) -> dict[str, Any]:
    return {"ResourceType": kind, "Tags": [{"Key": "Name", "Value": name},
                                           {"Key": "Environment", "Value": "production"}]}


# --- ALB -----------------------------------------------------------------------------------------

def _load_balancer(elb: Any, net: _Network, out: SeededAws) -> None:
    lb = elb.create_load_balancer(Name=ALB, Subnets=net.public, SecurityGroups=[net.alb_sg],
                                  Scheme="internet-facing", Type="application", IpAddressType="ipv4",
                                  Tags=[{"Key": "Environment", "Value": "production"}])["LoadBalancers"][0]
    out.load_balancer_arn, out.load_balancer_dns = lb["LoadBalancerArn"], lb["DNSName"]
    for spec in layout.alb_services():
        out.target_groups[spec.name] = elb.create_target_group(
            Name=spec.name, Protocol="HTTP", Port=spec.port, VpcId=net.vpc, TargetType="ip",
            HealthCheckProtocol="HTTP", HealthCheckPath=spec.health_path, HealthCheckIntervalSeconds=30,
            HealthCheckTimeoutSeconds=5, HealthyThresholdCount=3, UnhealthyThresholdCount=2,
            Matcher={"HttpCode": "200"},
        )["TargetGroups"][0]["TargetGroupArn"]
    listener = elb.create_listener(
        LoadBalancerArn=out.load_balancer_arn, Protocol="HTTP", Port=80,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": out.target_groups["rms-frontend"]}],
    )["Listeners"][0]["ListenerArn"]
    elb.create_rule(ListenerArn=listener, Priority=10,
                    Conditions=[{"Field": "path-pattern", "Values": ["/api/*"]}],
                    Actions=[{"Type": "forward", "TargetGroupArn": out.target_groups["rms-backend"]}])
    for priority, spec in enumerate(layout.alb_services()[len(SERVICES):], start=20):  # workers (--target-groups)
        elb.create_rule(ListenerArn=listener, Priority=priority,
                        Conditions=[{"Field": "path-pattern", "Values": [f"/workers/{spec.name}/*"]}],
                        Actions=[{"Type": "forward", "TargetGroupArn": out.target_groups[spec.name]}])


# --- ECS -----------------------------------------------------------------------------------------

def _ecs(ecs: Any, elb: Any, scenario: Scenario, net: _Network, patches: MotoPatches, out: SeededAws,
         now: datetime) -> None:
    ecs.create_cluster(clusterName=CLUSTER, settings=[{"name": "containerInsights", "value": "enabled"}])
    network = {"awsvpcConfiguration": {"subnets": net.private, "securityGroups": [net.tasks_sg],
                                       "assignPublicIp": "DISABLED"}}
    total_running = total_pending = 0
    for spec in SERVICES:
        state = scenario.services[spec.name]
        arns = [_register_task_definition(ecs, spec, image) for image in spec.images]
        ecs.create_service(
            cluster=CLUSTER, serviceName=spec.name, taskDefinition=arns[-1], desiredCount=state.desired,
            launchType="FARGATE", platformVersion="LATEST", networkConfiguration=network,
            loadBalancers=[{"targetGroupArn": out.target_groups[spec.name], "containerName": spec.container,
                            "containerPort": spec.port}],
            healthCheckGracePeriodSeconds=60, schedulingStrategy="REPLICA",
            deploymentConfiguration={"maximumPercent": 200, "minimumHealthyPercent": 50,
                                     "deploymentCircuitBreaker": {"enable": True, "rollback": False}},
        )
        primary = moto_patches.primary_deployment(CLUSTER, spec.name)
        tasks = []
        if state.running:
            tasks = [t["taskArn"] for t in ecs.run_task(
                cluster=CLUSTER, taskDefinition=arns[-1], count=state.running, launchType="FARGATE",
                networkConfiguration=network, group=f"service:{spec.name}", startedBy=primary["id"],
            )["tasks"]]
        out.tasks[spec.name] = tasks
        deployed = _deployed_at(scenario, spec.name, now)
        unhealthy, healthy = tasks[:state.unhealthy_tasks], tasks[state.unhealthy_tasks:]
        moto_patches.set_task_health(CLUSTER, unhealthy, "UNHEALTHY", deployed + timedelta(minutes=1))
        moto_patches.set_task_health(CLUSTER, healthy, "HEALTHY", deployed + timedelta(minutes=1))
        ips = [_task_ip(t) for t in ecs.describe_tasks(cluster=CLUSTER, tasks=tasks)["tasks"]] if tasks else []
        if ips:
            elb.register_targets(TargetGroupArn=out.target_groups[spec.name],
                                 Targets=[{"Id": ip, "Port": spec.port} for ip in ips])
        out.targets[spec.name] = ips
        patches.set_target_faults(spec.name, ips, scenario.target_faults.get(spec.name, ()))
        deployments, events = _history(scenario, spec, arns, primary, tasks, ips, out, now)
        moto_patches.shape_service(CLUSTER, spec.name, state, deployments, events)
        total_running += state.running
        total_pending += state.pending
    if layout.WORKERS:  # after the ALB's services: their task IPs stay what they are without workers
        _workers(ecs, elb, scenario, {"awsvpcConfiguration": {**network["awsvpcConfiguration"],
                                                              "securityGroups": [net.workers_sg]}}, out, now)
        total_running += WORKER_STATE.running * len(layout.WORKERS)
    moto_patches.shape_cluster(CLUSTER, total_running, total_pending, len(layout.all_services()))


def _workers(ecs: Any, elb: Any, scenario: Scenario, network: dict[str, Any], out: SeededAws, now: datetime) -> None:
    """rms-worker-NN: one revision, one healthy task each, steady for days; no load balancer, unless the
    worker has a port (``--target-groups``): then its task is registered, healthy, in its target group."""
    for spec in layout.WORKERS:
        arn = _register_task_definition(ecs, spec, spec.images[-1])
        balanced = {"loadBalancers": [{"targetGroupArn": out.target_groups[spec.name], "containerName": spec.container,
                                       "containerPort": spec.port}], "healthCheckGracePeriodSeconds": 60
                    } if spec.port else {}
        ecs.create_service(
            cluster=CLUSTER, serviceName=spec.name, taskDefinition=arn, desiredCount=WORKER_STATE.desired,
            launchType="FARGATE", platformVersion="LATEST", networkConfiguration=network,
            schedulingStrategy="REPLICA", **balanced,
            deploymentConfiguration={"maximumPercent": 200, "minimumHealthyPercent": 50,
                                     "deploymentCircuitBreaker": {"enable": True, "rollback": False}},
        )
        primary = moto_patches.primary_deployment(CLUSTER, spec.name)
        tasks = [t["taskArn"] for t in ecs.run_task(
            cluster=CLUSTER, taskDefinition=arn, count=WORKER_STATE.running, launchType="FARGATE",
            networkConfiguration=network, group=f"service:{spec.name}", startedBy=primary["id"],
        )["tasks"]]
        out.tasks[spec.name] = tasks
        moto_patches.set_task_health(CLUSTER, tasks, "HEALTHY", now - STEADY_SINCE + timedelta(minutes=1))
        ips = []
        if spec.port:
            ips = [_task_ip(t) for t in ecs.describe_tasks(cluster=CLUSTER, tasks=tasks)["tasks"]]
            elb.register_targets(TargetGroupArn=out.target_groups[spec.name],
                                 Targets=[{"Id": ip, "Port": spec.port} for ip in ips])
            out.targets[spec.name] = ips
        deployments, events = _history(scenario, spec, [arn], primary, tasks, ips, out, now, WORKER_STATE)
        moto_patches.shape_service(CLUSTER, spec.name, WORKER_STATE, deployments, events)


def _register_task_definition(ecs: Any, spec: ServiceSpec, image: str) -> str:
    probe = (f"curl -fsS http://localhost:{spec.port}{spec.health_path} || exit 1" if spec.port
             else "test -f /tmp/rms-worker-alive || exit 1")  # a worker serves nothing: it touches a file
    container = {
        "name": spec.container, "image": image, "essential": True,
        "cpu": spec.cpu, "memory": spec.memory,  # container-level memory: moto's run_task needs it
        "portMappings": [{"containerPort": spec.port, "protocol": "tcp"}] if spec.port else [],
        "healthCheck": {"command": ["CMD-SHELL", probe],
                        "interval": 30, "timeout": 5, "retries": 3, "startPeriod": 60},
        "logConfiguration": {"logDriver": "awslogs", "options": {
            "awslogs-group": f"/ecs/{spec.name}", "awslogs-region": layout.REGION, "awslogs-stream-prefix": "ecs"}},
        "environment": [{"name": "RMS_ENV", "value": "production"}],
    }
    if spec.images[-1] == layout.WORKER_IMAGE:  # a worker, behind the ALB or not
        container["environment"].append({"name": "RMS_WORKER_QUEUE", "value": spec.name.removeprefix("rms-")})
    return ecs.register_task_definition(
        family=spec.name, networkMode="awsvpc", requiresCompatibilities=["FARGATE"],
        cpu=str(spec.cpu), memory=str(spec.memory), containerDefinitions=[container],
        executionRoleArn="arn:aws:iam::123456789012:role/rms-ecs-task-execution",
    )["taskDefinition"]["taskDefinitionArn"]


def _task_ip(task: dict[str, Any]) -> str:
    for attachment in task.get("attachments", []):
        for detail in attachment.get("details", []):
            if detail.get("name") == "privateIPv4Address":
                return detail["value"]
    raise RuntimeError(f"moto returned task {task['taskArn']} without a private IP")


def _deployed_at(scenario: Scenario, service: str, now: datetime) -> datetime:
    if service == "rms-backend" and scenario.deployment_minutes_ago is not None:
        return now - timedelta(minutes=scenario.deployment_minutes_ago)
    return now - STEADY_SINCE


def _history(scenario: Scenario, spec: ServiceSpec, task_defs: list[str], primary: dict[str, Any],
             tasks: list[str], ips: list[str], out: SeededAws, now: datetime, state: ServiceState | None = None
             ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Deployments (PRIMARY first) and service events (newest first) that tell the scenario's story.

    ``state``: a service the scenario does not name (a worker; a target group only with --target-groups).
    """
    state = state or scenario.services[spec.name]
    name = spec.name
    deployed = _deployed_at(scenario, name, now)
    group_arn = out.target_groups.get(name)
    short = [t.rsplit("/", 1)[-1] for t in tasks]
    rolling = name == "rms-backend" and scenario.deployment_minutes_ago is not None
    complete = state.running >= state.desired and not rolling
    primary.update({
        "taskDefinition": task_defs[-1], "desiredCount": state.desired, "runningCount": state.running,
        "pendingCount": state.pending, "failedTasks": 4 if rolling else 0,
        "createdAt": deployed, "updatedAt": now - timedelta(minutes=1) if rolling else deployed,
        "rolloutState": "COMPLETED" if complete else "IN_PROGRESS",
        "rolloutStateReason": (f"ECS deployment {primary['id']} completed." if complete
                               else f"ECS deployment {primary['id']} in progress."),
    })
    deployments = [primary]
    started = (f"(service {name}) has started {len(short)} tasks: "
               + " ".join(f"(task {t})" for t in short) + ".")
    events: list[tuple[datetime, str]] = [(deployed + timedelta(seconds=20), started)]
    if group_arn:
        events.append((deployed + timedelta(minutes=2),
                       f"(service {name}) registered {len(ips)} targets in (target-group {group_arn})"))
    if rolling:
        old = dict(primary)
        old.update({
            "id": f"ecs-svc/{secrets.randbelow(10**18):018d}", "status": "ACTIVE",
            "taskDefinition": task_defs[0], "desiredCount": 0, "runningCount": 0, "pendingCount": 0,
            "failedTasks": 0, "createdAt": now - STEADY_SINCE,
            "updatedAt": deployed + timedelta(minutes=3), "rolloutState": "COMPLETED",
            "rolloutStateReason": "ECS deployment completed.",
        })
        deployments.append(old)
        old_tasks = " ".join(f"(task {uuid.uuid4()})" for _ in range(2))  # moto's task id format
        new_tasks = " ".join(f"(task {uuid.uuid4()})" for _ in range(state.pending))
        events += [
            (deployed + timedelta(minutes=3), f"(service {name}) has stopped 2 running tasks: {old_tasks}."),
            (deployed + timedelta(minutes=3, seconds=30),
             f"(service {name}) deregistered 2 targets in (target-group {group_arn})"),
            (deployed + timedelta(minutes=7),
             f"(service {name}) (port {spec.port}) is unhealthy in (target-group {group_arn}) due to "
             "(reason Health checks failed with these codes: [503])."),
            (deployed + timedelta(minutes=8),
             f"(service {name}) (port {spec.port}) is unhealthy in (target-group {group_arn}) due to "
             "(reason Request timed out)."),
            (deployed + timedelta(minutes=10), f"(service {name}) has started {state.pending} tasks: "
                                               f"{new_tasks}."),
            (now - timedelta(minutes=2),
             f"(service {name}) is unable to consistently start tasks successfully. For more "
             "information, see the Troubleshooting section of the Amazon ECS Developer Guide."),
        ]
    else:
        events += [(deployed + timedelta(minutes=4), f"(service {name}) has reached a steady state."),
                   (now - timedelta(hours=2, minutes=17), f"(service {name}) has reached a steady state.")]
    events.sort(key=lambda e: e[0], reverse=True)
    return deployments, [{"id": str(uuid.uuid4()), "createdAt": at, "message": message}
                         for at, message in events if at <= now]


# --- RDS -----------------------------------------------------------------------------------------

def _rds(rds: Any, net: _Network) -> None:
    rds.create_db_subnet_group(DBSubnetGroupName="rms-production-db", DBSubnetGroupDescription="RMS database",
                               SubnetIds=net.private)
    rds.create_db_instance(
        DBInstanceIdentifier=DB_INSTANCE, Engine="postgres", EngineVersion="15.7",
        DBInstanceClass="db.t3.medium", AllocatedStorage=100, StorageType="gp3", DBName="rms",
        MasterUsername="rms_admin", MasterUserPassword=secrets.token_urlsafe(24),
        VpcSecurityGroupIds=[net.db_sg], DBSubnetGroupName="rms-production-db", MultiAZ=False,
        BackupRetentionPeriod=7, EnableCloudwatchLogsExports=["postgresql"],
        Tags=[{"Key": "Environment", "Value": "production"}],
    )


# --- CloudWatch metrics --------------------------------------------------------------------------

def _metrics(cloudwatch: Any, scenario: Scenario, out: SeededAws, now: datetime) -> None:
    minute0 = now.replace(second=0) - timedelta(minutes=MINUTES - 1)
    minutes = [(minute0 + timedelta(minutes=i), i) for i in range(MINUTES)]
    put_metrics(cloudwatch, metric_data(scenario, out.load_balancer_dimension, minutes))


def metric_data(scenario: Scenario, lb_dimension: str, minutes: list[tuple[datetime, int]]
                ) -> dict[str, list[dict[str, Any]]]:
    """CloudWatch datums by namespace for (minute, index into the scenario's series) pairs."""
    alb = [{"Name": "LoadBalancer", "Value": lb_dimension}]
    db = [{"Name": "DBInstanceIdentifier", "Value": DB_INSTANCE}]
    elb_5xx = [a + b for a, b in zip(scenario.elb_502, scenario.elb_503, strict=True)]
    # (namespace, metric, dimensions, per-minute values, unit, sparse): a sparse metric is published
    # only for minutes where it is non-zero, as the ALB does for its HTTPCode counts
    series = [
        ("AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count", alb, elb_5xx, "Count", True),
        ("AWS/ApplicationELB", "HTTPCode_ELB_502_Count", alb, scenario.elb_502, "Count", True),
        ("AWS/ApplicationELB", "HTTPCode_ELB_503_Count", alb, scenario.elb_503, "Count", True),
        ("AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", alb, scenario.target_5xx, "Count", True),
        ("AWS/ApplicationELB", "RequestCount", alb, scenario.request_count, "Count", True),
        ("AWS/ApplicationELB", "TargetResponseTime", alb,
         [ms / 1000 for ms in scenario.response_time_ms], "Seconds", False),
        ("AWS/RDS", "DatabaseConnections", db, scenario.db_connections, "Count", False),
        ("AWS/RDS", "CPUUtilization", db, scenario.db_cpu, "Percent", False),
    ]
    by_namespace: dict[str, list[dict[str, Any]]] = {}
    for namespace, metric, dims, values, unit, sparse in series:
        by_namespace.setdefault(namespace, []).extend(
            {"MetricName": metric, "Dimensions": dims, "Timestamp": at, "Value": float(values[i]), "Unit": unit}
            for at, i in minutes if values[i] or not sparse
        )
    for spec in layout.WORKERS:  # AWS/ECS CPU and memory of each worker (its one task), as statistic sets
        dims = [{"Name": "ClusterName", "Value": CLUSTER}, {"Name": "ServiceName", "Value": spec.name}]
        per_minute = worker_series(spec.name)
        for at, i in minutes:
            for metric, (average, peak) in zip(("CPUUtilization", "MemoryUtilization"), per_minute[i], strict=True):
                by_namespace.setdefault("AWS/ECS", []).append({
                    "MetricName": metric, "Dimensions": dims, "Timestamp": at, "Unit": "Percent",
                    "StatisticValues": {"SampleCount": 1.0, "Sum": average, "Maximum": peak,
                                        "Minimum": max(0.0, round(2 * average - peak, 2))}})
    return by_namespace


@functools.cache
def worker_series(name: str) -> tuple[tuple[tuple[float, float], tuple[float, float]], ...]:
    """Per minute, ((cpu average, peak), (memory average, peak)) of a quiet worker: far below any threshold.

    Its own random stream, so that adding workers changes no other series."""
    rng = random.Random(f"worker-{name}")
    out = []
    for _ in range(MINUTES):
        cpu, memory = rng.uniform(2.0, 6.0), rng.uniform(22.0, 30.0)
        out.append(((round(cpu, 2), round(cpu + rng.uniform(0.5, 3.0), 2)),
                    (round(memory, 2), round(memory + rng.uniform(0.5, 2.0), 2))))
    return tuple(out)


def put_metrics(cloudwatch: Any, by_namespace: dict[str, list[dict[str, Any]]]) -> None:
    for namespace, items in by_namespace.items():
        for offset in range(0, len(items), 500):
            cloudwatch.put_metric_data(Namespace=namespace, MetricData=items[offset:offset + 500])


# --- CloudWatch Logs -----------------------------------------------------------------------------

def _logs(logs: Any, scenario: Scenario, out: SeededAws, now: datetime) -> None:
    def first_task(service: str) -> str:
        tasks = out.tasks.get(service) or ["0" * 32]
        return tasks[0].rsplit("/", 1)[-1]

    streams = {
        "backend": f"ecs/rms-backend/{first_task('rms-backend')}",
        "frontend": f"ecs/rms-frontend/{first_task('rms-frontend')}",
        "rds": DB_INSTANCE,
        "waf": f"{layout.REGION}_rms-production-waf_0",
    }
    for key, group in LOG_GROUPS.items():
        logs.create_log_group(logGroupName=group, tags={"Environment": "production"})
        logs.put_retention_policy(logGroupName=group, retentionInDays=30)
        logs.create_log_stream(logGroupName=group, logStreamName=streams[key])
        events = []
        for line in scenario.log_lines:
            if line.group != key:
                continue
            at = now - timedelta(minutes=line.minutes_ago)
            message = line.message
            if key == "rds":  # the RDS log_line_prefix: %t:%r:%u@%d:[%p]:
                message = f"{at:%Y-%m-%d %H:%M:%S} {message}"
            elif key == "backend":
                message = f"{at:%Y-%m-%dT%H:%M:%S}.{at.microsecond // 1000:03d}Z {message}"
            events.append({"timestamp": int(at.timestamp() * 1000), "message": message})
        events.sort(key=lambda e: e["timestamp"])
        if events:
            logs.put_log_events(logGroupName=group, logStreamName=streams[key], logEvents=events)
    for spec in layout.WORKERS:  # where their task definitions' awslogs driver writes (no check reads them)
        logs.create_log_group(logGroupName=f"/ecs/{spec.name}", tags={"Environment": "production"})
        logs.put_retention_policy(logGroupName=f"/ecs/{spec.name}", retentionInDays=30)


# --- CloudFront ----------------------------------------------------------------------------------

def _cloudfront(cloudfront: Any, out: SeededAws) -> None:
    origin = "rms-alb"
    config = {
        "CallerReference": f"rms-frontend-{secrets.token_hex(4)}",
        "Comment": CLOUDFRONT_COMMENT,
        "Enabled": True,
        "Aliases": {"Quantity": 1, "Items": ["rms.company.com"]},
        "Origins": {"Quantity": 1, "Items": [{
            "Id": origin, "DomainName": out.load_balancer_dns,
            "CustomOriginConfig": {"HTTPPort": 80, "HTTPSPort": 443, "OriginProtocolPolicy": "http-only"},
        }]},
        "DefaultCacheBehavior": {
            "TargetOriginId": origin, "ViewerProtocolPolicy": "redirect-to-https",
            "ForwardedValues": {"QueryString": True, "Cookies": {"Forward": "all"}},
            "MinTTL": 0,
        },
        "PriceClass": "PriceClass_100",
    }
    out.distribution_id = cloudfront.create_distribution(DistributionConfig=config)["Distribution"]["Id"]
