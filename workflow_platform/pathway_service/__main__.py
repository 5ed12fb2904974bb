"""`python -m workflow_platform.pathway_service [--host H] [--port P]`: run the Pathway service.

Defaults come from the WFP_PATHWAY_* variables (settings.PathwayServiceSettings; 127.0.0.1:8000). Logs go to
stderr; SIGTERM and SIGINT stop the service cleanly (exit status 0).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from types import FrameType

from workflow_platform.settings import PathwayServiceSettings

log = logging.getLogger("workflow_platform.pathway_service")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    settings = PathwayServiceSettings()
    parser = argparse.ArgumentParser(prog="python -m workflow_platform.pathway_service", description=__doc__)
    parser.add_argument("--host", default=settings.pathway_host)
    parser.add_argument("--port", type=int, default=settings.pathway_port)
    parser.add_argument(
        "--request-timeout",
        type=float,
        default=settings.pathway_request_timeout,
        help="seconds after which a request still without an answer gets a 504 (default %(default)g)",
    )
    parser.add_argument("--log-level", default=settings.pathway_log_level)
    return parser.parse_args(argv)


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    # Pathway's engine unwinds cleanly from KeyboardInterrupt (Ctrl-C); raising it for SIGTERM too gives
    # `docker stop` and the launcher the same clean stop, with exit status 0.
    log.info("received %s, stopping", signal.Signals(signum).name)
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        # These import pathway (~1 s): only once the arguments are known to be good.
        from .app import serve
        from .http_server import PortInUse

        serve(args.host, args.port, args.request_timeout)
    except KeyboardInterrupt:
        pass
    except PortInUse as exc:
        log.error("%s", exc.strerror)
        return 1
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
