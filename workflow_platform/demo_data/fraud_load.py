"""Put simulated transactions where the platform reads them: PostgreSQL (`orchestrator.transactions`) and NATS.

PostgreSQL: `load_transactions` COPYs the rows into a temporary staging table and inserts them with
`ON CONFLICT (source, source_tx_id) DO NOTHING`, where `source` names the dataset ("handbook-sim/<config
key>") and `source_tx_id` is the handbook's TRANSACTION_ID. Loading the same dataset again therefore adds
nothing and leaves rows the fraud workflow already processed (processed_at, risk_score, fraud_flag) as they
are; a different configuration is a different source and is added beside it. When the table already holds
all n rows of the source, the COPY is skipped (a re-run takes under a second for the 1.75M-row dataset).

Column mapping: customer_id = CUSTOMER_ID, merchant_id = TERMINAL_ID (also terminal_id as a number),
amount = TX_AMOUNT, created_at = TX_DATETIME read as UTC, latitude / longitude = the terminal's x / y on the
simulator's 100 x 100 grid, tx_fraud, tx_fraud_scenario, tx_time_seconds, tx_time_days.
`orchestrator.customer_profiles` gets avg_amount / std_amount = the customer's mean_amount / std_amount and
home_latitude / home_longitude = x / y (upserted, so it follows the latest load).

NATS: `replay_to_nats` publishes the transactions on a JetStream subject (default `transactions.new`, stream
TRANSACTIONS) in TRANSACTION_ID order at a chosen rate, each with Nats-Msg-Id "<source>:<TRANSACTION_ID>".
JetStream drops a repeated id inside its duplicate window, and a replay first reads the last message on the
subject and continues after it, so a replay started again (or twice) never stores a transaction twice.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from workflow_platform.demo_data.fraud_simulator import SimulatedDataset

DEFAULT_SUBJECT = "transactions.new"
COPY_CHUNK_ROWS = 250_000
ENCODE_CHUNK_ROWS = 20_000

_STAGE_COLUMNS = (
    "source_tx_id bigint, customer_id text, merchant_id text, terminal_id bigint, amount numeric(12,2), "
    "created_at timestamptz, latitude double precision, longitude double precision, tx_fraud smallint, "
    "tx_fraud_scenario smallint, tx_time_seconds bigint, tx_time_days integer"
)
_COLUMNS = (
    "source_tx_id, customer_id, merchant_id, terminal_id, amount, created_at, latitude, longitude, "
    "tx_fraud, tx_fraud_scenario, tx_time_seconds, tx_time_days"
)


def dataset_source(dataset: SimulatedDataset) -> str:
    """The `source` value of a simulated dataset's rows."""
    return f"handbook-sim/{dataset.config.key()}"


def load_transactions(
    dataset: SimulatedDataset, dsn: str | None = None, profiles: bool = True, source: str | None = None
) -> dict[str, Any]:
    """Load the dataset's transactions (and customer profiles) into PostgreSQL at `dsn` (default: the admin's,
    WFP_PG_ADMIN_DSN: the load applies the schema and stages in temporary tables).

    Returns counts: rows in the dataset, rows inserted now, rows the table holds for this source, profiles
    written, and the seconds taken.
    """
    import psycopg2

    from workflow_platform.settings import admin_dsn
    from workflow_platform.stack.pg_server import apply_schema

    began = time.perf_counter()
    dsn = dsn or admin_dsn()
    source = source or dataset_source(dataset)
    apply_schema(dsn)  # idempotent: the columns and index this load needs exist on any database
    total = len(dataset.transactions)
    connection = psycopg2.connect(dsn, connect_timeout=10, application_name="wfp-seed-transactions")
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute("SET LOCAL TimeZone = 'UTC'")
            inserted = 0
            # source_tx_id is unique per source and runs over 0..n-1, so n rows mean the dataset is all there
            # (a load is one transaction: it lands whole or not at all) and COPY can be skipped.
            if _rows_of(cursor, source) != total:
                inserted = _copy_transactions(cursor, _transaction_rows(dataset), source)
            written_profiles = _upsert_profiles(cursor, dataset) if profiles else 0
            present = _rows_of(cursor, source)
    finally:
        connection.close()
    return {
        "source": source,
        "transactions": total,
        "frauds": int(dataset.transactions["TX_FRAUD"].sum()),
        "inserted": inserted,
        "in_table": present,
        "customer_profiles": written_profiles,
        "seconds": round(time.perf_counter() - began, 2),
    }


def _rows_of(cursor: Any, source: str) -> int:
    cursor.execute("SELECT count(*) FROM orchestrator.transactions WHERE source = %s", (source,))
    return int(cursor.fetchone()[0])


def _copy_transactions(cursor: Any, rows: pd.DataFrame, source: str) -> int:
    """COPY into a staging table, then insert what the table does not hold yet; returns the rows inserted."""
    cursor.execute(f"CREATE TEMP TABLE stage_transactions ({_STAGE_COLUMNS}) ON COMMIT DROP")
    for start in range(0, len(rows), COPY_CHUNK_ROWS):
        cursor.copy_expert(
            f"COPY stage_transactions ({_COLUMNS}) FROM STDIN WITH (FORMAT csv)",
            _csv(rows.iloc[start : start + COPY_CHUNK_ROWS]),
        )
    cursor.execute(
        f"INSERT INTO orchestrator.transactions (source, {_COLUMNS}) "
        f"SELECT %s, {_COLUMNS} FROM stage_transactions "
        "ON CONFLICT (source, source_tx_id) DO NOTHING",
        (source,),
    )
    return cursor.rowcount


def _transaction_rows(dataset: SimulatedDataset) -> pd.DataFrame:
    tx = dataset.transactions
    terminals = dataset.terminals.set_index("TERMINAL_ID")
    terminal_ids = tx["TERMINAL_ID"].to_numpy()
    when = pd.to_datetime(tx["TX_DATETIME"])
    return pd.DataFrame(
        {
            "source_tx_id": tx["TRANSACTION_ID"].to_numpy(),
            "customer_id": tx["CUSTOMER_ID"].astype(str).to_numpy(),
            "merchant_id": tx["TERMINAL_ID"].astype(str).to_numpy(),
            "terminal_id": terminal_ids,
            "amount": tx["TX_AMOUNT"].to_numpy(),
            "created_at": when.dt.tz_localize("UTC") if when.dt.tz is None else when,
            "latitude": terminals["x_terminal_id"].reindex(terminal_ids).to_numpy(),
            "longitude": terminals["y_terminal_id"].reindex(terminal_ids).to_numpy(),
            "tx_fraud": tx["TX_FRAUD"].to_numpy(),
            "tx_fraud_scenario": tx["TX_FRAUD_SCENARIO"].to_numpy(),
            "tx_time_seconds": tx["TX_TIME_SECONDS"].to_numpy(),
            "tx_time_days": tx["TX_TIME_DAYS"].to_numpy(),
        }
    )


def _csv(frame: pd.DataFrame) -> io.BytesIO:
    """CSV for COPY, written by pyarrow (an order of magnitude faster than DataFrame.to_csv)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    buffer = io.BytesIO()
    pacsv.write_csv(
        pa.Table.from_pandas(frame, preserve_index=False),
        buffer,
        pacsv.WriteOptions(include_header=False, quoting_style="needed"),
    )
    buffer.seek(0)
    return buffer


def _upsert_profiles(cursor: Any, dataset: SimulatedDataset) -> int:
    customers = dataset.customers
    profiles = pd.DataFrame(
        {
            "customer_id": customers["CUSTOMER_ID"].astype(str),
            "avg_amount": customers["mean_amount"].round(2),
            "std_amount": customers["std_amount"].round(2),
            "home_latitude": customers["x_customer_id"],
            "home_longitude": customers["y_customer_id"],
        }
    )
    cursor.execute(
        "CREATE TEMP TABLE stage_profiles (customer_id text, avg_amount numeric(12,2), std_amount numeric(12,2), "
        "home_latitude double precision, home_longitude double precision) ON COMMIT DROP"
    )
    cursor.copy_expert("COPY stage_profiles FROM STDIN WITH (FORMAT csv)", _csv(profiles))
    cursor.execute(
        "INSERT INTO orchestrator.customer_profiles "
        "(customer_id, avg_amount, std_amount, home_latitude, home_longitude) "
        "SELECT customer_id, avg_amount, std_amount, home_latitude, home_longitude FROM stage_profiles "
        "ON CONFLICT (customer_id) DO UPDATE SET avg_amount = EXCLUDED.avg_amount, "
        "std_amount = EXCLUDED.std_amount, home_latitude = EXCLUDED.home_latitude, "
        "home_longitude = EXCLUDED.home_longitude"
    )
    return len(profiles)


# --- NATS ---------------------------------------------------------------------------------------------------


def transaction_messages(transactions: pd.DataFrame, source: str) -> list[tuple[str, bytes]]:
    """(Nats-Msg-Id, JSON body) per transaction, in TRANSACTION_ID order."""
    tx = transactions.sort_values("TRANSACTION_ID")
    when = pd.to_datetime(tx["TX_DATETIME"])
    stamps = (when.dt.tz_localize("UTC") if when.dt.tz is None else when.dt.tz_convert("UTC")).dt.strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    messages = []
    for tx_id, stamp, customer, terminal, amount, seconds, days, fraud, scenario in zip(
        tx["TRANSACTION_ID"].to_numpy(),
        stamps.to_numpy(),
        tx["CUSTOMER_ID"].to_numpy(),
        tx["TERMINAL_ID"].to_numpy(),
        tx["TX_AMOUNT"].to_numpy(),
        tx["TX_TIME_SECONDS"].to_numpy(),
        tx["TX_TIME_DAYS"].to_numpy(),
        tx["TX_FRAUD"].to_numpy(),
        tx["TX_FRAUD_SCENARIO"].to_numpy(),
        strict=True,
    ):
        body = {
            "transaction_id": int(tx_id),
            "tx_datetime": stamp,
            "customer_id": str(customer),
            "terminal_id": str(terminal),
            "amount": round(float(amount), 2),
            "tx_time_seconds": int(seconds),
            "tx_time_days": int(days),
            "tx_fraud": int(fraud),
            "tx_fraud_scenario": int(scenario),
            "source": source,
        }
        messages.append((f"{source}:{int(tx_id)}", json.dumps(body, separators=(",", ":")).encode()))
    return messages


def replay_to_nats(
    transactions: pd.DataFrame,
    source: str,
    rate: float | None = None,
    nats_url: str | None = None,
    subject: str = DEFAULT_SUBJECT,
    stream: str | None = None,
    in_flight: int = 256,
    limit: int | None = None,
) -> dict[str, Any]:
    """Publish the transactions on `subject` at `rate` messages/s (None or <= 0: as fast as acks come back).

    The stream (default: the first subject token upper-cased, as the nats plugin names it) is created if no
    stream holds the subject. With `limit`, at most that many are published (the next ones, in order: `wfp
    simulate stream` feeds a live stream a slice at a time). Returns counts: published now, acknowledged as
    duplicates, skipped because an earlier replay already published them, left to publish, and the achieved rate.
    """
    from workflow_platform.settings import ServiceSettings

    url = nats_url or ServiceSettings().require("nats_url")
    ordered = transactions.sort_values("TRANSACTION_ID")
    return asyncio.run(_replay(ordered, source, rate, url, subject, stream, in_flight, limit))


async def _replay(
    transactions: pd.DataFrame,
    source: str,
    rate: float | None,
    url: str,
    subject: str,
    stream: str | None,
    in_flight: int,
    limit: int | None,
) -> dict[str, Any]:
    import nats

    client = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=3)
    try:
        js = client.jetstream()
        stream = await _stream_holding(js, subject, stream)
        done = await _published_up_to(js, stream, subject, source)
        pending = transactions[transactions["TRANSACTION_ID"] > done]
        left = max(0, len(pending) - limit) if limit is not None else 0
        pending = pending.iloc[: len(pending) - left]
        began = time.perf_counter()
        stored, duplicates = await _publish(js, pending, source, subject, rate, in_flight)
        elapsed = time.perf_counter() - began
    finally:
        await client.drain()
    return {
        "stream": stream,
        "subject": subject,
        "published": stored,
        "duplicates": duplicates,
        "skipped_already_published": len(transactions) - len(pending) - left,
        "left_to_publish": left,
        "seconds": round(elapsed, 2),
        "rate": round(stored / elapsed, 1) if elapsed > 0 else None,
    }


async def _stream_holding(js: Any, subject: str, stream: str | None) -> str:
    """The stream that holds `subject`; if none does, `stream` (default: named as the nats plugin names it, so
    workflows publishing there share it) created for it."""
    import nats

    from workflow_platform.plugins.nats import stream_name
    from workflow_platform.resources.jetstream import ensure_stream

    try:
        return await js.find_stream_name_by_subject(subject)
    except nats.js.errors.NotFoundError:
        stream = stream or stream_name(subject)
        # JetStream's default duplicate window (0), not the plugin's day: a replay resumes after the last message
        # on the subject anyway, and a day of remembered ids for 1.75M messages would cost hundreds of MB.
        await ensure_stream(js, subject, stream, duplicate_window_s=0)
        return stream


async def _publish(
    js: Any, pending: pd.DataFrame, source: str, subject: str, rate: float | None, in_flight: int
) -> tuple[int, int]:
    """Publish `pending` in order, paced to `rate`; returns (stored, acknowledged as duplicates)."""
    # Paced replays send a burst every 50 ms (one message at a time below 20 messages/s).
    batch = max(1, min(in_flight, int(rate / 20))) if rate and rate > 0 else in_flight
    began = time.perf_counter()
    stored = duplicates = 0
    # Encoded a chunk at a time: a full replay never holds 1.75M encoded bodies at once.
    for chunk_start in range(0, len(pending), ENCODE_CHUNK_ROWS):
        messages = transaction_messages(pending.iloc[chunk_start : chunk_start + ENCODE_CHUNK_ROWS], source)
        for offset in range(0, len(messages), batch):
            if rate and rate > 0:
                # Pace by the schedule, not by sleeps, so slow acks do not pile up extra delay.
                ahead = began + (chunk_start + offset) / rate - time.perf_counter()
                if ahead > 0:
                    await asyncio.sleep(ahead)
            acks = await asyncio.gather(
                *(
                    js.publish(subject, body, headers={"Nats-Msg-Id": msg_id}, timeout=10)
                    for msg_id, body in messages[offset : offset + batch]
                )
            )
            duplicates += sum(1 for ack in acks if ack.duplicate)
            stored += sum(1 for ack in acks if not ack.duplicate)
    return stored, duplicates


async def _published_up_to(js: Any, stream: str, subject: str, source: str) -> int:
    """The highest TRANSACTION_ID of `source` already on the subject (-1 if none): the last message's id."""
    import nats

    try:
        last = await js.get_last_msg(stream, subject)
    except nats.js.errors.NotFoundError:
        return -1
    msg_id = (last.headers or {}).get("Nats-Msg-Id", "")
    if not msg_id.startswith(f"{source}:"):
        return -1
    return _tx_id(msg_id)


def _tx_id(msg_id: str) -> int:
    return int(msg_id.rsplit(":", 1)[1])
