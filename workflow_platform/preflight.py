"""Checks that need the services, made before a run starts: tables and columns named in postgres steps exist.

Static validation never talks to a service; this does, so a wrong table name is reported (with the tables
that do exist) before any step has run, instead of failing half-way through a workflow.
"""

from __future__ import annotations

from workflow_platform.plugins.base import ActionError
from workflow_platform.plugins.postgres import check_table, tables_named
from workflow_platform.problems import Problem, pointer
from workflow_platform.resources.postgres import PostgresResource
from workflow_platform.spec import WorkflowSpec


def preflight(spec: WorkflowSpec, pg_dsn: str, file: str = "") -> list[Problem]:
    problems: list[Problem] = []
    postgres = PostgresResource(dsn=pg_dsn)
    try:
        for index, step in enumerate(spec.steps):
            if step.plugin != "postgres":
                continue
            table, columns = tables_named(step.input)
            if table is None:
                continue
            try:
                check_table(postgres, table, columns)
            except ActionError as error:
                hint = "create it first, or fix the name"
                problems.append(Problem(pointer("steps", index, "input", "table"), str(error), hint, file))
    finally:
        postgres.close()
    return problems
