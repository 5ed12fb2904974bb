"""One settings object: every path names a missing service variable the same way, none falls back to localhost,
and the code location's resources read the variables settings.py names."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import dagster as dg
import pytest

from workflow_platform.api.access import AccessPolicy
from workflow_platform.instance.database import instance_environment
from workflow_platform.orchestration.catalog import workflows_dirs
from workflow_platform.orchestration.object_links import object_url
from workflow_platform.pathway_service.__main__ import parse_args
from workflow_platform.plugins.http import registrations_file
from workflow_platform.resources import (
    NatsResource,
    ObjectStoreResource,
    PathwayResource,
    PostgresResource,
    service_resources,
)
from workflow_platform.settings import (
    ENDPOINT_VARIABLES,
    SETTINGS,
    MissingSetting,
    PathwayServiceSettings,
    PlatformSettings,
    ServiceSettings,
    admin_dsn,
    variable,
    wfp_home,
)
from workflow_platform.stack.processes import LOOPBACK, free_ports, http_ok, start_child, stop_child

SERVICE_VARIABLES = [variable(field) for field in ServiceSettings.model_fields]
PROCESS_VARIABLES = [
    variable(f) for settings in (PlatformSettings, PathwayServiceSettings) for f in settings.model_fields
]


@pytest.fixture
def bare_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SERVICE_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def bare_process_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No platform or Pathway service variable set, in an empty working directory (returned)."""
    for name in PROCESS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


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


def test_every_variable_is_named_once_and_foreign_names_are_kept():
    fields = [field for settings in SETTINGS for field in settings.model_fields]
    names = [variable(field) for field in fields]
    assert len(set(fields)) == len(fields) and len(set(names)) == len(names)
    assert all(name.startswith("WFP_") for name in SERVICE_VARIABLES)
    assert [variable(f) for f in ("workflows_dir", "dagster_home", "dagster_pg_url")] == [
        "WORKFLOWS_DIR",
        "DAGSTER_HOME",
        "DAGSTER_PG_URL",
    ]
    assert (variable("home"), variable("api_token"), variable("pathway_port")) == (
        "WFP_HOME",
        "WFP_API_TOKEN",
        "WFP_PATHWAY_PORT",
    )


def test_the_platform_defaults(bare_process_environment: Path):
    cwd = bare_process_environment
    assert workflows_dirs() == [cwd / "workflows"]
    assert registrations_file() == cwd / "plugins.json"
    assert wfp_home() == cwd / ".wfp"
    assert AccessPolicy.from_settings(PlatformSettings()) == AccessPolicy(None, None)
    assert object_url("b", "k/1") == "http://127.0.0.1:3000/api/objects/b/k/1"
    assert PlatformSettings().dagster_grpc_timeout_seconds == 180
    args = parse_args([])
    assert (args.host, args.port, args.request_timeout, args.log_level) == ("127.0.0.1", 8000, 300.0, "INFO")
    with pytest.raises(MissingSetting, match="^DAGSTER_HOME is not set"):
        PlatformSettings().require("dagster_home")


def test_the_platform_reads_its_variables(bare_process_environment: Path, monkeypatch: pytest.MonkeyPatch):
    cwd = bare_process_environment
    values = {
        "WORKFLOWS_DIR": os.pathsep.join([str(cwd / "shipped"), str(cwd / "submitted")]),
        "WFP_PLUGINS_FILE": str(cwd / "registered.json"),
        "WFP_HOME": "state",
        "WFP_API_TOKEN": "operator",
        "WFP_API_READ_TOKEN": "",  # empty is unset
        "WFP_API_URL": "https://wfp.example/",
        "DAGSTER_HOME": str(cwd / "instance"),
        "DAGSTER_PG_URL": "postgresql+psycopg2://dagster@db/dagster",
        "WFP_PATHWAY_PORT": "8123",
        "WFP_PATHWAY_REQUEST_TIMEOUT": "2.5",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    assert workflows_dirs() == [cwd / "shipped", cwd / "submitted"]
    assert registrations_file() == cwd / "registered.json"
    assert wfp_home() == cwd / "state"
    assert AccessPolicy.from_settings(PlatformSettings()) == AccessPolicy("operator", None)
    assert object_url("b", "k") == "https://wfp.example/api/objects/b/k"
    # A user's instance is used as it is (no admin DSN needed, nothing written under WFP_HOME).
    assert instance_environment("postgresql://unused") == {
        "DAGSTER_PG_URL": values["DAGSTER_PG_URL"],
        "DAGSTER_HOME": values["DAGSTER_HOME"],
    }
    assert not (cwd / "state").exists()
    args = parse_args(["--port", "9000"])  # an option overrides its variable
    assert (args.host, args.port, args.request_timeout) == ("127.0.0.1", 9000, 2.5)


def test_the_pathway_service_listens_where_its_variables_say(tmp_path: Path):
    (port,) = free_ports()
    env = {**os.environ, variable("pathway_host"): LOOPBACK, variable("pathway_port"): str(port)}
    process = start_child(
        "pathway",
        [sys.executable, "-m", "workflow_platform.pathway_service"],  # no options: the variables alone
        log_path=tmp_path / "service.log",
        ready=functools.partial(http_ok, f"http://{LOOPBACK}:{port}/health", timeout=5.0),
        timeout=60,
        env=env,
    )
    assert stop_child(process) == 0
