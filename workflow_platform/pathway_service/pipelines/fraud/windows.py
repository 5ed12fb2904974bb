"""The handbook's 15 model inputs (chapter 3.4) as a Pathway dataflow, for every transaction of a request.

    rows ─┬─► per (request, customer): the card's history in time order (sorted_tuple) ─► its windows ─┐
          └─► per (request, terminal): the terminal's history in time order ─► its delayed windows ───┴─►
        per request: the blocks reassembled by position into one feature matrix

Pathway partitions and orders the histories; each history's windows are then one vectorised pass (binary
search of the window bounds in the sorted times, prefix sums for counts, amounts and frauds), because a
Pathway interval join over 30 days would pair each of 1.75M transactions with ~60 others. The definitions
follow `workflow_platform.fraud.features` (the pandas reference the tests compare against):

* TX_DURING_WEEKEND / TX_DURING_NIGHT: weekday >= 5 / hour <= 6 (UTC);
* per customer, n = 1, 7, 30 days: count and mean amount of the transactions with time in (t - n days, t],
  the current one included; transactions at the same instant count up to their own (time, tie) order;
* per terminal, n = 1, 7, 30 days: count and fraud rate of the transactions with time in
  (t - 7 - n days, t - 7 days] (labels of the last 7 days are not known yet); 0 when there are none.
"""

import numpy as np
import pathway as pw

from workflow_platform.fraud.features import DELAY_DAYS, FEATURES, WINDOWS_DAYS

DAY_SECONDS = 86_400
# Block layout: column 0 is the row's position in the request, then its features (customer or terminal ones).
_CUSTOMER_COLUMNS = 1 + 3 + 2 * len(WINDOWS_DAYS)  # position, amount, weekend, night, (count, mean) x 3
_TERMINAL_COLUMNS = 1 + 2 * len(WINDOWS_DAYS)  # position, (count, risk) x 3


# No `from __future__ import annotations` here: Pathway reads the UDFs' annotations as types.
@pw.udf(deterministic=True)
def customer_block(history: tuple) -> np.ndarray:
    """history: (seconds, tie, position, amount) sorted by time then tie -> rows of the customer block."""
    rows = np.asarray(history, dtype=np.float64).reshape(-1, 4)
    seconds, position, amount = rows[:, 0], rows[:, 2], rows[:, 3]
    index = np.arange(len(rows))
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
    return np.column_stack(columns)


@pw.udf(deterministic=True)
def terminal_block(history: tuple) -> np.ndarray:
    """history: (seconds, position, fraud) sorted by time -> rows of the terminal block."""
    rows = np.asarray(history, dtype=np.float64).reshape(-1, 3)
    seconds, position, fraud = rows[:, 0], rows[:, 1], rows[:, 2]
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
def assemble(customer_blocks: tuple, terminal_blocks: tuple) -> np.ndarray:
    """The blocks of one request -> a matrix with one row per position (0..n-1) and FEATURES as columns."""
    customers = np.concatenate(customer_blocks) if customer_blocks else np.empty((0, _CUSTOMER_COLUMNS))
    terminals = np.concatenate(terminal_blocks) if terminal_blocks else np.empty((0, _TERMINAL_COLUMNS))
    matrix = np.zeros((len(customers), len(FEATURES)))
    matrix[customers[:, 0].astype(np.int64), : _CUSTOMER_COLUMNS - 1] = customers[:, 1:]
    matrix[terminals[:, 0].astype(np.int64), _CUSTOMER_COLUMNS - 1 :] = terminals[:, 1:]
    return matrix


def feature_rows(loaded: pw.Table) -> pw.Table:
    """A table with a `row` column of `history.FeatureRow` lists -> one row each, with query_id its origin."""
    return loaded.flatten(pw.this.row, origin_id="query_id").select(
        pw.this.query_id,
        position=pw.this.row[0],
        customer=pw.this.row[1],
        terminal=pw.this.row[2],
        seconds=pw.this.row[3],
        tie=pw.this.row[4],
        amount=pw.this.row[5],
        fraud=pw.this.row[6],
    )


def window_features(rows: pw.Table) -> pw.Table:
    """rows: query_id, position (0..n-1 per request), customer, terminal, seconds, tie, amount, fraud.

    Returns one row per request that has rows: query_id, and `features`, an n x 15 matrix (FEATURES order,
    row i for position i). Every row needs a customer, a terminal, a time and an amount.
    """
    customers = rows.groupby(pw.this.query_id, pw.this.customer).reduce(
        pw.this.query_id,
        block=customer_block(
            pw.reducers.sorted_tuple(
                pw.make_tuple(pw.this.seconds, pw.this.tie, pw.this.position, pw.this.amount)
            )
        ),
    )
    terminals = rows.groupby(pw.this.query_id, pw.this.terminal).reduce(
        pw.this.query_id,
        block=terminal_block(
            pw.reducers.sorted_tuple(pw.make_tuple(pw.this.seconds, pw.this.position, pw.this.fraud))
        ),
    )
    customer_blocks = customers.groupby(pw.this.query_id).reduce(
        pw.this.query_id, blocks=pw.reducers.tuple(pw.this.block)
    )
    terminal_blocks = terminals.groupby(pw.this.query_id).reduce(
        pw.this.query_id, blocks=pw.reducers.tuple(pw.this.block)
    )
    return customer_blocks.join(terminal_blocks, pw.left.query_id == pw.right.query_id).select(
        pw.left.query_id, features=assemble(pw.left.blocks, pw.right.blocks)
    )
