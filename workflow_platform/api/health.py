"""Health of each service and of the Dagster instance, run statistics, Prometheus metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import dagster as dg
from dagster import DagsterEventType, DagsterRunStatus
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from workflow_platform.api.config import config
from workflow_platform.orchestration.catalog import load_workflows, workflows_dirs
from workflow_platform.plugins import plugin_registry
from workflow_platform.settings import MissingSetting, ServiceSettings

router = APIRouter(tags=["health"])
CHECK_TIMEOUT_S = 3.0
STEP_DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


def _postgres() -> None:
    import psycopg2

    dsn = ServiceSettings().require("pg_dsn")
    psycopg2.connect(dsn, connect_timeout=int(CHECK_TIMEOUT_S)).close()


def _nats() -> None:
    import nats

    url = ServiceSettings().require("nats_url")

    async def ping() -> None:
        client = await nats.connect(url, connect_timeout=CHECK_TIMEOUT_S, allow_reconnect=False)
        await client.jetstream().account_info()
        await client.close()

    asyncio.run(ping())


def _object_store() -> None:
    from workflow_platform.resources.object_store import ObjectStoreResource

    store = ObjectStoreResource.from_settings(ServiceSettings())
    store.client().list_buckets()


def _pathway() -> None:
    import requests

    url = ServiceSettings().require("pathway_url")
    requests.get(url.rstrip("/") + "/health", timeout=CHECK_TIMEOUT_S).raise_for_status()


async def _check(name: str, probe: Callable[[], None]) -> tuple[str, dict[str, Any]]:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(asyncio.to_thread(probe), CHECK_TIMEOUT_S + 1)
        status: dict[str, Any] = {"status": "ok"}
    except MissingSetting as missing:
        status = {"status": "unconfigured", "error": str(missing)}
    except Exception as error:
        status = {"status": "down", "error": f"{type(error).__name__}: {error}"[:300]}
    return name, {**status, "latencyMs": round((time.perf_counter() - started) * 1000, 1)}


@router.get("/api/health", responses={503: {"description": "a service or the Dagster instance is down"}})
async def health(request: Request) -> JSONResponse:
    instance = config(request).instance
    checks = dict(
        await asyncio.gather(
            _check("postgres", _postgres),
            _check("nats", _nats),
            _check("objectStore", _object_store),
            _check("pathway", _pathway),
            _check("dagster", lambda: instance.get_run_records(limit=1)),
        )
    )
    healthy = all(c["status"] == "ok" for c in checks.values())
    return JSONResponse(
        {"status": "ok" if healthy else "degraded", "services": checks}, status_code=200 if healthy else 503
    )


def runs_by_status(instance: dg.DagsterInstance) -> dict[str, int]:
    return {s.value: instance.get_runs_count(dg.RunsFilter(statuses=[s])) for s in DagsterRunStatus}


@router.get("/api/stats")
def stats(request: Request) -> dict[str, Any]:
    cfg = config(request)
    loaded = load_workflows(workflows_dirs())
    return {
        "workflows": len(loaded.specs),
        "invalidWorkflows": len({p.file for p in loaded.problems}),
        "plugins": len(plugin_registry()),
        "executions": runs_by_status(cfg.instance),
        "uptimeSeconds": round(time.time() - cfg.started, 1),
    }


class RunCollector(Collector):
    """Run and step figures read from the Dagster instance at scrape time."""

    def __init__(self, instance: dg.DagsterInstance, recent_runs: int = 100):
        self.instance = instance
        self.recent_runs = recent_runs

    def collect(self) -> Iterator[Any]:
        runs = GaugeMetricFamily("wfp_runs", "Dagster runs by status", labels=["status"])
        for status, count in runs_by_status(self.instance).items():
            runs.add_metric([status], count)
        yield runs
        yield self._step_durations()

    def _step_durations(self) -> HistogramMetricFamily:
        by_step: dict[tuple[str, str], list[float]] = {}
        for run in self.instance.get_runs(limit=self.recent_runs):
            connection = self.instance.get_records_for_run(run.run_id, of_type=DagsterEventType.STEP_SUCCESS)
            for record in connection.records:
                event = record.event_log_entry
                seconds = event.dagster_event.event_specific_data.duration_ms / 1000
                by_step.setdefault((run.job_name, event.step_key or ""), []).append(seconds)
        family = HistogramMetricFamily(
            "wfp_step_duration_seconds",
            f"step durations in the last {self.recent_runs} runs",
            labels=["job", "step"],
        )
        for (job, step), durations in sorted(by_step.items()):
            buckets = [(str(b), sum(d <= b for d in durations)) for b in STEP_DURATION_BUCKETS]
            family.add_metric([job, step], [*buckets, ("+Inf", len(durations))], sum(durations))
        return family


class Metrics:
    def __init__(self, instance: dg.DagsterInstance):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "wfp_api_requests",
            "API requests by route template",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "wfp_api_request_duration_seconds",
            "API request latency",
            ["method", "route"],
            registry=self.registry,
        )
        self.registry.register(RunCollector(instance))

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
