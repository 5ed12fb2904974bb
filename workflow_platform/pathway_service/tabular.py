"""Tabular pipeline inputs: rows inline, or a reference to an object in the store that the service reads itself.

A field typed `TabularInput` accepts
- a list of row objects: `[{"product": "a", "amount": 3}, ...]`;
- an object with a `rows` list (what the postgres `select` and `query` steps return: `{"rows": [...], "rowCount": n}`);
- a reference `{"ref": "s3://bucket/key", "format": "csv" | "jsonl" | "parquet"}` (what those steps return for
  large results; extra keys such as `rowCount` and `columns` are ignored; without `format`, the key's suffix
  decides).
Validation only checks the shape; `staging.stage` reads the rows. Dumped to JSON, the field becomes a short
description of where the rows came from, so the dataflow never carries the table inside its `input` column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Annotated, Any

from pydantic import BaseModel, PlainSerializer, PlainValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

from .pipeline import json_type

FORMATS = ("csv", "jsonl", "parquet")
_FORMAT_OF_SUFFIX = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
_S3_URL = re.compile(r"s3://(?P<bucket>[^/]+)/(?P<key>.+)")
_EXPECTED = (
    'expected a list of row objects, an object with a "rows" list, or a reference '
    '{"ref": "s3://bucket/key", "format": "csv|jsonl|parquet"}'
)


@dataclass(frozen=True)
class InlineRows:
    rows: list[dict[str, Any]]

    def describe(self) -> dict[str, Any]:
        return {"source": "inline", "rows": len(self.rows)}


@dataclass(frozen=True)
class TableReference:
    ref: str
    bucket: str
    key: str
    format: str

    def describe(self) -> dict[str, Any]:
        return {"source": self.ref, "format": self.format}


def _parse(value: Any) -> InlineRows | TableReference:
    if isinstance(value, list):
        return InlineRows(_checked_rows(value, "rows"))
    if not isinstance(value, dict):
        raise PydanticCustomError("tabular_input", f"{_EXPECTED}; got {json_type(value)}")
    if "rows" in value and "ref" in value:
        raise PydanticCustomError("tabular_input", 'give either "rows" or "ref", not both')
    if "rows" in value:
        if not isinstance(value["rows"], list):
            raise PydanticCustomError(
                "tabular_input", f'"rows" must be a list, got {json_type(value["rows"])}'
            )
        return InlineRows(_checked_rows(value["rows"], "rows"))
    if "ref" in value:
        return _reference(value)
    raise PydanticCustomError("tabular_input", _EXPECTED)


def _checked_rows(rows: list[Any], where: str) -> list[dict[str, Any]]:
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise PydanticCustomError(
                "tabular_input", f"{where}[{index}] must be an object (a row), got {json_type(row)}"
            )
    return rows


def _reference(value: dict[str, Any]) -> TableReference:
    ref = value["ref"]
    match = _S3_URL.fullmatch(ref) if isinstance(ref, str) else None
    if match is None:
        raise PydanticCustomError("tabular_input", f'"ref" must be an s3://bucket/key URL, got {ref!r}')
    fmt = value.get("format")
    if fmt is None:
        fmt = _FORMAT_OF_SUFFIX.get(PurePosixPath(match["key"]).suffix.lower())
        if fmt is None:
            raise PydanticCustomError(
                "tabular_input", f'{ref}: add "format" ({", ".join(FORMATS)}); the key does not tell it'
            )
    elif fmt not in FORMATS:
        raise PydanticCustomError(
            "tabular_input", f'"format" must be one of {", ".join(FORMATS)}, got {fmt!r}'
        )
    return TableReference(ref=ref, bucket=match["bucket"], key=match["key"], format=fmt)


_ROWS_SCHEMA = {"type": "array", "items": {"type": "object"}}
_JSON_SCHEMA = {
    "description": "The rows: inline, an object with a `rows` list, or a reference to an object in the store.",
    "oneOf": [
        _ROWS_SCHEMA,
        {"type": "object", "properties": {"rows": _ROWS_SCHEMA}, "required": ["rows"]},
        {
            "type": "object",
            "properties": {
                "ref": {"type": "string", "pattern": "^s3://[^/]+/.+"},
                "format": {"enum": list(FORMATS)},
            },
            "required": ["ref"],
        },
    ],
}

TabularInput = Annotated[
    InlineRows | TableReference,
    PlainValidator(_parse),
    PlainSerializer(lambda table: table.describe(), return_type=dict),
    WithJsonSchema(_JSON_SCHEMA),
]


def tabular_fields(model: BaseModel, prefix: str = "") -> dict[str, InlineRows | TableReference]:
    """The tabular inputs of a validated input, by dotted field path (nested models included)."""
    found: dict[str, InlineRows | TableReference] = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, InlineRows | TableReference):
            found[prefix + name] = value
        elif isinstance(value, BaseModel):
            found.update(tabular_fields(value, f"{prefix}{name}."))
    return found
