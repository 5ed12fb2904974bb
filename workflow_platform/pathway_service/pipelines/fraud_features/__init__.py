"""fraud-features-pipeline: the handbook's 15 model inputs for every transaction of a table.

Request body: `{"transactions": rows | {"rows": [...]} | reference, "output": "s3://bucket/key.parquet" | "key"}`.
The fields read are in `fraud/history.py`; the features are computed by `workflow_platform.fraud.features`
(the training's own code) on each card's and terminal's history (`fraud/windows.py`). The answer's `table` holds the
rows with the handbook's column names (TRANSACTION_ID, TX_DATETIME, CUSTOMER_ID, TERMINAL_ID, TX_FRAUD and the
15 features): inline, or with `output`, a reference to the parquet object written there. Either form is a
tabular input of the next step (the `fraud` plugin's trainModel, another pipeline).
"""

from pydantic import BaseModel, ConfigDict, Field

from ...pipeline import Pipeline, dataflow_of
from ...tabular import TabularInput

PIPELINE_ID = "fraud-features-pipeline"


class FraudFeaturesInput(BaseModel):
    """Input of fraud-features-pipeline."""

    model_config = ConfigDict(extra="forbid", strict=True)

    transactions: TabularInput = Field(
        description="Transactions with their history (windows reach 37 days back): inline, `{rows}` or a reference."
    )
    output: str | None = Field(
        None,
        pattern=r"^(s3://[^/]+/.+|[^/].*)$",
        description="Write the feature table here (parquet), `s3://bucket/key` or a key in the platform's bucket, "
        "and answer with a reference; default: rows inline.",
    )


PIPELINE = Pipeline(
    id=PIPELINE_ID,
    description=(
        "Computes the fraud handbook's 15 features per transaction: weekend and night flags, the card's count "
        "and mean amount over 1/7/30 days, the terminal's count and fraud rate over 1/7/30 days a week back; "
        "answers with the table inline or as a parquet object."
    ),
    input_model=FraudFeaturesInput,
    build=dataflow_of(__name__),
)

__all__ = ["PIPELINE", "FraudFeaturesInput"]
