"""Where the pipeline's checkpoints live (Pathway persistence), who uses them, and forgetting them for a replay.

Two backends (`StreamOptions.checkpoints`): the object store, under `fraud-stream/checkpoints/<consumer>/` of
the platform's bucket (WFP_S3_*), so that the checkpoints outlive the host and a pipeline started elsewhere
resumes (Pathway's S3 backend, path-style requests; the embedded stack's SeaweedFS serves it); or the
persistence dir, for a host without an object store. "auto": the object store when WFP_S3_ENDPOINT is set.
The prefix is per durable consumer: two pipelines never share checkpoints.

One pipeline at a time per persistence dir: it holds an exclusive lock on `<dir>.lock` (beside the dir, so a
reset keeps it) while it runs. The kernel drops the lock when the process ends, however it ends. The lock,
like the replay marker below, is on the host whichever the backend: one host supervises a pipeline at a time.

After a replay the checkpoints hold transactions read only for the windows' history: `<dir>.emit-from` keeps
the replay's instant, so every later start of the pipeline on them (--emit-from) scores none of those again.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from workflow_platform.settings import ServiceSettings

from .options import StreamOptions

if TYPE_CHECKING:
    import pathway as pw

PREFIX = "fraud-stream/checkpoints"


class PersistenceInUse(RuntimeError):
    """Another pipeline runs on these checkpoints."""


def config(options: StreamOptions) -> pw.persistence.Config:
    """Pathway's snapshots of the input read so far: a restarted pipeline replays them, then reads on."""
    import pathway as pw  # here: the supervisor uses this module without running (or importing) Pathway

    return pw.persistence.Config(_backend(options), snapshot_interval_ms=options.snapshot_ms)


@contextmanager
def exclusive(options: StreamOptions) -> Iterator[None]:
    """Hold the checkpoints for this process; PersistenceInUse if another process holds them."""
    path = _beside(options, ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PersistenceInUse(f"another pipeline runs on {options.persistence_dir}") from None
        yield


def in_use(options: StreamOptions) -> bool:
    """Whether a pipeline (e.g. one left by a killed supervisor, still stopping) holds the checkpoints."""
    try:
        with exclusive(options):
            return False
    except PersistenceInUse:
        return True


def reset(options: StreamOptions) -> None:
    """Forget every checkpoint, in both backends (the pipeline must be stopped): the next start reads from the
    durable consumer's position only, as a replay wants."""
    shutil.rmtree(options.persistence_dir, ignore_errors=True)
    if options.settings.s3_endpoint:
        _forget_prefix(options.settings, checkpoints_prefix(options))
    _beside(options, ".emit-from").unlink(missing_ok=True)


def mark_replay(options: StreamOptions, replay_from: dt.datetime) -> None:
    """Checkpoints just reset for a replay from this instant: what comes before it is history, not scored."""
    _beside(options, ".emit-from").write_text(replay_from.isoformat() + "\n")


def replayed_from(options: StreamOptions) -> dt.datetime | None:
    """The instant of the replay these checkpoints started with (None: they hold no replay)."""
    try:
        return dt.datetime.fromisoformat(_beside(options, ".emit-from").read_text().strip())
    except FileNotFoundError:
        return None


def in_object_store(options: StreamOptions) -> bool:
    if options.checkpoints == "auto":
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
    import pathway as pw

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


def compiled_models_dir(options: StreamOptions) -> Path:
    """Where the pipeline keeps its compiled models (fraud.compiled): its own, beside its checkpoints."""
    return _beside(options, "-models")


def _beside(options: StreamOptions, suffix: str) -> Path:
    return options.persistence_dir.with_name(options.persistence_dir.name + suffix)
