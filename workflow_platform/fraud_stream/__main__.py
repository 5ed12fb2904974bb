"""`python -m workflow_platform.fraud_stream`: the streaming fraud pipeline's supervisor, until stopped.

It runs the pipeline (`python -m workflow_platform.fraud_stream.pipeline`, which takes the same options) as its
child and obeys the control bucket in NATS: run, stop, replay from an instant (see supervisor.py). The services
come from the WFP_* variables (WFP_NATS_URL, WFP_PG_DSN, WFP_S3_*). Logs, the pipeline's included, go to
stderr; SIGTERM and SIGINT stop the pipeline cleanly, then the supervisor (exit status 0).
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from workflow_platform.resources.fraud_stream_control import BUCKET

from . import options as cli
from .supervisor import Supervisor


async def _supervise(supervisor: Supervisor) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await supervisor.run(stopping)


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("python -m workflow_platform.fraud_stream", __doc__)
    parser.add_argument("--control-bucket", default=BUCKET, help="the NATS key-value bucket it obeys")
    parser.add_argument(
        "--status-file",
        type=Path,
        default=None,
        help="its status, every beat; default: <persistence dir>/../status.json",
    )
    args = parser.parse_args(argv)
    options = cli.from_args(args)
    status_file = args.status_file or options.persistence_dir.parent / "status.json"
    asyncio.run(_supervise(Supervisor(options, args.control_bucket, status_file, args.log_level)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
