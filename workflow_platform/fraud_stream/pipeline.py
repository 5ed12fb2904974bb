"""`python -m workflow_platform.fraud_stream.pipeline`: run the streaming fraud pipeline until stopped.

The supervisor (`python -m workflow_platform.fraud_stream`) runs this as its child; it also runs alone. The
services come from the WFP_* variables (WFP_NATS_URL, WFP_PG_DSN, WFP_S3_*); the options default to the
platform's subjects and streams. Logs go to stderr; SIGTERM and SIGINT stop it cleanly (exit status 0), and a
restart, even after a kill, resumes from the snapshots in --persistence-dir. One pipeline per persistence dir:
a second one exits with status 3.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import sys
from types import FrameType

from . import options as cli
from .persistence import PersistenceInUse, exclusive

log = logging.getLogger("workflow_platform.fraud_stream")

IN_USE = 3  # the exit status of a pipeline refused because another one runs on its persistence dir


def _instant(text: str) -> dt.datetime:
    """An ISO 8601 instant; without an offset, UTC."""
    instant = dt.datetime.fromisoformat(text)
    return instant if instant.tzinfo else instant.replace(tzinfo=dt.UTC)


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    log.info("received %s, stopping", signal.Signals(signum).name)
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("python -m workflow_platform.fraud_stream.pipeline", __doc__)
    parser.add_argument(
        "--emit-from",
        type=_instant,
        default=None,
        help="ISO instant: earlier transactions only fill the windows' history (no score, no alert)",
    )
    args = parser.parse_args(argv)
    options = cli.from_args(args, emit_from=args.emit_from)
    # The model's OpenMP code on one thread. Read once, when OpenMP loads: `threadpool_limits` would set only
    # the calling thread's, and Pathway calls the scorer from its worker thread, where a second OpenMP thread
    # spun on the core PostgreSQL and NATS need (a fifth of a core).
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        with exclusive(options):
            from .run import run  # imports pathway (~1 s): only once the arguments are known to be good

            run(options)
    except KeyboardInterrupt:
        pass
    except PersistenceInUse as exc:
        log.error("%s", exc)
        return IN_USE
    except LookupError as exc:  # no model stored yet, a service variable not set
        log.error("%s", exc)
        return 1
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
