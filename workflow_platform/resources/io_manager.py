"""Where op outputs (step results) go: Dagster's default filesystem IO manager, or with WFP_IO_MANAGER=s3 the
platform's object store through dagster-aws's S3PickleIOManager, so a run's steps can execute in different
containers or hosts (docker-compose, DockerRunLauncher, K8sRunLauncher, Celery workers) and still read each
other's outputs. Read when the jobs are built (the code location), like every other resource binding."""

from __future__ import annotations

import os

import dagster as dg
from dagster_aws.s3 import S3PickleIOManager, S3Resource

IO_MANAGER_VARIABLE = "WFP_IO_MANAGER"  # unset / "filesystem": Dagster's default; "s3": the object store
# Dagster's own objects (op outputs, compute logs) live in a bucket of their own, not among the workflows' objects.
BUCKET_VARIABLE = "WFP_DAGSTER_BUCKET"
OUTPUTS_PREFIX = "io"


def io_manager_resources() -> dict[str, dg.ConfigurableIOManager]:
    choice = os.environ.get(IO_MANAGER_VARIABLE, "").strip().lower()
    if choice in ("", "filesystem"):
        return {}
    if choice != "s3":
        raise ValueError(f"{IO_MANAGER_VARIABLE}={choice!r}: expected 'filesystem' or 's3'")
    return {
        "io_manager": S3PickleIOManager(
            s3_resource=S3Resource(
                endpoint_url=dg.EnvVar("WFP_S3_ENDPOINT"),
                aws_access_key_id=dg.EnvVar("WFP_S3_ACCESS_KEY"),
                aws_secret_access_key=dg.EnvVar("WFP_S3_SECRET_KEY"),
                region_name=dg.EnvVar("WFP_S3_REGION"),
            ),
            s3_bucket=dg.EnvVar(BUCKET_VARIABLE),
            s3_prefix=OUTPUTS_PREFIX,
        )
    }
