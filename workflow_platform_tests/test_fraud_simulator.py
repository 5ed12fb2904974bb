"""The fast simulator against a literal transcription of the handbook's code, row for row.

`handbook_*` below transcribe the handbook's chapter 3.2 functions (`generate_customer_profiles_table`,
`generate_terminal_profiles_table`, `get_list_terminals_within_radius`, `generate_transactions_table`,
`generate_dataset`, `add_frauds`) one scalar numpy / `random` call at a time, as published; the only changes
are for pandas 3 (a loop over customers instead of `groupby(...).apply`, integer TX_FRAUD from the start).
The expected counts of the small configuration were obtained by running this transcription.
"""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest

from workflow_platform.demo_data import fraud_simulator as simulator
from workflow_platform.demo_data.fraud_simulator import SimulationConfig, simulate, simulate_cached

# 120 customers, 150 terminals (about a third of the customers have no terminal within r), 40 days.
SMALL = SimulationConfig(n_customers=120, n_terminals=150, nb_days=40)
SMALL_TRANSACTIONS = 5801
SMALL_FRAUDS = 1775
SMALL_SCENARIOS = {0: 4026, 1: 1, 2: 1259, 3: 515}


def handbook_customer_profiles(n_customers, random_state=0):
    np.random.seed(random_state)
    rows = []
    for customer_id in range(n_customers):
        x_customer_id = np.random.uniform(0, 100)
        y_customer_id = np.random.uniform(0, 100)
        mean_amount = np.random.uniform(5, 100)
        std_amount = mean_amount / 2
        mean_nb_tx_per_day = np.random.uniform(0, 4)
        rows.append([customer_id, x_customer_id, y_customer_id, mean_amount, std_amount, mean_nb_tx_per_day])
    return pd.DataFrame(
        rows,
        columns=[
            "CUSTOMER_ID",
            "x_customer_id",
            "y_customer_id",
            "mean_amount",
            "std_amount",
            "mean_nb_tx_per_day",
        ],
    )


def handbook_terminal_profiles(n_terminals, random_state=0):
    np.random.seed(random_state)
    rows = []
    for terminal_id in range(n_terminals):
        x_terminal_id = np.random.uniform(0, 100)
        y_terminal_id = np.random.uniform(0, 100)
        rows.append([terminal_id, x_terminal_id, y_terminal_id])
    return pd.DataFrame(rows, columns=["TERMINAL_ID", "x_terminal_id", "y_terminal_id"])


def handbook_terminals_within_radius(customer_profile, x_y_terminals, r):
    x_y_customer = customer_profile[["x_customer_id", "y_customer_id"]].values.astype(float)
    squared_diff_x_y = np.square(x_y_customer - x_y_terminals)
    dist_x_y = np.sqrt(np.sum(squared_diff_x_y, axis=1))
    return list(np.where(dist_x_y < r)[0])


def handbook_transactions_table(customer_profile, start_date="2018-04-01", nb_days=10):
    customer_transactions = []
    random.seed(int(customer_profile.CUSTOMER_ID))
    np.random.seed(int(customer_profile.CUSTOMER_ID))
    for day in range(nb_days):
        nb_tx = np.random.poisson(customer_profile.mean_nb_tx_per_day)
        if nb_tx > 0:
            for _tx in range(nb_tx):
                time_tx = int(np.random.normal(86400 / 2, 20000))
                if (time_tx > 0) and (time_tx < 86400):
                    amount = np.random.normal(customer_profile.mean_amount, customer_profile.std_amount)
                    if amount < 0:
                        amount = np.random.uniform(0, customer_profile.mean_amount * 2)
                    amount = np.round(amount, decimals=2)
                    if len(customer_profile.available_terminals) > 0:
                        terminal_id = random.choice(customer_profile.available_terminals)
                        customer_transactions.append(
                            [time_tx + day * 86400, day, customer_profile.CUSTOMER_ID, terminal_id, amount]
                        )
    customer_transactions = pd.DataFrame(
        customer_transactions,
        columns=["TX_TIME_SECONDS", "TX_TIME_DAYS", "CUSTOMER_ID", "TERMINAL_ID", "TX_AMOUNT"],
    )
    if len(customer_transactions) > 0:
        customer_transactions["TX_DATETIME"] = pd.to_datetime(
            customer_transactions["TX_TIME_SECONDS"], unit="s", origin=start_date
        )
        customer_transactions = customer_transactions[
            ["TX_DATETIME", "CUSTOMER_ID", "TERMINAL_ID", "TX_AMOUNT", "TX_TIME_SECONDS", "TX_TIME_DAYS"]
        ]
    return customer_transactions


def handbook_dataset(n_customers, n_terminals, nb_days, start_date="2018-04-01", r=5):
    customer_profiles_table = handbook_customer_profiles(n_customers, random_state=0)
    terminal_profiles_table = handbook_terminal_profiles(n_terminals, random_state=1)
    x_y_terminals = terminal_profiles_table[["x_terminal_id", "y_terminal_id"]].values.astype(float)
    customer_profiles_table["available_terminals"] = customer_profiles_table.apply(
        lambda x: handbook_terminals_within_radius(x, x_y_terminals=x_y_terminals, r=r), axis=1
    )
    frames = [
        handbook_transactions_table(row, start_date=start_date, nb_days=nb_days)
        for _, row in customer_profiles_table.iterrows()
    ]
    transactions_df = pd.concat([f for f in frames if len(f)]).reset_index(drop=True)
    transactions_df = transactions_df.sort_values("TX_DATETIME")
    transactions_df.reset_index(inplace=True, drop=True)
    transactions_df.reset_index(inplace=True)
    transactions_df.rename(columns={"index": "TRANSACTION_ID"}, inplace=True)
    return customer_profiles_table, terminal_profiles_table, transactions_df


def handbook_add_frauds(customer_profiles_table, terminal_profiles_table, transactions_df):
    transactions_df["TX_FRAUD"] = 0
    transactions_df["TX_FRAUD_SCENARIO"] = 0
    transactions_df.loc[transactions_df.TX_AMOUNT > 220, "TX_FRAUD"] = 1
    transactions_df.loc[transactions_df.TX_AMOUNT > 220, "TX_FRAUD_SCENARIO"] = 1
    for day in range(transactions_df.TX_TIME_DAYS.max()):
        compromised_terminals = terminal_profiles_table.TERMINAL_ID.sample(n=2, random_state=day)
        compromised_transactions = transactions_df[
            (transactions_df.TX_TIME_DAYS >= day)  # noqa: SIM300 - the handbook's code as published
            & (transactions_df.TX_TIME_DAYS < day + 28)  # noqa: SIM300
            & (transactions_df.TERMINAL_ID.isin(compromised_terminals))
        ]
        transactions_df.loc[compromised_transactions.index, "TX_FRAUD"] = 1
        transactions_df.loc[compromised_transactions.index, "TX_FRAUD_SCENARIO"] = 2
    for day in range(transactions_df.TX_TIME_DAYS.max()):
        compromised_customers = customer_profiles_table.CUSTOMER_ID.sample(n=3, random_state=day).values
        compromised_transactions = transactions_df[
            (transactions_df.TX_TIME_DAYS >= day)  # noqa: SIM300 - the handbook's code as published
            & (transactions_df.TX_TIME_DAYS < day + 14)  # noqa: SIM300
            & (transactions_df.CUSTOMER_ID.isin(compromised_customers))
        ]
        nb_compromised_transactions = len(compromised_transactions)
        random.seed(day)
        index_fauds = random.sample(
            list(compromised_transactions.index.values), k=int(nb_compromised_transactions / 3)
        )
        transactions_df.loc[index_fauds, "TX_AMOUNT"] = transactions_df.loc[index_fauds, "TX_AMOUNT"] * 5
        transactions_df.loc[index_fauds, "TX_FRAUD"] = 1
        transactions_df.loc[index_fauds, "TX_FRAUD_SCENARIO"] = 3
    return transactions_df


@pytest.fixture(scope="module")
def reference() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    customers, terminals, transactions = handbook_dataset(SMALL.n_customers, SMALL.n_terminals, SMALL.nb_days)
    return customers, terminals, handbook_add_frauds(customers, terminals, transactions)


def test_profiles_match_the_handbook(reference: tuple) -> None:
    customers, terminals, _ = reference
    ours = simulator.generate_customer_profiles(SMALL.n_customers, 0)
    pd.testing.assert_frame_equal(ours, customers.drop(columns="available_terminals"), check_exact=True)
    pd.testing.assert_frame_equal(
        simulator.generate_terminal_profiles(SMALL.n_terminals, 1), terminals, check_exact=True
    )
    available = simulator.terminals_within_radius(ours, terminals, SMALL.radius)
    assert [list(a) for a in available] == [list(a) for a in customers["available_terminals"]]
    assert any(len(a) == 0 for a in available), "the configuration must cover customers without terminals"


def test_transactions_match_the_handbook_row_for_row(reference: tuple) -> None:
    _, _, expected = reference
    ours = simulate(SMALL).transactions
    assert len(ours) == len(expected) == SMALL_TRANSACTIONS
    assert int(ours["TX_FRAUD"].sum()) == SMALL_FRAUDS
    assert ours["TX_FRAUD_SCENARIO"].value_counts().to_dict() == SMALL_SCENARIOS
    assert list(ours.columns) == simulator.TRANSACTION_COLUMNS
    for column in simulator.TRANSACTION_COLUMNS:
        left, right = ours[column].to_numpy(), expected[column].to_numpy()
        if column == "TX_DATETIME":
            left, right = left.astype("datetime64[s]"), right.astype("datetime64[s]")
        np.testing.assert_array_equal(left, right, err_msg=column)


def test_draws_match_numpy_when_the_stream_is_extended_many_times() -> None:
    """A tiny initial stream forces the replay-the-day path on almost every day."""
    rs = np.random.RandomState()
    for customer_id, mean_amount, lam in [(3, 7.5, 3.9), (11, 60.0, 0.4), (42, 99.0, 2.5)]:
        seconds, amounts = simulator._customer_draws(
            rs, customer_id, mean_amount, mean_amount / 2, lam, 30, reserve=3
        )
        np.random.seed(customer_id)
        expected_seconds, expected_amounts = [], []
        for day in range(30):
            for _ in range(np.random.poisson(lam)):
                time_tx = int(np.random.normal(86400 / 2, 20000))
                if 0 < time_tx < 86400:
                    amount = np.random.normal(mean_amount, mean_amount / 2)
                    if amount < 0:
                        amount = np.random.uniform(0, mean_amount * 2)
                    expected_seconds.append(time_tx + day * 86400)
                    expected_amounts.append(amount)
        assert seconds == expected_seconds
        assert amounts == expected_amounts  # bit for bit, before rounding


def test_terminal_choices_match_random_choice() -> None:
    for customer_id, n in [(0, 1), (7, 5), (8, 16), (9, 17), (123, 1000)]:
        random.seed(customer_id)
        expected = [random.choice(range(n)) for _ in range(300)]
        assert simulator._choices(customer_id, n, 300).tolist() == expected


def test_deterministic_and_independent_of_workers() -> None:
    customers = simulator.generate_customer_profiles(300, 0)
    terminals = simulator.generate_terminal_profiles(600, 1)
    available = simulator.terminals_within_radius(customers, terminals, 5.0)
    serial = simulator.generate_transactions(customers, available, 30, workers=1)
    parallel = simulator.generate_transactions(customers, available, 30, workers=2)
    again = simulator.generate_transactions(customers, available, 30, workers=1)
    pd.testing.assert_frame_equal(serial, parallel, check_exact=True)
    pd.testing.assert_frame_equal(serial, again, check_exact=True)
    assert serial["TRANSACTION_ID"].tolist() == list(range(len(serial)))
    assert serial["TX_DATETIME"].is_monotonic_increasing


def test_cache_round_trip(tmp_path) -> None:
    config = SimulationConfig(n_customers=40, n_terminals=80, nb_days=15)
    first = simulate_cached(config, tmp_path)
    assert list(tmp_path.glob("sim-*/transactions.parquet"))
    second = simulate_cached(config, tmp_path)
    pd.testing.assert_frame_equal(first.transactions, second.transactions, check_exact=True)
    pd.testing.assert_frame_equal(first.customers, second.customers, check_exact=True)
    other = simulate_cached(SimulationConfig(n_customers=41, n_terminals=80, nb_days=15), tmp_path)
    assert len(list(tmp_path.glob("sim-*"))) == 2
    assert len(other.transactions) != len(first.transactions)
