"""fraud-features-pipeline: the handbook's features computed by the Pathway service, checked against pandas.

Two independent pandas implementations: the handbook's own code (`fraud.handbook_reference`: rolling windows
per card and per terminal, run on a sample of cards and terminals) and `fraud.features.transform_features` (vectorised,
on every row).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests
from minio import Minio

from workflow_platform.demo_data.fraud_simulator import SimulationConfig, simulate
from workflow_platform.fraud.features import FEATURES, transform_features
from workflow_platform.fraud.handbook_reference import customer_spending_features, terminal_risk_features

PIPELINE = "fraud-features-pipeline"


@pytest.fixture(scope="module")
def simulated() -> pd.DataFrame:
    return simulate(SimulationConfig(n_customers=400, n_terminals=800, nb_days=70)).transactions


def run_pipeline(service: str, pipeline: str, body: dict[str, Any]) -> requests.Response:
    return requests.post(f"{service}/pipelines/{pipeline}/run", json=body, timeout=300)


def run(service: str, body: dict[str, Any]) -> requests.Response:
    return run_pipeline(service, PIPELINE, body)


def put_parquet(s3: Minio, bucket: str, key: str, frame: pd.DataFrame) -> str:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    s3.put_object(bucket, key, io.BytesIO(buffer.getvalue()), len(buffer.getvalue()))
    return f"s3://{bucket}/{key}"


def features_by_reference(service: str, s3: Minio, bucket: str, frame: pd.DataFrame, name: str) -> dict:
    ref = put_parquet(s3, bucket, f"tests/{name}-in.parquet", frame)
    output = f"s3://{bucket}/tests/{name}-features.parquet"
    response = run(service, {"transactions": {"ref": ref}, "output": output})
    assert response.status_code == 200, response.text
    return response.json()


def read_parquet(s3: Minio, ref: str) -> pd.DataFrame:
    bucket, _, key = ref.removeprefix("s3://").partition("/")
    response = s3.get_object(bucket, key)
    try:
        return pd.read_parquet(io.BytesIO(response.read()))
    finally:
        response.close()
        response.release_conn()


def test_features_by_reference_equal_both_pandas_implementations(
    stack_env: dict[str, str], s3: Minio, simulated: pd.DataFrame
) -> None:
    service, bucket = stack_env["WFP_PATHWAY_URL"], stack_env["WFP_S3_BUCKET"]
    # Shuffled: the pipeline must not rely on the input's order.
    shuffled = simulated.sample(frac=1.0, random_state=5).reset_index(drop=True)
    answer = features_by_reference(service, s3, bucket, shuffled, "simulated")
    assert answer["rowCount"] == len(simulated) and answer["skipped"] == {}
    assert answer["features"] == FEATURES
    table = read_parquet(s3, answer["table"]["ref"]).set_index("TRANSACTION_ID").sort_index()
    assert answer["table"]["rowCount"] == len(table)

    reference = transform_features(simulated).set_index("TRANSACTION_ID").sort_index()
    assert (table["CUSTOMER_ID"].astype(int) == reference["CUSTOMER_ID"]).all()
    assert (table["TX_FRAUD"] == reference["TX_FRAUD"]).all()
    for name in FEATURES:
        np.testing.assert_allclose(table[name], reference[name], rtol=1e-9, atol=1e-9, err_msg=name)

    rng = np.random.default_rng(0)
    for card in rng.choice(simulated["CUSTOMER_ID"].unique(), 25, replace=False):
        expected = customer_spending_features(simulated[simulated["CUSTOMER_ID"] == card])
        got = table.loc[expected.index]
        for column in [c for c in FEATURES if c.startswith("CUSTOMER_ID")]:
            np.testing.assert_allclose(got[column], expected[column], rtol=1e-9, err_msg=f"{card} {column}")
    for terminal in rng.choice(simulated["TERMINAL_ID"].unique(), 25, replace=False):
        expected = terminal_risk_features(simulated[simulated["TERMINAL_ID"] == terminal])
        got = table.loc[expected.index]
        for column in [c for c in FEATURES if c.startswith("TERMINAL_ID")]:
            np.testing.assert_allclose(
                got[column], expected[column], atol=1e-9, err_msg=f"{terminal} {column}"
            )


def test_features_of_database_rows_inline_with_skips(stack_env: dict[str, str]) -> None:
    """Rows as a postgres select returns them; rows lacking a field are counted, not featured."""
    rows = [
        {
            "id": 1,
            "customer_id": "c1",
            "terminal_id": 7,
            "created_at": "2024-03-02T05:00:00Z",
            "amount": 10.0,
        },
        {
            "id": 2,
            "customer_id": "c1",
            "terminal_id": 7,
            "created_at": "2024-03-02T20:00:00Z",
            "amount": "30",
        },
        {
            "id": 3,
            "customer_id": "c1",
            "terminal_id": 8,
            "created_at": "2024-03-11T06:30:00Z",
            "amount": 20.0,
        },
        {"id": 4, "customer_id": None, "terminal_id": 7, "created_at": "2024-03-10T07:00:00Z", "amount": 5.0},
        {"id": 5, "customer_id": "c2", "terminal_id": 7, "created_at": "2024-03-10T08:00:00Z", "amount": 5.0},
        {"id": 6, "customer_id": "c2", "merchant_id": "m", "created_at": "yesterday", "amount": 5.0},
    ]
    rows[0]["tx_fraud"] = 1
    response = run(stack_env["WFP_PATHWAY_URL"], {"transactions": {"rows": rows, "rowCount": len(rows)}})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["skipped"] == {"no customer_id": 1, "no usable created_at/timestamp": 1}
    featured = {row["TRANSACTION_ID"]: row for row in answer["table"]["rows"]}
    assert sorted(featured) == [1, 2, 3, 5]
    # 2024-03-02 was a Saturday; 05:00 is night.
    assert (featured[1]["TX_DURING_WEEKEND"], featured[1]["TX_DURING_NIGHT"]) == (1, 1)
    assert (featured[3]["TX_DURING_WEEKEND"], featured[3]["TX_DURING_NIGHT"]) == (0, 1)
    assert featured[2]["CUSTOMER_ID_NB_TX_1DAY_WINDOW"] == 2
    assert featured[2]["CUSTOMER_ID_AVG_AMOUNT_1DAY_WINDOW"] == pytest.approx(20.0)
    assert featured[3]["CUSTOMER_ID_NB_TX_7DAY_WINDOW"] == 1
    assert featured[3]["CUSTOMER_ID_NB_TX_30DAY_WINDOW"] == 3
    # Terminal 7 on 03-10 08:00 knows, a week back, 03-02's two transactions, one of them a fraud.
    assert featured[5]["TERMINAL_ID_NB_TX_7DAY_WINDOW"] == 2
    assert featured[5]["TERMINAL_ID_RISK_7DAY_WINDOW"] == pytest.approx(0.5)
    assert featured[5]["TERMINAL_ID_NB_TX_1DAY_WINDOW"] == 1  # (03-02 08:00, 03-03 08:00]: only 20:00
    assert featured[5]["TERMINAL_ID_RISK_1DAY_WINDOW"] == 0.0


def test_invalid_features_requests_are_422(stack_env: dict[str, str]) -> None:
    service = stack_env["WFP_PATHWAY_URL"]
    response = run(service, {"transactions": [], "output": "/key"})
    assert response.status_code == 422 and "output" in response.text
    response = run(service, {"transactions": {"ref": f"s3://{stack_env['WFP_S3_BUCKET']}/no/such.parquet"}})
    assert response.status_code == 422 and "no such object" in response.text


def db_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Simulated transactions as orchestrator.transactions rows (what a postgres step returns)."""
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


def test_detection_scores_with_the_stored_model_and_explains_with_rules(
    stack_env: dict[str, str], s3: Minio, simulated: pd.DataFrame
) -> None:
    from workflow_platform.fraud.model import fit_model, save_model, score

    featured = transform_features(simulated)
    days = featured["TX_TIME_DAYS"]
    model = fit_model("logistic_regression", featured[(days >= 31) & (days < 45)])
    version = save_model(model, s3, stack_env["WFP_S3_BUCKET"])

    # The batch: day 69 from noon; its history: days 31 to 69 before noon (so past hours reach into it).
    noon = simulated["TX_DATETIME"].min().normalize() + pd.Timedelta(days=69, hours=12)
    batch = simulated[(simulated["TX_TIME_DAYS"] == 69) & (simulated["TX_DATETIME"] >= noon)]
    history = simulated[(simulated["TX_TIME_DAYS"] >= 31) & (simulated["TX_DATETIME"] < noon)]
    # The batch's rows also in the history are ignored there (a workflow may not exclude them).
    body = {
        "transactions": db_rows(batch),
        "history": {
            "ref": put_parquet(
                s3,
                stack_env["WFP_S3_BUCKET"],
                "tests/history.parquet",
                pd.DataFrame(db_rows(pd.concat([history, batch.head(5)]))),
            )
        },
        "model": "latest",
        "alertThreshold": 0.3,
        "rules": {
            "timePattern": {"unusualHours": [0, 1, 2, 3, 4], "weight": 0.3},
            "velocityCheck": {"maxTransactionsPerHour": 99, "weight": 0.5},
        },
    }
    response = run_pipeline(stack_env["WFP_PATHWAY_URL"], "fraud-detection-pipeline", body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["model"]["version"] == version and result["model"]["name"] == "logistic_regression"

    everything = pd.concat([history, batch])
    context = transform_features(everything).set_index("TRANSACTION_ID")
    expected = pd.Series(score(model, context.loc[batch["TRANSACTION_ID"]]), index=batch["TRANSACTION_ID"])
    by_id = {t["transactionId"]: t for t in result["transactions"]}
    reaches_history = 0
    assert sorted(by_id) == sorted(batch["TRANSACTION_ID"].tolist())
    for tx_id, probability in expected.items():
        document = by_id[tx_id]
        assert document["scoredBy"] == "model"
        assert document["modelScore"] == pytest.approx(probability, abs=6e-5)
        assert document["riskScore"] == document["modelScore"]
        assert document["fraudFlag"] == (document["riskScore"] >= 0.3)
        assert (
            document["features"]["CUSTOMER_ID_NB_TX_30DAY_WINDOW"]
            == context.loc[tx_id, "CUSTOMER_ID_NB_TX_30DAY_WINDOW"]
        )
        night = pd.Timestamp(document["createdAt"]).hour in (0, 1, 2, 3, 4)
        assert [e["rule"] for e in document["explanations"]] == (["timePattern"] if night else [])
        # The velocity rule counts the card's past hour in the history too, not only in the batch.
        row = context.loc[tx_id]
        card = everything[everything["CUSTOMER_ID"] == row["CUSTOMER_ID"]]
        hour = card[
            card["TX_DATETIME"].between(row["TX_DATETIME"] - pd.Timedelta(hours=1), row["TX_DATETIME"])
        ]
        reaches_history += bool((hour["TX_DATETIME"] < noon).any())
        velocity = document["rules"]["velocityCheck"]
        assert velocity["transactionsInHour"] == len(hour), tx_id
        assert velocity["amountInHour"] == pytest.approx(hour["TX_AMOUNT"].sum(), abs=0.006)
    assert reaches_history > 0
    flagged = sorted(t for t, d in by_id.items() if d["fraudFlag"])
    assert flagged, "the model flags none of a day's transactions: the test data has no fraud to find"
    assert sorted(a["transactionId"] for a in result["alerts"]) == flagged
    assert all(a["modelVersion"] == version for a in result["alerts"])
    assert {s["id"]: s["fraud_flag"] for s in result["scores"]} == {
        t: d["fraudFlag"] for t, d in by_id.items()
    }
    assert result["summary"]["scoredByModel"] == len(batch) and result["summary"]["alerts"] == len(flagged)


def test_detection_with_an_unknown_model_version_is_a_422(stack_env: dict[str, str]) -> None:
    body = {"transactions": [], "model": "20990101T000000Z-none"}
    response = run_pipeline(stack_env["WFP_PATHWAY_URL"], "fraud-detection-pipeline", body)
    assert response.status_code == 422, response.text
    assert "models/fraud/20990101T000000Z-none/model.joblib" in response.text
