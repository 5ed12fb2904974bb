"""Delayed labels: fraud feedback read from JetStream, merged with the transactions into one stream of events.

A message on `fraud.feedback` (stream `FRAUD`) says whether a transaction was a fraud, some time after it:

    {"transactionId": 123, "source": "stream", "fraud": 1}

`transactionId` and `source` name the transaction as its own message did (`source` defaults the same way);
`fraud` is its label, 1 a fraud and 0 not (a later message for the same transaction replaces it).

The labels and the transactions go through the scorer's `remember` step as one table, so that a tick's labels
reach the history before any of the tick's (or a later tick's) transactions is featured: the same
two-operator order the dataflow relies on (dataflow.py `_scored`). The two subjects are read by two consumers,
so which tick a message lands in is only ordered within its subject: a label published just before a
transaction may still be read after it, and then counts from the next transactions on.
"""

import pathway as pw

from .options import StreamOptions


class FeedbackSchema(pw.Schema, append_only=True):
    transaction_id: int
    source: str = pw.column_definition(default_value="stream")
    fraud: int


def read(options: StreamOptions) -> pw.Table:
    """The feedback messages, through the pipeline's second durable consumer."""
    return pw.io.nats.read(
        options.settings.require("nats_url"),
        options.feedback_subject,
        format="json",
        schema=FeedbackSchema,
        json_field_paths={"transaction_id": "/transactionId"},
        jetstream_stream_name=options.feedback_stream,
        durable_consumer_name=options.feedback_consumer,
        autocommit_duration_ms=options.commit_ms,
        max_backlog_size=options.max_backlog,
        name="feedback",
    )


def with_labels(transactions: pw.Table, feedback: pw.Table) -> pw.Table:
    """The transactions and the labels as rows of one table (`is_label` tells them apart; a label's row
    carries its transaction's id, source and label as `tx_fraud`, and blanks)."""
    labels = feedback.select(
        transaction_id=pw.this.transaction_id,
        tx_datetime="",
        customer_id="",
        terminal_id="",
        amount=0.0,
        tx_fraud=pw.this.fraud,
        source=pw.this.source,
        is_label=True,
    )
    return pw.Table.concat_reindex(transactions.select(*pw.this, is_label=False), labels)
