"""sample-pipeline: generates `count` deterministic sample records and aggregates them per category.

Request body: `{"source": "local", "count": 150}` (both optional). The records come from `sample_records`, a
pure function, so anyone can recompute the expected answer; the aggregation runs in Pathway.
"""

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from ..pipeline import Pipeline

if TYPE_CHECKING:
    import pathway as pw

PIPELINE_ID = "sample-pipeline"
DEFAULT_COUNT = 100
MAX_COUNT = 1_000_000
CATEGORIES = ("books", "electronics", "garden", "toys")


class SampleInput(BaseModel):
    """Input of sample-pipeline."""

    model_config = ConfigDict(extra="forbid", strict=True)

    source: str | None = Field(None, description="Free text, echoed back in the result.")
    count: int = Field(DEFAULT_COUNT, ge=0, le=MAX_COUNT, description="Number of sample records to generate.")


def sample_records(count: int) -> list[dict[str, Any]]:
    """The `count` records a request aggregates; the same count always gives the same records."""
    records = []
    for index in range(count):
        # Knuth's multiplicative hash: cheap, deterministic and spread well enough to look like data.
        mixed = (index * 2654435761) & 0xFFFFFFFF
        category = CATEGORIES[(mixed >> 16) % len(CATEGORIES)]
        value = (100 + (mixed >> 4) % 100_000) / 100  # 1.00 .. 1000.99, two decimals
        records.append({"id": index + 1, "category": category, "value": value})
    return records


def result_document(
    source: str | None,
    record_count: int,
    overall: tuple[int, float, float] | None,
    categories: Iterable[tuple[str, int, float, float]],
) -> dict[str, Any]:
    """The answer to a request, from its aggregates.

    `overall` is (count, sum, average), None when there are no records; `categories` holds one
    (category, count, sum, average) per category.
    """
    count, total, average = overall or (0, 0.0, None)
    return {
        "pipelineId": PIPELINE_ID,
        "source": source,
        "recordCount": record_count,
        "overall": {"count": count, "sum": round(total, 2), "average": _round(average)},
        "categories": [
            {
                "category": category,
                "count": count,
                "sum": round(value_sum, 2),
                "average": round(value_average, 2),
            }
            for category, count, value_sum, value_average in sorted(categories)
        ],
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


# No `from __future__ import annotations` in this module: Pathway evaluates a UDF's annotations in the module's
# globals, where `pw` is absent (imported lazily); real annotations are evaluated where the UDF is defined.
def build(inputs: "pw.Table") -> "pw.Table":
    """requests (source, count) -> records (flatten) -> per-category aggregates -> one answer per request."""
    import pathway as pw

    # Not marked deterministic: Pathway then keeps the generated rows until the request is deleted instead of
    # generating them a second time to retract them.
    @pw.udf
    def generate(count: int) -> list[tuple[str, float]]:
        return [(record["category"], record["value"]) for record in sample_records(count)]

    @pw.udf(deterministic=True)
    def answer(
        source: str | None, record_count: int, overall: tuple | None, categories: tuple | None
    ) -> pw.Json:
        return pw.Json(result_document(source, record_count, overall, categories or ()))

    requests = inputs.select(
        source=pw.this.input["source"].as_str(), count=pw.this.input["count"].as_int(unwrap=True)
    )
    records = (
        requests.select(record=generate(pw.this.count))
        .flatten(pw.this.record, origin_id="query_id")
        .select(pw.this.query_id, category=pw.this.record[0], value=pw.this.record[1])
    )
    # total / count rather than pw.reducers.avg: avg took ~1 s more than sum on 100k rows here.
    per_category = (
        records.groupby(pw.this.query_id, pw.this.category)
        .reduce(
            pw.this.query_id,
            pw.this.category,
            count=pw.reducers.count(),
            total=pw.reducers.sum(pw.this.value),
        )
        .with_columns(average=pw.this.total / pw.this.count)
    )
    per_query = (
        per_category.groupby(pw.this.query_id)
        .reduce(
            pw.this.query_id,
            count=pw.reducers.sum(pw.this.count),
            total=pw.reducers.sum(pw.this.total),
            categories=pw.reducers.tuple(
                pw.make_tuple(pw.this.category, pw.this.count, pw.this.total, pw.this.average)
            ),
        )
        .with_columns(overall=pw.make_tuple(pw.this.count, pw.this.total, pw.this.total / pw.this.count))
    )
    # A left join keeps requests without records (count=0); the answer keeps the request's id, which is how
    # the service matches it to the waiting HTTP call.
    return requests.join_left(per_query, pw.left.id == pw.right.query_id, id=pw.left.id).select(
        result=answer(pw.left.source, pw.left.count, pw.right.overall, pw.right.categories)
    )


PIPELINE = Pipeline(
    id=PIPELINE_ID,
    description=(
        "Generates `count` deterministic sample records (category, value) and returns count, sum and average "
        "per category and overall."
    ),
    input_model=SampleInput,
    build=build,
)
