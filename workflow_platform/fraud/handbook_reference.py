"""The handbook's own feature code (chapter 3.4), as published: the yardstick for our implementations.

Tests compare the Pathway pipeline's features with it on samples; `bench/fraud_features.py` times it. It is
slow by design (a pandas rolling window per card and per terminal, applied group by group), which is why
neither the platform nor `features.transform_features` uses it. One change: sorts are stable, so that
transactions at the same instant keep their input order (the handbook's default quicksort leaves it open).
"""

from __future__ import annotations

import pandas as pd


def customer_spending_features(
    customer_transactions: pd.DataFrame, windows: tuple[int, ...] = (1, 7, 30)
) -> pd.DataFrame:
    """get_customer_spending_behaviour_features: per card, count and mean amount over each window."""
    customer_transactions = customer_transactions.sort_values("TX_DATETIME", kind="stable")
    customer_transactions.index = customer_transactions.TX_DATETIME
    for window_size in windows:
        sum_amount = customer_transactions["TX_AMOUNT"].rolling(str(window_size) + "d").sum()
        nb_tx = customer_transactions["TX_AMOUNT"].rolling(str(window_size) + "d").count()
        customer_transactions["CUSTOMER_ID_NB_TX_" + str(window_size) + "DAY_WINDOW"] = list(nb_tx)
        customer_transactions["CUSTOMER_ID_AVG_AMOUNT_" + str(window_size) + "DAY_WINDOW"] = list(
            sum_amount / nb_tx
        )
    customer_transactions.index = customer_transactions.TRANSACTION_ID
    return customer_transactions


def terminal_risk_features(
    terminal_transactions: pd.DataFrame, delay_period: int = 7, windows: tuple[int, ...] = (1, 7, 30)
) -> pd.DataFrame:
    """get_count_risk_rolling_window: per terminal, count and fraud rate over each window, a delay back."""
    terminal_transactions = terminal_transactions.sort_values("TX_DATETIME", kind="stable")
    terminal_transactions.index = terminal_transactions.TX_DATETIME
    nb_fraud_delay = terminal_transactions["TX_FRAUD"].rolling(str(delay_period) + "d").sum()
    nb_tx_delay = terminal_transactions["TX_FRAUD"].rolling(str(delay_period) + "d").count()
    for window_size in windows:
        window = str(delay_period + window_size) + "d"
        nb_fraud_window = terminal_transactions["TX_FRAUD"].rolling(window).sum() - nb_fraud_delay
        nb_tx_window = terminal_transactions["TX_FRAUD"].rolling(window).count() - nb_tx_delay
        terminal_transactions["TERMINAL_ID_NB_TX_" + str(window_size) + "DAY_WINDOW"] = list(nb_tx_window)
        terminal_transactions["TERMINAL_ID_RISK_" + str(window_size) + "DAY_WINDOW"] = list(
            nb_fraud_window / nb_tx_window
        )
    terminal_transactions.index = terminal_transactions.TRANSACTION_ID
    return terminal_transactions.fillna(0)


def time_flags(transactions: pd.DataFrame) -> pd.DataFrame:
    """A copy with the weekend and night flags."""
    frame = transactions.copy()
    frame["TX_DURING_WEEKEND"] = (frame["TX_DATETIME"].dt.weekday >= 5).astype(int)
    frame["TX_DURING_NIGHT"] = (frame["TX_DATETIME"].dt.hour <= 6).astype(int)
    return frame


def per_card(frame: pd.DataFrame) -> pd.DataFrame:
    """customer_spending_features applied card by card."""
    return frame.groupby("CUSTOMER_ID", group_keys=False).apply(customer_spending_features)


def per_terminal(frame: pd.DataFrame) -> pd.DataFrame:
    """terminal_risk_features applied terminal by terminal."""
    return frame.groupby("TERMINAL_ID", group_keys=False).apply(terminal_risk_features)


def in_time_order(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values("TX_DATETIME", kind="stable").reset_index(drop=True)


def handbook_features(transactions: pd.DataFrame) -> pd.DataFrame:
    """The handbook's whole transformation, group by group, as its notebooks run it.

    Written as its stages so that `bench/fraud_features.py` can time each one on its own sample.
    """
    frame = per_card(time_flags(transactions))
    frame = per_terminal(in_time_order(frame))
    return in_time_order(frame)
