"""PostgreSQL actions. Identifiers are checked against the catalog and quoted; values are always bound."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg2
import psycopg2.extras
import sqlparse
from psycopg2 import sql
from pydantic import Field, model_validator

from workflow_platform.language.actions import (
    Action,
    ActionError,
    ActionInput,
    ActionOutput,
    StepContext,
    Touched,
    jsonable,
    plugin,
)
from workflow_platform.plugins.result_store import (
    ResultOptions,
    store_table,
    table_from_copy,
    table_from_rows,
)

if TYPE_CHECKING:  # resources import dagster; validation must stay light
    from workflow_platform.resources.postgres import PostgresResource

Row = dict[str, Any]
Scalar = str | int | float | bool | None
OPERATORS = {
    "=": "=", "eq": "=", "!=": "<>", "<>": "<>", "ne": "<>", ">": ">", "gt": ">", ">=": ">=", "gte": ">=",
    "<": "<", "lt": "<", "<=": "<=", "lte": "<=", "like": "LIKE", "ilike": "ILIKE", "in": "IN", "nin": "NOT IN",
    "not in": "NOT IN",
}  # fmt: skip
WhereValue = Scalar | list[Scalar] | dict[str, Scalar | list[Scalar]]


class _TableInput(ActionInput):
    table: str = Field(
        min_length=1, description="table name, optionally schema-qualified: 'orchestrator.events'"
    )


class SelectInput(_TableInput, ResultOptions):
    where: dict[str, WhereValue] = Field(
        default_factory=dict,
        description="column -> value; null = IS NULL, list = IN, {op: value} with op in =, !=, >, >=, <, <=, like, "
        "ilike, in, nin",
    )
    columns: list[str] | None = Field(None, description="columns to return (default: all)")
    limit: int | None = Field(None, ge=0)
    offset: int | None = Field(None, ge=0)
    orderBy: str | list[str] | None = Field(None, description="'col', 'col desc', '-col' or a list of them")


class InsertInput(_TableInput):
    data: Row | None = Field(None, description="one row")
    rows: list[Row] | None = Field(None, description="several rows")
    returning: list[str] | None = Field(
        None, description="columns to return (default: all for up to 1000 rows)"
    )

    @model_validator(mode="after")
    def _one_of(self) -> InsertInput:
        if (self.data is None) == (self.rows is None):
            raise ValueError("give exactly one of 'data' (one row) or 'rows' (a list of rows)")
        return self

    def all_rows(self) -> list[Row]:
        return [self.data] if self.data is not None else list(self.rows or [])


class UpsertInput(InsertInput):
    conflict: list[str] = Field(min_length=1, description="columns of the unique key that identifies a row")
    update: list[str] | None = Field(
        None, description="columns to overwrite on conflict (default: all given; [] = DO NOTHING)"
    )


class UpdateInput(_TableInput):
    data: Row = Field(min_length=1)
    where: dict[str, WhereValue] = Field(default_factory=dict)
    allRows: bool = Field(False, description="required to update every row (an empty where)")


class UpdateRowsInput(_TableInput):
    rows: list[Row] = Field(description="one object per row: its key column(s) and the values to set on it")
    key: list[str] = Field(
        default_factory=lambda: ["id"], min_length=1, description="columns that identify a row"
    )
    data: Row = Field(default_factory=dict, description="values set on every row updated (e.g. processed_at)")


class DeleteInput(_TableInput):
    where: dict[str, WhereValue] = Field(default_factory=dict)
    allRows: bool = Field(False, description="required to delete every row (an empty where)")


class QueryInput(ResultOptions):
    sql: str = Field(min_length=1, description="SQL with named parameters :name")
    params: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True)
class Table:
    schema: str
    name: str
    columns: tuple[str, ...]

    @property
    def identifier(self) -> sql.Composable:
        return sql.Identifier(self.schema, self.name)

    @property
    def asset_key(self) -> tuple[str, ...]:
        return ("postgres", self.schema, self.name)

    def check_columns(self, names: list[str] | set[str], what: str = "column") -> None:
        unknown = [n for n in names if n not in self.columns]
        if unknown:
            raise ActionError(
                f"{what} {', '.join(repr(n) for n in unknown)} not in table {self.schema}.{self.name} "
                f"(columns: {', '.join(self.columns)})"
            )


def lookup_table(cursor: psycopg2.extensions.cursor, name: str) -> Table:
    """Resolve a (schema-qualified) table name through the catalog, or fail saying which tables exist."""
    cursor.execute(
        "SELECT n.nspname, c.relname, array_agg(a.attname ORDER BY a.attnum) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
        "WHERE c.oid = to_regclass(%s) AND c.relkind IN ('r', 'v', 'm', 'p', 'f') GROUP BY 1, 2",
        (name,),
    )
    found = cursor.fetchone()
    if found:
        return Table(found[0], found[1], tuple(found[2]))
    schema = name.split(".", 1)[0] if "." in name else "public"
    cursor.execute(
        "SELECT string_agg(table_schema || '.' || table_name, ', ' ORDER BY table_name) "
        "FROM information_schema.tables WHERE table_schema = %s",
        (schema,),
    )
    known = cursor.fetchone()[0]
    raise ActionError(
        f"table '{name}' does not exist" + (f" (tables in schema {schema}: {known})" if known else "")
    )


def check_table(resource: PostgresResource, name: str, columns: set[str]) -> None:
    """Preflight: fail before the run if the table or one of the columns does not exist."""
    with resource.transaction() as cursor:
        lookup_table(cursor, name).check_columns(columns)


def _where_clause(table: Table, where: dict[str, WhereValue]) -> tuple[sql.Composable, list[Any]]:
    table.check_columns(list(where), "where column")
    parts: list[sql.Composable] = []
    values: list[Any] = []
    for column, condition in where.items():
        ident = sql.Identifier(column)
        conditions = condition.items() if isinstance(condition, dict) else [("=", condition)]
        for op_name, value in conditions:
            op = OPERATORS.get(str(op_name).lower())
            if op is None:
                raise ActionError(
                    f"unknown operator '{op_name}' for column {column} (use {', '.join(OPERATORS)})"
                )
            if value is None:
                parts.append(sql.SQL("{} IS NULL" if op == "=" else "{} IS NOT NULL").format(ident))
            elif isinstance(value, list) or op in ("IN", "NOT IN"):
                values.append(list(value) if isinstance(value, list) else [value])
                negate = op in ("NOT IN", "<>")
                parts.append(sql.SQL("NOT ({} = ANY(%s))" if negate else "{} = ANY(%s)").format(ident))
            else:
                values.append(value)
                parts.append(sql.SQL("{} " + op + " %s").format(ident))
    if not parts:
        return sql.SQL(""), values
    return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(parts), values


_ORDER = re.compile(r"^\s*(-)?\s*([^\s]+)(?:\s+(asc|desc))?\s*$", re.IGNORECASE)


def _order_clause(table: Table, order_by: str | list[str] | None) -> sql.Composable:
    if not order_by:
        return sql.SQL("")
    terms: list[sql.Composable] = []
    for term in [order_by] if isinstance(order_by, str) else order_by:
        match = _ORDER.match(term)
        if not match:
            raise ActionError(f"orderBy '{term}' must be 'column', 'column desc' or '-column'")
        table.check_columns([match.group(2)], "orderBy column")
        descending = bool(match.group(1)) or (match.group(3) or "").lower() == "desc"
        terms.append(sql.SQL("{} DESC" if descending else "{} ASC").format(sql.Identifier(match.group(2))))
    return sql.SQL(" ORDER BY ") + sql.SQL(", ").join(terms)


def _adapt(value: Any) -> Any:
    # Objects and lists go to json/jsonb columns as JSON.
    return psycopg2.extras.Json(value) if isinstance(value, dict | list) else value


def _rows(cursor: psycopg2.extensions.cursor) -> list[Row]:
    names = [c.name for c in cursor.description]
    return [{n: jsonable(v) for n, v in zip(names, row, strict=True)} for row in cursor.fetchall()]


def select(resource: PostgresResource, spec: SelectInput, ctx: StepContext) -> ActionOutput:
    with resource.transaction(ctx.timeout_s) as cursor:
        table = lookup_table(cursor, spec.table)
        if spec.columns:
            table.check_columns(spec.columns)
        columns = sql.SQL(", ").join(map(sql.Identifier, spec.columns)) if spec.columns else sql.SQL("*")
        where, values = _where_clause(table, spec.where)
        query = sql.SQL("SELECT {} FROM {}").format(columns, table.identifier) + where
        query += _order_clause(table, spec.orderBy)
        if spec.limit is not None:
            query += sql.SQL(" LIMIT {}").format(sql.Literal(spec.limit))
        if spec.offset is not None:
            query += sql.SQL(" OFFSET {}").format(sql.Literal(spec.offset))
        output = _run_query(cursor, query, values, spec, ctx)
    read = Touched(
        table.asset_key,
        f"rows read from {table.schema}.{table.name}",
        {"rows": output.value["rowCount"]},
        False,
    )
    output.touched.append(read)
    return output


def _run_query(
    cursor: psycopg2.extensions.cursor,
    query: sql.Composable | str,
    values: Any,
    spec: ResultOptions,
    ctx: StepContext,
) -> ActionOutput:
    """Rows inline ({rows, rowCount}), or written to the object store and returned as a reference."""
    if spec.output == "ref":
        statement = cursor.mogrify(query, values).decode()
        reference, stored = store_table(table_from_copy(cursor.copy_expert, statement), spec.format, ctx)
        return ActionOutput(reference, [stored])
    cursor.execute(query, values)
    if cursor.description is None:
        return ActionOutput({"rowCount": cursor.rowcount})
    rows = _rows(cursor)
    if spec.goes_by_reference(rows):
        reference, stored = store_table(table_from_rows(rows), spec.format, ctx)
        return ActionOutput(reference, [stored])
    return ActionOutput({"rows": rows, "rowCount": len(rows)})


def _returning(table: Table, requested: list[str] | None, row_count: int) -> tuple[sql.Composable, bool]:
    """The RETURNING clause, and whether its rows go into the result (RETURNING 1 only counts them)."""
    if requested:
        table.check_columns(requested, "returning column")
        return sql.SQL(" RETURNING ") + sql.SQL(", ").join(map(sql.Identifier, requested)), True
    if requested is None and row_count <= 1000:
        return sql.SQL(" RETURNING *"), True
    return sql.SQL(" RETURNING 1"), False


def _by_columns(rows: list[Row]) -> dict[tuple[str, ...], list[Row]]:
    groups: dict[tuple[str, ...], list[Row]] = {}
    for row in rows:
        groups.setdefault(tuple(sorted(row)), []).append(row)
    return groups


def _write_rows(
    resource: PostgresResource, spec: InsertInput, ctx: StepContext, on_conflict: sql.Composable | None = None
) -> ActionOutput:
    rows = spec.all_rows()
    returned: list[Row] = []
    with resource.transaction(ctx.timeout_s) as cursor:
        table = lookup_table(cursor, spec.table)
        table.check_columns(sorted({key for row in rows for key in row}))
        returning, keep = _returning(table, spec.returning, len(rows))
        # Rows are inserted grouped by the columns they give, so an omitted column gets its DEFAULT, not NULL.
        for columns, group in _by_columns(rows).items():
            if columns:
                names = sql.SQL(", ").join(map(sql.Identifier, columns))
                head = sql.SQL("INSERT INTO {} ({}) VALUES %s").format(table.identifier, names)
            else:
                head = sql.SQL("INSERT INTO {} DEFAULT VALUES").format(table.identifier)
            statement = (head + (on_conflict or sql.SQL("")) + returning).as_string(cursor)
            if columns:
                values = [tuple(_adapt(row[c]) for c in columns) for row in group]
                result = psycopg2.extras.execute_values(cursor, statement, values, page_size=1000, fetch=True)
            else:
                result = []
                for _ in group:
                    cursor.execute(statement)
                    result.extend(cursor.fetchall())
            names_out = [c.name for c in cursor.description]
            if keep:
                returned.extend({n: jsonable(v) for n, v in zip(names_out, r, strict=True)} for r in result)
            else:
                returned.extend({} for _ in result)
    count = len(returned)
    touched = Touched(table.asset_key, f"rows written to {table.schema}.{table.name}", {"rows": count})
    return ActionOutput({"rowCount": count, "rows": returned if keep else []}, [touched])


def insert(resource: PostgresResource, spec: InsertInput, ctx: StepContext) -> ActionOutput:
    return _write_rows(resource, spec, ctx)


def upsert(resource: PostgresResource, spec: UpsertInput, ctx: StepContext) -> ActionOutput:
    given = sorted({key for row in spec.all_rows() for key in row})
    update = [c for c in (spec.update if spec.update is not None else given) if c not in spec.conflict]
    target = sql.SQL(", ").join(map(sql.Identifier, spec.conflict))
    if update:
        assignments = sql.SQL(", ").join(
            sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(c), sql.Identifier(c)) for c in update
        )
        clause = sql.SQL(" ON CONFLICT ({}) DO UPDATE SET {}").format(target, assignments)
    else:
        clause = sql.SQL(" ON CONFLICT ({}) DO NOTHING").format(target)
    return _write_rows(resource, spec, ctx, clause)


def _require_where(spec: UpdateInput | DeleteInput, verb: str) -> None:
    if not spec.where and not spec.allRows:
        raise ActionError(f"{verb} without 'where' would change every row of {spec.table}; add allRows: true")


def update(resource: PostgresResource, spec: UpdateInput, ctx: StepContext) -> ActionOutput:
    _require_where(spec, "update")
    with resource.transaction(ctx.timeout_s) as cursor:
        table = lookup_table(cursor, spec.table)
        table.check_columns(list(spec.data))
        where, values = _where_clause(table, spec.where)
        assignments = sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in spec.data)
        statement = sql.SQL("UPDATE {} SET {}").format(table.identifier, assignments) + where
        cursor.execute(statement, [_adapt(v) for v in spec.data.values()] + values)
        count = cursor.rowcount
    touched = Touched(table.asset_key, f"rows updated in {table.schema}.{table.name}", {"rows": count})
    return ActionOutput({"rowCount": count}, [touched])


def update_rows(resource: PostgresResource, spec: UpdateRowsInput, ctx: StepContext) -> ActionOutput:
    """UPDATE ... FROM (VALUES ...): each row gets its own values, all in one transaction."""
    count = 0
    with resource.transaction(ctx.timeout_s) as cursor:
        table = lookup_table(cursor, spec.table)
        table.check_columns([*spec.key, *spec.data, *{c for row in spec.rows for c in row}])
        for row in spec.rows:
            absent = [k for k in spec.key if row.get(k) is None]
            if absent:
                raise ActionError(f"row {row} has no value for key column(s) {absent}")
        types = _column_types(cursor, table)
        for columns, group in _by_columns(spec.rows).items():
            values = [c for c in columns if c not in spec.key]
            given = [*spec.key, *values]
            # Values arrive as JSON scalars: each is cast to its column's type (text -> timestamptz ...).
            template = sql.SQL("({})").format(
                sql.SQL(", ").join(sql.SQL("CAST(%s AS {})").format(sql.SQL(types[c])) for c in given)
            )
            assignments = [sql.SQL("{} = v.{}").format(sql.Identifier(c), sql.Identifier(c)) for c in values]
            assignments += [
                sql.SQL("{} = {}").format(sql.Identifier(c), sql.Literal(_adapt(v)))
                for c, v in spec.data.items()
            ]
            if not assignments:
                continue
            statement = (
                sql.SQL("UPDATE {} AS t SET {} FROM (VALUES %s) AS v ({}) WHERE {}")
                .format(
                    table.identifier,
                    sql.SQL(", ").join(assignments),
                    sql.SQL(", ").join(map(sql.Identifier, given)),
                    sql.SQL(" AND ").join(
                        sql.SQL("t.{} = v.{}").format(sql.Identifier(k), sql.Identifier(k)) for k in spec.key
                    ),
                )
                .as_string(cursor)
            )
            rows = [tuple(_adapt(row[c]) for c in given) for row in group]
            for start in range(0, len(rows), 1000):
                page = rows[start : start + 1000]
                psycopg2.extras.execute_values(
                    cursor, statement, page, template=template.as_string(cursor), page_size=len(page)
                )
                count += cursor.rowcount
    touched = Touched(table.asset_key, f"rows updated in {table.schema}.{table.name}", {"rows": count})
    return ActionOutput({"rowCount": count}, [touched])


def _column_types(cursor: psycopg2.extensions.cursor, table: Table) -> dict[str, str]:
    cursor.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
        "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped",
        (sql.Identifier(table.schema, table.name).as_string(cursor),),
    )
    return dict(cursor.fetchall())


def delete(resource: PostgresResource, spec: DeleteInput, ctx: StepContext) -> ActionOutput:
    _require_where(spec, "delete")
    with resource.transaction(ctx.timeout_s) as cursor:
        table = lookup_table(cursor, spec.table)
        where, values = _where_clause(table, spec.where)
        cursor.execute(sql.SQL("DELETE FROM {}").format(table.identifier) + where, values)
        count = cursor.rowcount
    touched = Touched(table.asset_key, f"rows deleted from {table.schema}.{table.name}", {"rows": count})
    return ActionOutput({"rowCount": count}, [touched])


# :name placeholders (but not ::casts), converted to psycopg2's %(name)s.
def to_pyformat(statement: str, params: dict[str, Any]) -> str:
    """`:name` placeholders as psycopg2's `%(name)s`, found by sqlparse's SQL lexer: a `:name` inside a string
    literal, a quoted identifier or a comment stays text (rewriting it would paste a value into the literal:
    `LIKE '%:v%'` -> SQL injection). Write `LIKE '%' || :v || '%'` to bind inside a pattern. Not SQLAlchemy's
    `text()`: its placeholder regex also matches inside literals and comments, and skips `:v::int`."""
    parts, names = [], set()
    for kind, text in sqlparse.lexer.tokenize(statement):
        if kind in sqlparse.tokens.Name.Placeholder and text.startswith(":") and text[1:].isidentifier():
            names.add(text[1:])
            parts.append(f"%({text[1:]})s")
        else:
            parts.append(text.replace("%", "%%"))
    missing = sorted(names - set(params))
    if missing:
        raise ActionError(f"query uses :{', :'.join(missing)} but params has no value for it")
    return "".join(parts)


def query(resource: PostgresResource, spec: QueryInput, ctx: StepContext) -> ActionOutput:
    statement = to_pyformat(spec.sql, spec.params)
    with resource.transaction(ctx.timeout_s) as cursor:
        return _run_query(cursor, statement, {k: _adapt(v) for k, v in spec.params.items()}, spec, ctx)


def tables_named(step_input: dict[str, Any]) -> tuple[str | None, set[str]]:
    """For preflight: the literal table name of a step input and the literal column names it uses."""
    table = step_input.get("table")
    if not isinstance(table, str) or "{{" in table:
        return None, set()
    columns: set[str] = set()
    for key in ("columns", "returning", "conflict", "update", "key"):
        value = step_input.get(key)
        if isinstance(value, list):
            columns.update(c for c in value if isinstance(c, str) and "{{" not in c)
    for key in ("where", "data"):
        value = step_input.get(key)
        if isinstance(value, dict):
            columns.update(value)
    rows = step_input.get("rows")
    if isinstance(rows, list):
        columns.update(k for row in rows if isinstance(row, dict) for k in row)
    return table, columns


POSTGRES = plugin(
    "postgres",
    "PostgreSQL: read and write tables, run parameterised SQL",
    "postgres",
    Action(
        "select", SelectInput, select, "rows of a table, filtered, ordered and limited", ("object_store",)
    ),
    Action("insert", InsertInput, insert, "insert one row (data) or many (rows)"),
    Action("update", UpdateInput, update, "update the rows matching where"),
    Action("upsert", UpsertInput, upsert, "insert, or update on a unique-key conflict"),
    Action("updateRows", UpdateRowsInput, update_rows, "update many rows by key, each with its own values"),
    Action("delete", DeleteInput, delete, "delete the rows matching where"),
    Action("query", QueryInput, query, "any SQL with named bind parameters (:name)", ("object_store",)),
)
