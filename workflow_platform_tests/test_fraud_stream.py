"""The streaming fraud pipeline (`python -m workflow_platform.fraud_stream`) on the session's real services.

Simulated transactions are replayed onto a JetStream subject of the test's own; the pipeline runs as its own
process, scoring with a model stored the way the training workflow stores it. The batch path is
`transform_features` then the model, what training and the batch workflow compute (the fraud-detection
pipeline's windows equal `transform_features`: test_fraud_features.py).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import nats
import numpy as np
import pandas as pd
import psutil
import psycopg2
import pytest
from nats.js.kv import KeyValue

from workflow_platform.demo_data.fraud_load import replay_to_nats
from workflow_platform.demo_data.fraud_simulator import SimulationConfig, simulate_cached
from workflow_platform.fraud import NO_MODEL
from workflow_platform.fraud.features import FEATURES, transform_features
from workflow_platform.fraud.model import FraudModel, fit_model, save_model, score
from workflow_platform.resources.fraud_stream_control import (
    Desired,
    Status,
    StreamState,
    command,
    control_bucket,
    read_status,
)
from workflow_platform_tests.conftest import fetch, stream_messages

CONFIG = SimulationConfig(n_customers=150, n_terminals=300, nb_days=50)
TRAIN_DAYS = 40  # the model learns on these; every transaction is streamed
_T = TypeVar("_T")


@pytest.fixture(scope="module")
def transactions(stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    return simulate_cached(CONFIG, tmp_path_factory.mktemp("fraud-stream-cache")).transactions


@pytest.fixture(scope="module")
def model(transactions: pd.DataFrame) -> FraudModel:
    """A model stored and promoted as fraud-model-training does: the one the pipeline loads."""
    featured = transform_features(transactions[transactions["TX_TIME_DAYS"] < TRAIN_DAYS])
    fitted = fit_model("hist_gradient_boosting", featured)
    save_model(fitted)
    return fitted


@pytest.fixture(scope="module")
def batch_path(transactions: pd.DataFrame, model: FraudModel) -> pd.DataFrame:
    """Features and score of every transaction, by TRANSACTION_ID, as the batch path computes them: on the
    transactions as the platform carries them, amounts in cents (orchestrator.transactions' numeric(12,2), the
    replay's messages); some simulated amounts are a hair off (113.14999999999999)."""
    in_cents = transactions.assign(
        TX_AMOUNT=[round(float(amount), 2) for amount in transactions["TX_AMOUNT"]]
    )
    featured = transform_features(in_cents)
    featured["score"] = score(model, featured)
    return featured.set_index("TRANSACTION_ID")


class Pipeline:
    """The streaming pipeline as a process reading `<name>.new` and alerting on `<name>.alerts`."""

    module = "workflow_platform.fraud_stream.pipeline"

    def __init__(self, name: str, workdir: Path, threshold: float) -> None:
        self.name, self.workdir, self.threshold = name, workdir, threshold
        self.stream = name.upper()
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def options(self) -> dict[str, str]:
        return {
            "--persistence-dir": str(self.workdir / "persistence"),
            "--input-subject": f"{self.name}.new",
            "--input-stream": self.stream,
            "--consumer": self.name,
            "--alerts-subject": f"{self.name}.alerts",
            "--alerts-stream": self.stream,
            "--alert-threshold": str(self.threshold),
            "--snapshot-ms": "500",
        }

    def start(self, env: dict[str, str] | None = None) -> None:
        self.starts += 1
        with (self.workdir / f"pipeline-{self.starts}.log").open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", self.module, *itertools.chain(*self.options().items())],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=os.environ | (env or {}),
            )

    def check_running(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            logs = (self.workdir / f"pipeline-{self.starts}.log").read_text()[-3000:]
            pytest.fail(f"the pipeline exited with {self.process.returncode}:\n{logs}")

    def kill(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)
        self.process.wait(timeout=60)

    def alerts(self) -> list[tuple[int, dict, dict]]:
        return stream_messages(os.environ["WFP_NATS_URL"], self.stream, f"{self.name}.alerts")


@pytest.fixture
def pipeline(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Pipeline]:
    name = "fstest" + request.node.name.removeprefix("test_").split("_")[0]
    running = Pipeline(name, tmp_path, threshold=request.param)
    yield running
    if running.process is not None and running.process.poll() is None:
        running.kill(signal.SIGTERM)


def scored_rows(pg: psycopg2.extensions.connection, source: str) -> pd.DataFrame:
    rows = fetch(
        pg,
        "SELECT source_tx_id, risk_score, fraud_flag FROM orchestrator.transactions WHERE source = %s",
        source,
    )
    return pd.DataFrame(rows, columns=["TRANSACTION_ID", "risk_score", "fraud_flag"])


def wait_until_scored(
    pg: psycopg2.extensions.connection, running: Pipeline, source: str, count: int, timeout: float = 300
) -> pd.DataFrame:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running.check_running()
        rows = scored_rows(pg, source)
        if len(rows) >= count and rows["risk_score"].notna().all():
            return rows
        time.sleep(0.5)
    pytest.fail(f"{len(rows)} of {count} transactions scored after {timeout} s")


@pytest.mark.parametrize("pipeline", [0.0], indirect=True)
def test_equal_streaming_scores_and_features_equal_the_batch_path(
    pipeline: Pipeline, pg, transactions: pd.DataFrame, batch_path: pd.DataFrame
) -> None:
    source = f"{pipeline.name}-src"
    replay_to_nats(transactions, source, subject=f"{pipeline.name}.new", stream=pipeline.stream)
    pipeline.start()
    rows = wait_until_scored(pg, pipeline, source, len(transactions)).set_index("TRANSACTION_ID").sort_index()
    assert len(rows) == len(transactions) and rows.index.is_unique
    expected = batch_path.loc[rows.index]
    np.testing.assert_allclose(rows["risk_score"], expected["score"], rtol=0, atol=1e-9)
    # Threshold 0: every transaction is an alert, and each alert carries the features it was scored on.
    deadline = time.monotonic() + 60
    while len(alerts := pipeline.alerts()) < len(transactions) and time.monotonic() < deadline:
        time.sleep(1)
    bodies = pd.DataFrame([body for _, _, body in alerts]).set_index("transactionId").sort_index()
    assert bodies.index.equals(rows.index)
    streamed = pd.DataFrame(list(bodies["features"]), index=bodies.index)[FEATURES]
    np.testing.assert_allclose(streamed.to_numpy(), expected[FEATURES].to_numpy(float), rtol=0, atol=1e-9)
    np.testing.assert_allclose(bodies["riskScore"], expected["score"], rtol=0, atol=1e-9)
    assert (bodies["modelVersion"] == bodies["modelVersion"].iloc[0]).all()


@pytest.mark.parametrize("pipeline", [0.5], indirect=True)
def test_killed_mid_stream_scores_every_transaction_once_and_alerts_once(
    pipeline: Pipeline, pg, transactions: pd.DataFrame, batch_path: pd.DataFrame
) -> None:
    source = f"{pipeline.name}-src"
    total = len(transactions)
    pipeline.start()
    replay = threading.Thread(
        target=replay_to_nats,
        args=(transactions, source),
        kwargs={"rate": total / 12, "subject": f"{pipeline.name}.new", "stream": pipeline.stream},
    )
    replay.start()
    try:
        deadline = time.monotonic() + 120
        while len(scored_rows(pg, source)) < total // 4 and time.monotonic() < deadline:
            pipeline.check_running()
            time.sleep(0.2)
        pipeline.kill(signal.SIGKILL)
        at_kill = len(scored_rows(pg, source))
        assert total // 4 <= at_kill < total, "the kill must come mid-stream"
        pipeline.start()
    finally:
        replay.join()
    rows = wait_until_scored(pg, pipeline, source, total).set_index("TRANSACTION_ID").sort_index()
    # Exactly once in PostgreSQL: one row per transaction, each scored as if the pipeline had never stopped
    # (its history rebuilt on restart, no transaction counted twice in a window).
    assert len(rows) == total and rows.index.is_unique
    np.testing.assert_allclose(rows["risk_score"], batch_path.loc[rows.index, "score"], rtol=0, atol=1e-9)
    flagged = set(rows.index[rows["fraud_flag"]])
    assert flagged, "the model flags some transactions"
    # Exactly once in JetStream: one alert per flagged transaction, none twice.
    deadline = time.monotonic() + 60
    while len(pipeline.alerts()) < len(flagged) and time.monotonic() < deadline:
        time.sleep(1)
    time.sleep(2)  # an alert published twice would show by now
    alerted = [body["transactionId"] for _, _, body in pipeline.alerts()]
    assert len(alerted) == len(set(alerted)) and set(alerted) == flagged
    pipeline.check_running()


def publish_bodies(subject: str, bodies: list[tuple[str, dict]]) -> None:
    """Publish JSON bodies to JetStream, each with its Nats-Msg-Id, acknowledged."""

    async def publish() -> None:
        client = await nats.connect(os.environ["WFP_NATS_URL"])
        try:
            js = client.jetstream()
            for msg_id, body in bodies:
                await js.publish(subject, json.dumps(body).encode(), headers={"Nats-Msg-Id": msg_id})
        finally:
            await client.drain()

    asyncio.run(publish())


@pytest.mark.parametrize("pipeline", [0.5], indirect=True)
def test_transactions_it_cannot_take_are_published_with_the_reason_and_the_stream_goes_on(
    pipeline: Pipeline, pg, transactions: pd.DataFrame, batch_path: pd.DataFrame
) -> None:
    source, total = f"{pipeline.name}-src", len(transactions)
    publish = functools.partial(replay_to_nats, subject=f"{pipeline.name}.new", stream=pipeline.stream)
    ordered = transactions.sort_values("TRANSACTION_ID")
    publish(ordered.head(total // 2), source)
    good = {
        "tx_datetime": "2018-05-01T10:00:00Z",
        "customer_id": "1",
        "terminal_id": "2",
        "amount": 10.0,
        "source": source,
    }
    bad = {  # each would have failed PostgreSQL's write or the scorer, at every restart
        900_001: ({"tx_datetime": "yesterday"}, "tx_datetime 'yesterday' is not an ISO 8601 time"),
        900_002: ({"tx_datetime": ""}, "tx_datetime '' is not an ISO 8601 time"),
        900_003: ({"amount": 1e12}, "amount 1000000000000.0 is not a number of less than 10 digits"),
        900_004: ({"customer_id": "a\x00b"}, "customer_id contains a NUL character"),
        900_005: ({"source": "evil\r\nNats-Msg-Id: x"}, "source contains a control character"),
    }
    bodies = [(f"bad:{i}", good | change | {"transaction_id": i}) for i, (change, _) in bad.items()]
    # A field of the wrong type fails Pathway's parser, which logs the message and reads on.
    bodies.append(("bad:900006", good | {"transaction_id": 900_006, "amount": "ten"}))
    publish_bodies(f"{pipeline.name}.new", bodies)
    publish(ordered, source)  # the rest (the first half is skipped: published already)
    pipeline.start()
    rows = wait_until_scored(pg, pipeline, source, total).set_index("TRANSACTION_ID").sort_index()
    # Only the good ones are scored, as the batch path scores them: the others did not count in any window.
    assert_scored_once(rows, total, batch_path)
    rejected_subject = f"{pipeline.name}.rejected"
    deadline = time.monotonic() + 30
    while len(stream_messages(os.environ["WFP_NATS_URL"], pipeline.stream, rejected_subject)) < len(bad):
        assert time.monotonic() < deadline, "the rejected transactions were not all published"
        time.sleep(0.5)
    # Killed and restarted: nothing is published twice, and the stream runs on.
    pipeline.kill(signal.SIGKILL)
    pipeline.start()
    time.sleep(8)
    pipeline.check_running()
    messages = stream_messages(os.environ["WFP_NATS_URL"], pipeline.stream, rejected_subject)
    by_id = {body["transactionId"]: body for _, _, body in messages}
    assert len(messages) == len(by_id) == len(bad)
    for transaction_id, (change, reason) in bad.items():
        body = by_id[transaction_id]
        assert body["reason"].startswith(reason), body
        assert body["source"] == change.get("source", source)
        assert body["transaction"]["amount"] == change.get("amount", 10.0)
    alerts = {body["transactionId"] for _, _, body in pipeline.alerts()}
    assert not alerts & set(bad), "a rejected transaction is never an alert"


class Supervised(Pipeline):
    """The supervisor (`python -m workflow_platform.fraud_stream`) running the pipeline, obeying a control bucket
    of its own (`<name>_control`)."""

    module = "workflow_platform.fraud_stream"

    def __init__(self, name: str, workdir: Path, threshold: float) -> None:
        super().__init__(name, workdir, threshold)
        self.bucket = f"{name}_control"

    def options(self) -> dict[str, str]:
        return super().options() | {"--control-bucket": self.bucket}

    def command(self, state: StreamState, replay_from: dt.datetime | None = None) -> Desired:
        return self._control(lambda bucket: command(bucket, state, replay_from, requested_by="test"))

    def status(self) -> Status | None:
        return self._control(read_status)

    def wait_status(self, condition: Callable[[Status], bool], timeout: float = 120) -> Status:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_running()
            status = self.status()
            if status is not None and condition(status):
                return status
            time.sleep(0.5)
        pytest.fail(f"no such status after {timeout} s; the last: {status}")

    def _control(self, action: Callable[[KeyValue], Awaitable[_T]]) -> _T:
        async def act() -> _T:
            client = await nats.connect(os.environ["WFP_NATS_URL"])
            try:
                return await action(await control_bucket(client.jetstream(), self.bucket))
            finally:
                await client.drain()

        return asyncio.run(act())


@pytest.fixture
def supervised(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Supervised]:
    name = "fstest" + request.node.name.removeprefix("test_").split("_")[0]
    running = Supervised(name, tmp_path, threshold=request.param)
    yield running
    if running.process is not None and running.process.poll() is None:
        running.kill(signal.SIGTERM)
        assert running.process.returncode == 0


def running_pid(pid: int | None) -> bool:
    try:
        return pid is not None and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_alerts_once(running: Pipeline, flagged: set[int]) -> list[int]:
    """The alerts in JetStream once all the flagged transactions have theirs: one each, none twice."""
    deadline = time.monotonic() + 60
    while len(running.alerts()) < len(flagged) and time.monotonic() < deadline:
        time.sleep(1)
    time.sleep(2)  # an alert published twice would show by now
    alerted = [body["transactionId"] for _, _, body in running.alerts()]
    assert len(alerted) == len(set(alerted)) and set(alerted) == flagged
    return alerted


def assert_scored_once(rows: pd.DataFrame, total: int, batch_path: pd.DataFrame) -> set[int]:
    """One row per transaction, scored as the batch path scores it; the flagged transactions."""
    assert len(rows) == total and rows.index.is_unique
    np.testing.assert_allclose(rows["risk_score"], batch_path.loc[rows.index, "score"], rtol=0, atol=1e-9)
    flagged = set(rows.index[rows["fraud_flag"]])
    assert flagged, "the model flags some transactions"
    return flagged


@pytest.mark.parametrize("supervised", [0.5], indirect=True)
def test_waiting_supervisor_runs_the_pipeline_once_a_model_is_stored(
    supervised: Supervised, s3, model: FraudModel
) -> None:
    bucket = f"{supervised.name}-models"  # an object store without a model yet
    s3.make_bucket(bucket)
    supervised.start(env={"WFP_S3_BUCKET": bucket})
    waiting = supervised.wait_status(lambda status: status.state == "waiting")
    assert waiting.detail == NO_MODEL and waiting.pid is None and waiting.model_version is None
    assert waiting.generation == 0  # no command yet: the stream should run
    save_model(model, s3, bucket, version=model.version)
    running = supervised.wait_status(lambda status: status.state == "running")
    assert running.model_version == model.version and running_pid(running.pid)
    assert "workflow_platform.fraud_stream.pipeline" in psutil.Process(running.pid).cmdline()
    supervised.kill(signal.SIGTERM)
    assert supervised.process.returncode == 0
    assert not running_pid(running.pid), "the pipeline stops with its supervisor"
    final = supervised.status()
    assert final is not None and final.state == "stopped" and final.pid is None


@pytest.mark.parametrize("supervised", [0.5], indirect=True)
def test_stopped_stream_scores_nothing_until_running_again(
    supervised: Supervised, pg, transactions: pd.DataFrame, batch_path: pd.DataFrame
) -> None:
    source, total = f"{supervised.name}-src", len(transactions)
    first = total // 2
    publish = functools.partial(
        replay_to_nats, transactions, source, subject=f"{supervised.name}.new", stream=supervised.stream
    )
    publish(limit=first)
    supervised.start()
    wait_until_scored(pg, supervised, source, first)
    pid = supervised.wait_status(lambda status: status.pid is not None).pid
    stop = supervised.command("stopped")
    stopped = supervised.wait_status(lambda status: status.generation == stop.generation)
    assert stopped.state == "stopped" and stopped.pid is None and not running_pid(pid)
    publish()  # the rest, while the stream is stopped: they wait in JetStream
    waiting = supervised.wait_status(lambda status: status.pending == total - first)
    assert waiting.state == "stopped" and waiting.acknowledged_sequence == first
    time.sleep(2)
    assert len(scored_rows(pg, source)) == first
    run = supervised.command("running")
    rows = wait_until_scored(pg, supervised, source, total).set_index("TRANSACTION_ID").sort_index()
    flagged = assert_scored_once(rows, total, batch_path)
    wait_alerts_once(supervised, flagged)
    # Stream sequences count the alerts too (they share the test's stream), published after the first half.
    caught_up = supervised.wait_status(
        lambda status: status.lag == 0 and status.acknowledged_sequence > total
    )
    assert caught_up.state == "running" and caught_up.generation == run.generation
    assert running_pid(caught_up.pid) and caught_up.pid != pid


def processed_at(pg: psycopg2.extensions.connection, source: str) -> pd.Series:
    rows = fetch(
        pg, "SELECT source_tx_id, processed_at FROM orchestrator.transactions WHERE source = %s", source
    )
    return pd.Series(dict(rows)).sort_index()


@pytest.mark.parametrize("supervised", [0.5], indirect=True)
def test_replay_rescores_from_the_instant_on_and_alerts_once(
    supervised: Supervised, pg, transactions: pd.DataFrame, batch_path: pd.DataFrame
) -> None:
    source, total = f"{supervised.name}-src", len(transactions)
    replay_to_nats(transactions, source, subject=f"{supervised.name}.new", stream=supervised.stream)
    supervised.start()
    rows = wait_until_scored(pg, supervised, source, total).set_index("TRANSACTION_ID").sort_index()
    flagged = assert_scored_once(rows, total, batch_path)
    alerted = wait_alerts_once(supervised, flagged)
    before = processed_at(pg, source)
    when = pd.to_datetime(transactions.set_index("TRANSACTION_ID")["TX_DATETIME"])
    instant = when.sort_values().iloc[int(total * 0.7)]
    rescored = set(when.index[when >= instant])
    replay = supervised.command("running", replay_from=instant.tz_localize("UTC").to_pydatetime())
    applied = supervised.wait_status(lambda status: status.generation == replay.generation)
    assert applied.state == "running"
    deadline = time.monotonic() + 180
    while (changed := set(before.index[processed_at(pg, source) != before])) != rescored:
        assert changed <= rescored, "a transaction before the replay's instant was scored again"
        assert time.monotonic() < deadline, f"{len(changed)} of {len(rescored)} re-scored"
        supervised.check_running()
        time.sleep(0.5)
    supervised.wait_status(lambda status: status.lag == 0)
    time.sleep(2)  # a transaction before the instant re-scored late would show by now
    assert set(before.index[processed_at(pg, source) != before]) == rescored
    again = scored_rows(pg, source).set_index("TRANSACTION_ID").sort_index()
    assert assert_scored_once(again, total, batch_path) == flagged  # the same scores
    # Each alert in JetStream once: the re-scored ones published again were dropped as duplicates.
    assert wait_alerts_once(supervised, flagged) == alerted


@pytest.mark.parametrize("supervised", [0.5], indirect=True)
def test_supervisor_killed_mid_stream_leaves_no_pipeline_and_resumes_once(
    supervised: Supervised, pg, transactions: pd.DataFrame, batch_path: pd.DataFrame
) -> None:
    source, total = f"{supervised.name}-src", len(transactions)
    supervised.start()
    replay = threading.Thread(
        target=replay_to_nats,
        args=(transactions, source),
        kwargs={"rate": total / 12, "subject": f"{supervised.name}.new", "stream": supervised.stream},
    )
    replay.start()
    try:
        deadline = time.monotonic() + 120
        while len(scored_rows(pg, source)) < total // 4 and time.monotonic() < deadline:
            supervised.check_running()
            time.sleep(0.2)
        pid = supervised.wait_status(lambda status: status.pid is not None).pid
        supervised.kill(signal.SIGKILL)
        at_kill = len(scored_rows(pg, source))
        assert total // 4 <= at_kill < total, "the kill must come mid-stream"
        gone = time.monotonic() + 10
        while running_pid(pid) and time.monotonic() < gone:
            time.sleep(0.1)
        assert not running_pid(pid), "the pipeline outlived its killed supervisor"
        supervised.start()
    finally:
        replay.join()
    rows = wait_until_scored(pg, supervised, source, total).set_index("TRANSACTION_ID").sort_index()
    flagged = assert_scored_once(rows, total, batch_path)
    wait_alerts_once(supervised, flagged)
    resumed = supervised.wait_status(lambda status: status.lag == 0 and status.pid is not None)
    assert resumed.state == "running" and resumed.pid != pid


def test_simulate_stream_publishes_rate_times_duration_and_goes_on_where_it_stopped(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from workflow_platform.cli.main import main

    arguments = ["simulate", "stream", "--rate", "400", "--duration", "1", "--subject", "fstestsim.new"]
    arguments += ["--customers", "50", "--terminals", "100", "--days", "30", "--cache-dir", str(tmp_path)]
    reports = []
    for _ in range(2):
        result = CliRunner().invoke(main, arguments, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        reports.append(json.loads(result.output))
    assert [r["published"] for r in reports] == [400, 400]
    assert reports[1]["skipped_already_published"] == 400 and reports[0]["rate"] <= 400 * 1.2
    published = stream_messages(stack_env["WFP_NATS_URL"], "FSTESTSIM", "fstestsim.new")
    assert [body["transaction_id"] for _, _, body in published] == list(range(800))
