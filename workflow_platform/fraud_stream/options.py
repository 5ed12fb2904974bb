"""What the streaming pipeline needs to run: the services (`ServiceSettings`) and its own options, and the
command-line options both the supervisor and the pipeline take (the supervisor hands them to the pipeline)."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from workflow_platform.settings import ServiceSettings, wfp_home

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
    # "s3": the object store, "filesystem": persistence_dir, "auto": the object store if WFP_S3_ENDPOINT is set
    checkpoints: Literal["auto", "s3", "filesystem"] = "auto"
    alert_threshold: float = 0.5  # the batch workflow's default
    commit_ms: int = 50  # how long the reader gathers messages into one tick: the floor of the latency
    snapshot_ms: int = 1000  # how often a checkpoint is taken (and the messages it covers acknowledged)
    max_backlog: int = 50_000  # messages read ahead of the dataflow, so a catch-up never floods memory
    model_check_seconds: float = 10.0  # how often the latest model pointer is looked up
    # A replay: transactions before this instant are remembered (the windows' history) but not scored again.
    emit_from: dt.datetime | None = None

    @property
    def rejected_subject(self) -> str:
        """Where transactions the pipeline cannot take go, with the reason (in the alerts' stream): the alerts'
        subject with its last token `rejected` (fraud.alerts: fraud.rejected)."""
        return f"{self.alerts_subject.rpartition('.')[0] or self.alerts_subject}.rejected"

    @property
    def feedback_consumer(self) -> str:
        """The feedback's durable consumer, named after the transactions' (one pair per pipeline)."""
        return f"{self.consumer}-feedback"


# The options the supervisor passes on to the pipeline as they are (flag -> StreamOptions field).
_PASSED_ON = {
    "--input-subject": "input_subject",
    "--input-stream": "input_stream",
    "--consumer": "consumer",
    "--alerts-subject": "alerts_subject",
    "--alerts-stream": "alerts_stream",
    "--feedback-subject": "feedback_subject",
    "--feedback-stream": "feedback_stream",
    "--checkpoints": "checkpoints",
    "--alert-threshold": "alert_threshold",
    "--commit-ms": "commit_ms",
    "--snapshot-ms": "snapshot_ms",
    "--model-check-seconds": "model_check_seconds",
}

_CHOICES = {"checkpoints": ("auto", "s3", "filesystem")}


def parser(prog: str, description: str | None) -> argparse.ArgumentParser:
    defaults = StreamOptions(ServiceSettings.model_construct(), Path())
    parsed = argparse.ArgumentParser(prog=prog, description=description)
    parsed.add_argument(
        "--persistence-dir", type=Path, default=None, help="default: $WFP_HOME/fraud-stream/persistence"
    )
    for flag, field in _PASSED_ON.items():
        default = getattr(defaults, field)
        parsed.add_argument(flag, type=type(default), default=default, choices=_CHOICES.get(field))
    parsed.add_argument("--log-level", default="INFO")
    return parsed


def from_args(args: argparse.Namespace, emit_from: dt.datetime | None = None) -> StreamOptions:
    """The options of parsed arguments; logging to stderr set up at the level asked."""
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return StreamOptions(
        settings=ServiceSettings(),
        persistence_dir=(args.persistence_dir or wfp_home() / "fraud-stream" / "persistence").resolve(),
        emit_from=emit_from,
        **{field: getattr(args, field) for field in _PASSED_ON.values()},
    )


def to_argv(options: StreamOptions, log_level: str) -> list[str]:
    """The pipeline's command-line options for `options` (the services come from the environment)."""
    argv = ["--persistence-dir", str(options.persistence_dir), "--log-level", log_level]
    for flag, field in _PASSED_ON.items():
        argv += [flag, str(getattr(options, field))]
    if options.emit_from is not None:
        argv += ["--emit-from", options.emit_from.isoformat()]
    return argv
