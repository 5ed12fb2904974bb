"""The Pathway application: one webserver, one input connector per route, one dataflow for all of them.

Every answer, health included, is computed by the running dataflow, so a 200 from `/health` means requests
really flow through Pathway.
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any

import pathway as pw

from . import http_server
from .connector import RequestsConnector
from .object_store import ObjectStoreUnavailable, object_store
from .pipeline_requests import failure_result
from .pipelines import PIPELINES, Pipeline
from .staging import StagedRequest, UnreadableReference, stage

log = logging.getLogger(__name__)

# How long a connector may buffer requests before committing them to the dataflow: the floor of the latency.
# Every commit is a tick of the whole dataflow, busy or idle: with the four pipelines, 5 ms kept ~90% of a core
# busy while idle here, 50 ms ~14%.
AUTOCOMMIT_MS = 50


def serve(host: str, port: int, request_timeout: float) -> None:
    """Build the dataflow, listen on host:port (http_server.PortInUse if taken), run until interrupted."""
    _check_no_phone_home()
    routes = http_server.Routes(
        health=_serve_document("/health", {"status": "ok", "pipelines": list(PIPELINES)}).answer,
        pipelines=_serve_document(
            "/pipelines", {"pipelines": [p.describe() for p in PIPELINES.values()]}
        ).answer,
        runs={pipeline.id: (pipeline, _serve_pipeline(pipeline).answer) for pipeline in PIPELINES.values()},
    )
    http_server.start(http_server.application(routes, request_timeout), host, port)
    log.info("serving %s on http://%s:%d", ", ".join(PIPELINES), host, port)
    # Flagged experimental, but it is what keeps one failing request from stopping the whole service.
    warnings.filterwarnings("ignore", message="terminate_on_error=False mode is experimental")
    pw.run(
        monitoring_level=pw.MonitoringLevel.NONE,  # no terminal dashboard: this is a service logging to stderr
        default_logging=False,  # keep the logging set up by __main__
        with_http_server=False,  # no metrics server on a second port
        terminate_on_error=False,  # a failing request answers 500; it must not stop the service
    )


def _serve_document(route: str, document: Any) -> RequestsConnector:
    connector = RequestsConnector(route, AUTOCOMMIT_MS)
    connector.respond(
        connector.requests.select(
            result=pw.apply_with_type(lambda _body: pw.Json(document), pw.Json, pw.this.body)
        )
    )
    return connector


def _serve_pipeline(pipeline: Pipeline) -> RequestsConnector:
    connector = RequestsConnector(pipeline.route, AUTOCOMMIT_MS)

    # Not deterministic (the default): Pathway keeps what it returned to retract the request later, instead of
    # reading the tables again. Returns the StagedRequest, or the failure result (a dict) if they cannot be read.
    @pw.udf
    def staged(body: str) -> pw.PyObjectWrapper:
        try:
            return pw.wrap_py_object(stage(pipeline, body, object_store()))
        except UnreadableReference as exc:
            error = f"invalid input for {pipeline.id}: {exc}"
            return pw.wrap_py_object(failure_result(422, error, field=exc.field, ref=exc.ref))
        except ObjectStoreUnavailable as exc:
            return pw.wrap_py_object(failure_result(503, str(exc)))

    checked = connector.requests.select(request=staged(pw.this.body)).with_columns(
        failure=_failure_of(pw.this.request)
    )
    inputs = checked.filter(pw.this.failure.is_none()).select(
        pw.this.request, input=_input_of(pw.this.request)
    )
    failures = checked.filter(pw.this.failure.is_not_none()).select(result=pw.unwrap(pw.this.failure))
    answers = pipeline.build(inputs)
    pw.universes.promise_are_pairwise_disjoint(answers, failures)
    connector.respond(pw.Table.concat(answers, failures))
    return connector


@pw.udf(deterministic=True)
def _failure_of(staged: pw.PyObjectWrapper) -> pw.Json | None:
    return pw.Json(staged.value) if isinstance(staged.value, dict) else None


@pw.udf(deterministic=True)
def _input_of(staged: pw.PyObjectWrapper[StagedRequest]) -> pw.Json:
    return pw.Json(staged.value.input)


def _check_no_phone_home() -> None:
    # Without a licence key Pathway neither verifies a licence (license.pathway.com) nor sends usage telemetry;
    # with one, or with a monitoring server, it opens outbound connections. Say so, since this service is
    # meant to run without network access.
    for variable in ("PATHWAY_LICENSE_KEY", "PATHWAY_MONITORING_SERVER"):
        if os.environ.get(variable):
            log.warning("%s is set: Pathway will contact external servers", variable)
