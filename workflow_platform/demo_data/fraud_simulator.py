"""The handbook's transaction simulator, draw for draw, fast.

The handbook (chapter 3.2, `generate_dataset` + `add_frauds`) draws everything from numpy's legacy global
generator and Python's `random`, one scalar call at a time. Its published dataset (5,000 customers, 10,000
terminals, 183 days from 2018-04-01) has 1,754,155 transactions and 14,681 frauds; we reproduce it exactly by
consuming the same random streams in the same order:

* customers: `np.random.seed(0)`, then per customer uniform x, y (0..100), mean amount (5..100), mean number of
  transactions per day (0..4); std amount = mean / 2. Terminals: `np.random.seed(1)`, x, y per terminal.
* a customer uses the terminals at Euclidean distance < r (5).
* per customer, `random.seed(id)` and `np.random.seed(id)`; per day a Poisson(mean_nb_tx_per_day) count; per
  transaction a time `int(N(43200, 20000))` kept only inside (0, 86400) (a dropped time draws nothing else), an
  amount N(mean, std) redrawn as U(0, 2 mean) when negative and rounded to cents, and a terminal
  `random.choice(available_terminals)`.
* transactions sorted by datetime (pandas `sort_values`, as the handbook), TRANSACTION_ID = row number.
* frauds: scenario 1, amount > 220; scenario 2, every day d two terminals (`sample(n=2, random_state=d)`)
  compromised for days [d, d+28); scenario 3, every day d three customers (`sample(n=3, random_state=d)`) of
  whose transactions in [d, d+14) `random.seed(d); random.sample(..., int(n/3))` get amount x 5 and are frauds.

Speed comes from not calling numpy once per draw. All of a customer's numpy draws are functions of one stream
of 53-bit doubles (MT19937 seeded with the customer id): Poisson for lam < 10 is Knuth's multiplication
method (`prod *= U` until `prod <= exp(-lam)`), normals are the legacy polar Box-Muller with its cached second
value, uniforms are `low + range * U`. We draw that stream in bulk (`RandomState.random_sample`) and replay
the algorithm on Python floats with the same libm `log`/`exp`/`sqrt`, and draw the `random.choice` words in
bulk from `random.Random(id).getrandbits`. The tests compare the result row for row with a literal
transcription of the handbook code.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import threading
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd

SECONDS_PER_DAY = 86400

TRANSACTION_COLUMNS = [
    "TRANSACTION_ID",
    "TX_DATETIME",
    "CUSTOMER_ID",
    "TERMINAL_ID",
    "TX_AMOUNT",
    "TX_TIME_SECONDS",
    "TX_TIME_DAYS",
    "TX_FRAUD",
    "TX_FRAUD_SCENARIO",
]

# Published by the handbook for the default configuration; `bench/fraud_eval.py` checks them.
HANDBOOK_TRANSACTIONS = 1_754_155
HANDBOOK_FRAUDS = 14_681


@dataclass(frozen=True)
class SimulationConfig:
    """Parameters of `simulate`; the defaults are the handbook's dataset."""

    n_customers: int = 5000
    n_terminals: int = 10000
    nb_days: int = 183
    start_date: str = "2018-04-01"
    radius: float = 5.0
    customer_seed: int = 0
    terminal_seed: int = 1

    def key(self) -> str:
        """A short stable name for caches and load batches."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class SimulatedDataset:
    config: SimulationConfig
    customers: (
        pd.DataFrame
    )  # CUSTOMER_ID, x_customer_id, y_customer_id, mean_amount, std_amount, mean_nb_tx_per_day
    terminals: pd.DataFrame  # TERMINAL_ID, x_terminal_id, y_terminal_id
    transactions: pd.DataFrame  # TRANSACTION_COLUMNS


def generate_customer_profiles(n_customers: int, random_state: int = 0) -> pd.DataFrame:
    """The handbook's customer table: 4 uniform draws per customer, in the order x, y, mean amount, frequency."""
    u = np.random.RandomState(random_state).random_sample(4 * n_customers).reshape(n_customers, 4)
    mean_amount = 5.0 + 95.0 * u[:, 2]
    return pd.DataFrame(
        {
            "CUSTOMER_ID": np.arange(n_customers, dtype=np.int64),
            "x_customer_id": 100.0 * u[:, 0],
            "y_customer_id": 100.0 * u[:, 1],
            "mean_amount": mean_amount,
            "std_amount": mean_amount / 2,
            "mean_nb_tx_per_day": 4.0 * u[:, 3],
        }
    )


def generate_terminal_profiles(n_terminals: int, random_state: int = 1) -> pd.DataFrame:
    """The handbook's terminal table: uniform x, y per terminal."""
    u = np.random.RandomState(random_state).random_sample(2 * n_terminals).reshape(n_terminals, 2)
    return pd.DataFrame(
        {
            "TERMINAL_ID": np.arange(n_terminals, dtype=np.int64),
            "x_terminal_id": 100.0 * u[:, 0],
            "y_terminal_id": 100.0 * u[:, 1],
        }
    )


def terminals_within_radius(
    customers: pd.DataFrame, terminals: pd.DataFrame, radius: float, chunk: int = 256
) -> list[np.ndarray]:
    """For each customer, the ids of the terminals at distance < radius, ascending (the handbook's formula)."""
    tx = terminals["x_terminal_id"].to_numpy()
    ty = terminals["y_terminal_id"].to_numpy()
    cx = customers["x_customer_id"].to_numpy()
    cy = customers["y_customer_id"].to_numpy()
    result: list[np.ndarray] = []
    for begin in range(0, len(cx), chunk):
        dx = cx[begin : begin + chunk, None] - tx[None, :]
        dy = cy[begin : begin + chunk, None] - ty[None, :]
        near = np.sqrt(dx * dx + dy * dy) < radius
        result.extend(np.flatnonzero(row) for row in near)
    return result


# Long, the polar method twice, on purpose: a tight draw loop, where a call per draw costs more than it.
def _customer_draws(
    rs: np.random.RandomState,
    customer_id: int,
    mean_amount: float,
    std_amount: float,
    lam: float,
    nb_days: int,
    reserve: int | None = None,
) -> tuple[list[int], list[float]]:
    """Times (seconds since the start) and unrounded amounts of one customer's kept transactions.

    Replays `generate_transactions_table`'s numpy calls on the customer's stream of doubles: see the module
    docstring. `reserve` doubles are drawn first (default: about 1.3 times what the customer needs); a stream
    that runs out is extended and the current day replayed from its saved state. `rs` is reseeded here
    (reseeding costs 2 us, a new RandomState 140 us).
    """
    rs.seed(customer_id)
    buf = rs.random_sample(reserve or int(nb_days * (4.0 * lam + 1.5)) + 256).tolist()
    log, sqrt = math.log, math.sqrt
    enlam = math.exp(-lam)
    twice_mean = mean_amount * 2
    seconds: list[int] = []
    amounts: list[float] = []
    pos, has_gauss, gauss = 0, False, 0.0
    day = 0
    while day < nb_days:
        saved = (pos, has_gauss, gauss, len(seconds))
        try:
            # np.random.poisson(lam), lam < 10: multiplication method (lam == 0 draws nothing).
            nb_tx = 0
            if lam > 0:
                prod = 1.0
                while True:
                    prod *= buf[pos]
                    pos += 1
                    if prod > enlam:
                        nb_tx += 1
                    else:
                        break
            offset = day * SECONDS_PER_DAY
            for _ in range(nb_tx):
                # np.random.normal(43200, 20000): legacy polar method, second value cached.
                if has_gauss:
                    has_gauss, g = False, gauss
                else:
                    while True:
                        x1 = 2.0 * buf[pos] - 1.0
                        x2 = 2.0 * buf[pos + 1] - 1.0
                        pos += 2
                        r2 = x1 * x1 + x2 * x2
                        if r2 < 1.0 and r2 != 0.0:
                            break
                    f = sqrt(-2.0 * log(r2) / r2)
                    gauss, has_gauss, g = f * x1, True, f * x2
                time_tx = int(43200.0 + 20000.0 * g)
                if not 0 < time_tx < SECONDS_PER_DAY:
                    continue
                # np.random.normal(mean_amount, std_amount)
                if has_gauss:
                    has_gauss, g = False, gauss
                else:
                    while True:
                        x1 = 2.0 * buf[pos] - 1.0
                        x2 = 2.0 * buf[pos + 1] - 1.0
                        pos += 2
                        r2 = x1 * x1 + x2 * x2
                        if r2 < 1.0 and r2 != 0.0:
                            break
                    f = sqrt(-2.0 * log(r2) / r2)
                    gauss, has_gauss, g = f * x1, True, f * x2
                amount = mean_amount + std_amount * g
                if amount < 0:
                    amount = 0.0 + twice_mean * buf[pos]  # np.random.uniform(0, 2 * mean_amount)
                    pos += 1
                seconds.append(offset + time_tx)
                amounts.append(amount)
        except IndexError:
            pos, has_gauss, gauss, kept = saved
            del seconds[kept:], amounts[kept:]
            buf.extend(rs.random_sample(len(buf)).tolist())
            continue
        day += 1
    return seconds, amounts


def _choices(customer_id: int, n_available: int, count: int) -> np.ndarray:
    """Indices drawn by `count` calls of `random.choice(seq)`, len(seq) = n_available, after random.seed(id).

    `random.choice` takes `getrandbits(k)` (one 32-bit MT output shifted right by 32 - k, k = n.bit_length())
    until it is below n; `getrandbits(32 * m)` returns m outputs, the first in the lowest bits.
    """
    if count == 0:
        return np.empty(0, dtype=np.int64)
    generator = random.Random(customer_id)
    shift = 32 - n_available.bit_length()
    picked = np.empty(0, dtype=np.int64)
    while len(picked) < count:
        words = 2 * (count - len(picked)) + 64
        raw = generator.getrandbits(32 * words).to_bytes(4 * words, "little")
        values = (np.frombuffer(raw, dtype="<u4") >> shift).astype(np.int64)
        picked = np.concatenate([picked, values[values < n_available]])
    # Words past the last accepted one were drawn ahead; nothing else reads this generator.
    return picked[:count]


def _simulate_customers(args: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Transactions of a batch of customers, in the handbook's concatenation order (customer, then time)."""
    ids, means, stds, lams, available, nb_days = args
    out_customer, out_terminal, out_seconds, out_amount = [], [], [], []
    rs = np.random.RandomState()
    for customer_id, mean_amount, std_amount, lam, terminals in zip(
        ids, means, stds, lams, available, strict=True
    ):
        seconds, amounts = _customer_draws(
            rs, int(customer_id), float(mean_amount), float(std_amount), float(lam), nb_days
        )
        if not seconds or len(terminals) == 0:
            continue
        out_customer.append(np.full(len(seconds), customer_id, dtype=np.int64))
        out_terminal.append(terminals[_choices(int(customer_id), len(terminals), len(seconds))])
        out_seconds.append(np.asarray(seconds, dtype=np.int64))
        out_amount.append(np.asarray(amounts, dtype=np.float64))
    if not out_customer:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, empty, np.empty(0, dtype=np.float64)
    return (
        np.concatenate(out_customer),
        np.concatenate(out_terminal).astype(np.int64),
        np.concatenate(out_seconds),
        np.concatenate(out_amount),
    )


def generate_transactions(
    customers: pd.DataFrame,
    available_terminals: list[np.ndarray],
    nb_days: int,
    start_date: str = "2018-04-01",
    workers: int | None = None,
) -> pd.DataFrame:
    """All customers' transactions, sorted by datetime, TRANSACTION_ID = row number, no fraud yet.

    `workers` processes share the customers (default: up to 2, none for small tables); the result does not
    depend on it.
    """
    ids = customers["CUSTOMER_ID"].to_numpy()
    columns = (
        ids,
        customers["mean_amount"].to_numpy(),
        customers["std_amount"].to_numpy(),
        customers["mean_nb_tx_per_day"].to_numpy(),
    )
    if workers is None:
        workers = min(2, os.cpu_count() or 1) if len(ids) * nb_days >= 100_000 else 1
    # fork is only safe in a process without other threads (no Dagster executor, asyncio loop or HTTP pool
    # thread to copy in a half-held lock); spawn would re-import the caller's __main__ script.
    if workers <= 1 or threading.active_count() > 1:
        parts = [_simulate_customers((*columns, available_terminals, nb_days))]
    else:
        # Contiguous batches keep the concatenation order; many batches even out the load.
        bounds = np.linspace(0, len(ids), 8 * workers + 1).astype(int)
        batches = [
            (*(c[a:b] for c in columns), available_terminals[a:b], nb_days)
            for a, b in zip(bounds[:-1], bounds[1:], strict=True)
        ]
        with ProcessPoolExecutor(workers, mp_context=get_context("fork")) as pool:
            parts = list(pool.map(_simulate_customers, batches))
    customer, terminal, seconds, amount = (np.concatenate(p) for p in zip(*parts, strict=True))

    frame = pd.DataFrame(
        {
            "TX_DATETIME": np.datetime64(start_date, "s") + seconds.astype("timedelta64[s]"),
            "CUSTOMER_ID": customer,
            "TERMINAL_ID": terminal,
            "TX_AMOUNT": np.round(amount, decimals=2),
            "TX_TIME_SECONDS": seconds,
            "TX_TIME_DAYS": seconds // SECONDS_PER_DAY,
        }
    )
    frame["TX_DATETIME"] = frame["TX_DATETIME"].astype("datetime64[ns]")
    # The handbook's own call (quicksort, not stable): ties between customers at the same second keep the
    # order the handbook gives them on this numpy.
    frame = frame.sort_values("TX_DATETIME").reset_index(drop=True)
    frame.insert(0, "TRANSACTION_ID", np.arange(len(frame), dtype=np.int64))
    return frame


def add_frauds(customers: pd.DataFrame, terminals: pd.DataFrame, transactions: pd.DataFrame) -> pd.DataFrame:
    """The handbook's three fraud scenarios; returns a new frame with TX_FRAUD and TX_FRAUD_SCENARIO.

    Expects `transactions` indexed 0..n-1 in TRANSACTION_ID order (as `generate_transactions` returns it).
    """
    amount = transactions["TX_AMOUNT"].to_numpy(dtype=np.float64, copy=True)
    days = transactions["TX_TIME_DAYS"].to_numpy()
    terminal = transactions["TERMINAL_ID"].to_numpy()
    customer = transactions["CUSTOMER_ID"].to_numpy()
    fraud = np.zeros(len(amount), dtype=np.int64)
    scenario = np.zeros(len(amount), dtype=np.int64)

    # Scenario 1: large amounts.
    fraud[amount > 220] = 1
    scenario[amount > 220] = 1

    last_day = int(days.max()) if len(days) else 0
    terminal_rows = _rows_by_key(terminal)
    customer_rows = _rows_by_key(customer)
    terminal_ids = terminals["TERMINAL_ID"].to_numpy()
    customer_ids = customers["CUSTOMER_ID"].to_numpy()

    # `Series.sample(n, random_state=day)` is `RandomState(day).choice(len, n, replace=False)`.
    rs = np.random.RandomState()

    # Scenario 2: compromised terminals, every transaction for 28 days.
    for day in range(last_day):
        rs.seed(day)
        picked = terminal_ids[rs.choice(len(terminal_ids), 2, replace=False)]
        for terminal_id in picked:
            rows = terminal_rows.get(int(terminal_id))
            if rows is None:
                continue
            rows = rows[(days[rows] >= day) & (days[rows] < day + 28)]
            fraud[rows] = 1
            scenario[rows] = 2

    # Scenario 3: compromised cards, a third of their transactions for 14 days, amounts x 5.
    for day in range(last_day):
        rs.seed(day)
        picked = customer_ids[rs.choice(len(customer_ids), 3, replace=False)]
        groups = [customer_rows.get(int(c)) for c in picked]
        rows = np.sort(np.concatenate([g for g in groups if g is not None] or [np.empty(0, np.int64)]))
        rows = rows[(days[rows] >= day) & (days[rows] < day + 14)]
        random.seed(day)
        chosen = np.asarray(random.sample(rows.tolist(), k=int(len(rows) / 3)), dtype=np.int64)
        amount[chosen] = amount[chosen] * 5
        fraud[chosen] = 1
        scenario[chosen] = 3

    result = transactions.copy()
    result["TX_AMOUNT"] = amount
    result["TX_FRAUD"] = fraud
    result["TX_FRAUD_SCENARIO"] = scenario
    return result


def _rows_by_key(keys: np.ndarray) -> dict[int, np.ndarray]:
    """Row numbers per key, each ascending."""
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    ends = np.r_[starts[1:], len(keys)]
    return {int(sorted_keys[s]): order[s:e] for s, e in zip(starts, ends, strict=True)}


def simulate(config: SimulationConfig = SimulationConfig(), workers: int | None = None) -> SimulatedDataset:
    """Customers, terminals and labelled transactions of the handbook's simulator for `config`."""
    customers = generate_customer_profiles(config.n_customers, config.customer_seed)
    terminals = generate_terminal_profiles(config.n_terminals, config.terminal_seed)
    available = terminals_within_radius(customers, terminals, config.radius)
    transactions = generate_transactions(customers, available, config.nb_days, config.start_date, workers)
    transactions = add_frauds(customers, terminals, transactions)
    return SimulatedDataset(config, customers, terminals, transactions[TRANSACTION_COLUMNS])


def default_cache_dir() -> Path:
    """$WFP_HOME/cache/fraud (WFP_HOME defaults to ./.wfp)."""
    from workflow_platform.settings import wfp_home

    return wfp_home() / "cache" / "fraud"


def simulate_cached(
    config: SimulationConfig = SimulationConfig(), cache_dir: Path | None = None, workers: int | None = None
) -> SimulatedDataset:
    """`simulate`, stored as parquet under cache_dir/sim-<config key>/ so the next call only reads it back."""
    folder = _cache_folder(config, cache_dir)
    if all((folder / f"{name}.parquet").exists() for name in _CACHED):
        frames = [pd.read_parquet(folder / f"{name}.parquet") for name in _CACHED]
        return SimulatedDataset(config, *frames)
    dataset = simulate(config, workers)
    write_cache(dataset, cache_dir)
    return dataset


def write_cache(dataset: SimulatedDataset, cache_dir: Path | None = None) -> Path:
    """Store a simulated dataset where `simulate_cached` looks for it; returns the folder."""
    folder = _cache_folder(dataset.config, cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    frames = (dataset.customers, dataset.terminals, dataset.transactions)
    for name, frame in zip(_CACHED, frames, strict=True):
        # Write then rename: a concurrent or interrupted run never sees half a file.
        partial = folder / f"{name}.parquet.{os.getpid()}.tmp"
        frame.to_parquet(partial, index=False)
        partial.replace(folder / f"{name}.parquet")
    (folder / "config.json").write_text(json.dumps(asdict(dataset.config), indent=2))
    return folder


_CACHED = ("customers", "terminals", "transactions")


def _cache_folder(config: SimulationConfig, cache_dir: Path | None) -> Path:
    return Path(cache_dir or default_cache_dir()) / f"sim-{config.key()}"
