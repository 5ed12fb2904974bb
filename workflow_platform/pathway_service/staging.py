"""Requests validated at the door, held for the dataflow while they run, their tables read once.

The webserver validates a pipeline request before it enters the dataflow and stages it here under a key
derived from the pipeline and the request body (which the REST connector passes into the dataflow unchanged). In the dataflow,
`read_tables` reads the request's tabular inputs (inline rows, or objects from the store) once, and the
pipelines' UDFs look them up by key. Pathway would pickle a DataFrame carried in a column (0.25 s per million
rows), so only the key travels through the dataflow.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from pydantic import BaseModel

from .object_store import ObjectStore, UnreadableObject
from .table_formats import UnreadableFormat, inline_frame, parse_table
from .tabular import InlineRows, TableReference, tabular_fields


@dataclass
class StagedRequest:
    """A validated request: its input as JSON (tables described, not included) and, once read, its tables."""

    model: BaseModel
    input: dict[str, Any]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    # What a pipeline derives once from the tables or the store (e.g. a model) for its later UDFs.
    derived: dict[str, Any] = field(default_factory=dict)


class Staging:
    """Staged requests by key, counted so that identical concurrent requests share one entry."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, tuple[int, StagedRequest]] = {}

    @staticmethod
    def key_of(pipeline_id: str, body: str) -> str:
        return hashlib.sha256(f"{pipeline_id}\n{body}".encode()).hexdigest()

    def hold(self, key: str, model: BaseModel) -> None:
        with self._lock:
            count, staged = self._held.get(key, (0, None))
            if staged is None:
                staged = StagedRequest(model=model, input=model.model_dump(mode="json"))
            self._held[key] = (count + 1, staged)

    def release(self, key: str) -> None:
        with self._lock:
            count, staged = self._held[key]
            if count > 1:
                self._held[key] = (count - 1, staged)
            else:
                del self._held[key]

    def get(self, key: str) -> StagedRequest:
        with self._lock:
            return self._held[key][1]

    def tables(self, key: str) -> dict[str, pd.DataFrame]:
        return self.get(key).tables


STAGED = Staging()


class UnreadableReference(ValueError):
    """A referenced table that cannot be read (missing object, wrong format): a 422 naming the ref."""

    def __init__(self, field: str, ref: str, reason: str) -> None:
        super().__init__(f"{field}: cannot read {ref}: {reason}")
        self.field = field
        self.ref = ref


def read_tables(staged: StagedRequest, store: ObjectStore) -> None:
    """Read every tabular input of the request, completing its description with the row count.

    Raises UnreadableReference for the first reference that cannot be read, ObjectStoreUnavailable if the
    store does not answer.
    """
    for path, table in tabular_fields(staged.model).items():
        staged.tables[path] = _read(path, table, store)
        _description(staged.input, path)["rows"] = len(staged.tables[path])


def _read(path: str, table: InlineRows | TableReference, store: ObjectStore) -> pd.DataFrame:
    if isinstance(table, InlineRows):
        return inline_frame(table.rows)
    try:
        return parse_table(store.read(table.bucket, table.key), table.format)
    except (UnreadableObject, UnreadableFormat) as exc:
        raise UnreadableReference(path, table.ref, str(exc)) from None


def _description(document: dict[str, Any], path: str) -> dict[str, Any]:
    for name in path.split("."):
        document = document[name]
    return document
