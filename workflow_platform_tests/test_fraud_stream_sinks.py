"""The stream's PostgreSQL sinks on the session's real database, as the workflows' role (WFP_PG_DSN): what a
tick leaves in `orchestrator.transactions`, awkward values included, and a failed write failing the pipeline."""

from __future__ import annotations

import datetime as dt
import uuid

import psycopg2
import pytest

from workflow_platform.fraud_stream.labels_sink import LabelsSink
from workflow_platform.fraud_stream.scores_sink import ScoresSink
from workflow_platform_tests.conftest import fetch

# 2026-11-30T10:00:00.123456789Z, as the scorer's instant (UTC epoch nanoseconds): stored to the microsecond.
INSTANT = 1_796_032_800_123_456_789
AWKWARD = ['with "quotes", commas', "line\nbreak\r\tand tab", "back\\slash \\N", "", "²³", "NULL"]


def scored(
    source: str, transaction_id: int, customer: str, terminal: str, risk: float = 0.25, amount: float = 12.34
) -> dict:
    """A scored transaction as the dataflow hands it to the sink: its COLUMNS as one tuple."""
    values = {
        "source": source,
        "transaction_id": transaction_id,
        "customer_id": customer,
        "terminal_id": terminal,
        "amount": amount,
        "instant": INSTANT,
        "tx_fraud": 0,
        "risk_score": risk,
        "fraud_flag": risk >= 0.5,
    }
    return {"row": tuple(values[column] for column in ScoresSink.COLUMNS)}


def write_ticks(dsn: str, *ticks: list[dict]) -> None:
    sink = ScoresSink(dsn)
    for time, rows in enumerate(ticks):
        for row in rows:
            sink.on_change(None, row, time, True)
        sink.on_time_end(time)
    sink.on_end()


def test_a_tick_lands_as_sent_awkward_strings_included(
    stack_env: dict[str, str], pg: psycopg2.extensions.connection
) -> None:
    source = f"sink-{uuid.uuid4().hex[:8]}"
    rows = [scored(source, i, text, text) for i, text in enumerate(AWKWARD)]
    rows.append(scored(source, 100, "c-100", "4711"))
    write_ticks(stack_env["WFP_PG_DSN"], rows)
    stored = fetch(
        pg,
        "SELECT source_tx_id, customer_id, merchant_id, terminal_id, amount::text, created_at, tx_fraud, "
        "risk_score, fraud_flag, processed_at IS NOT NULL FROM orchestrator.transactions WHERE source = %s "
        "ORDER BY source_tx_id",
        source,
    )
    assert [(r[0], r[1], r[2]) for r in stored] == [
        *((i, text, text) for i, text in enumerate(AWKWARD)),
        (100, "c-100", "4711"),
    ]
    # The terminal as a number only where it is one in ASCII digits (the simulator's); "²³" is not.
    assert [r[3] for r in stored] == [None] * len(AWKWARD) + [4711]
    assert {r[4:] for r in stored} == {("12.34", stored[0][5], 0, 0.25, False, True)}
    assert stored[0][5] == dt.datetime(2026, 11, 30, 10, 0, 0, 123456, tzinfo=dt.UTC)


def test_a_transaction_twice_in_a_tick_is_one_row_and_a_seeded_row_keeps_its_columns(
    stack_env: dict[str, str], pg: psycopg2.extensions.connection
) -> None:
    source = f"sink-{uuid.uuid4().hex[:8]}"
    fetch(
        pg,
        "INSERT INTO orchestrator.transactions (source, source_tx_id, customer_id, merchant_id, amount, "
        "created_at, tx_fraud) VALUES (%s, 7, 'seeded-card', 'seeded-terminal', 99.5, now(), 1)",
        source,
    )
    # Delivered twice in one tick (an upsert may touch a row once per statement), then once more later.
    write_ticks(
        stack_env["WFP_PG_DSN"],
        [
            scored(source, 7, "c", "t", 0.1),
            scored(source, 7, "c", "t", 0.9),
            scored(source, 8, "c", "t", 0.2),
        ],
        [scored(source, 8, "c", "t", 0.3)],
    )
    stored = fetch(
        pg,
        "SELECT source_tx_id, customer_id, merchant_id, amount::text, tx_fraud, risk_score, fraud_flag "
        "FROM orchestrator.transactions WHERE source = %s ORDER BY source_tx_id",
        source,
    )
    assert stored == [
        (7, "seeded-card", "seeded-terminal", "99.50", 1, 0.9, True),
        (8, "c", "t", "12.34", 0, 0.3, False),
    ]


def test_a_failed_write_fails_the_next_tick_and_the_end(stack_env: dict[str, str]) -> None:
    # An amount beyond the column's numeric(12, 2): the write fails on the writer's thread.
    sink = ScoresSink(stack_env["WFP_PG_DSN"])
    sink.on_change(None, scored("sink-failing", 1, "c", "t", amount=1e13), 0, True)
    sink.on_time_end(0)
    with pytest.raises(RuntimeError, match="writing to PostgreSQL failed: numeric field overflow"):
        sink.on_change(None, scored("sink-failing", 2, "c", "t"), 1, True)
        sink.on_time_end(1)
        sink.on_end()


def test_a_label_whose_source_holds_a_nul_is_not_written_and_the_others_are(
    stack_env: dict[str, str], pg: psycopg2.extensions.connection
) -> None:
    # PostgreSQL refuses a NUL in text: written, it would fail the tick (and every restart) for all labels.
    source = f"sink-{uuid.uuid4().hex[:8]}"
    write_ticks(stack_env["WFP_PG_DSN"], [scored(source, 1, "c", "t")])
    sink = LabelsSink(stack_env["WFP_PG_DSN"])
    sink.on_change(None, {"source": "bad\x00source", "transaction_id": 1, "fraud": 1}, 0, True)
    sink.on_change(None, {"source": source, "transaction_id": 1, "fraud": 1}, 0, True)
    sink.on_time_end(0)
    sink.on_end()
    assert fetch(pg, "SELECT tx_fraud FROM orchestrator.transactions WHERE source = %s", source) == [(1,)]
