"""Where the pipeline's checkpoints live (Pathway persistence), and forgetting them for a replay.

Two backends (`StreamOptions.checkpoints`): the object store, under `fraud-stream/checkpoints/<consumer>/` of
the platform's bucket (WFP_S3_*), so that the stream keeps no state on its host and a process started
elsewhere resumes (Pathway's S3 backend, path-style requests; the embedded stack's SeaweedFS serves it); or a
directory (`persistence_dir`), for a host without an object store. Unset, it is the object store when
WFP_S3_ENDPOINT is set. The prefix is per durable consumer: two pipelines never share checkpoints.
"""

from __future__ import annotations

import shutil

import pathway as pw

from workflow_platform.settings import ServiceSettings

from .options import StreamOptions

PREFIX = "fraud-stream/checkpoints"


def config(options: StreamOptions) -> pw.persistence.Config:
    """Pathway's snapshots of the input read so far: a restarted pipeline replays them, then reads on."""
    return pw.persistence.Config(_backend(options), snapshot_interval_ms=options.snapshot_ms)


def reset(options: StreamOptions) -> None:
    """Forget every checkpoint, in both backends (the pipeline must be stopped): the next start reads from the
    durable consumer's position only, as a replay wants."""
    shutil.rmtree(options.persistence_dir, ignore_errors=True)
    if options.settings.s3_endpoint:
        _forget_prefix(options.settings, checkpoints_prefix(options))


def in_object_store(options: StreamOptions) -> bool:
    if options.checkpoints is None:
        return bool(options.settings.s3_endpoint)
    return options.checkpoints == "s3"


def location(options: StreamOptions) -> str:
    """Where the checkpoints are, for the logs."""
    if in_object_store(options):
        return f"s3://{options.settings.s3_bucket}/{checkpoints_prefix(options)}"
    return str(options.persistence_dir)


def checkpoints_prefix(options: StreamOptions) -> str:
    return f"{PREFIX}/{options.consumer}/"


def _backend(options: StreamOptions) -> pw.persistence.Backend:
    if not in_object_store(options):
        options.persistence_dir.mkdir(parents=True, exist_ok=True)
        return pw.persistence.Backend.filesystem(options.persistence_dir)
    settings = options.settings
    bucket = pw.io.s3.AwsS3Settings(
        bucket_name=settings.s3_bucket,
        access_key=settings.require("s3_access_key"),
        secret_access_key=settings.require("s3_secret_key"),
        with_path_style=True,  # the platform's server (SeaweedFS, MinIO) has no per-bucket host names
        region=settings.s3_region,
        endpoint=settings.require("s3_endpoint"),
    )
    return pw.persistence.Backend.s3(checkpoints_prefix(options).rstrip("/"), bucket_settings=bucket)


def _forget_prefix(settings: ServiceSettings, prefix: str) -> None:
    from minio.deleteobjects import DeleteObject

    from workflow_platform.resources.s3_client import settings_client

    client = settings_client(settings)
    listed = client.list_objects(settings.s3_bucket, prefix, recursive=True)
    failed = list(client.remove_objects(settings.s3_bucket, (DeleteObject(o.object_name) for o in listed)))
    if failed:
        raise RuntimeError(f"could not delete checkpoints under {prefix}: {failed[0]}")
