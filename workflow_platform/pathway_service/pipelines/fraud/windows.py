"""The handbook's 15 model inputs (chapter 3.4) as a Pathway dataflow, for every transaction of a request.

    requests ─► one row per card history and per terminal history (history.histories, flattened)
             ─► each history's windows (a vectorised UDF per row)
             ─► per request: the blocks reassembled by position into one feature matrix (groupby)

Each history's windows are one pass over its sorted times: binary search of the window bounds, prefix sums for
counts, amounts and frauds. The definitions follow `workflow_platform.fraud.features` (the pandas reference
the tests compare against):

* TX_DURING_WEEKEND / TX_DURING_NIGHT: weekday >= 5 / hour <= 6 (UTC);
* per card, n = 1, 7, 30 days: count and mean amount of the transactions with time in (t - n days, t], the
  current one included; transactions at the same instant count up to their own (time, tie) order;
* per terminal, n = 1, 7, 30 days: count and fraud rate of the transactions with time in
  (t - 7 - n days, t - 7 days] (labels of the last 7 days are not known yet); 0 when there are none.
"""

import numpy as np
import pathway as pw

from workflow_platform.fraud.features import DELAY_DAYS, FEATURES, WINDOWS_DAYS

from .history import CARD, TERMINAL

DAY_SECONDS = 86_400
# Block layout: column 0 is the row's position in the request, then its card or terminal features.
_CARD_FEATURES = 3 + 2 * len(WINDOWS_DAYS)  # amount, weekend, night, (count, mean) x 3
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
    seconds, position, amount = history[:, 0], history[:, 2], history[:, 3]
    index = np.arange(len(history))
    running = np.concatenate([[0.0], np.cumsum(amount)])
    day_seconds = np.mod(seconds, DAY_SECONDS)
    # 1970-01-01 was a Thursday (weekday 3, Monday = 0).
    weekday = np.mod(np.floor_divide(seconds, DAY_SECONDS) + 3, 7)
    columns = [
        position,
        amount,
        (weekday >= 5).astype(np.float64),
        (day_seconds < 7 * 3600).astype(np.float64),
    ]
    for days in WINDOWS_DAYS:
        start = np.searchsorted(seconds, seconds - days * DAY_SECONDS, side="right")
        count = index - start + 1
        columns += [count, (running[index + 1] - running[start]) / count]
    hour_start = np.searchsorted(seconds, seconds - HOUR_SECONDS, side="left")
    hour_end = np.searchsorted(seconds, seconds, side="right")
    columns += [hour_end - hour_start, running[hour_end] - running[hour_start]]
    return np.column_stack(columns)


def terminal_block(history: np.ndarray) -> np.ndarray:
    seconds, position, fraud = history[:, 0], history[:, 1], history[:, 2]
    frauds_before = np.concatenate([[0.0], np.cumsum(fraud)])
    # Rows with time <= t - 7 days end before `known`.
    known = np.searchsorted(seconds, seconds - DELAY_DAYS * DAY_SECONDS, side="right")
    columns = [position]
    for days in WINDOWS_DAYS:
        start = np.searchsorted(seconds, seconds - (DELAY_DAYS + days) * DAY_SECONDS, side="right")
        count = (known - start).astype(np.float64)
        frauds = frauds_before[known] - frauds_before[start]
        columns += [count, np.divide(frauds, count, out=np.zeros(len(count)), where=count > 0)]
    return np.column_stack(columns)


@pw.udf(deterministic=True)
def assemble(blocks: tuple) -> np.ndarray:
    """The blocks of one request -> a matrix with one row per position (0..n-1): FEATURES, then PAST_HOUR_COLUMNS."""
    cards = [block for kind, block in blocks if kind == CARD]
    terminals = [block for kind, block in blocks if kind == TERMINAL]
    card_rows = np.concatenate(cards) if cards else np.empty((0, 1 + _CARD_FEATURES + len(PAST_HOUR_COLUMNS)))
    matrix = np.zeros((len(card_rows), len(FEATURES) + len(PAST_HOUR_COLUMNS)))
    card_positions = card_rows[:, 0].astype(np.int64)
    matrix[card_positions, :_CARD_FEATURES] = card_rows[:, 1 : 1 + _CARD_FEATURES]
    matrix[card_positions, len(FEATURES) :] = card_rows[:, 1 + _CARD_FEATURES :]
    if terminals:
        terminal_rows = np.concatenate(terminals)
        matrix[terminal_rows[:, 0].astype(np.int64), _CARD_FEATURES : len(FEATURES)] = terminal_rows[:, 1:]
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
