"""fraud-detection-pipeline: each transaction judged by configurable rules, with evidence and a fraud score.

Request body: `{"transactions": rows | {"rows": [...]} | reference, "customerProfiles": (same, optional),
"rules": {"velocityCheck": {...}, "geographicAnomaly": {...}, "amountAnomaly": {...}, "timePattern": {...}}}`.
The fields read are in `rows.py`, the rules and the score in `rules.py`, the dataflow in `dataflow.py`. A rule
whose fields a transaction lacks does not fire for it: it is reported as not evaluable, with the reason.
"""

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from ...pipeline import Pipeline
from ...tabular import InlineRows, TabularInput
from .report import PIPELINE_ID
from .rules import DEFAULT_RULES, Rules

if TYPE_CHECKING:
    import pathway as pw


class FraudInput(BaseModel):
    """Input of fraud-detection-pipeline."""

    model_config = ConfigDict(extra="forbid", strict=True)

    transactions: TabularInput = Field(description="Transactions: inline, `{rows: [...]}` or a reference.")
    customerProfiles: TabularInput = Field(
        default_factory=lambda: InlineRows([]), description="Customer profiles (same forms); none by default."
    )
    rules: Rules = Field(
        default_factory=lambda: DEFAULT_RULES.model_copy(deep=True),
        description="The rules to run (a rule left out is not run); default: the original workflow's set.",
    )


# Keeps this module importable without pathway: the dataflow imports it.
def build(requests: "pw.Table") -> "pw.Table":
    from .dataflow import build as build_dataflow

    return build_dataflow(requests)


PIPELINE = Pipeline(
    id=PIPELINE_ID,
    description=(
        "Judges each transaction by velocity, geographic, amount (z-score) and time-of-day rules against the "
        "customer's recent transactions and profile; returns, per transaction, the rules fired with their "
        "evidence and a fraud score in [0, 1], plus a summary."
    ),
    input_model=FraudInput,
    build=build,
)

__all__ = ["PIPELINE", "FraudInput"]
