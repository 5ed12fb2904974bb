"""The shipped fraud workflows on simulated transactions: fraud-model-training stores a model measured on the
handbook's protocol; fraud-detection-workflow's sensor turns new rows into runs that score exactly those rows,
write the scores back, store the alerts and publish one fraud.alerts message per alert, never twice."""

from __future__ import annotations

import math
from pathlib import Path

import dagster as dg
import pandas as pd
import psycopg2
import psycopg2.extras
import pytest
from sklearn.metrics import roc_auc_score

from workflow_platform.demo_data.fraud_load import load_transactions
from workflow_platform.demo_data.fraud_simulator import SimulatedDataset, SimulationConfig, simulate_cached
from workflow_platform.fraud.model import LATEST_KEY
from workflow_platform.orchestration.assets import FRAUD_MODEL, workflow_lineage
from workflow_platform.orchestration.catalog import check_file
from workflow_platform.orchestration.job import build_job
from workflow_platform.orchestration.row_cursor import RowCursor
from workflow_platform.orchestration.triggers import build_sensor
from workflow_platform_tests.conftest import evaluate_sensor, fetch, read_json_object, stream_messages

WORKFLOWS = Path(__file__).parent.parent / "workflows"
TRAINING = WORKFLOWS / "fraud-model-training" / "workflow.json"
DETECTION = WORKFLOWS / "fraud-detection-workflow" / "workflow.json"
# Covers the handbook's protocol (2018-07-25 .. 08-14, with 37 days of history before) and one day after.
CONFIG = SimulationConfig(n_customers=300, n_terminals=600, nb_days=141)
LAST_DAY = CONFIG.nb_days - 1


@pytest.fixture(scope="module")
def dataset(stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> SimulatedDataset:
    """Every simulated day but the last in orchestrator.transactions, as history."""
    full = simulate_cached(CONFIG, tmp_path_factory.mktemp("fraud-cache"))
    history = full.transactions[full.transactions["TX_TIME_DAYS"] < LAST_DAY]
    load_transactions(
        SimulatedDataset(CONFIG, full.customers, full.terminals, history.reset_index(drop=True))
    )
    return full


@pytest.fixture(scope="module")
def trained(dataset: SimulatedDataset) -> dg.ExecuteInProcessResult:
    spec, problems = check_file(TRAINING)
    assert problems == []
    result = build_job(spec, TRAINING).execute_in_process(
        instance=dg.DagsterInstance.get(), raise_on_error=False
    )
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    return result


def test_training_stores_a_measured_model_that_becomes_the_latest(trained, stack_env, s3, pg) -> None:
    train = trained.output_for_node("train")
    assert train["model"] == "hist_gradient_boosting" and train["promoted"] is True
    assert train["train"]["rows"] > 1000 and train["train"]["frauds"] > 10
    assert train["test"]["rows"] > 1000 and train["test"]["frauds"] > 5
    # A small dataset (300 cards) but the frauds are learnable: well above chance.
    assert train["metrics"]["auc_roc"] > 0.75 and 0 < train["metrics"]["average_precision"] <= 1
    assert train["handbook"]["best_tuned"]["auc_roc"] == 0.875
    bucket = stack_env["WFP_S3_BUCKET"]
    assert read_json_object(s3, bucket, LATEST_KEY)["version"] == train["version"]
    assert s3.stat_object(bucket, train["key"]).size > 0
    features = trained.output_for_node("features")
    assert features["table"]["ref"].endswith(f"models/fraud/features/{trained.run_id}.parquet")
    assert features["rowCount"] == trained.output_for_node("transactions")["rowCount"]
    logged = fetch(
        pg,
        "SELECT data->>'version' FROM orchestrator.events WHERE event_type = 'fraud_model_trained' "
        "AND data->>'runId' = %s",
        trained.run_id,
    )
    assert logged == [(train["version"],)]
    # one asset for the model, the version (and where it is stored) as the materialization's metadata
    [model] = trained.asset_materializations_for_node("train")
    assert model.asset_key == FRAUD_MODEL and model.metadata["version"].value == train["version"]
    assert f"s3://{bucket}/{train['key']}" in model.metadata["objects"].value
    announced = stream_messages(stack_env["WFP_NATS_URL"], "MODELS", "models.fraud.trained")
    assert train["version"] in [body["version"] for _, _, body in announced]


def new_transactions(dataset: SimulatedDataset, dsn: str) -> pd.DataFrame:
    """The last simulated day arrives: inserted as new rows (no source, labels unknown); returns them with ids."""
    day = dataset.transactions[dataset.transactions["TX_TIME_DAYS"] == LAST_DAY]
    rows = [
        (
            str(r.CUSTOMER_ID),
            str(r.TERMINAL_ID),
            int(r.TERMINAL_ID),
            float(r.TX_AMOUNT),
            r.TX_DATETIME.isoformat() + "Z",
        )
        for r in day.itertuples()
    ]
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        ids = psycopg2.extras.execute_values(
            cursor,
            "INSERT INTO orchestrator.transactions (customer_id, merchant_id, terminal_id, amount, created_at) "
            "VALUES %s RETURNING id",
            rows,
            fetch=True,
        )
    connection.close()
    return day.assign(id=[i for (i,) in ids])


def test_new_transactions_are_scored_once_by_sensor_launched_runs(
    trained, dataset, stack_env, s3, pg
) -> None:
    spec, problems = check_file(DETECTION)
    assert problems == []
    job = build_job(spec, DETECTION)
    # Small batches, so that one day's transactions make several runs.
    small = spec.model_copy(update={"trigger": spec.trigger.model_copy(update={"batchSize": 250})})
    sensor = build_sensor(small, job)
    (cursor,) = fetch(pg, "SELECT coalesce(max(id), 0) FROM orchestrator.transactions")[0]
    before = fetch(pg, "SELECT count(*) FROM orchestrator.transactions WHERE processed_at IS NOT NULL")
    arrived = new_transactions(dataset, stack_env["WFP_PG_DSN"])
    instance = dg.DagsterInstance.get()

    tick = evaluate_sensor(sensor, instance, str(cursor))
    expected_batches = math.ceil(len(arrived) / 250)
    assert len(tick.run_requests) == expected_batches
    assert RowCursor.parse(tick.cursor) == RowCursor.start(int(arrived["id"].max()))
    quiet = evaluate_sensor(sensor, instance, tick.cursor)
    assert quiet.run_requests == []

    results = [
        job.execute_in_process(instance=instance, tags=r.tags, raise_on_error=False)
        for r in tick.run_requests
    ]
    for result in results:
        assert result.success, [e.message for e in result.all_events if e.is_failure]
    # every batch records against the workflow's stable assets: one key per dataset or step, not one per batch
    recorded = {
        event.asset_key
        for result in results
        for event in result.all_events
        if event.event_type_value in ("ASSET_MATERIALIZATION", "ASSET_OBSERVATION")
    }
    declared = {key for step in workflow_lineage(spec).values() for key in step.asset_keys}
    assert len(results) > 1 and recorded <= declared
    assert {
        dg.AssetKey(["postgres", "orchestrator", "transactions"]),
        dg.AssetKey(["s3", "fraud-alerts", "transactions.json"]),
        dg.AssetKey(["fraud-detection-workflow", "score"]),
    } <= recorded

    # Exactly the new rows were scored; nothing before them changed.
    scored = pd.DataFrame(
        fetch(
            pg,
            "SELECT id, risk_score, fraud_flag, processed_at IS NOT NULL FROM orchestrator.transactions "
            "WHERE id > %s ORDER BY id",
            cursor,
        ),
        columns=["id", "risk_score", "fraud_flag", "processed"],
    )
    assert scored["id"].tolist() == arrived["id"].tolist()
    assert scored["processed"].all() and scored["risk_score"].notna().all()
    after = fetch(
        pg,
        "SELECT count(*) FROM orchestrator.transactions WHERE processed_at IS NOT NULL AND id <= %s",
        cursor,
    )
    assert after == before
    # The model detects: the simulated frauds of the day rank above the genuine transactions.
    labels = arrived.set_index("id")["TX_FRAUD"]
    assert roc_auc_score(labels.loc[scored["id"]], scored["risk_score"]) > 0.7

    flagged = set(scored.loc[scored["fraud_flag"], "id"])
    assert flagged, "no alert for a day with frauds"
    alerts = []
    for result in results:
        stored = result.output_for_node("store_alerts")
        document = read_json_object(s3, stored["bucket"], stored["key"])
        assert stored["key"].startswith("fraud-alerts/") and document["runId"] == result.run_id
        alerts += document["alerts"]
        assert (
            result.output_for_node("score")["model"]["version"] == trained.output_for_node("train")["version"]
        )
    assert sorted(a["transactionId"] for a in alerts) == sorted(flagged)
    assert all(a["explanations"] is not None and a["riskScore"] >= 0.5 for a in alerts)

    messages = stream_messages(stack_env["WFP_NATS_URL"], "FRAUD", "fraud.alerts")
    ours = [
        h["Nats-Msg-Id"]
        for _, h, _ in messages
        if h.get("Nats-Msg-Id", "").split(":")[-1] in {str(i) for i in flagged}
    ]
    assert sorted(ours) == sorted(f"fraud.alerts:{i}" for i in flagged)

    # A retried batch rewrites its own rows and publishes nothing twice.
    again = job.execute_in_process(instance=instance, tags=tick.run_requests[0].tags, raise_on_error=False)
    assert again.success
    publish = again.output_for_node("publish_alerts")
    assert publish["published"] == 0 and publish["duplicates"] == len(
        results[0].output_for_node("score")["alerts"]
    )
    assert len(stream_messages(stack_env["WFP_NATS_URL"], "FRAUD", "fraud.alerts")) == len(messages)
