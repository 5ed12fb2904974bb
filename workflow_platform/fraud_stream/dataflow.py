"""The streaming fraud pipeline as a Pathway dataflow.

    NATS JetStream transactions.new ─► (pw.io.nats.read: durable consumer, JSON, one tick per commit)
        ─► with the delayed labels of fraud.feedback (a second reader, feedback.py; labels_sink.py: tx_fraud)
        ─► remember the tick's transactions, apply its labels
        ─► the transactions' window features + model score (batched UDFs, scorer.py)
        ─┬─► every score ─► orchestrator.transactions (keyed upsert per tick, scores_sink.py)
         ├─► risk_score >= threshold ─► fraud.alerts (pw.io.nats.write, Nats-Msg-Id = fraud.alerts:<source>:<id>)
         └─► a transaction the platform cannot take (scorer.rejection) ─► fraud.rejected, with the reason

With persistence (`pw.persistence.Config`, persistence.py) the reader acknowledges messages only once a
checkpoint covers them, and a restarted pipeline replays its snapshot through the dataflow (rebuilding the
scorer's history, labels included) before reading on: no transaction is lost, and the outputs of the messages
delivered again are idempotent (JetStream drops a repeated Nats-Msg-Id, the upsert rewrites the same row).
"""

import datetime as dt
import hashlib
import json
import math

import pathway as pw

from workflow_platform.fraud.features import FEATURES

from . import feedback
from .labels_sink import LabelsSink
from .options import StreamOptions
from .scorer import REJECTED, Scorer, rejection
from .scores_sink import ScoresSink

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_NO_LABEL = 0  # a transaction without its label is not known to be a fraud


class TransactionSchema(pw.Schema, append_only=True):
    """The replay's message body (`demo_data.fraud_load.transaction_messages`); its other fields are unread."""

    transaction_id: int
    tx_datetime: str
    customer_id: str
    terminal_id: str
    amount: float
    tx_fraud: int = pw.column_definition(default_value=_NO_LABEL)
    source: str = pw.column_definition(default_value="stream")


# No `from __future__ import annotations` here: Pathway reads the UDFs' annotations as types.
def scoring_udfs(scorer: Scorer) -> tuple[pw.UDF, pw.UDF]:
    """The scorer's two steps as batched UDFs (Pathway hands them up to ~1,000 rows at once). Not
    deterministic: Pathway keeps each result rather than calling them again, as the scorer's memory moves on."""

    @pw.udf(max_batch_size=1_000_000)
    def remember(
        is_label: list[bool],
        transaction_id: list[int],
        created_at: list[str],
        customer_id: list[str],
        terminal_id: list[str],
        amount: list[float],
        tx_fraud: list[int],
        source: list[str],
    ) -> list[int]:
        return scorer.remember(
            is_label, transaction_id, created_at, customer_id, terminal_id, amount, tx_fraud, source
        )

    @pw.udf(max_batch_size=1_000_000)
    def score(transaction_id: list[int]) -> list[tuple[float, bool, tuple[float, ...], str, int]]:
        return scorer.score(transaction_id)

    return remember, score


@pw.udf(deterministic=True)
def alert_body(
    source: str,
    transaction_id: int,
    customer_id: str,
    terminal_id: str,
    amount: float,
    created_at: str,
    risk_score: float,
    features: tuple[float, ...],
    model_version: str,
) -> str:
    """What an analyst needs to act on a flagged transaction (the batch workflow's alert, without rules)."""
    document = {
        "transactionId": transaction_id,
        "source": source,
        "customerId": customer_id,
        "terminalId": terminal_id,
        "amount": amount,
        "createdAt": created_at,
        "riskScore": risk_score,
        "scoredBy": "model",
        "modelVersion": model_version,
        "features": dict(zip(FEATURES, features, strict=True)),
    }
    return json.dumps(document, separators=(",", ":"))


@pw.udf(deterministic=True)
def rejected_message(
    subject: str,
    source: str,
    transaction_id: int,
    created_at: str,
    customer_id: str,
    terminal_id: str,
    amount: float,
) -> tuple[str, str]:
    """(body, Nats-Msg-Id) of a transaction the platform cannot take: its fields as received and why. The id
    names the source by a hash, as it may be the very reason (a control character cannot go into a header)."""
    document = {
        "transactionId": transaction_id,
        "source": source,
        "reason": rejection(created_at, customer_id, terminal_id, amount, source),
        "transaction": {
            "tx_datetime": created_at,
            "customer_id": customer_id,
            "terminal_id": terminal_id,
            "amount": amount if math.isfinite(amount) else str(amount),
        },
    }
    source_hash = hashlib.sha256(source.encode()).hexdigest()[:16]
    return json.dumps(document, separators=(",", ":")), f"{subject}:{source_hash}:{transaction_id}"


def build(options: StreamOptions, scorer: Scorer) -> None:
    """Connect the reader, the scorer and both outputs (run with `pw.run`)."""
    nats_url = options.settings.require("nats_url")
    transactions = pw.io.nats.read(
        nats_url,
        options.input_subject,
        format="json",
        schema=TransactionSchema,
        jetstream_stream_name=options.input_stream,
        durable_consumer_name=options.consumer,
        autocommit_duration_ms=options.commit_ms,
        max_backlog_size=options.max_backlog,
        name="transactions",
    )
    labels = feedback.read(options)
    events = feedback.with_labels(transactions, labels)
    remember, score = scoring_udfs(scorer)
    # Pathway keeps the result of a non-deterministic UDF for every row it has, to retract it exactly if the
    # row goes (about 600 bytes a transaction, for ever: 2 GB an hour at 1,000 a second). Each event is
    # forgotten as soon as it is in (the results with it), and the outputs see only the insertions. (Marking the
    # input append-only also spares the memory, but Pathway then calls the UDFs 128 rows at a time, which
    # halves the rate.) `_forget_immediately` is Pathway's own, private, as its as-of-now join uses it.
    remembered = _remembered(events._forget_immediately(), remember)
    scored = _scored(remembered, score, _epoch_ns(options.emit_from)).filter_out_results_of_forgetting()
    remembered = remembered.filter_out_results_of_forgetting()
    dsn = options.settings.require("pg_dsn")
    # One tuple a row: Pathway's subscription builds a dict of a row's columns for each row it hands over.
    scores = scored.select(row=pw.make_tuple(*(scored[column] for column in ScoresSink.COLUMNS)))
    for table, sink, name in ((scores, ScoresSink(dsn), "scores"), (labels, LabelsSink(dsn), "labels")):
        pw.io.subscribe(
            table, on_change=sink.on_change, on_time_end=sink.on_time_end, on_end=sink.on_end, name=name
        )
    outputs = (
        (_alerts(scored, options.alerts_subject), options.alerts_subject, "alerts"),
        (_rejected(remembered, options.rejected_subject), options.rejected_subject, "rejected"),
    )
    for messages, subject, name in outputs:
        pw.io.nats.write(
            messages,
            nats_url,
            subject,
            format="plaintext",
            value=messages.body,
            headers=[messages["Nats-Msg-Id"]],
            jetstream_stream_name=options.alerts_stream,
            name=name,
        )


def _remembered(events: pw.Table, remember: pw.UDF) -> pw.Table:
    """The events with each transaction's `instant` (REJECTED if the platform cannot take it), once the scorer
    has remembered them (and applied the labels)."""
    return events.select(
        *pw.this,
        created_at=pw.this.tx_datetime,
        instant=remember(
            pw.this.is_label,
            pw.this.transaction_id,
            pw.this.tx_datetime,
            pw.this.customer_id,
            pw.this.terminal_id,
            pw.this.amount,
            pw.this.tx_fraud,
            pw.this.source,
        ),
    ).without(pw.this.tx_datetime)


def _scored(remembered: pw.Table, score: pw.UDF, emit_from_ns: int | None) -> pw.Table:
    """Scoring after remembering: two operators, one after the other, so that a tick's rows are all remembered
    (its labels applied) before any transaction is scored; a later tick's transactions reach `score` only after
    `remember` saw them, so after the labels before them.

    One operator calling both would score the first ~1,000 rows of a tick (in key order, not time order)
    before the rest were remembered. That Pathway runs the first operator over the rows it has before the
    second sees them is how its single worker schedules them, not a documented promise: test_fraud_stream.py
    checks the outcome (streamed features and scores equal the batch path's), test_fraud_stream_labels.py
    that of the labels. Transactions before `emit_from_ns` (a replay's history) are remembered, not scored.
    """
    scored = ~remembered.is_label & (remembered.instant != REJECTED)
    if emit_from_ns is not None:
        scored &= remembered.instant >= emit_from_ns
    return (
        remembered.filter(scored)
        .without(pw.this.is_label)
        .select(*pw.this.without(pw.this.tx_fraud), result=score(pw.this.transaction_id))
        .select(
            *pw.this.without(pw.this.result),
            risk_score=pw.this.result[0],
            fraud_flag=pw.this.result[1],  # the scorer's threshold decides, and gives an alert its features
            features=pw.this.result[2],
            model_version=pw.this.result[3],
            tx_fraud=pw.this.result[4],  # the label the scorer knew, a delayed one included
        )
    )


def _rejected(remembered: pw.Table, subject: str) -> pw.Table:
    message = remembered.filter(~pw.this.is_label & (pw.this.instant == REJECTED)).select(
        message=rejected_message(
            subject,
            pw.this.source,
            pw.this.transaction_id,
            pw.this.created_at,
            pw.this.customer_id,
            pw.this.terminal_id,
            pw.this.amount,
        )
    )
    return message.select(body=pw.this.message[0], **{"Nats-Msg-Id": pw.this.message[1]})


def _epoch_ns(instant: dt.datetime | None) -> int | None:
    """UTC nanoseconds since the epoch, as the scorer's instants."""
    return None if instant is None else (instant - _EPOCH) // dt.timedelta(microseconds=1) * 1000


def _alerts(scored: pw.Table, subject: str) -> pw.Table:
    flagged = scored.filter(pw.this.fraud_flag)
    return flagged.select(
        body=alert_body(
            pw.this.source,
            pw.this.transaction_id,
            pw.this.customer_id,
            pw.this.terminal_id,
            pw.this.amount,
            pw.this.created_at,
            pw.this.risk_score,
            pw.this.features,
            pw.this.model_version,
        ),
        # JetStream keeps one message per id: an alert published again after a restart is dropped.
        **{"Nats-Msg-Id": f"{subject}:" + pw.this.source + ":" + pw.this.transaction_id.to_string()},
    )
