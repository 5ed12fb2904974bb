"""The Dagster code location: one job (and schedule) per `workflows/*/workflow.json`.

The folders come from WORKFLOWS_DIR (default ./workflows; several separated by ':', the first wins a name). A workflow
that fails validation never becomes a half-built job, and the other workflows still load: it is reported in the log
and shown in the UI as a placeholder job whose description lists its problems (invalid_workflows.py).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import dagster as dg

from workflow_platform.orchestration.assets import asset_specs
from workflow_platform.orchestration.catalog import load_workflows, workflows_dirs
from workflow_platform.orchestration.fraud_stream_asset import (
    fraud_stream_health,
    fraud_stream_is_flowing,
    fraud_stream_spec,
)
from workflow_platform.orchestration.invalid_workflows import invalid_workflow_jobs
from workflow_platform.orchestration.job import build_job
from workflow_platform.orchestration.triggers import build_schedule, build_sensor
from workflow_platform.plugins import plugin_registry
from workflow_platform.resources import service_resources

log = logging.getLogger("workflow_platform")


def build_definitions(directories: Sequence[Path]) -> dg.Definitions:
    loaded = load_workflows(directories)
    for problem in loaded.problems:
        log.error("workflow not loaded (shown in the UI as an invalid placeholder job): %s", problem.render())
    registry = plugin_registry()
    jobs = []
    schedules = []
    sensors = []
    for spec, path in loaded.specs.values():
        job = build_job(spec, path, registry)
        jobs.append(job)
        if schedule := build_schedule(spec, job):
            schedules.append(schedule)
        if sensor := build_sensor(spec, job):
            sensors.append(sensor)
    jobs += invalid_workflow_jobs(loaded.problems, taken=loaded.specs)
    # The workflows' datasets as assets, with edges across workflows: the Lineage page's graph.
    assets = asset_specs(spec for spec, _ in loaded.specs.values())
    # The real-time fraud stream, a process of its own: an asset its sensor and check watch.
    assets.append(fraud_stream_spec({asset.key for asset in assets}))
    sensors.append(fraud_stream_health)
    # The services' resources, for the sensors (the jobs carry the same binding: `build_job`).
    return dg.Definitions(
        assets=assets,
        asset_checks=[fraud_stream_is_flowing],
        jobs=jobs,
        schedules=schedules,
        sensors=sensors,
        resources=service_resources(),
    )


defs = build_definitions(workflows_dirs())
