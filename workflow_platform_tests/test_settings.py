"""One settings object: every path names a missing service variable the same way, none falls back to localhost,
and the code location's resources read the variables settings.py names."""

from __future__ import annotations

import dagster as dg
import pytest

from workflow_platform.resources import (
    NatsResource,
    ObjectStoreResource,
    PathwayResource,
    PostgresResource,
    service_resources,
)
from workflow_platform.settings import (
    ENDPOINT_VARIABLES,
    MissingSetting,
    ServiceSettings,
    admin_dsn,
    variable,
)

SERVICE_VARIABLES = [variable(field) for field in ServiceSettings.model_fields]


@pytest.fixture
def bare_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SERVICE_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("bare_environment")
@pytest.mark.parametrize(
    ("factory", "missing"),
    [
        (PostgresResource.from_settings, "WFP_PG_DSN"),
        (NatsResource.from_settings, "WFP_NATS_URL"),
        (ObjectStoreResource.from_settings, "WFP_S3_ENDPOINT"),
        (PathwayResource.from_settings, "WFP_PATHWAY_URL"),
    ],
)
def test_a_missing_endpoint_is_named_with_how_to_set_it(factory, missing):
    with pytest.raises(MissingSetting) as raised:
        factory(ServiceSettings())
    assert raised.value.variable == missing
    assert str(raised.value).startswith(f"{missing} is not set") and "wfp stack env" in str(raised.value)


@pytest.mark.usefixtures("bare_environment")
def test_no_endpoint_defaults_to_localhost():
    settings = ServiceSettings()
    assert not any(
        "127.0.0.1" in str(value) or "localhost" in str(value) for value in settings.model_dump().values()
    )
    with pytest.raises(MissingSetting, match="WFP_PG_DSN"):
        admin_dsn()


def test_admin_dsn_is_the_admin_role_else_the_workflows_role(monkeypatch):
    monkeypatch.setenv("WFP_PG_ADMIN_DSN", "postgresql://from-the-environment")
    assert admin_dsn({"WFP_PG_DSN": "postgresql://workflows"}) == "postgresql://workflows"  # only the mapping
    assert (
        admin_dsn({"WFP_PG_DSN": "postgresql://w", "WFP_PG_ADMIN_DSN": "postgresql://a"}) == "postgresql://a"
    )
    assert admin_dsn() == "postgresql://from-the-environment"


@pytest.mark.usefixtures("bare_environment")
def test_the_code_location_binds_the_variables_settings_names(monkeypatch):
    resources = service_resources()
    assert resources["postgres"].dsn == variable("pg_dsn") and isinstance(
        resources["postgres"].dsn, dg.EnvVar
    )
    assert resources["nats"].url == variable("nats_url")
    assert resources["pathway"].url == variable("pathway_url")
    store = resources["object_store"]
    assert (store.endpoint, store.access_key, store.secret_key) == tuple(
        variable(f) for f in ("s3_endpoint", "s3_access_key", "s3_secret_key")
    )
    assert (store.region, store.bucket) == (ServiceSettings().s3_region, ServiceSettings().s3_bucket)
    assert set(ENDPOINT_VARIABLES) <= set(SERVICE_VARIABLES)
    with pytest.raises(AttributeError):
        variable("pg_url")
