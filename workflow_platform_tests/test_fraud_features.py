"""fraud-features-pipeline: the handbook's features computed by the Pathway service, checked against pandas.

Two independent pandas implementations: the handbook's own code (`fraud.handbook_reference`: rolling windows
per card and per terminal, run on a sample of cards and terminals) and `fraud.features.transform_features` (vectorised,
on every row). Training and serving: the same rows, simulated and on the windows' edges, go through
`transform_features` and through both Pathway pipelines that compute features, which must agree to 1e-9.
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
from workflow_platform.fraud.features import FEATURES, INPUT_COLUMNS, transform_features
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
    frame = pd.DataFrame(rows, columns=INPUT_COLUMNS[1:])
    frame.insert(0, "TRANSACTION_ID", first_id + np.arange(len(frame)))
    # The tied rows: ids in the reverse of their input order.
    frame.iloc[-3:, 0] = frame["TRANSACTION_ID"].iloc[-3:].to_numpy()[::-1]
    return frame


@pytest.fixture(scope="module")
def with_edges() -> pd.DataFrame:
    simulated = simulate(SimulationConfig(n_customers=60, n_terminals=120, nb_days=50)).transactions
    frame = pd.concat([simulated[INPUT_COLUMNS], edge_rows(int(simulated["TRANSACTION_ID"].max()) + 1)])
    # Shuffled: neither path may rely on the input's order.
    return frame.sample(frac=1.0, random_state=3).reset_index(drop=True)


def assert_same_features(served: pd.DataFrame, trained: pd.DataFrame) -> None:
    assert sorted(served.index) == sorted(trained.index)
    served = served.loc[trained.index]
    for name in FEATURES:
        np.testing.assert_allclose(served[name], trained[name], rtol=0, atol=1e-9, err_msg=name)


def answer_of(service: str, pipeline: str, body: dict[str, Any]) -> dict[str, Any]:
    response = run_pipeline(service, pipeline, body)
    assert response.status_code == 200, response.text
    return response.json()


def test_training_and_serving_compute_identical_features(
    stack_env: dict[str, str], with_edges: pd.DataFrame
) -> None:
    service = stack_env["WFP_PATHWAY_URL"]
    assert len(with_edges) < 10_000  # answered inline
    trained = transform_features(with_edges).set_index("TRANSACTION_ID")
    rows = db_rows(with_edges)

    table = answer_of(service, PIPELINE, {"transactions": {"rows": rows}})["table"]
    assert_same_features(pd.DataFrame(table["rows"]).set_index("TRANSACTION_ID"), trained)

    analysis = answer_of(service, "fraud-detection-pipeline", {"transactions": rows, "rules": {}})
    scored = pd.DataFrame(
        [{"TRANSACTION_ID": t["transactionId"], **t["features"]} for t in analysis["transactions"]]
    )
    assert_same_features(scored.set_index("TRANSACTION_ID"), trained)
