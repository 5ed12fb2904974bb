"""`python -m workflow_platform.fraud_stream`: run the streaming fraud pipeline until stopped.

The services come from the WFP_* variables (WFP_NATS_URL, WFP_PG_DSN, WFP_S3_*); the options below default to
the platform's subjects and streams. Logs go to stderr; SIGTERM and SIGINT stop it cleanly (exit status 0),
and a restart, even after a kill, resumes from the checkpoints (in the object store, or --persistence-dir).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from types import FrameType

from workflow_platform.settings import ServiceSettings, wfp_home

from .options import StreamOptions

log = logging.getLogger("workflow_platform.fraud_stream")


def parse_args(argv: list[str] | None = None) -> StreamOptions:
    defaults = StreamOptions(ServiceSettings.model_construct(), Path())
    parser = argparse.ArgumentParser(prog="python -m workflow_platform.fraud_stream", description=__doc__)
    parser.add_argument(
        "--persistence-dir", type=Path, default=None, help="default: $WFP_HOME/fraud-stream/persistence"
    )
    parser.add_argument("--input-subject", default=defaults.input_subject)
    parser.add_argument("--input-stream", default=defaults.input_stream)
    parser.add_argument("--consumer", default=defaults.consumer, help="the durable JetStream consumer's name")
    parser.add_argument("--alerts-subject", default=defaults.alerts_subject)
    parser.add_argument("--alerts-stream", default=defaults.alerts_stream)
    parser.add_argument("--feedback-subject", default=defaults.feedback_subject, help="delayed fraud labels")
    parser.add_argument("--feedback-stream", default=defaults.feedback_stream)
    parser.add_argument(
        "--checkpoints",
        choices=("s3", "filesystem"),
        default=None,
        help="where the checkpoints live; default: the object store if WFP_S3_ENDPOINT is set",
    )
    parser.add_argument("--alert-threshold", type=float, default=defaults.alert_threshold)
    parser.add_argument("--commit-ms", type=int, default=defaults.commit_ms, help="milliseconds per tick")
    parser.add_argument("--snapshot-ms", type=int, default=defaults.snapshot_ms, help="between checkpoints")
    parser.add_argument("--model-check-seconds", type=float, default=defaults.model_check_seconds)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return StreamOptions(
        settings=ServiceSettings(),
        persistence_dir=args.persistence_dir or wfp_home() / "fraud-stream" / "persistence",
        input_subject=args.input_subject,
        input_stream=args.input_stream,
        consumer=args.consumer,
        alerts_subject=args.alerts_subject,
        alerts_stream=args.alerts_stream,
        feedback_subject=args.feedback_subject,
        feedback_stream=args.feedback_stream,
        checkpoints=args.checkpoints,
        alert_threshold=args.alert_threshold,
        commit_ms=args.commit_ms,
        snapshot_ms=args.snapshot_ms,
        model_check_seconds=args.model_check_seconds,
    )


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    log.info("received %s, stopping", signal.Signals(signum).name)
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        from .run import run  # imports pathway (~1 s): only once the arguments are known to be good

        run(options)
    except KeyboardInterrupt:
        pass
    except LookupError as exc:  # no model stored yet, a service variable not set
        log.error("%s", exc)
        return 1
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
