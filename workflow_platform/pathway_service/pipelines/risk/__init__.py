"""risk-scoring-pipeline: a risk level and recommended actions per transaction of a fraud analysis, and alerts.

Request body: `{"fraudAnalysis": <fraud-detection-pipeline's result>, "thresholds": {"low": 0.3, "medium": 0.6,
"high": 0.8, "critical": 0.95}}`. Only `fraudAnalysis.transactions` is read (inline, `{rows}`, or a reference
to a table of scored transactions). A transaction's level is the highest threshold its fraudScore reaches
(`minimal` below `low`); each level's actions are in `report.ACTIONS`; medium and above raise an alert.
"""

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ...pipeline import Pipeline, dataflow_of
from ...tabular import TabularInput
from .report import PIPELINE_ID


class FraudAnalysis(BaseModel):
    """The fraud pipeline's result; its other keys (summary, rules, input) are ignored."""

    model_config = ConfigDict(extra="ignore", strict=True)

    transactions: TabularInput = Field(
        description="Scored transactions: transactionId, customerId, fraudScore."
    )


class Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    low: float = Field(0.3, ge=0, le=1)
    medium: float = Field(0.6, ge=0, le=1)
    high: float = Field(0.8, ge=0, le=1)
    critical: float = Field(0.95, ge=0, le=1)

    @model_validator(mode="after")
    def _rising(self) -> "Thresholds":
        if not self.low <= self.medium <= self.high <= self.critical:
            raise ValueError(
                f"must rise: low <= medium <= high <= critical, got {self.low}, {self.medium}, {self.high}, "
                f"{self.critical}"
            )
        return self


class RiskInput(BaseModel):
    """Input of risk-scoring-pipeline."""

    model_config = ConfigDict(extra="forbid", strict=True)

    fraudAnalysis: FraudAnalysis
    thresholds: Thresholds = Field(default_factory=Thresholds)


PIPELINE = Pipeline(
    id=PIPELINE_ID,
    description=(
        "Turns a fraud analysis into a risk level and recommended actions (review, notify, block, lock) per "
        "transaction, alerts for medium risk and above, and counts per level."
    ),
    input_model=RiskInput,
    build=dataflow_of(__name__),
)

__all__ = ["PIPELINE", "RiskInput"]
