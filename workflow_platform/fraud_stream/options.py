"""What the streaming pipeline needs to run: the services (`ServiceSettings`) and its own options."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from workflow_platform.settings import ServiceSettings

INPUT_SUBJECT = "transactions.new"
INPUT_STREAM = "TRANSACTIONS"  # the stream `wfp simulate stream` and `wfp seed transactions --nats-rate` fill
ALERTS_SUBJECT = "fraud.alerts"
ALERTS_STREAM = "FRAUD"  # the stream the batch workflow's alerts go to (the nats plugin's name for fraud.*)
FEEDBACK_SUBJECT = "fraud.feedback"  # delayed labels (feedback.py), in the alerts' stream


@dataclass(frozen=True)
class StreamOptions:
    settings: ServiceSettings
    persistence_dir: Path  # Pathway's snapshots with filesystem checkpoints: where a restart resumes from
    input_subject: str = INPUT_SUBJECT
    input_stream: str = INPUT_STREAM
    consumer: str = "fraud-stream"  # the durable JetStream consumer: where the stream has got to
    alerts_subject: str = ALERTS_SUBJECT
    alerts_stream: str = ALERTS_STREAM
    feedback_subject: str = FEEDBACK_SUBJECT
    feedback_stream: str = ALERTS_STREAM
    # "s3": the object store, "filesystem": persistence_dir, None: the object store if WFP_S3_ENDPOINT is set
    checkpoints: Literal["s3", "filesystem"] | None = None
    alert_threshold: float = 0.5  # the batch workflow's default
    commit_ms: int = 50  # how long the reader gathers messages into one tick: the floor of the latency
    snapshot_ms: int = 1000  # how often a checkpoint is taken (and the messages it covers acknowledged)
    max_backlog: int = 50_000  # messages read ahead of the dataflow, so a catch-up never floods memory
    model_check_seconds: float = 10.0  # how often the latest model pointer is looked up

    @property
    def feedback_consumer(self) -> str:
        """The feedback's durable consumer, named after the transactions' (one pair per pipeline)."""
        return f"{self.consumer}-feedback"
