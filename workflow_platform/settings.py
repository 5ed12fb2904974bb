"""Where the platform's services are: the one settings object, naming each WFP_* service variable once.

The embedded stack (`stack/embedded.py`) writes these variables for the servers it starts; in production they point at
docker-compose services or managed ones. Secrets only ever come from here, never from workflow.json.

Code outside Dagster (API, CLI, preflight, loaders, the Pathway service) reads `ServiceSettings()` and builds its
clients with the resources' `from_settings()`; the Dagster code location binds its resources to the same variables
(`variable()`), resolved in the run so that secrets never show in the UI. An endpoint nobody configured is an error
naming its variable (`MissingSetting`), never a silent connection to localhost.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "WFP_"


def variable(field: str) -> str:
    """The environment variable of a ServiceSettings field: pg_dsn -> WFP_PG_DSN."""
    if field not in ServiceSettings.model_fields:
        raise AttributeError(f"ServiceSettings has no field {field!r}")
    return ENV_PREFIX + field.upper()


class MissingSetting(LookupError):
    """A service's variable is not set."""

    def __init__(self, name: str) -> None:
        self.variable = name
        super().__init__(
            f"{name} is not set: export it (see .env.example), or point this shell at the embedded stack with "
            f'`wfp stack up && eval "$(wfp stack env)"`'
        )


class ServiceSettings(BaseSettings):
    """Endpoints and credentials of the services the plugins talk to. Endpoints have no default: read them with
    `require()`, which names the missing variable."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    # The workflows' role: what steps (and what acts for them: sensors, preflight, health) connect as. Schemas,
    # demo data and the Dagster database are the admin's work: `admin_dsn()`.
    pg_dsn: str | None = Field(None, description="libpq DSN / URL of the workflows' role")
    pg_admin_dsn: str | None = Field(None, description="the platform's own role; default: pg_dsn")
    nats_url: str | None = Field(None, description="NATS with JetStream, e.g. nats://nats:4222")
    s3_endpoint: str | None = Field(None, description="S3/MinIO endpoint URL")
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    s3_region: str = "us-east-1"
    s3_bucket: str = Field("workflows", description="default bucket for minio actions")
    pathway_url: str | None = Field(None, description="the Pathway service, e.g. http://pathway:8000")
    # Where op outputs go (resources/io_manager.py): Dagster's filesystem default, or "s3": the object store,
    # in a bucket of Dagster's own, apart from the workflows' objects.
    io_manager: str = "filesystem"
    dagster_bucket: str | None = None
    http_allow: str | None = Field(None, description="outbound HTTP policy (resources/outbound.py)")
    api_url: str | None = Field(
        None, description="the API's address as readers reach it, for links in run metadata"
    )

    @classmethod
    def of(cls, env: Mapping[str, str]) -> ServiceSettings:
        """The settings `env` gives (a stack's variables, say), not os.environ."""
        values: dict[str, Any] = {f: env[variable(f)] for f in cls.model_fields if env.get(variable(f))}
        # Not cls(**values): constructing the model would read os.environ too. All the values are strings.
        return cls.model_construct(**values)

    def require(self, field: str) -> str:
        """The field's value, or MissingSetting naming its variable."""
        value = getattr(self, field)
        if not value:
            raise MissingSetting(variable(field))
        return value

    def admin_dsn(self) -> str:
        """The platform's own PostgreSQL connection (schemas, seeding, the Dagster database): WFP_PG_ADMIN_DSN,
        or WFP_PG_DSN where only that one is configured (then everything runs as its role)."""
        return self.pg_admin_dsn or self.require("pg_dsn")


# The variables that locate a service; if any is set, `wfp run` uses configured services instead of
# starting the embedded stack.
ENDPOINT_VARIABLES = tuple(
    variable(f) for f in ("pg_dsn", "pg_admin_dsn", "nats_url", "s3_endpoint", "pathway_url")
)


def endpoints_configured() -> bool:
    return any(os.environ.get(name) for name in ENDPOINT_VARIABLES)


def wfp_home() -> Path:
    """Local state of the CLI (embedded stack data, Dagster instance): $WFP_HOME or ./.wfp."""
    return Path(os.environ.get("WFP_HOME") or Path.cwd() / ".wfp").resolve()


def admin_dsn(env: Mapping[str, str] | None = None) -> str:
    """`ServiceSettings.admin_dsn()` of `env` (default: os.environ)."""
    return (ServiceSettings() if env is None else ServiceSettings.of(env)).admin_dsn()
