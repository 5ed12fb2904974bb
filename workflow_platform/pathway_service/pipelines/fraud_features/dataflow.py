"""fraud-features-pipeline as a Pathway dataflow: the request's rows ─► window features ─► one table out."""

import io

import numpy as np
import pandas as pd
import pathway as pw

from ...object_store import ObjectStoreUnavailable, UnreadableObject, object_store
from ...pipeline_requests import failure_result
from ...staging import StagedRequest
from ..fraud.history import FeatureInput, History, feature_input, histories
from ..fraud.windows import FEATURES, window_features
from . import PIPELINE_ID

# Inline answers stop here: beyond, a reference is the only sensible shape (and 1 MiB of JSON is ~2,000 rows).
MAX_INLINE_ROWS = 10_000


# No `from __future__ import annotations` here: Pathway reads the UDFs' annotations as types.
# Not deterministic: Pathway keeps the rows to retract them later instead of computing them again.
@pw.udf
def load_histories(request: pw.PyObjectWrapper[StagedRequest]) -> list[History]:
    staged = request.value
    staged.derived["rows"] = found = feature_input(staged.tables["transactions"])
    return histories(found)


# Not deterministic either: it writes the output object, once.
@pw.udf
def answer(request: pw.PyObjectWrapper[StagedRequest], features: np.ndarray | None) -> pw.Json:
    staged = request.value
    found = staged.derived["rows"]
    table = feature_table(found, features if features is not None else np.zeros((0, len(FEATURES))))
    document = {
        "pipelineId": PIPELINE_ID,
        "features": FEATURES,
        "rowCount": len(table),
        "skipped": found.skipped,
        "input": {"transactions": staged.input["transactions"]},
    }
    output = staged.input["output"]
    if output is None:
        if len(table) > MAX_INLINE_ROWS:
            message = (
                f"{len(table)} rows are too many to answer inline (at most {MAX_INLINE_ROWS}): set output"
            )
            return pw.Json(failure_result(422, f"invalid input for {PIPELINE_ID}: {message}", field="output"))
        rows = table.assign(TX_DATETIME=table["TX_DATETIME"].map(pd.Timestamp.isoformat))
        document["table"] = {"rows": rows.to_dict(orient="records"), "rowCount": len(table)}
    else:
        if not output.startswith("s3://"):
            output = f"s3://{object_store().bucket}/{output}"
        bucket, _, object_key = output.removeprefix("s3://").partition("/")
        buffer = io.BytesIO()
        table.to_parquet(buffer, index=False)
        try:
            object_store().write(bucket, object_key, buffer.getvalue(), "application/vnd.apache.parquet")
        except UnreadableObject as exc:
            return pw.Json(failure_result(422, f"output: cannot write {output}: {exc}", field="output"))
        except ObjectStoreUnavailable as exc:
            return pw.Json(failure_result(503, str(exc)))
        document["table"] = {"ref": output, "format": "parquet", "rowCount": len(table)}
    return pw.Json(document)


def feature_table(found: FeatureInput, features: np.ndarray) -> pd.DataFrame:
    """The handbook's columns: who, when, the label, then the features."""
    table = pd.DataFrame(
        {
            "TRANSACTION_ID": found.ids,
            "TX_DATETIME": pd.to_datetime(found.seconds, unit="s", utc=True),
            "CUSTOMER_ID": found.card,
            "TERMINAL_ID": found.terminal,
            "TX_FRAUD": found.fraud.astype(np.int64),
        }
    )
    for index, name in enumerate(FEATURES):
        values = features[:, index]
        table[name] = values.astype(np.int64) if "NB_TX" in name or "DURING" in name else values
    return table


def build(requests: pw.Table) -> pw.Table:
    features = window_features(requests.select(histories=load_histories(pw.this.request)))
    return requests.join_left(features, pw.left.id == pw.right.query_id, id=pw.left.id).select(
        result=answer(pw.left.request, pw.right.features)
    )
