"""The Pathway application: one webserver, one REST connector per route, one dataflow for all of them.

Routes: `GET /health`, `GET /pipelines`, `POST /pipelines/<id>/run` for each registered pipeline. Every answer,
health included, is computed by the running dataflow, so a 200 from `/health` means requests really flow
through Pathway.
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any

import pathway as pw

from .http_errors import json_errors_middleware
from .object_store import ObjectStoreUnavailable, object_store
from .pipeline_requests import failure_result, pipeline_requests_middleware, request_validator
from .pipelines import PIPELINES, Pipeline
from .staging import STAGED, UnreadableReference, read_tables

log = logging.getLogger(__name__)

# How long a connector may buffer requests before committing them to the dataflow: the floor of the latency.
# Every commit is a tick of the whole dataflow, busy or idle: with the four pipelines, 5 ms kept ~90% of a core
# busy while idle here, 50 ms ~14%.
AUTOCOMMIT_MS = 50


def serve(host: str, port: int, request_timeout: float) -> None:
    """Build the dataflow and run it until the process is interrupted."""
    _check_no_phone_home()
    # No `/_schema`: Pathway would describe the raw-body connectors as taking text; `/pipelines` publishes the
    # real input schemas.
    webserver = pw.io.http.PathwayWebserver(host=host, port=port, with_schema_endpoint=False)
    # The middlewares must be in place before the webserver starts; PathwayWebserver has no public hook for it.
    webserver._app.middlewares.insert(0, json_errors_middleware(request_timeout))
    webserver._app.middlewares.insert(1, pipeline_requests_middleware(PIPELINES))
    _serve_document(webserver, "/health", {"status": "ok", "pipelines": list(PIPELINES)})
    _serve_document(webserver, "/pipelines", {"pipelines": [p.describe() for p in PIPELINES.values()]})
    for pipeline in PIPELINES.values():
        _serve_pipeline(webserver, pipeline)
    log.info("serving %s on http://%s:%d", ", ".join(PIPELINES), host, port)
    # Flagged experimental, but it is what keeps one failing request from stopping the whole service.
    warnings.filterwarnings("ignore", message="terminate_on_error=False mode is experimental")
    pw.run(
        monitoring_level=pw.MonitoringLevel.NONE,  # no terminal dashboard: this is a service logging to stderr
        default_logging=False,  # keep the logging set up by __main__
        with_http_server=False,  # no metrics server on a second port
        terminate_on_error=False,  # a failing request answers 500; it must not stop the service
    )


def _serve_document(webserver: pw.io.http.PathwayWebserver, route: str, document: Any) -> None:
    requests, respond = pw.io.http.rest_connector(
        webserver=webserver,
        route=route,
        methods=("GET",),
        autocommit_duration_ms=AUTOCOMMIT_MS,
        delete_completed_queries=True,
    )
    respond(
        requests.select(result=pw.apply_with_type(lambda _body: pw.Json(document), pw.Json, pw.this.query))
    )


def _serve_pipeline(webserver: pw.io.http.PathwayWebserver, pipeline: Pipeline) -> None:
    # The connector takes the raw body (its validator parses and stages it): with a schema it would read
    # invalid JSON as `{}` and fail with a 500 on a body that is JSON but not an object.
    requests, respond = pw.io.http.rest_connector(
        webserver=webserver,
        route=pipeline.route,
        methods=("POST",),
        autocommit_duration_ms=AUTOCOMMIT_MS,
        delete_completed_queries=True,
        request_validator=request_validator(pipeline),
    )

    # Not deterministic (the default): Pathway remembers what these returned instead of calling them again to
    # retract the request, by which time it has left the staging area.
    @pw.udf
    def read(key: str) -> pw.Json | None:
        try:
            staged = STAGED.get(key)
            read_tables(staged, object_store())
            if pipeline.prepare is not None:
                pipeline.prepare(staged, object_store())
        except UnreadableReference as exc:
            error = f"invalid input for {pipeline.id}: {exc}"
            return pw.Json(failure_result(422, error, field=exc.field, ref=exc.ref))
        except ObjectStoreUnavailable as exc:
            return pw.Json(failure_result(503, str(exc)))
        return None

    @pw.udf
    def staged_input(key: str) -> pw.Json:
        return pw.Json(STAGED.get(key).input)

    staged = requests.select(
        key=pw.apply_with_type(lambda body: STAGED.key_of(pipeline.id, body), str, pw.this.query)
    )
    read_out = staged.select(pw.this.key, failure=read(pw.this.key))
    inputs = read_out.filter(pw.this.failure.is_none()).select(pw.this.key, input=staged_input(pw.this.key))
    failures = read_out.filter(pw.this.failure.is_not_none()).select(result=pw.unwrap(pw.this.failure))
    answers = pipeline.build(inputs)
    pw.universes.promise_are_pairwise_disjoint(answers, failures)
    respond(pw.Table.concat(answers, failures))


def _check_no_phone_home() -> None:
    # Without a licence key Pathway neither verifies a licence (license.pathway.com) nor sends usage telemetry;
    # with one, or with a monitoring server, it opens outbound connections. Say so, since this service is
    # meant to run without network access.
    for variable in ("PATHWAY_LICENSE_KEY", "PATHWAY_MONITORING_SERVER"):
        if os.environ.get(variable):
            log.warning("%s is set: Pathway will contact external servers", variable)
