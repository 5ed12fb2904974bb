"""sales-aggregation-pipeline: revenue, top products, regions and time trends of sales rows.

Request body: `{"salesData": rows | {"rows": [...]} | {"ref": "s3://bucket/key", "format": "parquet"},
"reportType": "daily-summary", "includeMetrics": ["totalRevenue", ...], "topN": 10}`. The fields read from each
row and how amounts, refunds and missing values count are in `rows.py`; the dataflow is in `dataflow.py`.
"""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ...pipeline import Pipeline, dataflow_of
from ...tabular import TabularInput
from .report import METRICS, PIPELINE_ID

Metric = Literal["totalRevenue", "topProducts", "regionalBreakdown", "hourlyTrend", "dailyTrend"]


class SalesInput(BaseModel):
    """Input of sales-aggregation-pipeline."""

    model_config = ConfigDict(extra="forbid", strict=True)

    salesData: TabularInput = Field(
        description="Sales rows: inline, `{rows: [...]}` (a postgres select result) or a reference."
    )
    reportType: str = Field("summary", description="Free text, echoed in the report (e.g. daily-summary).")
    includeMetrics: list[Metric] = Field(
        default_factory=lambda: list(METRICS), description="The metrics to compute, in the report's order."
    )
    topN: int = Field(10, ge=1, le=1000, description="How many products topProducts lists.")

    @field_validator("includeMetrics")
    @classmethod
    def _once_each(cls, metrics: list[str]) -> list[str]:
        return list(dict.fromkeys(metrics))


PIPELINE = Pipeline(
    id=PIPELINE_ID,
    description=(
        "Aggregates sales rows (inline, a postgres select result, or a csv/jsonl/parquet object by reference): "
        "total revenue, top products, regional breakdown, hourly and daily trends; rows a metric cannot use "
        "are counted as skipped, with the reason."
    ),
    input_model=SalesInput,
    build=dataflow_of(__name__),
)

__all__ = ["PIPELINE", "SalesInput"]
