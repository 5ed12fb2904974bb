"""Checks that need the services, made before a run starts: the tables and columns named in postgres steps exist,
and the SQL of `query` steps plans (EXPLAIN, which runs nothing).

Static validation never talks to a service; this does, so a wrong table name is reported (with the tables
that do exist) before any step has run, instead of failing half-way through a workflow.
"""

from __future__ import annotations

import re

import psycopg2

from workflow_platform.language.actions import ActionError
from workflow_platform.language.problems import Problem, pointer
from workflow_platform.language.spec import StepSpec, WorkflowSpec
from workflow_platform.language.templates import contains_template
from workflow_platform.plugins.postgres import check_table, tables_named, to_pyformat
from workflow_platform.resources.postgres import PostgresResource

# Statements EXPLAIN accepts; anything else (DDL, COPY ...) is only checked when it runs.
EXPLAINABLE = re.compile(r"^\s*(select|with|insert|update|delete|values|table)\b", re.IGNORECASE)


def preflight(spec: WorkflowSpec, postgres: PostgresResource, file: str = "") -> list[Problem]:
    """The problems of the workflow's postgres steps, checked on `postgres` (its connection stays open)."""
    problems: list[Problem] = []
    for index, step in enumerate(spec.steps):
        if step.plugin != "postgres":
            continue
        if step.action == "query":
            problems.extend(_check_query(postgres, step, index, file))
            continue
        table, columns = tables_named(step.input)
        if table is None:
            continue
        try:
            check_table(postgres, table, columns)
        except ActionError as error:
            hint = "create it first, or fix the name"
            problems.append(Problem(pointer("steps", index, "input", "table"), str(error), hint, file))
    return problems


def _check_query(postgres: PostgresResource, step: StepSpec, index: int, file: str) -> list[Problem]:
    statement = step.input.get("sql")
    params = step.input.get("params") or {}
    if not isinstance(statement, str) or contains_template(statement) or not EXPLAINABLE.match(statement):
        return []
    try:
        # Parameters are not known before the run (they may be templates): plan with NULLs.
        sql = to_pyformat(statement, dict.fromkeys(params))
        with postgres.transaction() as cursor:
            cursor.execute("EXPLAIN " + sql, dict.fromkeys(params))
    except ActionError as error:
        return [
            Problem(pointer("steps", index, "input", "sql"), str(error), "add the value under params", file)
        ]
    except psycopg2.Error as error:
        if error.pgcode is None:  # no SQLSTATE: the server did not judge the SQL, it was not reached at all
            raise
        message = (error.pgerror or str(error)).strip().splitlines()[0]
        return [
            Problem(
                pointer("steps", index, "input", "sql"),
                f"the query does not plan: {message}",
                "fix the SQL",
                file,
            )
        ]
    return []
