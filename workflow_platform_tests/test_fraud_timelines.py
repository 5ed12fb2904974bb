"""The stream's incremental windows (`Timelines` under `RecentHistory`) against the batch path's
(`transform_features`), however the transactions come: in time order, shuffled, late, twice, labelled later,
and with so little room that every timeline is rewritten, moved and the slab rebuilt many times."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from workflow_platform.demo_data.fraud_simulator import SimulationConfig, simulate
from workflow_platform.fraud.features import FEATURES, transform_features
from workflow_platform.fraud.timelines import Timelines
from workflow_platform.fraud_stream.history import Batch, RecentHistory


@pytest.fixture(scope="module")
def simulated() -> pd.DataFrame:
    transactions = simulate(SimulationConfig(n_customers=300, n_terminals=600, nb_days=90)).transactions
    # Some cards pay twice at one instant (ties, ordered by transaction id) and amounts not in whole cents.
    rng = np.random.default_rng(3)
    twins = transactions.sample(200, random_state=1)
    twins = twins.assign(TRANSACTION_ID=np.arange(len(twins)) + transactions["TRANSACTION_ID"].max() + 1)
    transactions = pd.concat([transactions, twins], ignore_index=True)
    odd = rng.random(len(transactions)) < 0.01
    transactions.loc[odd, "TX_AMOUNT"] += 0.001
    return transactions


@pytest.fixture(scope="module")
def expected(simulated: pd.DataFrame) -> pd.DataFrame:
    return transform_features(simulated).set_index("TRANSACTION_ID")[FEATURES]


def batch_of(rows: pd.DataFrame, fraud: np.ndarray | None = None) -> Batch:
    return Batch(
        card=rows["CUSTOMER_ID"].to_numpy(dtype=np.int64),
        terminal=rows["TERMINAL_ID"].to_numpy(dtype=np.int64),
        instant=rows["TX_DATETIME"].to_numpy(dtype="datetime64[ns]").astype(np.int64),
        tie=rows["TRANSACTION_ID"].to_numpy(dtype=np.int64),
        amount=rows["TX_AMOUNT"].to_numpy(dtype=np.float64),
        fraud=rows["TX_FRAUD"].to_numpy(dtype=np.float64) if fraud is None else fraud,
    )


def chunks(frame: pd.DataFrame, count: int) -> list[pd.DataFrame]:
    return [frame.iloc[rows] for rows in np.array_split(np.arange(len(frame)), count)]


def assert_equal_to_batch(got: dict[int, np.ndarray], expected: pd.DataFrame) -> None:
    table = pd.DataFrame.from_dict(got, orient="index", columns=FEATURES).sort_index()
    assert len(table) == len(expected)
    reference = expected.loc[table.index]
    for name in FEATURES:
        np.testing.assert_allclose(table[name], reference[name], rtol=1e-9, atol=1e-9, err_msg=name)


def test_ticks_in_time_order_shuffled_within_and_delivered_twice(simulated, expected) -> None:
    """The stream's way: each tick remembered, then featured; a tick's rows in any order, some again."""
    history = RecentHistory(capacity=64)
    rng = np.random.default_rng(7)
    ordered = simulated.sort_values(["TX_DATETIME", "TRANSACTION_ID"])
    got: dict[int, np.ndarray] = {}
    for tick in chunks(ordered, 400):
        again = tick.sample(frac=0.05, random_state=int(rng.integers(1 << 30)))
        batch = batch_of(pd.concat([tick, again]).sample(frac=1.0, random_state=int(rng.integers(1 << 30))))
        history.remember(batch)
        got.update(zip(batch.tie.tolist(), history.features(batch.tie.tolist()), strict=True))
    assert_equal_to_batch(got, expected)


def test_everything_remembered_out_of_order_and_labelled_later_then_featured(simulated, expected) -> None:
    """Every card's transactions arriving out of time order (each timeline rewritten), labels after them."""
    history = RecentHistory(capacity=64)
    shuffled = simulated.sample(frac=1.0, random_state=11)
    for tick in chunks(shuffled, 300):
        history.remember(batch_of(tick, fraud=np.zeros(len(tick))))
    frauds = simulated[simulated["TX_FRAUD"] == 1]
    history.label(frauds["TRANSACTION_ID"].tolist(), [1.0] * len(frauds))
    got: dict[int, np.ndarray] = {}
    for tick in chunks(shuffled, 50):
        batch = batch_of(tick)
        got.update(zip(batch.tie.tolist(), history.features(batch.tie.tolist()), strict=True))
    assert_equal_to_batch(got, expected)


def test_timelines_drop_what_no_window_reaches_when_they_fill_up() -> None:
    timelines = Timelines(slab=16)
    day = 10
    for instant in range(0, 1000 * day, day):  # one entry a day on one key, for 1,000 days
        key = np.zeros(1, dtype=np.int64)
        timelines.add(
            key, np.array([instant]), np.array([instant]), np.ones(1), lambda now=instant: now - 40 * day
        )
    assert len(timelines) < 2 * 41
    start = timelines.first_after(np.zeros(1, dtype=np.int64), np.array([989 * day]))
    end = timelines.first_after(np.zeros(1, dtype=np.int64), np.array([999 * day]))
    assert timelines.total(start, end).tolist() == [10.0]
