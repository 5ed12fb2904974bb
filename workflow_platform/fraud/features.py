"""The handbook's baseline feature transformation (chapter 3.4): the one definition of the fraud features.

Training and batch scoring call `transform_features` on a table; the Pathway pipelines (fraud-features and
fraud-detection, `pathway_service/pipelines/fraud/windows.py`) call `calendar_flags`, `customer_spending` and
`terminal_risk` on each card's and each terminal's history; the fraud stream (`fraud_stream/history.py`) keeps
each card and terminal in time order as it goes (`timelines.Timelines`) and calls `customer_spending_in` and
`terminal_risk_in`. Both ways end in `_spending_windows` and `_risk_windows`, given where each transaction's
windows start and end in its card's (terminal's) ordered rows: the windows, the delay and the formulas are here
only, and the two ways of finding those places are tested equal.

`transform_features(transactions)` takes one row per transaction with the columns

    TRANSACTION_ID  int       unique; breaks ties between a customer's transactions at the same instant
    TX_DATETIME     datetime  naive (read as UTC) or tz-aware; day windows are exact durations (N x 24 h)
    CUSTOMER_ID     int/str   the card
    TERMINAL_ID     int/str   the terminal
    TX_AMOUNT       float
    TX_FRAUD        0/1       the label, used only by the delayed terminal risk

(any other column is passed through) and returns the same rows, in the same order, with 14 columns added:

    TX_DURING_WEEKEND                     int    1 if TX_DATETIME's weekday is Saturday or Sunday
    TX_DURING_NIGHT                       int    1 if TX_DATETIME's hour <= 6
    CUSTOMER_ID_NB_TX_{n}DAY_WINDOW       int    the customer's transactions with time in (t - n days, t],
                                                 the current one included (n = 1, 7, 30)
    CUSTOMER_ID_AVG_AMOUNT_{n}DAY_WINDOW  float  their mean TX_AMOUNT
    TERMINAL_ID_NB_TX_{n}DAY_WINDOW       int    the terminal's transactions with time in (t - 7 - n days, t - 7 days]
    TERMINAL_ID_RISK_{n}DAY_WINDOW        float  the fraction of those with TX_FRAUD = 1; 0 when there are none

This is what the handbook computes with pandas `rolling('nd')` per customer and per terminal (the terminal
window is the difference of a (7 + n)-day and a 7-day rolling window, so the delay is exactly 7 days).
Where a customer has several transactions at the same instant, pandas counts, for each, those up to its own
position; we order such ties by TRANSACTION_ID. `FEATURES` lists the 15 model inputs in the handbook's order.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from .timelines import Timelines

WINDOWS_DAYS = (1, 7, 30)
DELAY_DAYS = 7
DAY = np.timedelta64(1, "D")
NIGHT_END_HOUR = 7  # night: hours 0 to 6

CUSTOMER_FEATURES = [
    f"CUSTOMER_ID_{kind}_{n}DAY_WINDOW" for n in WINDOWS_DAYS for kind in ("NB_TX", "AVG_AMOUNT")
]
TERMINAL_FEATURES = [f"TERMINAL_ID_{kind}_{n}DAY_WINDOW" for n in WINDOWS_DAYS for kind in ("NB_TX", "RISK")]
FEATURES = ["TX_AMOUNT", "TX_DURING_WEEKEND", "TX_DURING_NIGHT", *CUSTOMER_FEATURES, *TERMINAL_FEATURES]
INPUT_COLUMNS = ["TRANSACTION_ID", "TX_DATETIME", "CUSTOMER_ID", "TERMINAL_ID", "TX_AMOUNT", "TX_FRAUD"]


def transform_features(transactions: pd.DataFrame) -> pd.DataFrame:
    """The handbook's 15 model inputs for every transaction (see the module docstring for the columns)."""
    missing = [c for c in INPUT_COLUMNS if c not in transactions.columns]
    if missing:
        raise ValueError(f"transform_features needs columns {missing}")
    result = transactions.copy()
    when = pd.to_datetime(result["TX_DATETIME"])
    # Exact integer instants: comparisons below never round. The calendar flags read the local wall clock.
    instants = when.dt.tz_convert("UTC").dt.tz_localize(None) if when.dt.tz is not None else when
    wall_clock = when.dt.tz_localize(None) if when.dt.tz is not None else when
    t = instants.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    day_ns = int(DAY / np.timedelta64(1, "ns"))
    spending = customer_spending(
        result["CUSTOMER_ID"].to_numpy(),
        t,
        result["TRANSACTION_ID"].to_numpy(),
        result["TX_AMOUNT"].to_numpy(dtype=np.float64),
        day_ns,
    )
    risk = terminal_risk(
        result["TERMINAL_ID"].to_numpy(), t, result["TX_FRAUD"].to_numpy(dtype=np.float64), day_ns
    )
    flags = calendar_flags(wall_clock.to_numpy(dtype="datetime64[ns]").astype(np.int64), day_ns)
    for name, values in {**flags, **spending, **risk}.items():
        result[name] = values
    return result


def calendar_flags(wall_clock: np.ndarray, day: int) -> dict[str, np.ndarray]:
    """TX_DURING_WEEKEND and TX_DURING_NIGHT of each transaction.

    `wall_clock`: the time since 1970-01-01 00:00 on the clock of the transaction's zone, `day`: one day in its unit.
    """
    days = np.floor_divide(wall_clock, day)
    # 1970-01-01 was a Thursday (weekday 3, Monday = 0).
    return {
        "TX_DURING_WEEKEND": (np.mod(days + 3, 7) >= 5).astype(np.int64),
        "TX_DURING_NIGHT": (wall_clock - days * day < day // 24 * NIGHT_END_HOUR).astype(np.int64),
    }


def customer_spending(
    customer: np.ndarray, t: np.ndarray, tie: np.ndarray, amount: np.ndarray, day: int
) -> dict[str, np.ndarray]:
    """CUSTOMER_ID_NB_TX/AVG_AMOUNT_{n}DAY_WINDOW of each transaction, in input order.

    `t`: instants in any unit, `day`: one day in that unit; `tie` orders a card's transactions at one instant.
    """
    groups = _Groups(customer, t, tie, [n * day for n in WINDOWS_DAYS])
    sorted_amount = amount[groups.order]
    # Amounts in whole cents (the simulator's, and money in general) are summed exactly as integers, so an
    # average does not depend on where the data starts; otherwise a running float sum restarted per customer.
    cents = np.rint(sorted_amount * 100)
    exact = bool(np.all(np.abs(cents - sorted_amount * 100) < 1e-6)) and bool(
        np.all(np.abs(cents) < 2**53 / 1e4)
    )
    values, scale = (cents.astype(np.int64), 100.0) if exact else (sorted_amount, 1.0)
    running = _running_sums(values, groups.group, groups.first_of_group)
    first = groups.first_of_group[groups.position]

    def total(start: np.ndarray, end: np.ndarray) -> np.ndarray:
        before = np.where(start > first, running[np.maximum(start - 1, 0)], 0)
        return running[end - 1] - before

    return _spending_windows(groups.first_after, groups.position + 1, total, scale, day)


def customer_spending_in(
    timelines: Timelines, card: np.ndarray, t: np.ndarray, tie: np.ndarray, day: int
) -> dict[str, np.ndarray]:
    """customer_spending of transactions held in `timelines` (the stream's), whose values are `in_cents`."""
    return _spending_windows(
        lambda bound: timelines.first_after(card, t - bound),
        timelines.end_of(card, t, tie),
        timelines.total,
        100.0,
        day,
    )


def in_cents(amount: np.ndarray) -> np.ndarray:
    """Amounts x 100, whole cents exactly (so that their sums are exact, as customer_spending's)."""
    cents = np.rint(amount * 100)
    return np.where(np.abs(cents - amount * 100) < 1e-6, cents, amount * 100)


def _spending_windows(
    first_after: Callable[[int], np.ndarray],
    end: np.ndarray,
    total: Callable[[np.ndarray, np.ndarray], np.ndarray],
    scale: float,
    day: int,
) -> dict[str, np.ndarray]:
    """The customer windows, given where each transaction's rows of its card end (after itself), where
    those with time > t - bound start, and the sum of the amounts (x `scale`) between two such places."""
    out: dict[str, np.ndarray] = {}
    for n in WINDOWS_DAYS:
        start = first_after(n * day)
        count = end - start
        out[f"CUSTOMER_ID_NB_TX_{n}DAY_WINDOW"] = count.astype(np.int64)
        out[f"CUSTOMER_ID_AVG_AMOUNT_{n}DAY_WINDOW"] = total(start, end) / (count * scale)
    return out


def terminal_risk(terminal: np.ndarray, t: np.ndarray, fraud: np.ndarray, day: int) -> dict[str, np.ndarray]:
    """TERMINAL_ID_NB_TX/RISK_{n}DAY_WINDOW of each transaction, in input order (`t`, `day`: as above)."""
    bounds = [DELAY_DAYS * day, *((DELAY_DAYS + n) * day for n in WINDOWS_DAYS)]
    # Ties need no tie-breaker here: both window ends are delayed, so rows at t itself never count.
    groups = _Groups(terminal, t, None, bounds)
    frauds_before = np.concatenate([[0.0], np.cumsum(fraud[groups.order])])
    return _risk_windows(
        groups.first_after, lambda start, end: frauds_before[end] - frauds_before[start], day
    )


def terminal_risk_in(
    timelines: Timelines, terminal: np.ndarray, t: np.ndarray, day: int
) -> dict[str, np.ndarray]:
    """terminal_risk of transactions in `timelines` (the stream's), whose values are the labels."""
    return _risk_windows(lambda bound: timelines.first_after(terminal, t - bound), timelines.total, day)


def _risk_windows(
    first_after: Callable[[int], np.ndarray],
    total: Callable[[np.ndarray, np.ndarray], np.ndarray],
    day: int,
) -> dict[str, np.ndarray]:
    """The terminal windows, given where each transaction's rows of its terminal with time > t - bound
    start, and the number of frauds between two such places."""
    delayed_end = first_after(DELAY_DAYS * day)  # rows with time <= t - 7 days end here
    out: dict[str, np.ndarray] = {}
    for n in WINDOWS_DAYS:
        start = first_after((DELAY_DAYS + n) * day)
        count = delayed_end - start
        risk = np.divide(total(start, delayed_end), count, out=np.zeros(len(count)), where=count > 0)
        out[f"TERMINAL_ID_NB_TX_{n}DAY_WINDOW"] = count.astype(np.int64)
        out[f"TERMINAL_ID_RISK_{n}DAY_WINDOW"] = risk
    return out


class _Groups:
    """Rows ordered by (group, time, tie-breaker), with window bounds found by binary search.

    Times become ranks r(x) = #{distinct instants <= x}, so that t_j > x exactly when r(t_j) > r(x); rows
    are sorted, and a bound `time > t - b` searched, by the small exact integer keys `group * span + r(time)`.
    """

    def __init__(self, keys: np.ndarray, t: np.ndarray, tie: np.ndarray | None, bounds: list[int]) -> None:
        group, _ = pd.factorize(keys, sort=True)
        by_time = np.argsort(t)
        ordered = t[by_time]
        distinct = np.r_[True, ordered[1:] != ordered[:-1]]
        instants = ordered[distinct]
        rank = np.empty(len(t), dtype=np.int64)
        rank[by_time] = np.cumsum(distinct)
        self.span = len(instants) + 1
        key = group.astype(np.int64) * self.span + rank
        self.order = np.argsort(key, kind="stable") if tie is None else np.lexsort((tie, key))
        self.group = group[self.order].astype(np.int64)
        self.keys = key[self.order]
        starts = np.flatnonzero(np.r_[True, self.group[1:] != self.group[:-1]])
        # For each sorted row, the first sorted row of its group.
        self.first_of_group = np.repeat(starts, np.diff(np.r_[starts, len(t)]))
        self.position = np.empty(len(t), dtype=np.int64)  # where each row is, sorted
        self.position[self.order] = np.arange(len(t))
        # The bounds are searched in input order (usually chronological) among the instants, then in sorted
        # order among the keys: both searches walk memory in order.
        key_base = group.astype(np.int64) * self.span
        self.limits = {
            b: (key_base + np.searchsorted(instants, t - b, side="right"))[self.order] for b in bounds
        }

    def first_after(self, bound: int) -> np.ndarray:
        """For each row: the first sorted row of its group with time > t - bound."""
        first = np.empty(len(self.position), dtype=np.int64)
        first[self.order] = np.searchsorted(self.keys, self.limits[bound], side="right")
        return first


def _running_sums(values: np.ndarray, group: np.ndarray, first_of_group: np.ndarray) -> np.ndarray:
    """Cumulative sums restarted at each group (rows sorted by group)."""
    if values.dtype.kind == "i":
        # Integers sum exactly, so one cumulative sum less each group's start is the same, and much faster on
        # the many small groups the Pathway pipelines pass (one card's history at a time).
        total = np.cumsum(values)
        return total - (total - values)[first_of_group]
    return pd.Series(values).groupby(group).cumsum().to_numpy()
