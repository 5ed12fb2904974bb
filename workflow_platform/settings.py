"""The one place that names the platform's environment variables, with their defaults.

Three settings objects, one per concern, read the same way:
- `ServiceSettings`: where the services the plugins talk to are (endpoints, credentials), every WFP_* service
  variable. The embedded stack (`stack/embedded.py`) writes these variables for the servers it starts; in
  production they point at docker-compose services or managed ones. Secrets only ever come from here, never
  from workflow.json.
- `PlatformSettings`: how the platform's own processes (CLI, API, Dagster instance) run: their state folder,
  workflow folders, registered plugins, API address and tokens. WORKFLOWS_DIR and Dagster's DAGSTER_HOME,
  DAGSTER_PG_URL and DAGSTER_GRPC_TIMEOUT_SECONDS keep their names (Dagster reads its own ones itself too).
- `PathwayServiceSettings`: where the Pathway service's process listens, its timeout and log level.

Code outside Dagster (API, CLI, preflight, loaders, the Pathway service) reads these objects, and builds its
clients with the resources' `from_settings()`; the Dagster code location binds its resources to the same
variables (`variable()`), resolved in the run so that secrets never show in the UI. An endpoint nobody
configured is an error naming its variable (`MissingSetting`), never a silent connection to localhost.
Environments built for child processes take their variable names from `variable()` too.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "WFP_"


def variable(field: str) -> str:
    """The environment variable of a settings field: pg_dsn -> WFP_PG_DSN, workflows_dir -> WORKFLOWS_DIR."""
    for settings in SETTINGS:
        if field in settings.model_fields:
            alias = settings.model_fields[field].validation_alias
            return alias if isinstance(alias, str) else ENV_PREFIX + field.upper()
    raise AttributeError(f"no settings object has a field {field!r}")


class MissingSetting(LookupError):
    """A required variable is not set."""

    def __init__(self, name: str) -> None:
        self.variable = name
        super().__init__(
            f"{name} is not set: export it (see .env.example), or point this shell at the embedded stack with "
            f'`wfp stack up && eval "$(wfp stack env)"`'
        )


class _Settings(BaseSettings):
    def require(self, field: str) -> str:
        """The field's value, or MissingSetting naming its variable."""
        value = getattr(self, field)
        if not value:
            raise MissingSetting(variable(field))
        return value


class ServiceSettings(_Settings):
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

    @classmethod
    def of(cls, env: Mapping[str, str]) -> ServiceSettings:
        """The settings `env` gives (a stack's variables, say), not os.environ."""
        values: dict[str, Any] = {f: env[variable(f)] for f in cls.model_fields if env.get(variable(f))}
        # Not cls(**values): constructing the model would read os.environ too. All the values are strings.
        return cls.model_construct(**values)

    def admin_dsn(self) -> str:
        """The platform's own PostgreSQL connection (schemas, seeding, the Dagster database): WFP_PG_ADMIN_DSN,
        or WFP_PG_DSN where only that one is configured (then everything runs as its role)."""
        return self.pg_admin_dsn or self.require("pg_dsn")


class PlatformSettings(_Settings):
    """How the platform's own processes run. An empty variable counts as unset (its default applies)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", env_ignore_empty=True)

    home: Path | None = Field(
        None, description="the CLI's local state (embedded stack, Dagster instance): wfp_home()"
    )
    workflows_dir: str | None = Field(
        None,
        validation_alias="WORKFLOWS_DIR",
        description="workflow folders, separated by ':' (the first wins a name; the API adds to the last)",
    )
    plugins_file: Path | None = Field(None, description="the registered HTTP plugins (plugins/http.py)")
    # Where the CLI looks for the API (`wfp up`'s address with its default options); also the base of the
    # links to stored objects in run metadata (orchestration/object_links.py): set it where the API has a
    # public name.
    api_url: str = "http://127.0.0.1:3000"
    api_token: str | None = Field(None, description="the operator's token (api/access.py)")
    api_read_token: str | None = Field(None, description="the viewer's token (api/access.py)")
    dagster_ui_url: str | None = Field(
        None, description="the Dagster UI, for `wfp api` to reload code locations"
    )
    dagster_home: str | None = Field(
        None, validation_alias="DAGSTER_HOME", description="the Dagster instance"
    )
    dagster_pg_url: str | None = Field(
        None, validation_alias="DAGSTER_PG_URL", description="the Dagster instance's storage (SQLAlchemy URL)"
    )
    # How long a gRPC call to the code server may take, starting a run included (the run worker is a new
    # Python process that imports the code location), in the processes `wfp up` starts. Dagster's own 60 s
    # default fails runs that are merely slow to start on a loaded machine; this matches
    # run_monitoring.start_timeout_seconds in dagster.yaml, which still catches runs that never start.
    dagster_grpc_timeout_seconds: int = Field(180, validation_alias="DAGSTER_GRPC_TIMEOUT_SECONDS")
    # The Celery scale-out (deploy/scale-out/celery): `wfp up --launcher celery` defaults both to the instance's
    # own PostgreSQL (kombu's SQLAlchemy transport).
    celery_broker_url: str | None = Field(None, description="CeleryRunLauncher's and the workers' broker")
    celery_backend_url: str | None = Field(None, description="where Celery keeps the runs' task results")

    def workflows_path(self, project_dir: Path | None = None) -> str:
        """WORKFLOWS_DIR, else the `workflows` folder of `project_dir` (default: the working directory)."""
        return self.workflows_dir or str((project_dir or Path.cwd()) / "workflows")


class PathwayServiceSettings(_Settings):
    """The Pathway service's process (`python -m workflow_platform.pathway_service`, whose options override
    these). An empty variable counts as unset."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", env_ignore_empty=True)

    pathway_host: str = "127.0.0.1"
    pathway_port: int = 8000
    pathway_request_timeout: float = Field(
        300.0, description="seconds after which a request still without an answer gets a 504"
    )
    pathway_log_level: str = "INFO"


# Every settings object; `variable()` looks a field up in them (field names are unique across them).
SETTINGS: tuple[type[_Settings], ...] = (ServiceSettings, PlatformSettings, PathwayServiceSettings)

# The service fields that locate a service; if any is set, `wfp run` uses configured services instead of
# starting the embedded stack.
ENDPOINT_FIELDS = ("pg_dsn", "pg_admin_dsn", "nats_url", "s3_endpoint", "pathway_url")
ENDPOINT_VARIABLES = tuple(variable(f) for f in ENDPOINT_FIELDS)


def endpoints_configured() -> bool:
    settings = ServiceSettings()
    return any(getattr(settings, field) for field in ENDPOINT_FIELDS)


def wfp_home() -> Path:
    """Local state of the CLI (embedded stack data, Dagster instance): $WFP_HOME or ./.wfp."""
    return (PlatformSettings().home or Path.cwd() / ".wfp").resolve()


def admin_dsn(env: Mapping[str, str] | None = None) -> str:
    """`ServiceSettings.admin_dsn()` of `env` (default: os.environ)."""
    return (ServiceSettings() if env is None else ServiceSettings.of(env)).admin_dsn()
