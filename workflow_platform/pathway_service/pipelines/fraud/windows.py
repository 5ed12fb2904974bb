"""The handbook's 15 model inputs (chapter 3.4) as a Pathway dataflow, for every transaction of a request.

    requests ─► one row per card history and per terminal history (history.histories, flattened)
             ─► each history's windows (a vectorised UDF per row)
             ─► per request: the blocks reassembled by position into one feature matrix (groupby)

Each history's windows are the training's own: `workflow_platform.fraud.features` (calendar_flags,
customer_spending, terminal_risk) run on the history's rows, one card or one terminal, with times in epoch
seconds (UTC). Only the velocity rule's past hour, which is no model input, is computed here.
"""

import numpy as np
import pathway as pw

from workflow_platform.fraud.features import (
    FEATURES,
    TERMINAL_FEATURES,
    calendar_flags,
    customer_spending,
    terminal_risk,
)

from .history import CARD, TERMINAL

DAY_SECONDS = 86_400
# Block layout: column 0 is the row's position in the request, then its card or terminal features.
CARD_BLOCK_FEATURES = FEATURES[: len(FEATURES) - len(TERMINAL_FEATURES)]  # amount, weekend, night, windows
# After the 15 features, the matrix holds what the velocity rule reads: the card's transactions with time in
# [t - 1 h, t] (this one and those at the same instant included) and their amount.
PAST_HOUR_COLUMNS = ("PAST_HOUR_NB_TX", "PAST_HOUR_AMOUNT")
HOUR_SECONDS = 3600


# No `from __future__ import annotations` here: Pathway reads the UDFs' annotations as types.
@pw.udf(deterministic=True)
def block_of(kind: int, history: np.ndarray) -> np.ndarray:
    """A history's rows with their windows: position first, then its customer or terminal features."""
    return card_block(history) if kind == CARD else terminal_block(history)


def card_block(history: np.ndarray) -> np.ndarray:
    seconds, tie, position, amount = history.T
    features = {
        "TX_AMOUNT": amount,
        **calendar_flags(seconds, DAY_SECONDS),  # UTC: the seconds' wall clock
        **customer_spending(np.zeros(len(history)), seconds, tie, amount, DAY_SECONDS),
    }
    columns = [position, *(features[name] for name in CARD_BLOCK_FEATURES)]
    return np.column_stack([*columns, *_past_hour(seconds, amount)])


def _past_hour(seconds: np.ndarray, amount: np.ndarray) -> list[np.ndarray]:
    """The card's transactions with time in [t - 1 h, t] (the same instant included) and their amount."""
    running = np.concatenate([[0.0], np.cumsum(amount)])
    hour_start = np.searchsorted(seconds, seconds - HOUR_SECONDS, side="left")
    hour_end = np.searchsorted(seconds, seconds, side="right")
    return [hour_end - hour_start, running[hour_end] - running[hour_start]]


def terminal_block(history: np.ndarray) -> np.ndarray:
    seconds, position, fraud = history.T
    risk = terminal_risk(np.zeros(len(history)), seconds, fraud, DAY_SECONDS)
    return np.column_stack([position, *(risk[name] for name in TERMINAL_FEATURES)])


@pw.udf(deterministic=True)
def assemble(blocks: tuple) -> np.ndarray:
    """The blocks of one request -> a matrix with one row per position (0..n-1): FEATURES, then PAST_HOUR_COLUMNS."""
    cards = [block for kind, block in blocks if kind == CARD]
    terminals = [block for kind, block in blocks if kind == TERMINAL]
    width = len(CARD_BLOCK_FEATURES)
    card_rows = np.concatenate(cards) if cards else np.empty((0, 1 + width + len(PAST_HOUR_COLUMNS)))
    matrix = np.zeros((len(card_rows), len(FEATURES) + len(PAST_HOUR_COLUMNS)))
    card_positions = card_rows[:, 0].astype(np.int64)
    matrix[card_positions, :width] = card_rows[:, 1 : 1 + width]
    matrix[card_positions, len(FEATURES) :] = card_rows[:, 1 + width :]
    if terminals:
        terminal_rows = np.concatenate(terminals)
        matrix[terminal_rows[:, 0].astype(np.int64), width : len(FEATURES)] = terminal_rows[:, 1:]
    return matrix


def window_features(loaded: pw.Table) -> pw.Table:
    """`loaded`: one row per request with `histories`, a list of `history.History`.

    Returns one row per request that has transactions: query_id (the request's id), and `features`, an n x 17
    matrix (FEATURES then PAST_HOUR_COLUMNS, row i for position i).
    """
    blocks = loaded.flatten(pw.this.histories, origin_id="query_id").select(
        pw.this.query_id,
        kind=pw.this.histories[0],
        block=block_of(pw.this.histories[0], pw.this.histories[1]),
    )
    return (
        blocks.groupby(pw.this.query_id)
        .reduce(pw.this.query_id, blocks=pw.reducers.tuple(pw.make_tuple(pw.this.kind, pw.this.block)))
        .select(pw.this.query_id, features=assemble(pw.this.blocks))
    )
