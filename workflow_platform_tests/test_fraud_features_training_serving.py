"""Training and serving compute the same fraud features on the same rows.

Training and batch scoring call `fraud.features.transform_features` on a table; the Pathway service computes the
features per card and per terminal history, in fraud-features-pipeline and in fraud-detection-pipeline. The same
rows (simulated transactions, plus rows placed on the windows' edges) go through all three, which must agree to
1e-9.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests

from workflow_platform.demo_data.fraud_simulator import SimulationConfig, simulate
from workflow_platform.fraud.features import FEATURES, INPUT_COLUMNS, transform_features

MONDAY = pd.Timestamp("2024-03-04")
# Offsets from MONDAY landing on the windows' ends: 1, 7 and 30 days for the card, the 7-day delay and 7 + 1,
# 7 + 7 and 7 + 30 days for the terminal, a second either side of some; then the night's end (07:00), the
# weekend's end (Sunday 23:59:59) and a time in milliseconds.
EDGE_OFFSETS = [
    pd.Timedelta(days=days, seconds=seconds)
    for days in (0, 1, 7, 8, 14, 30, 37, 38, 44, 67)
    for seconds in ((0, -1, 1) if days in (1, 7, 37) else (0,))
] + [
    pd.Timedelta(hours=7, seconds=-1),
    pd.Timedelta(hours=7),
    pd.Timedelta(seconds=-1),
    pd.Timedelta(milliseconds=250),
]


def edge_rows(first_id: int) -> pd.DataFrame:
    """Two cards on two terminals at the edge times: one with whole-cent amounts, one without (a float sum);
    the first card also has three transactions at one instant, listed against their ids' order."""
    rows = []
    for card, terminal, amounts in (
        (90001, 91001, (12.34, 5.0, 99.99)),
        (90002, 91002, (0.1, 1 / 3, 2.5e-7)),
    ):
        for index, offset in enumerate(EDGE_OFFSETS):
            rows.append((MONDAY + offset, card, terminal, amounts[index % 3], index % 2))
    tied = MONDAY + pd.Timedelta(days=8, hours=12)
    rows += [(tied, 90001, 91001, amount, 0) for amount in (7.0, 8.5, 1.25)]
    frame = pd.DataFrame(rows, columns=["TX_DATETIME", "CUSTOMER_ID", "TERMINAL_ID", "TX_AMOUNT", "TX_FRAUD"])
    frame.insert(0, "TRANSACTION_ID", first_id + np.arange(len(frame)))
    # The tied rows: ids in the reverse of their input order.
    frame.iloc[-3:, 0] = frame["TRANSACTION_ID"].iloc[-3:].to_numpy()[::-1]
    return frame


@pytest.fixture(scope="module")
def transactions() -> pd.DataFrame:
    simulated = simulate(SimulationConfig(n_customers=60, n_terminals=120, nb_days=50)).transactions
    frame = pd.concat([simulated[INPUT_COLUMNS], edge_rows(int(simulated["TRANSACTION_ID"].max()) + 1)])
    # Shuffled: neither path may rely on the input's order.
    return frame.sample(frac=1.0, random_state=3).reset_index(drop=True)


def request_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows as a database select returns them (the pipelines' field names, UTC times)."""
    return [
        {
            "id": int(row.TRANSACTION_ID),
            "customer_id": str(row.CUSTOMER_ID),
            "terminal_id": int(row.TERMINAL_ID),
            "created_at": row.TX_DATETIME.isoformat() + "Z",
            "amount": float(row.TX_AMOUNT),
            "tx_fraud": int(row.TX_FRAUD),
        }
        for row in frame.itertuples()
    ]


def run(service: str, pipeline: str, body: dict[str, Any]) -> dict[str, Any]:
    response = requests.post(f"{service}/pipelines/{pipeline}/run", json=body, timeout=300)
    assert response.status_code == 200, response.text
    return response.json()


def assert_same_features(served: pd.DataFrame, trained: pd.DataFrame) -> None:
    assert sorted(served.index) == sorted(trained.index)
    served = served.loc[trained.index]
    for name in FEATURES:
        np.testing.assert_allclose(served[name], trained[name], rtol=0, atol=1e-9, err_msg=name)


def test_training_and_serving_compute_identical_features(
    stack_env: dict[str, str], transactions: pd.DataFrame
) -> None:
    service = stack_env["WFP_PATHWAY_URL"]
    assert len(transactions) < 10_000  # answered inline
    trained = transform_features(transactions).set_index("TRANSACTION_ID")
    rows = request_rows(transactions)

    table = run(service, "fraud-features-pipeline", {"transactions": {"rows": rows}})["table"]
    assert_same_features(pd.DataFrame(table["rows"]).set_index("TRANSACTION_ID"), trained)

    analysis = run(service, "fraud-detection-pipeline", {"transactions": rows, "rules": {}})
    scored = pd.DataFrame(
        [{"TRANSACTION_ID": t["transactionId"], **t["features"]} for t in analysis["transactions"]]
    )
    assert_same_features(scored.set_index("TRANSACTION_ID"), trained)
