"""Where op outputs (step results) go: Dagster's default filesystem IO manager, or with WFP_IO_MANAGER=s3 the
platform's object store through dagster-aws's S3PickleIOManager, so a run's steps can execute in different
containers or hosts (docker-compose, DockerRunLauncher, K8sRunLauncher, Celery workers) and still read each
other's outputs. Read when the code location loads, like every other resource binding."""

from __future__ import annotations

import dagster as dg
from dagster_aws.s3 import S3PickleIOManager, S3Resource

from workflow_platform.settings import ServiceSettings, variable

OUTPUTS_PREFIX = "io"


def io_manager_resources(settings: ServiceSettings) -> dict[str, dg.ConfigurableIOManager]:
    choice = settings.io_manager.strip().lower()
    if choice in ("", "filesystem"):
        return {}
    if choice != "s3":
        raise ValueError(f"{variable('io_manager')}={choice!r}: expected 'filesystem' or 's3'")
    return {
        "io_manager": S3PickleIOManager(
            s3_resource=S3Resource(
                endpoint_url=dg.EnvVar(variable("s3_endpoint")),
                aws_access_key_id=dg.EnvVar(variable("s3_access_key")),
                aws_secret_access_key=dg.EnvVar(variable("s3_secret_key")),
                region_name=settings.s3_region,
            ),
            # Dagster's own objects (op outputs, compute logs) live in a bucket of their own.
            s3_bucket=dg.EnvVar(variable("dagster_bucket")),
            s3_prefix=OUTPUTS_PREFIX,
        )
    }
