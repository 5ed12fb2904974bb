"""Where the platform's services are: one environment-variable scheme shared by every entry point.

The embedded stack (`stack/embedded.py`) writes these variables for the servers it starts; in production they point at
docker-compose services or managed ones. Secrets only ever come from here, never from workflow.json.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# The variables that locate a service; if any is set, `wfp run` uses configured services instead of
# starting the embedded stack.
ENDPOINT_VARIABLES = ("WFP_PG_DSN", "WFP_PG_ADMIN_DSN", "WFP_NATS_URL", "WFP_S3_ENDPOINT", "WFP_PATHWAY_URL")
DEFAULT_PG_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


class ServiceSettings(BaseSettings):
    """Endpoints and credentials of the services the plugins talk to."""

    model_config = SettingsConfigDict(env_prefix="WFP_", extra="ignore")

    # The workflows' role: what steps (and what acts for them: sensors, preflight, health) connect as. Schemas,
    # demo data and the Dagster database are the admin's work: `admin_dsn()`.
    pg_dsn: str = Field(DEFAULT_PG_DSN, description="libpq DSN / URL of the workflows' role")
    nats_url: str = Field("nats://127.0.0.1:4222")
    s3_endpoint: str = Field("http://127.0.0.1:9000", description="S3/MinIO endpoint URL")
    s3_access_key: str = Field("minioadmin")
    s3_secret_key: str = Field("minioadmin")
    s3_region: str = Field("us-east-1")
    s3_bucket: str = Field("workflows", description="default bucket for minio actions")
    pathway_url: str = Field("http://127.0.0.1:8000")


def endpoints_configured() -> bool:
    return any(os.environ.get(name) for name in ENDPOINT_VARIABLES)


def wfp_home() -> Path:
    """Local state of the CLI (embedded stack data, Dagster instance): $WFP_HOME or ./.wfp."""
    return Path(os.environ.get("WFP_HOME") or Path.cwd() / ".wfp").resolve()


def admin_dsn(env: Mapping[str, str] | None = None) -> str:
    """The platform's own PostgreSQL connection (schemas, seeding, the Dagster database): WFP_PG_ADMIN_DSN, or
    WFP_PG_DSN where only that one is configured (then everything runs as its role)."""
    env = os.environ if env is None else env
    return env.get("WFP_PG_ADMIN_DSN") or env.get("WFP_PG_DSN") or DEFAULT_PG_DSN
