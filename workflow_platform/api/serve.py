"""`wfp api`: the HTTP API on its own, against a Dagster deployment that is already running (docker-compose's
`api` service). `wfp up` serves the same app next to the processes it starts; here the code server, webserver and
daemon are other containers, found through the workspace file and WFP_DAGSTER_UI_URL.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from workflow_platform.api.runs import LocationOrigins
from workflow_platform.settings import PlatformSettings, variable

# The API's instance: a pool of storage connections for its request threads (as under `wfp up`).
API_DB_POOL_SIZE = 8


def location_origins(workspace_file: Path, module: str, working_directory: Path) -> LocationOrigins:
    """Where runs' jobs come from: the workspace's grpc_server (what the webserver and daemon load) and the module
    a run worker imports."""
    entries = (yaml.safe_load(workspace_file.read_text()) or {}).get("load_from") or []
    for entry in entries:
        if isinstance(entry, dict) and isinstance(server := entry.get("grpc_server"), dict):
            return LocationOrigins(
                server.get("location_name") or module,
                server.get("host", "localhost"),
                int(server["port"]),
                module,
                str(working_directory),
            )
    raise RuntimeError(f"{workspace_file} declares no grpc_server code location")


def serve_api(host: str, port: int, workspace_file: Path, module: str) -> None:
    import dagster as dg
    import uvicorn

    from workflow_platform.api.access import AccessPolicy
    from workflow_platform.api.app import create_app
    from workflow_platform.api.code_location import CodeLocationReloader
    from workflow_platform.api.config import ApiConfig
    from workflow_platform.api.idempotency import IdempotencyKeys
    from workflow_platform.api.runs import RunSubmitter
    from workflow_platform.instance.database import pool_storage_connections
    from workflow_platform.instance.launcher.run_launcher import WarmRunLauncher

    settings = PlatformSettings()
    access = AccessPolicy.from_settings(settings)
    access.check_listen(host)
    missing = [
        variable(f) for f in ("dagster_pg_url", "dagster_ui_url", "workflows_dir") if not getattr(settings, f)
    ]
    if missing:
        raise RuntimeError(f"wfp api needs {', '.join(missing)} (see .env.example and docker-compose.yml)")
    ui = urlsplit(settings.require("dagster_ui_url"))
    submitted = Path(settings.require("workflows_dir").split(os.pathsep)[-1])
    submitted.mkdir(parents=True, exist_ok=True)
    plugins_file = settings.plugins_file or submitted / "plugins.json"
    origins = location_origins(workspace_file, module, Path.cwd())
    with dg.DagsterInstance.get() as instance:
        pool_storage_connections(instance, size=API_DB_POOL_SIZE, name="wfp-api")
        api_config = ApiConfig(
            instance=instance,
            runs=RunSubmitter(instance, origins),
            idempotency=IdempotencyKeys(settings.require("dagster_pg_url")),
            code_location=CodeLocationReloader(
                ui.hostname or "localhost",
                ui.port or 80,
                headers=access.operator_headers(),
                runs_need_code_server=not isinstance(instance.run_launcher, WarmRunLauncher),
            ),
            submitted_dir=submitted,
            plugins_file=plugins_file,
            access=access,
        )
        uvicorn.Server(uvicorn.Config(create_app(api_config), host=host, port=port, log_level="info")).run()
