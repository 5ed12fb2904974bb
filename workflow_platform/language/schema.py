"""JSON Schema of workflow.json, with each plugin action's input schema, for editors and API clients."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic.json_schema import models_json_schema

from workflow_platform.language.actions import Plugin
from workflow_platform.language.spec import WorkflowSpec

SCHEMA_ID = "https://workflow-platform.dev/schemas/workflow.json"


def workflow_schema(registry: Mapping[str, Plugin], action_inputs: bool = True) -> dict[str, Any]:
    """The schema; `action_inputs=False` leaves out the per-action input constraints (if/then), for tools that
    cannot handle them (the API's OpenAPI document: the server checks inputs and answers 400 with details)."""
    actions = [(p.id, a.name, a.input_model) for p in registry.values() for a in p.actions.values()]
    if not action_inputs:
        actions = []
    models = [(WorkflowSpec, "validation"), *[(model, "validation") for _, _, model in actions]]
    refs, schema = models_json_schema(models, ref_template="#/$defs/{model}")
    defs = schema["$defs"]
    if actions:
        # Constrain each step's input by its plugin and action: if plugin/action match, input follows the model.
        defs["StepSpec"]["allOf"] = [
            {
                "if": {
                    "properties": {"plugin": {"const": plugin_id}, "action": {"const": action}},
                    "required": ["plugin", "action"],
                },
                "then": {"properties": {"input": refs[(model, "validation")]}},
            }
            for plugin_id, action, model in actions
        ]
    defs["StepSpec"]["properties"]["plugin"]["enum"] = sorted(registry)
    root = defs.pop("WorkflowSpec")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **root,
        "$defs": defs,
    }
