"""Dagster resources wrapping the services the plugins talk to; their variables are named in settings.py."""

from __future__ import annotations

import dagster as dg

from workflow_platform.resources.http import HttpResource
from workflow_platform.resources.io_manager import io_manager_resources
from workflow_platform.resources.nats import NatsResource
from workflow_platform.resources.object_store import ObjectStoreResource
from workflow_platform.resources.pathway import PathwayResource
from workflow_platform.resources.postgres import PostgresResource
from workflow_platform.settings import ServiceSettings, variable

__all__ = [
    "HttpResource",
    "NatsResource",
    "ObjectStoreResource",
    "PathwayResource",
    "PostgresResource",
    "service_resources",
]


def service_resources(settings: ServiceSettings | None = None) -> dict[str, dg.ConfigurableResource]:
    """The resources the code location binds for every job, sensor and schedule. Endpoints and secrets are
    Dagster EnvVars, resolved in the run (the UI shows the variable's name, never its value); the choices that
    have a default (region, bucket, IO manager) are read from `settings` (default: the environment) now."""
    settings = ServiceSettings() if settings is None else settings

    def env(field: str) -> dg.EnvVar:
        return dg.EnvVar(variable(field))

    return {
        **io_manager_resources(settings),
        "postgres": PostgresResource(dsn=env("pg_dsn")),
        "object_store": ObjectStoreResource(
            endpoint=env("s3_endpoint"),
            access_key=env("s3_access_key"),
            secret_key=env("s3_secret_key"),
            region=settings.s3_region,
            bucket=settings.s3_bucket,
        ),
        "nats": NatsResource(url=env("nats_url")),
        "pathway": PathwayResource(url=env("pathway_url")),
        "http": HttpResource(),
    }
