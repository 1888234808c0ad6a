"""Names of the emulated RMS production resources, shared by the seeders and the environment file."""

from __future__ import annotations

from dataclasses import dataclass

REGION = "us-east-1"
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
