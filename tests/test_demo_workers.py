"""`rmsops demo --workers N`: N small, healthy worker services seeded next to the ALB's two.

Seeds the demo's AWS side into moto in-process (mock_aws, no server, no PostgreSQL), so it stays fast.
"""

from __future__ import annotations

import pytest
from moto import mock_aws

from rmsops.core import config
from rmsops.demo import envfile, layout, scenarios, seed_aws
from rmsops.demo.moto_patches import MotoPatches

WORKERS = [f"rms-worker-{n:02d}" for n in range(1, 11)]


@pytest.fixture
def workers():
    layout.use_workers(len(WORKERS))
    try:
        yield
    finally:
        layout.use_workers(0)


def test_workers_are_seeded_healthy_and_listed(workers, tmp_path):
    with mock_aws():
        patches = MotoPatches()
        patches.install()
        try:
            seed_aws.seed(None, scenarios.get("healthy"), patches, "monitor-password")
            ecs = seed_aws.client_factory(None)("ecs")
            names = [s.name for s in layout.all_services()]
            assert names == ["rms-backend", "rms-frontend", *WORKERS]
            described = {s["serviceName"]: s for offset in range(0, len(names), 10)
                         for s in ecs.describe_services(cluster=layout.CLUSTER,
                                                        services=names[offset:offset + 10])["services"]}
            tasks = ecs.describe_tasks(cluster=layout.CLUSTER, tasks=ecs.list_tasks(
                cluster=layout.CLUSTER, desiredStatus="RUNNING")["taskArns"])["tasks"]
            for name in WORKERS:
                svc = described[name]
                assert (svc["desiredCount"], svc["runningCount"], svc["pendingCount"]) == (1, 1, 0)
                assert svc["taskDefinition"].endswith(f":task-definition/{name}:1") and not svc["loadBalancers"]
                assert [(d["status"], d["rolloutState"]) for d in svc["deployments"]] == [("PRIMARY", "COMPLETED")]
                td = ecs.describe_task_definition(taskDefinition=f"{name}:1")["taskDefinition"]
                [container] = td["containerDefinitions"]
                assert (td["cpu"], td["memory"]) == ("256", "512") and container["image"].startswith(layout.ECR)
                mine = [t for t in tasks if t["group"] == f"service:{name}"]
                assert [t["healthStatus"] for t in mine] == ["HEALTHY"]
            cluster = ecs.describe_clusters(clusters=[layout.CLUSTER])["clusters"][0]
            assert (cluster["activeServicesCount"], cluster["runningTasksCount"]) == (12, 4 + len(WORKERS))
            pages = seed_aws.client_factory(None)("cloudwatch").get_paginator("list_metrics").paginate(
                Namespace="AWS/ECS", MetricName="MemoryUtilization")
            measured = {d["Value"] for page in pages for m in page["Metrics"] for d in m["Dimensions"]
                        if d["Name"] == "ServiceName"}
            assert measured >= set(WORKERS)
        finally:
            patches.remove()
    path = envfile.write(tmp_path / "demo.yaml", envfile.render("healthy", "http://127.0.0.1:4566", 5432, {}))
    settings = config.load(path)
    assert settings.services == ("rms-backend", "rms-frontend", *WORKERS)
    assert settings.target_groups == ("rms-backend", "rms-frontend")  # the workers are not behind the ALB


@pytest.fixture
def four_target_groups():
    layout.use_workers(len(WORKERS), target_groups=4)
    try:
        yield
    finally:
        layout.use_workers(0)


def test_target_groups_put_the_first_workers_behind_the_alb(four_target_groups, tmp_path):
    """`--workers 10 --target-groups 4`: rms-worker-01 and -02 get a target group each, their task
    registered and healthy, a listener rule; the other workers stay off the ALB."""
    behind = WORKERS[:2]
    with mock_aws():
        patches = MotoPatches()
        patches.install()
        try:
            seeded = seed_aws.seed(None, scenarios.get("healthy"), patches, "monitor-password")
            client = seed_aws.client_factory(None)
            ecs, elb = client("ecs"), client("elbv2")
            assert list(seeded.target_groups) == ["rms-backend", "rms-frontend", *behind]
            services = {s["serviceName"]: s for s in ecs.describe_services(cluster=layout.CLUSTER,
                                                                           services=WORKERS[:3])["services"]}
            for name in behind:
                [balanced] = services[name]["loadBalancers"]
                assert (balanced["targetGroupArn"], balanced["containerPort"]) == (seeded.target_groups[name],
                                                                                   layout.WORKER_PORT)
                health = elb.describe_target_health(TargetGroupArn=seeded.target_groups[name])
                assert [(h["Target"]["Id"], h["TargetHealth"]["State"]) for h in health["TargetHealthDescriptions"]
                        ] == [(ip, "healthy") for ip in seeded.targets[name]]
                td = ecs.describe_task_definition(taskDefinition=f"{name}:1")["taskDefinition"]
                assert td["containerDefinitions"][0]["portMappings"][0]["containerPort"] == layout.WORKER_PORT
            assert not services[WORKERS[2]]["loadBalancers"]
            listener = elb.describe_listeners(LoadBalancerArn=seeded.load_balancer_arn)["Listeners"][0]
            paths = [c["Values"][0] for r in elb.describe_rules(ListenerArn=listener["ListenerArn"])["Rules"]
                     for c in r["Conditions"]]
            assert paths == ["/api/*", *(f"/workers/{name}/*" for name in behind)]
        finally:
            patches.remove()
    path = envfile.write(tmp_path / "demo.yaml", envfile.render("healthy", "http://127.0.0.1:4566", 5432, {}))
    assert config.load(path).target_groups == ("rms-backend", "rms-frontend", *behind)


def test_target_groups_beyond_the_workers_are_refused():
    with pytest.raises(ValueError, match="expected 2 to 3 with 1 worker"):
        layout.use_workers(1, target_groups=4)
    layout.use_workers(0)
