"""The streaming fraud pipeline's delayed labels (`fraud.feedback`) and its checkpoints in the object store,
on the session's real services (the pipeline as its own process, as in test_fraud_stream.py)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg2
import pytest
from minio import Minio

from workflow_platform.demo_data.fraud_load import replay_to_nats
from workflow_platform.demo_data.fraud_simulator import SimulationConfig, simulate_cached
from workflow_platform.fraud.features import FEATURES, TERMINAL_FEATURES, transform_features
from workflow_platform.fraud.model import fit_model, save_model
from workflow_platform.fraud_stream.history import DAY_NS, Batch, RecentHistory
from workflow_platform.fraud_stream.options import StreamOptions
from workflow_platform.fraud_stream.persistence import reset
from workflow_platform.settings import ServiceSettings
from workflow_platform_tests.conftest import fetch
from workflow_platform_tests.test_fraud_stream import (  # noqa: F401 (fixtures for the kill test)
    Pipeline,
    batch_path,
    model,
    transactions,
)
from workflow_platform_tests.test_fraud_stream import (
    test_killed_mid_stream_scores_every_transaction_once_and_alerts_once as killed_mid_stream,
)

CONFIG = SimulationConfig(n_customers=100, n_terminals=100, nb_days=50)
# Streamed in three phases (days): labels come for the first after it; the second comes >= 8 days after the
# first's last day (its terminal-risk windows, 7 days delayed, reach the first); the third after a kill -9.
PHASES = ((0, 20), (28, 40), (40, 50))


@pytest.fixture(scope="module")
def simulated(stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """The transactions of the three phases as the platform carries them (amounts in cents), with their true
    labels in TX_FRAUD; a model trained on them stored and promoted, the one the pipeline loads."""
    every = simulate_cached(CONFIG, tmp_path_factory.mktemp("fraud-labels-cache")).transactions
    days = every["TX_TIME_DAYS"]
    streamed = every[np.logical_or.reduce([(days >= first) & (days < end) for first, end in PHASES])]
    streamed = streamed.assign(TX_AMOUNT=[round(float(a), 2) for a in streamed["TX_AMOUNT"]])
    save_model(fit_model("hist_gradient_boosting", transform_features(streamed)))
    return streamed


class CheckpointedPipeline(Pipeline):
    """test_fraud_stream's pipeline with a chosen checkpoints backend, reading `<name>.feedback`."""

    def __init__(self, name: str, workdir: Path, threshold: float, checkpoints: str) -> None:
        super().__init__(name, workdir, threshold)
        self.checkpoints = checkpoints

    def options(self) -> dict[str, str]:
        return super().options() | {
            "--checkpoints": self.checkpoints,
            "--feedback-subject": f"{self.name}.feedback",
            "--feedback-stream": self.stream,
        }

    def checkpoint_objects(self, s3: Minio) -> list[str]:
        prefix = f"fraud-stream/checkpoints/{self.name}/"
        return [o.object_name for o in s3.list_objects(os.environ["WFP_S3_BUCKET"], prefix, recursive=True)]


@pytest.fixture
def pipeline(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CheckpointedPipeline]:
    threshold, checkpoints = request.param
    name = "fstest" + request.node.name.removeprefix("test_").split("_")[0] + checkpoints
    running = CheckpointedPipeline(name, tmp_path, threshold, checkpoints)
    yield running
    if running.process is not None and running.process.poll() is None:
        running.kill(signal.SIGTERM)


def publish_feedback(nats_url: str, subject: str, labels: dict[int, int], source: str) -> None:
    async def publish() -> None:
        import nats

        client = await nats.connect(nats_url)
        try:
            js = client.jetstream()
            for transaction_id, fraud in labels.items():
                body = {"transactionId": transaction_id, "source": source, "fraud": fraud}
                await js.publish(subject, json.dumps(body).encode())
        finally:
            await client.drain()

    asyncio.run(publish())


def unacknowledged(nats_url: str, stream: str, consumer: str) -> int:
    """Messages of the durable consumer's not acknowledged yet (delivered or not)."""

    async def count() -> int:
        import nats

        client = await nats.connect(nats_url)
        try:
            info = await client.jetstream().consumer_info(stream, consumer)
            return info.num_ack_pending + info.num_pending
        finally:
            await client.drain()

    return asyncio.run(count())


def streamed_features(running: Pipeline, ids: pd.Index, timeout: float = 300) -> pd.DataFrame:
    """The features the pipeline's alerts carry (threshold 0: one per transaction) for these transactions."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running.check_running()
        bodies = {body["transactionId"]: body["features"] for _, _, body in running.alerts()}
        if ids.isin(list(bodies)).all():
            return pd.DataFrame([bodies[i] for i in ids], index=ids)[FEATURES]
        time.sleep(1)
    pytest.fail(f"{ids.isin(list(bodies)).sum()} of {len(ids)} transactions alerted after {timeout} s")


def wait_for_labels(
    pg: psycopg2.extensions.connection, source: str, labels: dict[int, int], timeout: float = 120
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = dict(
            fetch(
                pg, "SELECT source_tx_id, tx_fraud FROM orchestrator.transactions WHERE source = %s", source
            )
        )
        if all(rows.get(i) == fraud for i, fraud in labels.items()):
            return
        time.sleep(0.5)
    wrong = sum(rows.get(i) != fraud for i, fraud in labels.items())
    pytest.fail(f"{wrong} of {len(labels)} labels not in orchestrator.transactions after {timeout} s")


def batch_features(streamed: pd.DataFrame, labelled: set[int], ids: pd.Index) -> pd.DataFrame:
    """What `transform_features` (training, batch scoring) computes for `ids` when the transactions in
    `labelled` carry their true labels and the others none."""
    known = streamed.assign(
        TX_FRAUD=np.where(streamed["TRANSACTION_ID"].isin(labelled), streamed["TX_FRAUD"], 0)
    )
    return transform_features(known).set_index("TRANSACTION_ID").loc[ids, FEATURES]


def phase(streamed: pd.DataFrame, number: int) -> pd.DataFrame:
    first, end = PHASES[number]
    return streamed[(streamed["TX_TIME_DAYS"] >= first) & (streamed["TX_TIME_DAYS"] < end)]


@pytest.mark.parametrize("pipeline", [(0.0, "s3")], indirect=True)
def test_labels_from_feedback_count_in_later_terminal_risk_and_reach_postgres_and_a_restart(
    pipeline: CheckpointedPipeline, pg, s3: Minio, simulated: pd.DataFrame
) -> None:
    source = f"{pipeline.name}-src"
    url, subject = os.environ["WFP_NATS_URL"], f"{pipeline.name}.new"
    first, second, third = (phase(simulated, n) for n in range(3))
    unlabelled = {"subject": subject, "stream": pipeline.stream}
    pipeline.start()
    replay_to_nats(first.assign(TX_FRAUD=0), source, **unlabelled)
    streamed_features(pipeline, pd.Index(first["TRANSACTION_ID"]))
    # Labels for the first phase, and for the second before its transactions come (kept until they do).
    labels = dict(zip(first["TRANSACTION_ID"].tolist(), first["TX_FRAUD"].tolist(), strict=True))
    labels |= dict(zip(second["TRANSACTION_ID"].tolist(), second["TX_FRAUD"].tolist(), strict=True))
    assert 0 < sum(labels.values()) < len(labels)
    publish_feedback(url, f"{pipeline.name}.feedback", labels, source)
    wait_for_labels(pg, source, {i: labels[i] for i in first["TRANSACTION_ID"]})
    replay_to_nats(second.assign(TX_FRAUD=0), source, **unlabelled)

    ids = pd.Index(second["TRANSACTION_ID"])
    streamed = streamed_features(pipeline, ids)
    expected = batch_features(simulated, set(labels), ids)
    np.testing.assert_allclose(streamed.to_numpy(), expected.to_numpy(float), rtol=0, atol=1e-9)
    unlabelled_risk = batch_features(simulated, set(), ids)[TERMINAL_FEATURES]
    assert not np.allclose(streamed[TERMINAL_FEATURES], unlabelled_risk.to_numpy(float)), "the labels count"
    wait_for_labels(pg, source, labels)  # the second phase's rows inserted with the labels that came first

    time.sleep(2)  # a checkpoint covers the labels
    pipeline.kill(signal.SIGKILL)
    # Acknowledged, so JetStream does not deliver them again: only the checkpoints can bring the labels back.
    assert unacknowledged(url, pipeline.stream, f"{pipeline.name}-feedback") == 0
    assert pipeline.checkpoint_objects(s3), "the checkpoints are in the object store"
    assert not any((pipeline.workdir / "persistence").glob("*")), "and not on the host"
    pipeline.start()
    replay_to_nats(third.assign(TX_FRAUD=0), source, **unlabelled)
    ids = pd.Index(third["TRANSACTION_ID"])
    streamed = streamed_features(pipeline, ids)
    expected = batch_features(simulated, set(labels), ids)
    np.testing.assert_allclose(streamed.to_numpy(), expected.to_numpy(float), rtol=0, atol=1e-9)
    pipeline.check_running()


@pytest.mark.parametrize("pipeline", [(0.5, "s3"), (0.5, "filesystem")], indirect=True)
def test_killed_mid_stream_resumes_from_its_checkpoints_backend(
    pipeline: CheckpointedPipeline,
    pg,
    s3: Minio,
    transactions: pd.DataFrame,  # noqa: F811 (test_fraud_stream's fixture)
    batch_path: pd.DataFrame,  # noqa: F811
) -> None:
    killed_mid_stream(pipeline, pg, transactions, batch_path)
    on_host = any((pipeline.workdir / "persistence").glob("*"))
    in_store = bool(pipeline.checkpoint_objects(s3))
    assert (in_store, on_host) == ((True, False) if pipeline.checkpoints == "s3" else (False, True))
    # What a replay does once the pipeline is stopped: both backends forgotten.
    pipeline.kill(signal.SIGTERM)
    reset(StreamOptions(ServiceSettings(), pipeline.workdir / "persistence", consumer=pipeline.name))
    assert not pipeline.checkpoint_objects(s3) and not (pipeline.workdir / "persistence").exists()


def history_batch(ids: list[int], day: float, terminal: int = 0) -> Batch:
    count = len(ids)
    return Batch(
        card=np.zeros(count, dtype=np.int64),
        terminal=np.full(count, terminal, dtype=np.int64),
        instant=np.full(count, int(day * DAY_NS), dtype=np.int64),
        tie=np.asarray(ids, dtype=np.int64),
        amount=np.ones(count),
        fraud=np.zeros(count),
    )


def test_a_label_waits_for_its_transaction_until_no_window_can_reach_it() -> None:
    history = RecentHistory(capacity=4)

    def featured(batch: Batch) -> dict[str, float]:
        history.remember(batch)
        return dict(zip(FEATURES, history.features(batch.tie.tolist())[-1], strict=True))

    history.label([1, 2, 99], [1.0, 1.0, 1.0])  # 99 never comes
    featured(history_batch([1], day=0))
    featured(history_batch([1, 2], day=0))  # 1 delivered again: remembered once, its label kept
    assert history.labels([1, 2]).tolist() == [1.0, 1.0]
    history.label([2], [0.0])  # a later label replaces the first
    risk = featured(history_batch([3], day=7.5))  # its delayed 1-day window: day 0
    assert risk["TERMINAL_ID_NB_TX_1DAY_WINDOW"] == 2 and risk["TERMINAL_ID_RISK_1DAY_WINDOW"] == 0.5
    # Clean-ups (the columns fill up) as the stream moves on: 99's label outlives the first by 37 days only.
    for day in range(8, 120):
        featured(history_batch([day * 10 + n for n in range(4)], day=day, terminal=1))
    featured(history_batch([99], day=120))
    assert history.labels([99]).tolist() == [0.0]


def test_a_replays_history_only_transactions_expire_like_the_others() -> None:
    """Transactions before a replay's instant are never featured (--emit-from): the history must not keep
    every row since them waiting for it."""
    history = RecentHistory(capacity=4, featured_from=int(10 * DAY_NS))
    history.remember(history_batch(list(range(8)), day=0))  # the replay's history: remembered only
    for day in range(10, 200):
        batch = history_batch([day * 10 + n for n in range(4)], day=day, terminal=1)
        history.remember(batch)
        history.features(batch.tie.tolist())
    assert len(history) < 2 * 4 * (37 + 1)  # about what the windows reach, not 190 days of rows
