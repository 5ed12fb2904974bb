"""Dagster resources wrapping the services the plugins talk to; endpoints come from WFP_* variables."""

from __future__ import annotations

import dagster as dg

from workflow_platform.resources.http import HttpResource
from workflow_platform.resources.io_manager import io_manager_resources
from workflow_platform.resources.nats import NatsResource
from workflow_platform.resources.object_store import ObjectStoreResource
from workflow_platform.resources.pathway import PathwayResource
from workflow_platform.resources.postgres import PostgresResource

__all__ = [
    "HttpResource",
    "NatsResource",
    "ObjectStoreResource",
    "PathwayResource",
    "PostgresResource",
    "service_resources",
]


def service_resources() -> dict[str, dg.ConfigurableResource]:
    """The resources every workflow job gets, configured from the environment at run time (the IO manager:
    Dagster's default unless WFP_IO_MANAGER selects the object store)."""
    return {
        **io_manager_resources(),
        "postgres": PostgresResource(dsn=dg.EnvVar("WFP_PG_DSN")),
        "object_store": ObjectStoreResource(
            endpoint=dg.EnvVar("WFP_S3_ENDPOINT"),
            access_key=dg.EnvVar("WFP_S3_ACCESS_KEY"),
            secret_key=dg.EnvVar("WFP_S3_SECRET_KEY"),
            region=dg.EnvVar("WFP_S3_REGION"),
            bucket=dg.EnvVar("WFP_S3_BUCKET"),
        ),
        "nats": NatsResource(url=dg.EnvVar("WFP_NATS_URL")),
        "pathway": PathwayResource(url=dg.EnvVar("WFP_PATHWAY_URL")),
        "http": HttpResource(),
    }
