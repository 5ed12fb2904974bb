"""fraud-detection-pipeline: each transaction judged by configurable rules, with evidence and a fraud score.

Request body: `{"transactions": rows | {"rows": [...]} | reference, "customerProfiles": (same, optional),
"history": (same, optional), "model": "latest" | "<version>" (optional), "alertThreshold": 0.5,
"rules": {"velocityCheck": {...}, "geographicAnomaly": {...}, "amountAnomaly": {...}, "timePattern": {...}}}`.

The fields read are in `rows.py` (rules) and `history.py` (features), the rules and the rule score in
`rules.py`, the window features in `windows.py` (the training's, from
`workflow_platform.fraud.features`), the model in `scoring.py`, the dataflow in `dataflow.py`. A
rule whose fields a transaction lacks does not fire for it: it is reported as not evaluable, with the reason.

With `model`, each transaction's riskScore is the trained model's fraud probability on its window features
(computed over `history` plus the transactions themselves), and the rules that fired are its explanations;
without, riskScore is the rules' fraudScore. fraudFlag = riskScore >= alertThreshold; flagged transactions are
the answer's `alerts`, and `scores` lists `{id, risk_score, fraud_flag}` per transaction, ready to write back.
"""

from pydantic import BaseModel, ConfigDict, Field

from ...pipeline import Pipeline, dataflow_of
from ...tabular import InlineRows, TabularInput
from .report import PIPELINE_ID
from .rules import DEFAULT_RULES, Rules
from .scoring import prepare


class FraudInput(BaseModel):
    """Input of fraud-detection-pipeline."""

    model_config = ConfigDict(extra="forbid", strict=True)

    transactions: TabularInput = Field(description="Transactions: inline, `{rows: [...]}` or a reference.")
    customerProfiles: TabularInput = Field(
        default_factory=lambda: InlineRows([]), description="Customer profiles (same forms); none by default."
    )
    history: TabularInput = Field(
        default_factory=lambda: InlineRows([]),
        description="Earlier transactions the feature windows reach (the card's last 30 days, the terminal's "
        "last 37, with their labels tx_fraud); rows also in `transactions` are ignored.",
    )
    model: str | None = Field(
        None,
        pattern=r"^(latest|[0-9A-Za-z_.-]+)$",
        description="Score with this stored model (`latest`, or a version under models/fraud/); none: by rules.",
    )
    alertThreshold: float = Field(
        0.5, ge=0, le=1, description="riskScore from which a transaction is flagged."
    )
    rules: Rules = Field(
        default_factory=lambda: DEFAULT_RULES.model_copy(deep=True),
        description="The rules to run (a rule left out is not run); default: the original workflow's set.",
    )


PIPELINE = Pipeline(
    id=PIPELINE_ID,
    description=(
        "Scores each transaction with the latest trained model on the handbook's window features (card and "
        "terminal history) and judges it by velocity, geographic, amount (z-score) and time-of-day rules; "
        "returns per transaction the risk score, the flag and the rules fired as explanations, the alerts, "
        "and a summary."
    ),
    input_model=FraudInput,
    build=dataflow_of(__name__),
    prepare=prepare,
)

__all__ = ["PIPELINE", "FraudInput"]
