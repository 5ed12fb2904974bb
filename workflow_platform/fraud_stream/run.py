"""Start the pipeline: the streams and the model first (failing early and clearly), then the dataflow."""

from __future__ import annotations

import logging

import pathway as pw

from workflow_platform.resources.s3_client import settings_client

from . import persistence
from .dataflow import build
from .latest_model import LatestModel
from .options import StreamOptions
from .scorer import Scorer
from .streams import ensure_streams

log = logging.getLogger(__name__)


def run(options: StreamOptions) -> None:
    settings = options.settings
    ensure_streams(options)
    model = LatestModel(
        settings_client(settings),
        settings.s3_bucket,
        options.model_check_seconds,
        compiled_dir=persistence.compiled_models_dir(options),
    )
    build(options, Scorer(model, options.alert_threshold, options.emit_from))
    log.info(
        "reading %s (stream %s), checkpoints in %s",
        options.input_subject,
        options.input_stream,
        persistence.location(options),
    )
    pw.run(
        monitoring_level=pw.MonitoringLevel.NONE,
        default_logging=False,  # keep the logging set up by __main__
        with_http_server=False,
        persistence_config=persistence.config(options),
    )
