"""Features against hand computation, the evaluation metrics, models, and the data paths on real services
(PostgreSQL COPY loading, NATS JetStream replay, model storage in S3)."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from workflow_platform.demo_data.fraud_handbook import evaluate_handbook
from workflow_platform.demo_data.fraud_simulator import SimulationConfig, simulate
from workflow_platform.fraud.evaluation import (
    card_precision_top_k,
    card_precision_top_k_day,
    train_delay_test_split,
)
from workflow_platform.fraud.features import FEATURES, transform_features
from workflow_platform_tests.conftest import fetch, stream_messages

# --- features ------------------------------------------------------------------------------------------------

# One row per transaction: id, time, customer, terminal, amount, fraud. 2018-04-02 is a Monday.
HAND_MADE = [
    (0, "2018-04-02 10:00:00", 1, 7, 10.0, 1),
    (1, "2018-04-02 20:00:00", 1, 8, 20.0, 1),
    (2, "2018-04-03 10:00:00", 1, 8, 30.0, 0),  # exactly 1 day after tx 0: tx 0 leaves its 1-day window
    (3, "2018-04-07 06:30:00", 1, 8, 40.0, 0),  # Saturday 06:30: weekend and night; same instant as tx 4
    (4, "2018-04-07 06:30:00", 1, 8, 50.0, 0),
    (5, "2018-04-09 10:00:00", 1, 7, 60.0, 0),  # exactly 7 days after txs 0 and 6 on terminal 7
    (6, "2018-04-02 10:00:00", 2, 7, 100.0, 0),
    (
        7,
        "2018-04-10 10:00:00",
        3,
        7,
        5.0,
        0,
    ),  # 8 days after: out of the delayed 1-day window, in the 7-day one
    (8, "2018-04-09 09:59:59", 4, 7, 5.0, 0),  # one second short of 7 days: nothing delayed yet
    (9, "2018-04-10 20:00:00", 5, 8, 5.0, 0),  # delayed 1-day window (04-02 20:00, 04-03 20:00]: only tx 2
]

# Computed by hand from the definitions (customer windows (t - n days, t] with the current transaction and the
# earlier ones at the same instant; terminal windows (t - 7 - n days, t - 7 days]).
# id: weekend, night, (count, average) for 1/7/30 days, (count, risk) for 1/7/30 days
EXPECTED = {
    0: (0, 0, (1, 10.0), (1, 10.0), (1, 10.0), (0, 0.0), (0, 0.0), (0, 0.0)),
    1: (0, 0, (2, 15.0), (2, 15.0), (2, 15.0), (0, 0.0), (0, 0.0), (0, 0.0)),
    2: (0, 0, (2, 25.0), (3, 20.0), (3, 20.0), (0, 0.0), (0, 0.0), (0, 0.0)),
    3: (1, 1, (1, 40.0), (4, 25.0), (4, 25.0), (0, 0.0), (0, 0.0), (0, 0.0)),
    4: (1, 1, (2, 45.0), (5, 30.0), (5, 30.0), (0, 0.0), (0, 0.0), (0, 0.0)),
    5: (0, 0, (1, 60.0), (5, 40.0), (6, 35.0), (2, 0.5), (2, 0.5), (2, 0.5)),
    6: (0, 0, (1, 100.0), (1, 100.0), (1, 100.0), (0, 0.0), (0, 0.0), (0, 0.0)),
    7: (0, 0, (1, 5.0), (1, 5.0), (1, 5.0), (0, 0.0), (2, 0.5), (2, 0.5)),
    8: (0, 0, (1, 5.0), (1, 5.0), (1, 5.0), (0, 0.0), (0, 0.0), (0, 0.0)),
    9: (0, 0, (1, 5.0), (1, 5.0), (1, 5.0), (1, 0.0), (2, 0.5), (2, 0.5)),
}


def hand_made_transactions() -> pd.DataFrame:
    frame = pd.DataFrame(
        HAND_MADE,
        columns=["TRANSACTION_ID", "TX_DATETIME", "CUSTOMER_ID", "TERMINAL_ID", "TX_AMOUNT", "TX_FRAUD"],
    )
    frame["TX_DATETIME"] = pd.to_datetime(frame["TX_DATETIME"])
    return frame


def test_features_match_hand_computation_in_input_order() -> None:
    shuffled = hand_made_transactions().sample(frac=1.0, random_state=3).reset_index(drop=True)
    shuffled["EXTRA"] = "kept"
    out = transform_features(shuffled)
    assert out["TRANSACTION_ID"].tolist() == shuffled["TRANSACTION_ID"].tolist()
    assert (out["EXTRA"] == "kept").all()
    assert set(FEATURES) <= set(out.columns)
    for _, row in out.iterrows():
        weekend, night, *windows = EXPECTED[row["TRANSACTION_ID"]]
        assert row["TX_DURING_WEEKEND"] == weekend
        assert row["TX_DURING_NIGHT"] == night
        for n, (count, average) in zip((1, 7, 30), windows[:3], strict=True):
            assert row[f"CUSTOMER_ID_NB_TX_{n}DAY_WINDOW"] == count, (row["TRANSACTION_ID"], n)
            assert row[f"CUSTOMER_ID_AVG_AMOUNT_{n}DAY_WINDOW"] == pytest.approx(average), (
                row["TRANSACTION_ID"],
                n,
            )
        for n, (count, risk) in zip((1, 7, 30), windows[3:], strict=True):
            assert row[f"TERMINAL_ID_NB_TX_{n}DAY_WINDOW"] == count, (row["TRANSACTION_ID"], n)
            assert row[f"TERMINAL_ID_RISK_{n}DAY_WINDOW"] == pytest.approx(risk), (row["TRANSACTION_ID"], n)


def test_features_accept_timezone_aware_datetimes_and_string_ids() -> None:
    naive = transform_features(hand_made_transactions())
    aware = hand_made_transactions()
    aware["TX_DATETIME"] = aware["TX_DATETIME"].dt.tz_localize("UTC")
    aware["CUSTOMER_ID"] = "card-" + aware["CUSTOMER_ID"].astype(str)
    aware["TERMINAL_ID"] = "term-" + aware["TERMINAL_ID"].astype(str)
    pd.testing.assert_frame_equal(naive[FEATURES], transform_features(aware)[FEATURES])
    with pytest.raises(ValueError, match="TX_FRAUD"):
        transform_features(hand_made_transactions().drop(columns="TX_FRAUD"))


# --- evaluation metrics --------------------------------------------------------------------------------------


def predictions(rows: list[tuple[int, int, int, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["TX_TIME_DAYS", "CUSTOMER_ID", "TX_FRAUD", "predictions"])


def test_card_precision_top_k_by_hand() -> None:
    frame = predictions(
        [
            # day 0: cards by max score: 30 (0.95, fraud), 10 (0.9, fraud), 20 (0.8) -> top 2 both frauds
            (0, 10, 1, 0.9),
            (0, 20, 0, 0.8),
            (0, 30, 0, 0.3),
            (0, 30, 1, 0.95),
            # day 1: card 10 was detected on day 0 and leaves; top 2 = 20 (0.7), 40 (0.6, fraud)
            (1, 10, 1, 0.99),
            (1, 20, 0, 0.7),
            (1, 40, 1, 0.6),
            (1, 50, 0, 0.1),
        ]
    )
    frauded, per_day, mean = card_precision_top_k(frame, 2)
    assert frauded == [2, 1]
    assert per_day == [1.0, 0.5]
    assert mean == 0.75
    frauded, per_day, _ = card_precision_top_k(frame, 2, remove_detected_frauded_cards=False)
    assert frauded == [2, 2]
    assert per_day == [1.0, 0.5]  # card 10 (fraud) and 20 this time
    detected, precision = card_precision_top_k_day(frame[frame["TX_TIME_DAYS"] == 0], 100)
    assert sorted(detected) == [10, 30]
    assert precision == 0.02  # k counts the empty places too, as in the handbook


def test_card_precision_ties_keep_card_order() -> None:
    frame = predictions([(0, 5, 1, 0.5), (0, 3, 0, 0.5), (0, 4, 0, 0.1)])
    assert card_precision_top_k_day(frame, 1) == ([], 0.0)  # card 3 comes first
    assert card_precision_top_k_day(frame, 2) == ([5], 0.5)


def test_train_delay_test_split_removes_known_compromised_cards() -> None:
    tx = simulate(SimulationConfig(n_customers=400, n_terminals=800, nb_days=50)).transactions
    start = dt.datetime(2018, 4, 11)  # day 10
    train, test = train_delay_test_split(tx, start)
    assert sorted(train["TX_TIME_DAYS"].unique()) == list(range(10, 17))
    assert sorted(test["TX_TIME_DAYS"].unique()) == list(range(24, 31))
    for day in range(24, 31):
        known = set(tx.loc[(tx["TX_TIME_DAYS"].between(10, day - 8)) & (tx["TX_FRAUD"] == 1), "CUSTOMER_ID"])
        kept = tx[(tx["TX_TIME_DAYS"] == day) & ~tx["CUSTOMER_ID"].isin(known)]
        assert (
            test.loc[test["TX_TIME_DAYS"] == day, "TRANSACTION_ID"].tolist()
            == kept["TRANSACTION_ID"].tolist()
        )
    assert test["TRANSACTION_ID"].is_monotonic_increasing


# --- models --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_split() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train on days 30-36 and test on days 44-50 of a small simulation."""
    tx = simulate(SimulationConfig(n_customers=600, n_terminals=1200, nb_days=60)).transactions
    return train_delay_test_split(transform_features(tx), dt.datetime(2018, 5, 1))


@pytest.mark.parametrize("name", ["logistic_regression", "hist_gradient_boosting", "ensemble"])
def test_models_learn_the_frauds(small_split: tuple[pd.DataFrame, pd.DataFrame], name: str) -> None:
    from sklearn.metrics import roc_auc_score

    from workflow_platform.fraud.model import fit_model, score

    train, test = small_split
    model = fit_model(name, train)
    probabilities = score(model, test)
    assert probabilities.shape == (len(test),)
    assert ((probabilities >= 0) & (probabilities <= 1)).all()
    assert roc_auc_score(test["TX_FRAUD"], probabilities) > 0.65  # 0.5 is chance; small data
    assert model.trained_on["rows"] == len(train)


def test_unknown_model_is_refused(small_split: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    import importlib.util

    from workflow_platform.fraud.model import available_models, fit_model

    has_xgboost = importlib.util.find_spec("xgboost") is not None
    assert ("xgboost" in available_models()) == has_xgboost

    with pytest.raises(ValueError, match="unknown model"):
        fit_model("deep_magic", small_split[0])


def test_evaluate_handbook_runs_the_protocol_on_a_small_dataset(tmp_path) -> None:
    config = SimulationConfig(n_customers=300, n_terminals=600, nb_days=140)
    evaluation = evaluate_handbook(["logistic_regression"], tmp_path, config)
    (result,) = evaluation.results
    assert result.handbook == {"auc_roc": 0.871, "average_precision": 0.606, "card_precision_at_100": 0.291}
    assert 0.5 < result.metrics["auc_roc"] <= 1.0
    assert 0.0 <= result.metrics["card_precision_at_100"] <= 1.0
    assert evaluation.n_train > 0 and evaluation.n_test > 0
    assert "logistic_regression" in evaluation.table()
    assert json.loads(json.dumps(evaluation.to_dict()))["best"] == "logistic_regression"


def test_model_round_trip_through_the_object_store(
    small_split: tuple[pd.DataFrame, pd.DataFrame], stack_env: dict[str, str], s3
) -> None:
    from workflow_platform.fraud.model import LATEST_KEY, fit_model, load_model, save_model, score
    from workflow_platform_tests.conftest import read_json_object

    train, test = small_split
    bucket = stack_env["WFP_S3_BUCKET"]
    model = fit_model("hist_gradient_boosting", train)
    model.metrics = {"auc_roc": 0.9}
    first = save_model(model)
    keys = {o.object_name for o in s3.list_objects(bucket, prefix=f"models/fraud/{first}/", recursive=True)}
    assert keys == {f"models/fraud/{first}/model.joblib", f"models/fraud/{first}/metrics.json"}
    metrics = read_json_object(s3, bucket, f"models/fraud/{first}/metrics.json")
    assert metrics["features"] == FEATURES and metrics["metrics"] == {"auc_roc": 0.9}
    assert read_json_object(s3, bucket, LATEST_KEY)["version"] == first

    loaded = load_model()
    assert (loaded.name, loaded.version, loaded.features) == ("hist_gradient_boosting", first, FEATURES)
    np.testing.assert_array_equal(score(loaded, test), score(model, test))

    second = save_model(fit_model("logistic_regression", train))
    assert second != first
    assert load_model().name == "logistic_regression"
    assert load_model(first).version == first  # older versions stay loadable


# --- loading -------------------------------------------------------------------------------------------------


def test_load_into_postgres_is_idempotent(pg, tmp_path) -> None:
    from workflow_platform.demo_data.fraud_load import dataset_source, load_transactions

    dataset = simulate(SimulationConfig(n_customers=150, n_terminals=300, nb_days=20))
    source = dataset_source(dataset)
    first = load_transactions(dataset)
    assert first["transactions"] == len(dataset.transactions) == first["inserted"] == first["in_table"]
    assert first["customer_profiles"] == 150
    second = load_transactions(dataset)
    assert (second["inserted"], second["in_table"]) == (0, len(dataset.transactions))
    # A partly missing dataset gets exactly its missing rows back; rows already processed stay as they are.
    fetch(pg, "DELETE FROM orchestrator.transactions WHERE source = %s AND source_tx_id < 10", source)
    fetch(
        pg,
        "UPDATE orchestrator.transactions SET processed_at = now() WHERE source = %s AND source_tx_id = 10",
        source,
    )
    third = load_transactions(dataset, profiles=False)
    assert (third["inserted"], third["in_table"], third["customer_profiles"]) == (
        10,
        len(dataset.transactions),
        0,
    )
    assert fetch(
        pg,
        "SELECT processed_at IS NOT NULL FROM orchestrator.transactions WHERE source = %s AND source_tx_id = 10",
        source,
    ) == [(True,)]
    (count, frauds, scenarios) = fetch(
        pg,
        "SELECT count(*), sum(tx_fraud), count(DISTINCT tx_fraud_scenario) FROM orchestrator.transactions "
        "WHERE source = %s",
        source,
    )[0]
    assert count == len(dataset.transactions)
    assert frauds == dataset.transactions["TX_FRAUD"].sum()

    tx = dataset.transactions.iloc[123]
    terminal = dataset.terminals.iloc[int(tx["TERMINAL_ID"])]
    row = fetch(
        pg,
        "SELECT customer_id, merchant_id, terminal_id, amount, created_at, latitude, longitude, tx_fraud, "
        "tx_fraud_scenario, tx_time_seconds, tx_time_days, processed_at "
        "FROM orchestrator.transactions WHERE source = %s AND source_tx_id = 123",
        source,
    )[0]
    assert row[:3] == (str(tx["CUSTOMER_ID"]), str(tx["TERMINAL_ID"]), tx["TERMINAL_ID"])
    assert float(row[3]) == pytest.approx(tx["TX_AMOUNT"])
    assert row[4] == tx["TX_DATETIME"].to_pydatetime().replace(tzinfo=dt.UTC)
    assert row[5:7] == (terminal["x_terminal_id"], terminal["y_terminal_id"])
    assert row[7:11] == (tx["TX_FRAUD"], tx["TX_FRAUD_SCENARIO"], tx["TX_TIME_SECONDS"], tx["TX_TIME_DAYS"])
    assert row[11] is None  # left for the fraud workflow to process (tx 10 was marked processed above)

    customer = dataset.customers.iloc[7]
    profile = fetch(
        pg,
        "SELECT avg_amount, std_amount, home_latitude, home_longitude FROM orchestrator.customer_profiles "
        "WHERE customer_id = '7'",
    )[0]
    assert float(profile[0]) == round(customer["mean_amount"], 2)
    assert profile[2:] == (customer["x_customer_id"], customer["y_customer_id"])


def test_seed_transactions_command(stack_env: dict[str, str], pg, tmp_path) -> None:
    from workflow_platform.cli.fraud import seed_transactions

    args = ["--customers", "60", "--terminals", "120", "--days", "10", "--cache-dir", str(tmp_path)]
    first = CliRunner().invoke(seed_transactions, args)
    assert first.exit_code == 0, first.output
    report = json.loads(first.output)
    assert report["postgres"]["inserted"] == report["postgres"]["transactions"] > 0
    again = CliRunner().invoke(seed_transactions, [*args, "--no-profiles"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.output)["postgres"]["inserted"] == 0
    assert json.loads(again.output)["postgres"]["customer_profiles"] == 0


def test_eval_command_refuses_unknown_models() -> None:
    from workflow_platform.cli.fraud import eval_fraud

    result = CliRunner().invoke(eval_fraud, ["--models", "logistic_regression,deep_magic"])
    assert result.exit_code == 2
    assert "deep_magic" in result.output


def test_nats_replay_puts_each_transaction_once(stack_env: dict[str, str]) -> None:
    from workflow_platform.demo_data.fraud_load import replay_to_nats

    transactions = simulate(SimulationConfig(n_customers=40, n_terminals=80, nb_days=10)).transactions
    subject = f"transactions.test-{uuid.uuid4().hex[:8]}"
    source = f"test-replay-{uuid.uuid4().hex[:8]}"  # msg ids are stream-wide: keep them unique per run
    first = replay_to_nats(transactions.head(150), source, subject=subject)
    assert (first["stream"], first["published"], first["duplicates"]) == ("TRANSACTIONS", 150, 0)

    again = replay_to_nats(transactions.head(150), source, subject=subject)
    assert (again["published"], again["skipped_already_published"]) == (0, 150)

    # a paced replay (its timing is measured in bench/, not here) publishes the rest, once, in order
    more = replay_to_nats(transactions.head(200), source, subject=subject, rate=100)
    assert (more["published"], more["skipped_already_published"]) == (50, 150)

    messages = stream_messages(stack_env["WFP_NATS_URL"], "TRANSACTIONS", subject)
    ids = [body["transaction_id"] for _, _, body in messages]
    assert ids == transactions.head(200)["TRANSACTION_ID"].tolist()
    assert [headers["Nats-Msg-Id"] for _, headers, _ in messages] == [f"{source}:{i}" for i in ids]
    first_tx = transactions.iloc[0]
    assert messages[0][2]["amount"] == first_tx["TX_AMOUNT"]
    assert messages[0][2]["tx_datetime"] == first_tx["TX_DATETIME"].strftime("%Y-%m-%dT%H:%M:%SZ")
