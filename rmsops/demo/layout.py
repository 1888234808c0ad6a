"""Names of the emulated RMS production resources, shared by the seeders and the environment file."""

from __future__ import annotations

from dataclasses import dataclass

# The environment's region: `rmsops demo --region` changes it (use_region) before anything is seeded.
# Seeders read layout.REGION when they run, never a copy taken at import.
REGION = "us-east-1"
# Where AWS keeps CloudFront's metrics, its certificate and WAF, and the global services' CloudTrail
# events, whatever the environment's region (rmsops.sources.regions).
GLOBAL_REGION = "us-east-1"
CLUSTER = "rms-production"
ALB = "rms-alb"
DB_INSTANCE = "rms-production-db"
MONITOR_USER = "rmsops_monitor"
SECRET_NAME = "rms/demo/rmsops-monitor"
CLOUDFRONT_COMMENT = "RMS Frontend"
LOG_GROUPS = {
    "backend": "/ecs/rms-backend",
    "frontend": "/ecs/rms-frontend",
    "rds": f"/aws/rds/instance/{DB_INSTANCE}/postgresql",
    "waf": "aws-waf-logs-rms-production",
}
CLOUDFRONT_WAF_LOG_GROUP = "aws-waf-logs-rms-cdn"  # CloudFront's web ACL: in GLOBAL_REGION
ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    container: str
    port: int
    health_path: str
    images: tuple[str, ...]  # one per task definition revision, oldest first
    cpu: int
    memory: int


SERVICES = (
    ServiceSpec("rms-backend", "rms-backend", 8000, "/api/health",
                (f"{ECR}/rms-backend:2.13.2", f"{ECR}/rms-backend:2.14.0"), 512, 1024),
    ServiceSpec("rms-frontend", "rms-frontend", 80, "/",
                (f"{ECR}/rms-frontend:2.14.0",), 256, 512),
)


# Small worker services (`rmsops demo --workers N`, use_workers): healthy, one task each, not behind
# the ALB unless `--target-groups` puts the first ones there. Seeders read layout.WORKERS (or
# all_services(), alb_services()) when they run, never a copy taken at import.
WORKERS: tuple[ServiceSpec, ...] = ()
MAX_WORKERS = 99  # rms-worker-01 … rms-worker-99
WORKER_IMAGE = f"{ECR}/rms-worker:2.14.0"
WORKER_PORT = 8080  # a worker behind the ALB serves its health URL here
ALB_TARGET_GROUPS = len(SERVICES)  # rms-backend's and rms-frontend's


def worker_spec(number: int, behind_alb: bool = False) -> ServiceSpec:
    """rms-worker-NN: one container; no port (no portMappings, no target group) unless behind the ALB."""
    name = f"rms-worker-{number:02d}"
    if behind_alb:
        return ServiceSpec(name, name, WORKER_PORT, "/health", (WORKER_IMAGE,), 256, 512)
    return ServiceSpec(name, name, 0, "", (WORKER_IMAGE,), 256, 512)


def use_workers(count: int, target_groups: int = ALB_TARGET_GROUPS) -> None:
    """Seed *count* worker services besides rms-backend and rms-frontend (0: none, the default).

    ``target_groups``: the ALB's target groups; beyond the two services' ones, each puts one more
    worker (rms-worker-01, -02, …) behind the ALB with its own group and listener rule.
    """
    global WORKERS
    if not 0 <= count <= MAX_WORKERS:
        raise ValueError(f"workers: expected 0 to {MAX_WORKERS}, got {count}")
    behind = target_groups - ALB_TARGET_GROUPS
    if not 0 <= behind <= count:
        raise ValueError(f"target groups: expected {ALB_TARGET_GROUPS} to {ALB_TARGET_GROUPS + count} with {count} "
                         f"worker(s) (each group beyond {ALB_TARGET_GROUPS} fronts a worker), got {target_groups}")
    WORKERS = tuple(worker_spec(n, behind_alb=n <= behind) for n in range(1, count + 1))


def all_services() -> tuple[ServiceSpec, ...]:
    """Every ECS service of the cluster: the ALB's two, then the workers."""
    return SERVICES + WORKERS


def alb_services() -> tuple[ServiceSpec, ...]:
    """The services behind the ALB, one target group each (named after the service)."""
    return SERVICES + tuple(spec for spec in WORKERS if spec.port)


def use_region(region: str) -> None:
    """Seed the emulated environment in ``region`` (what stays in us-east-1 stays there)."""
    global REGION
    REGION = region
