"""Large tabular results travel by reference: written to the object store, passed on as
`{"ref": "s3://bucket/key", "format": ..., "rowCount": ..., "columns": [...]}` (the Pathway service reads it)."""

from __future__ import annotations

import json
import tempfile
from typing import IO, TYPE_CHECKING, Any, Literal

from pydantic import Field

from workflow_platform.language.actions import ActionInput, StepContext, Touched, jsonable

if TYPE_CHECKING:
    import pyarrow as pa

    from workflow_platform.resources.object_store import ObjectStoreResource

Format = Literal["parquet", "csv", "jsonl"]
CONTENT_TYPES = {
    "parquet": "application/vnd.apache.parquet",
    "csv": "text/csv",
    "jsonl": "application/x-ndjson",
}
PREVIEW_ROWS = 5


class ResultOptions(ActionInput):
    output: Literal["auto", "inline", "ref"] = Field(
        "auto", description="inline rows, a reference to an object in the store, or ref above inlineMaxRows"
    )
    format: Format = Field("parquet", description="format of a result written to the store")
    inlineMaxRows: int = Field(10_000, ge=0, description="with output auto: larger results go by reference")
    inlineMaxBytes: int = Field(
        512 * 1024,
        ge=0,
        description="with output auto: results larger as JSON go by reference (services cap bodies at 1 MiB)",
    )

    def goes_by_reference(self, rows: list[dict[str, Any]]) -> bool:
        if self.output != "auto":
            return self.output == "ref"
        if len(rows) > self.inlineMaxRows:
            return True
        # Size checked on a sample: serialising every row of a large result only to measure it costs too much.
        sample = rows[:200]
        average = len(json.dumps(sample, default=str)) / len(sample) if sample else 0
        return average * len(rows) > self.inlineMaxBytes


def result_key(ctx: StepContext, fmt: Format) -> str:
    # Deterministic per execution (the run's root) and step: a retried step or a re-executed run overwrites the
    # object the first attempt wrote instead of adding one.
    return f"results/{ctx.workflow}/{ctx.execution_key}/{ctx.step_id}.{fmt}"


def _encode(table: pa.Table, fmt: Format, sink: IO[bytes]) -> None:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, sink, compression="zstd")
    elif fmt == "csv":
        import pyarrow.csv as pacsv

        pacsv.write_csv(table, sink)
    else:
        text = table.to_pandas().to_json(orient="records", lines=True, date_format="iso")
        sink.write(text.encode())


def store_table(table: pa.Table, fmt: Format, ctx: StepContext) -> tuple[dict[str, Any], Touched]:
    store: ObjectStoreResource = ctx.resources["object_store"]
    bucket = store.ensure_bucket()
    key = result_key(ctx, fmt)
    with tempfile.TemporaryFile() as body:
        _encode(table, fmt, body)
        size = body.tell()
        body.seek(0)
        written = store.client().put_object(bucket, key, body, size, content_type=CONTENT_TYPES[fmt])
    reference = {
        "ref": f"s3://{bucket}/{key}",
        "format": fmt,
        "rowCount": table.num_rows,
        "columns": table.column_names,
        "size": size,
        "preview": jsonable(table.slice(0, PREVIEW_ROWS).to_pylist()),
    }
    metadata = {"bucket": bucket, "key": key, "size": size, "etag": written.etag, "rows": table.num_rows}
    return reference, Touched(("s3", bucket, *key.split("/")), "result stored by reference", metadata)


def table_from_copy(copy: Any, statement: str) -> pa.Table:
    """Stream a query's rows out of PostgreSQL with COPY (the fastest path) into an Arrow table."""
    import pyarrow.csv as pacsv

    with tempfile.TemporaryFile() as raw:
        copy(f"COPY ({statement}) TO STDOUT WITH (FORMAT csv, HEADER true)", raw)
        raw.seek(0)
        if not raw.read(1):
            import pyarrow as pa

            return pa.table({})
        raw.seek(0)
        return pacsv.read_csv(raw)


def table_from_rows(rows: list[dict[str, Any]]) -> pa.Table:
    import pyarrow as pa

    return pa.Table.from_pylist(rows)
