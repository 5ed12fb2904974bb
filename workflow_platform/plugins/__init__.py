"""The plugin registry: built-in plugins plus HTTP plugins registered in WFP_PLUGINS_FILE."""

from __future__ import annotations

from workflow_platform.language.actions import Action, ActionError, ActionOutput, Plugin, StepContext, Touched
from workflow_platform.plugins.fraud import FRAUD
from workflow_platform.plugins.http import HTTP, load_registrations, registered_plugin
from workflow_platform.plugins.minio import MINIO
from workflow_platform.plugins.nats import NATS
from workflow_platform.plugins.pathway import PATHWAY
from workflow_platform.plugins.postgres import POSTGRES
from workflow_platform.plugins.report import REPORT

BUILTIN_PLUGINS: dict[str, Plugin] = {p.id: p for p in (POSTGRES, MINIO, NATS, PATHWAY, HTTP, REPORT, FRAUD)}
BUILTIN_IDS = frozenset(BUILTIN_PLUGINS)

__all__ = ["Action", "ActionError", "ActionOutput", "Plugin", "StepContext", "Touched", "plugin_registry"]


def plugin_registry() -> dict[str, Plugin]:
    """Built-in plugins and registered HTTP plugins (a registration cannot shadow a built-in)."""
    registered = {r.id: registered_plugin(r) for r in load_registrations() if r.id not in BUILTIN_PLUGINS}
    return {**registered, **BUILTIN_PLUGINS}
